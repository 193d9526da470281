package main

import (
	"bytes"
	"context"
	"encoding/json"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"

	hufuv1 "github.com/hufu-hsm/hufu/api/hufu/v1"
	"github.com/hufu-hsm/hufu/client"
	"github.com/hufu-hsm/hufu/daemon/config"
	"github.com/hufu-hsm/hufu/daemon/daemontest"
)

// TestWalletCommands: a certificate for platform demo answers a session of platform
// hangzhou only through mutual recognition. hufu scan says precisely what to open; after
// hufu wallet top-up the same kind of session is answered and debited once; a day pass is
// bought and listed.
func TestWalletCommands(t *testing.T) {
	d := daemontest.StartOnWallClock(t, func(c *config.Config) {
		c.Platforms = []config.Platform{{ID: "demo", Name: "示范平台", Region: "330000"}, {ID: "hangzhou", Name: "杭州平台", Region: "330100"}}
	})
	cfg, addr := d.Config, d.Addr
	home, work := t.TempDir(), t.TempDir()
	tlsDir := filepath.Join(cfg.DataDir, "tls")
	global := []string{"-addr", addr, "-daemon-dir", cfg.DataDir, "-home", home}
	hufuErr := func(args ...string) (string, error) {
		t.Helper()
		var out bytes.Buffer
		err := run(append(global, args...), strings.NewReader(""), &out, &out)
		return out.String(), err
	}
	hufu := func(args ...string) string {
		t.Helper()
		out, err := hufuErr(args...)
		if err != nil {
			t.Fatalf("hufu %s: %s\n%s", strings.Join(args, " "), describe(err), out)
		}
		return out
	}
	system := []string{"-tls-cert", filepath.Join(tlsDir, "cli.pem"), "-tls-key", filepath.Join(tlsDir, "cli-key.pem")}

	hufu("login", "-phone", "13800138000")
	hufu("verify-identity", "cfca", "-name", "张三", "-id", "11010519491231002X")
	t.Setenv("HUFU_PIN", "135790")
	keyID := regexp.MustCompile(`created key (\S+)`).FindStringSubmatch(hufu("key", "new"))[1]
	letter := filepath.Join(work, "letter.txt")
	if err := os.WriteFile(letter, []byte("授权书"), 0o600); err != nil {
		t.Fatal(err)
	}
	orderID := regexp.MustCompile(`(?m)^([0-9a-f]{22}) `).FindStringSubmatch(hufu("cert", "apply", "-key", keyID, "-platforms", "demo", "-sign-letter", letter))[1]
	hufu(append(system, "review", "approve", orderID)...)
	serial := regexp.MustCompile(`cert download ([0-9a-f]{32})`).FindStringSubmatch(hufu("cert", "pay", orderID))[1]

	// The business system, on its client certificate.
	conn, err := client.Dial(client.Config{Addr: addr, CAFile: filepath.Join(tlsDir, "ca.pem"), ServerName: "localhost",
		ClientCertFile: filepath.Join(tlsDir, "cli.pem"), ClientKeyFile: filepath.Join(tlsDir, "cli-key.pem"), DeviceID: "rp-wallet-1"})
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	rp := hufuv1.NewScanServiceClient(conn.ClientConn())
	n := 0
	bindCode := func(platform string) string {
		t.Helper()
		n++
		resp, err := rp.CreateSession(context.Background(), &hufuv1.CreateSessionRequest{RequestId: "wallet-cli-bind-" + string(rune('a'+n)),
			Kind: hufuv1.SessionKind_SESSION_KIND_BIND, PlatformId: platform, Reference: "user-w",
			Subject: &hufuv1.BindSubject{PersonName: "张三", IdNumber: "11010519491231002X"}})
		if err != nil {
			t.Fatal(err)
		}
		return resp.Session.QrPayload
	}

	// The catalogue, for people and as JSON.
	if out := hufu("wallet", "plans"); !strings.Contains(out, "hangzhou  杭州平台") || !strings.Contains(out, "per use: ¥2.00 a session") || !strings.Contains(out, "day-7") {
		t.Fatalf("wallet plans: %s", out)
	}
	var cat struct {
		Platforms []struct {
			PlatformID     string `json:"platform_id"`
			PerUsePriceFen string `json:"per_use_price_fen"`
		} `json:"platforms"`
	}
	if err := json.Unmarshal([]byte(hufu("wallet", "plans", "-o", "json")), &cat); err != nil || len(cat.Platforms) != 2 || cat.Platforms[1].PerUsePriceFen != "200" {
		t.Fatalf("wallet plans -o json: %+v %v", cat, err)
	}

	// No service: hufu scan refuses and says what to open.
	out, err := hufuErr("scan", bindCode("hangzhou"))
	msg := describe(err)
	if err == nil || !strings.Contains(msg, "failed precondition") || !strings.Contains(msg, "mutual-recognition service (互认) is not open") ||
		!strings.Contains(msg, "platform hangzhou") || !strings.Contains(msg, "hufu wallet top-up") || !strings.Contains(out, "usable through mutual recognition") {
		t.Fatalf("scan without service: %s\n%s", msg, out)
	}

	// A top-up opens the per-use service: the next session is answered and debited once.
	if out := hufu("wallet", "top-up", "-platform", "hangzhou", "-amount", "10"); !strings.Contains(out, "top-up 充值  ¥10.00  completed") || !strings.Contains(out, "balance ¥10.00") {
		t.Fatalf("wallet top-up: %s", out)
	}
	if out := hufu("scan", bindCode("hangzhou")); !strings.Contains(out, "answered with certificate "+serial) {
		t.Fatalf("scan with the service open: %s", out)
	}
	if out := hufu("wallet", "balance"); !strings.Contains(out, "balance ¥8.00") {
		t.Fatalf("wallet balance: %s", out)
	}
	var uses struct {
		Uses []struct {
			PlatformID string `json:"platform_id"`
			AmountFen  string `json:"amount_fen"`
		} `json:"uses"`
	}
	if err := json.Unmarshal([]byte(hufu("wallet", "records", "-kind", "use", "-o", "json")), &uses); err != nil || len(uses.Uses) != 1 || uses.Uses[0].AmountFen != "200" {
		t.Fatalf("wallet records -kind use: %+v %v", uses, err)
	}
	if out := hufu("wallet", "records"); !strings.Contains(out, "¥10.00  completed") {
		t.Fatalf("wallet records: %s", out)
	}

	// A day pass: bought, listed with what is left.
	if out := hufu("wallet", "buy-pass", "-platform", "hangzhou", "-pass", "day-7"); !strings.Contains(out, "day pass 畅行包 day-7 (7 days)  ¥20.00  completed") {
		t.Fatalf("wallet buy-pass: %s", out)
	}
	if out := hufu("wallet", "passes"); !strings.Contains(out, "day pass hangzhou") || !strings.Contains(out, "active, 168h0m0s left") {
		t.Fatalf("wallet passes: %s", out)
	}
	if out := hufu("scan", bindCode("hangzhou")); !strings.Contains(out, "answered with certificate "+serial) {
		t.Fatalf("scan with a day pass: %s", out)
	}
	if out := hufu("wallet", "balance"); !strings.Contains(out, "balance ¥8.00") {
		t.Fatalf("a day pass debited the wallet: %s", out)
	}
}
