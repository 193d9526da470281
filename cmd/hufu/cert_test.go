package main

import (
	"bytes"
	"context"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"

	"github.com/emmansun/gmsm/smx509"

	"github.com/hufu-hsm/hufu/daemon/config"
	"github.com/hufu-hsm/hufu/daemon/daemontest"
	"github.com/hufu-hsm/hufu/daemon/devpki"
)

// TestCertCommands goes from nothing to a usable certificate with the CLI, as a person and
// as the operator at the review desk, then renews, checks and revokes it.
func TestCertCommands(t *testing.T) {
	d := daemontest.StartOnWallClock(t, func(c *config.Config) {
		c.SystemClients = []config.SystemClient{{Name: devpki.CLIClientName, Services: []string{"hufu.v1.ReviewService"}}}
		c.Platforms = append(c.Platforms, config.Platform{ID: "gz", Name: "广州公共资源交易平台", Region: "440000"})
	})
	cfg, a := d.Config, d.Addr

	home, work := t.TempDir(), t.TempDir()
	tlsDir := filepath.Join(cfg.DataDir, "tls")
	hufu := func(args ...string) string {
		t.Helper()
		var out, errOut bytes.Buffer
		all := append([]string{"-addr", a, "-daemon-dir", cfg.DataDir, "-home", home}, args...)
		if err := run(all, strings.NewReader(""), &out, &errOut); err != nil {
			t.Fatalf("hufu %s: %s\n%s%s", strings.Join(args, " "), describe(err), out.String(), errOut.String())
		}
		return out.String() + errOut.String()
	}
	desk := func(args ...string) string {
		t.Helper()
		return hufu(append([]string{"-tls-cert", filepath.Join(tlsDir, "cli.pem"), "-tls-key", filepath.Join(tlsDir, "cli-key.pem"), "review"}, args...)...)
	}
	hufu("login", "-phone", "13800138000")
	hufu("verify-identity", "cfca", "-name", "张三", "-id", "11010519491231002X")
	t.Setenv("HUFU_PIN", "135790")
	keyID := regexp.MustCompile(`created key (\S+)`).FindStringSubmatch(hufu("key", "new", "-pin", "135790"))[1]
	letter := filepath.Join(work, "letter.txt")
	if err := os.WriteFile(letter, []byte("授权书"), 0o600); err != nil {
		t.Fatal(err)
	}

	applied := hufu("cert", "apply", "-key", keyID, "-years", "2", "-platforms", "demo", "-sign-letter", letter)
	// The encryption key of the pair is made two-party under the same PIN.
	encKey := regexp.MustCompile(`created encryption key (\S+) \(same PIN as ` + regexp.QuoteMeta(keyID) + `\)`).FindStringSubmatch(applied)
	if encKey == nil || encKey[1] == keyID {
		t.Fatalf("apply made no encryption key: %q", applied)
	}
	if keys := hufu("key", "list"); !strings.Contains(keys, encKey[1]) {
		t.Fatalf("key list without the encryption key: %q", keys)
	}
	orderID := regexp.MustCompile(`(?m)^([0-9a-f]{22}) +in review`).FindStringSubmatch(applied)
	if orderID == nil {
		t.Fatalf("apply printed %q", applied)
	}
	if list := desk("list"); !strings.Contains(list, orderID[1]) || !strings.Contains(list, "authorisation letter: online") {
		t.Fatalf("review list: %q", list)
	}
	letterOut := filepath.Join(work, "got-letter.txt")
	if got := desk("letter", orderID[1], "-o", letterOut); !strings.Contains(got, "signed online") {
		t.Fatalf("review letter: %q", got)
	}
	if b, err := os.ReadFile(letterOut); err != nil || string(b) != "授权书" {
		t.Fatalf("letter as reviewed: %q %v", b, err)
	}
	desk("approve", orderID[1], "-reason", "材料齐全")
	if msgs := hufu("cert", "messages"); !strings.Contains(msgs, "审核通过") || !strings.Contains(msgs, "待支付") {
		t.Fatalf("messages: %q", msgs)
	}
	paid := hufu("cert", "pay", orderID[1])
	serial := regexp.MustCompile(`cert download ([0-9a-f]{32})`).FindStringSubmatch(paid)
	encSerial := regexp.MustCompile(`the encryption certificate ([0-9a-f]{32})`).FindStringSubmatch(paid)
	if serial == nil || encSerial == nil {
		t.Fatalf("pay printed %q", paid)
	}
	if o := hufu("cert", "order", orderID[1]); !strings.Contains(o, "completed") || !strings.Contains(o, "issued") {
		t.Fatalf("order: %q", o)
	}
	out := filepath.Join(work, "me.pem")
	hufu("cert", "download", serial[1], "-o", out)
	pemBytes, err := os.ReadFile(out)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := smx509.ParseCertificatePEM(pemBytes); err != nil {
		t.Fatalf("downloaded certificate: %v", err)
	}
	if _, err := os.Stat(filepath.Join(work, "me-chain.pem")); err != nil {
		t.Fatal(err)
	}
	// The pair's encryption certificate comes with it, on the encryption key.
	encPEM, err := os.ReadFile(filepath.Join(work, "me-encryption.pem"))
	if err != nil {
		t.Fatal(err)
	}
	encCert, err := smx509.ParseCertificatePEM(encPEM)
	if err != nil || encCert.SerialNumber.Text(16) != strings.TrimLeft(encSerial[1], "0") {
		t.Fatalf("downloaded encryption certificate: %v", err)
	}
	hufu("cert", "label", serial[1], "投标")
	if list := hufu("cert", "list"); !strings.Contains(list, serial[1]) || !strings.Contains(list, "[投标]") ||
		!strings.Contains(list, "signing certificate; its encryption certificate: "+encSerial[1]+"  key "+encKey[1]) {
		t.Fatalf("cert list: %q", list)
	}
	check := hufu("cert", "check", serial[1])
	for _, s := range []string{"pin", "chain", "validity", "revocation", "pair_chain", "pair_validity", "pair_revocation", "sign", "decrypt"} {
		if !regexp.MustCompile(`(?m)^ok +` + s + ` `).MatchString(check) {
			t.Fatalf("check step %s not ok: %q", s, check)
		}
	}
	if !strings.Contains(check, "(signing key "+keyID+")") || !strings.Contains(check, "(encryption key "+encKey[1]+")") {
		t.Fatalf("check did not use both keys: %q", check)
	}
	// An upgrade keeps the certificate's validity: no "0年".
	upgraded := hufu("cert", "upgrade", serial[1], "-platforms", "gz")
	upgrade := regexp.MustCompile(`cert pay ([0-9a-f]{22})`).FindStringSubmatch(upgraded)
	if upgrade == nil || strings.Contains(upgraded, "0年") || !strings.Contains(upgraded, "有效期不变") {
		t.Fatalf("upgrade printed %q", upgraded)
	}
	hufu("cert", "cancel", upgrade[1], "-reason", "不升级了")

	// Search finds orders by what the listing shows, in any case: the CA's name, a
	// platform's id or name, the status.
	for _, tt := range []struct{ query, want, notWant string }{
		{"内置ca", orderID[1], ""},
		{"HUFU 内置CA completed", orderID[1], upgrade[1]},
		{"GZ", upgrade[1], orderID[1]},
		{"广州", upgrade[1], orderID[1]},
		{"示范公共资源", orderID[1], ""},
		{"已取消", upgrade[1], orderID[1]},
	} {
		if got := hufu("cert", "orders", "-search", tt.query); !strings.Contains(got, tt.want) || (tt.notWant != "" && strings.Contains(got, tt.notWant)) {
			t.Fatalf("orders -search %q: %q", tt.query, got)
		}
	}
	renewed := hufu("cert", "renew", serial[1], "-years", "1")
	renewal := regexp.MustCompile(`cert pay ([0-9a-f]{22})`).FindStringSubmatch(renewed)
	if renewal == nil {
		t.Fatalf("renew printed %q", renewed)
	}
	paid2 := hufu("cert", "pay", renewal[1])
	serial2 := regexp.MustCompile(`cert download ([0-9a-f]{32})`).FindStringSubmatch(paid2)[1]
	if inv := hufu("cert", "list", "-invalid"); !strings.Contains(inv, serial[1]) || !strings.Contains(inv, "superseded") {
		t.Fatalf("invalid list: %q", inv)
	}
	revoked := hufu("cert", "revoke", serial2, "-yes", "-reason", "不再使用")
	if !strings.Contains(revoked, "无法解密原有文件") || !strings.Contains(revoked, "revoked") {
		t.Fatalf("revoke printed %q", revoked)
	}
	crl, err := d.Daemon.CRL(context.Background(), "hufu-ca")
	if err != nil {
		t.Fatal(err)
	}
	// Both keys' shares are gone, so the renewal's predecessor pair (superseded, still
	// unexpired) is revoked with it: the four serials of the two pairs are on the CRL.
	parsed, err := smx509.ParseRevocationList(crl)
	if err != nil || len(parsed.RevokedCertificateEntries) != 4 {
		t.Fatalf("CRL after revoke: %v, %d entries", err, len(parsed.RevokedCertificateEntries))
	}
}

