package certs

import (
	"strings"
	"testing"
	"time"
)

// TestRevokedNoticeSaysWhenRevocationIsFinal: the inbox text says the share is deleted at
// once and unrecoverable only after the next KEK erasure, with the schedule when there is
// one.
func TestRevokedNoticeSaysWhenRevocationIsFinal(t *testing.T) {
	for _, tc := range []struct {
		interval time.Duration
		want     string
	}{
		{7 * 24 * time.Hour, "下一次定期密钥销毁（每 7 天内一次）后彻底无法恢复"},
		{36 * time.Hour, "每 2 天内一次"},
		{0, "平台管理员执行下一次密钥销毁后彻底无法恢复"},
	} {
		got := (&Service{opts: Options{ErasureInterval: tc.interval}}).revokedNotice("0a1b", "因售后退款")
		for _, w := range []string{"证书 0a1b 因售后退款已注销", "已立即从在用数据中删除", "不再用它签名或解密", tc.want, "无法解密原有文件"} {
			if !strings.Contains(got, w) {
				t.Errorf("interval %s: %q lacks %q", tc.interval, got, w)
			}
		}
	}
}
