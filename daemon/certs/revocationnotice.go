package certs

import (
	"fmt"
	"time"
)

// revokedNotice is the inbox text of a revoked certificate, cause saying why ("" or
// "因售后退款"). It says what revocation does at once — the key's server share is deleted
// from the live store, so hufu neither signs nor decrypts with it again — and when that
// becomes final: the wrapped share survives in the store's old files and in backups until
// the next KEK erasure (admin/erasure.go) destroys the KEK that wraps it.
func (s *Service) revokedNotice(serial, cause string) string {
	final := "平台管理员执行下一次密钥销毁后"
	if d := s.opts.ErasureInterval; d > 0 {
		days := int((d + 24*time.Hour - 1) / (24 * time.Hour))
		final = fmt.Sprintf("下一次定期密钥销毁（每 %d 天内一次）后", days)
	}
	return fmt.Sprintf("证书 %s %s已注销，不能恢复：服务器端密钥分量已立即从在用数据中删除，平台不再用它签名或解密；"+
		"它在平台旧数据文件和备份中的加密副本在%s彻底无法恢复，此后无法解密原有文件。", serial, cause, final)
}
