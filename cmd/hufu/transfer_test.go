package main

import (
	"bytes"
	"fmt"
	"image"
	"image/png"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/hufu-hsm/hufu/daemon/config"
	"github.com/hufu-hsm/hufu/daemon/daemontest"
	"github.com/hufu-hsm/hufu/daemon/devpki"
)

// TestReconcileCommands: an applicant applies for corporate-transfer verification with the
// CLI, the desk imports the bank statement and the applicant pays the verification order.
func TestReconcileCommands(t *testing.T) {
	d := daemontest.StartOnWallClock(t, func(c *config.Config) {
		c.SystemClients = []config.SystemClient{{Name: devpki.CLIClientName, Services: []string{"hufu.v1.ReconciliationService"}}}
	})
	cfg, a := d.Config, d.Addr
	home, work := t.TempDir(), t.TempDir()
	tlsDir := filepath.Join(cfg.DataDir, "tls")
	hufu := func(args ...string) (string, error) {
		t.Helper()
		var out, errOut bytes.Buffer
		all := append([]string{"-addr", a, "-daemon-dir", cfg.DataDir, "-home", home}, args...)
		err := run(all, strings.NewReader(""), &out, &errOut)
		return out.String() + errOut.String(), err
	}
	must := func(args ...string) string {
		t.Helper()
		out, err := hufu(args...)
		if err != nil {
			t.Fatalf("hufu %s: %s\n%s", strings.Join(args, " "), describe(err), out)
		}
		return out
	}
	desk := func(args ...string) string {
		t.Helper()
		return must(append([]string{"-tls-cert", filepath.Join(tlsDir, "cli.pem"), "-tls-key", filepath.Join(tlsDir, "cli-key.pem"), "reconcile"}, args...)...)
	}
	var img bytes.Buffer
	if err := png.Encode(&img, image.NewGray(image.Rect(0, 0, 4, 4))); err != nil {
		t.Fatal(err)
	}
	licence, letter := filepath.Join(work, "licence.png"), filepath.Join(work, "letter.png")
	for _, f := range []string{licence, letter} {
		if err := os.WriteFile(f, img.Bytes(), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	must("login", "-phone", "13800138200")
	must("verify-identity", "cfca", "-name", "张三", "-id", "11010519491231002X")
	applied := must("enterprise", "transfer-apply", "-uscc", "91350100M000100Y43", "-name", "福州命令行科技有限公司",
		"-legal-rep-name", "李四", "-legal-rep-id", "11010519491231002X", "-legal-rep-phone", "13900139000",
		"-licence", licence, "-letter", letter, "-account-tail", "246810")
	m := regexp.MustCompile(`application ([0-9a-f]{20})[\s\S]*amount +¥(\d+)\.(\d\d) \(exactly\)\n +remark +(HF\w{6})`).FindStringSubmatch(applied)
	if m == nil || !strings.Contains(applied, cfg.Enterprises.Transfer.AccountNumber) {
		t.Fatalf("transfer-apply printed %q", applied)
	}
	id := m[1]
	yuan, _ := strconv.Atoi(m[2])
	fen, _ := strconv.Atoi(m[3])
	if _, err := hufu("reconcile", "list"); err == nil || !strings.Contains(err.Error(), "client certificate") {
		t.Fatalf("reconcile without a client certificate: %v", err)
	}
	if list := desk("list"); !strings.Contains(list, id) {
		t.Fatalf("desk list: %q", list)
	}
	statement := filepath.Join(work, "statement.csv")
	day := time.Now().In(time.FixedZone("CST", 8*3600)).Format(time.DateOnly)
	csv := fmt.Sprintf("date,amount,payer_account,payer_name,remark\n%s,%d.%02d,6222000000246810,福州命令行科技有限公司,对公认证 %s\n%s,8.00,6222000000111111,某公司,其他\n", day, yuan, fen, m[4], day)
	if err := os.WriteFile(statement, []byte(csv), 0o600); err != nil {
		t.Fatal(err)
	}
	if out := desk("import", statement); !strings.Contains(out, "1 matched, 0 partial, 1 unmatched, 0 duplicate") {
		t.Fatalf("import printed %q", out)
	}
	if out := desk("import", statement); !strings.Contains(out, "0 matched, 0 partial, 1 unmatched, 1 duplicate") {
		t.Fatalf("re-import printed %q", out)
	}
	shown := must("enterprise", "transfers", id)
	order := regexp.MustCompile(`verified .*via statement, order ([0-9a-f]{22})`).FindStringSubmatch(shown)
	if order == nil || !strings.Contains(shown, "administrator") {
		t.Fatalf("transfers printed %q", shown)
	}
	if out := must("cert", "pay", order[1]); !strings.Contains(out, "no certificate") {
		t.Fatalf("pay printed %q", out)
	}
	if list := desk("list", "-state", "verified"); !strings.Contains(list, id) {
		t.Fatalf("verified list: %q", list)
	}
}