// TestCertHelp: -h (or -help) on every cert subcommand prints that subcommand's usage and
// succeeds, without a daemon — it is never taken for an order id or a serial.
func TestCertHelp(t *testing.T) {
	home, noDaemon := t.TempDir(), t.TempDir()
	for _, sub := range strings.Split(strings.TrimPrefix(certUsage, "cert "), "|") {
		for _, h := range []string{"-h", "-help"} {
			t.Run(sub+h, func(t *testing.T) {
				var out bytes.Buffer
				args := []string{"-addr", "127.0.0.1:1", "-daemon-dir", noDaemon, "-home", home, "cert", sub, h}
				if sub == "label" || sub == "reorder" || sub == "order" {
					args = append(args[:len(args)-1], "0123456789abcdef012345", h) // after a positional argument too
				}
				if err := run(args, strings.NewReader(""), &out, &out); err != nil {
					t.Fatalf("hufu cert %s %s: %v\n%s", sub, h, err, out.String())
				}
				if !strings.Contains(out.String(), "hufu cert "+sub) {
					t.Fatalf("hufu cert %s %s printed %q", sub, h, out.String())
				}
			})
		}
	}
	var out bytes.Buffer
	if err := run([]string{"-addr", "127.0.0.1:1", "-daemon-dir", noDaemon, "-home", home, "cert", "-h"}, strings.NewReader(""), &out, &out); err != nil ||
		!strings.Contains(out.String(), "revoke") {
		t.Fatalf("hufu cert -h: %v\n%s", err, out.String())
	}
}
