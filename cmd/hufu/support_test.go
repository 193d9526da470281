package main

import (
	"bytes"
	"encoding/json"
	"image"
	"image/png"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"

	"github.com/hufu-hsm/hufu/daemon/daemontest"
)

// TestCardAndSupportCommands runs the bank-card, FAQ, contact, feedback and support-desk
// commands in process against a development daemon (whose CLI certificate is allowed the
// support desk).
func TestCardAndSupportCommands(t *testing.T) {
	d := daemontest.StartOnWallClock(t)
	cfg, addr := d.Config, d.Addr
	home, work := t.TempDir(), t.TempDir()
	tlsDir := filepath.Join(cfg.DataDir, "tls")
	hufu := func(stdin string, args ...string) (string, error) {
		t.Helper()
		var out, errOut bytes.Buffer
		all := append([]string{"-addr", addr, "-daemon-dir", cfg.DataDir, "-home", home}, args...)
		err := run(all, strings.NewReader(stdin), &out, &errOut)
		return out.String() + errOut.String(), err
	}
	must := func(args ...string) string {
		t.Helper()
		out, err := hufu("", args...)
		if err != nil {
			t.Fatalf("hufu %s: %s\n%s", strings.Join(args, " "), describe(err), out)
		}
		return out
	}
	refused := func(code int, args ...string) string {
		t.Helper()
		out, err := hufu("", args...)
		if got := exitCode(err); got != code {
			t.Fatalf("hufu %s: exit %d (%v), want %d\n%s", strings.Join(args, " "), got, err, code, out)
		}
		return out
	}
	desk := func(args ...string) string {
		t.Helper()
		return must(append([]string{"-tls-cert", filepath.Join(tlsDir, "cli.pem"), "-tls-key", filepath.Join(tlsDir, "cli-key.pem"), "support-desk"}, args...)...)
	}

	must("login", "-phone", "13800138300")
	refused(exitConflict, "card", "bind", "-number", "6222020200112233446", "-reserved-phone", "13800138300") // not verified yet
	must("verify-identity", "cfca", "-name", "张三", "-id", "11010519491231002X")

	// Bank cards.
	refused(exitInvalid, "card", "bind", "-number", "6222020200112233447", "-reserved-phone", "13800138300")
	refused(exitConflict, "card", "bind", "-number", "6222020200112233446", "-reserved-phone", "13800130000")
	refused(exitUsage, "card", "bind", "-number", "6222020200112233446")
	// The number asked for, not on the command line.
	out, err := hufu("6222 0202 0011 2233 446\n", "card", "bind", "-reserved-phone", "13800138300")
	if err != nil || !strings.Contains(out, "**** **** **** 3446  中国工商银行") {
		t.Fatalf("card bind: %v\n%s", err, out)
	}
	cardID := regexp.MustCompile(`bound ([0-9a-f]{32})`).FindStringSubmatch(out)
	if cardID == nil {
		t.Fatalf("card bind printed %q", out)
	}
	refused(exitConflict, "card", "bind", "-number", "6222020200112233446", "-reserved-phone", "13800138300") // bound already
	list := must("card", "list")
	js := must("card", "list", "-o", "json")
	var listed struct {
		Cards []struct{ Last4 string } `json:"cards"`
	}
	if err := json.Unmarshal([]byte(js), &listed); err != nil || !strings.Contains(list, cardID[1]) || len(listed.Cards) != 1 || listed.Cards[0].Last4 != "3446" {
		t.Fatalf("card list: %s\n%s", list, js)
	}
	if strings.Contains(list+js, "6222020200112233446") {
		t.Fatal("the full card number is shown")
	}
	must("card", "unbind", cardID[1])
	refused(exitNotFound, "card", "unbind", cardID[1])
	if list := must("card", "list"); !strings.Contains(list, "no bound cards") {
		t.Fatalf("after unbind: %s", list)
	}

	// The knowledge base and the consultation number.
	if out := must("faq", "忘记证书密码"); !strings.HasPrefix(out, "faq-forgot-pin  忘记证书密码怎么办？") {
		t.Fatalf("faq search: %q", out)
	}
	if out := must("faq", "quantum"); !strings.Contains(out, "no answer found") {
		t.Fatalf("faq no hit: %q", out)
	}
	if out := must("faq"); !strings.Contains(out, "使用帮助 · 账号") || !strings.Contains(out, "faq-invoice") {
		t.Fatalf("faq list: %q", out)
	}
	if out := must("faq", "show", "register"); !strings.Contains(out, "如何注册和登录") {
		t.Fatalf("faq show: %q", out)
	}
	var found struct {
		Entries []struct{ ID string } `json:"entries"`
	}
	if err := json.Unmarshal([]byte(must("faq", "银行卡", "-o", "json")), &found); err != nil || len(found.Entries) == 0 || found.Entries[0].ID != "faq-bank-card" {
		t.Fatalf("faq -o json: %v %v", found, err)
	}
	refused(exitNotFound, "faq", "show", "nope")
	if out := must("contact"); !strings.Contains(out, "400-800-1234") {
		t.Fatalf("contact: %q", out)
	}

	// Feedback and the desk.
	var img bytes.Buffer
	if err := png.Encode(&img, image.NewGray(image.Rect(0, 0, 4, 4))); err != nil {
		t.Fatal(err)
	}
	shot := filepath.Join(work, "截图.png")
	if err := os.WriteFile(shot, img.Bytes(), 0o600); err != nil {
		t.Fatal(err)
	}
	refused(exitUsage, "feedback", "submit")
	refused(exitInvalid, "feedback", "submit", "-text", "x", "-order", "0123456789abcdef0123456789abcdef")
	out = must("feedback", "submit", "-text", "扫码签章时提示证书不适用，怎么办？", "-attach", shot)
	fid := regexp.MustCompile(`submitted ([0-9a-f]{22})`).FindStringSubmatch(out)
	if fid == nil || !strings.Contains(out, "截图.png  image/png") {
		t.Fatalf("feedback submit: %q", out)
	}
	if out := must("feedback", "list"); !strings.Contains(out, fid[1]+"  已提交 submitted") {
		t.Fatalf("feedback list: %q", out)
	}
	refused(exitUsage, "support-desk", "list") // no client certificate
	if out := desk("list"); !strings.Contains(out, fid[1]) || !strings.Contains(out, "138****8300") || strings.Contains(out, "13800138300") {
		t.Fatalf("desk list: %q", out)
	}
	desk("reply", fid[1], "-text", "请选择【CA证书互认共享服务】开通互认服务。")
	if out := must("feedback", "show", fid[1]); !strings.Contains(out, "已回复 replied") || !strings.Contains(out, "互认共享服务") {
		t.Fatalf("feedback show after reply: %q", out)
	}
	desk("close", fid[1], "-note", "已解答")
	if out := desk("list"); !strings.Contains(out, "no open feedback") {
		t.Fatalf("desk list after close: %q", out)
	}
	if out := must("feedback", "show", fid[1]); !strings.Contains(out, "已关闭 closed") || !strings.Contains(out, "closed: 已解答") {
		t.Fatalf("feedback show after close: %q", out)
	}
}
