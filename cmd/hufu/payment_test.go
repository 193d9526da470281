package main

import (
	"bytes"
	"encoding/json"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"

	"github.com/hufu-hsm/hufu/daemon/config"
	"github.com/hufu-hsm/hufu/daemon/daemontest"
	"github.com/hufu-hsm/hufu/daemon/devpki"
)

// TestPaymentCommands: a person pays an order offline with the CLI, the payment desk lists,
// refuses a wrong amount, confirms (twice: one payment) and checks the ledger; a second
// payment is rejected.
func TestPaymentCommands(t *testing.T) {
	d := daemontest.StartOnWallClock(t, func(c *config.Config) {
		c.SystemClients = []config.SystemClient{{Name: devpki.CLIClientName, Services: []string{"hufu.v1.ReviewService", "hufu.v1.PaymentDeskService",
			"hufu.v1.AfterSalesDeskService"}}}
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
	sys := []string{"-tls-cert", filepath.Join(tlsDir, "cli.pem"), "-tls-key", filepath.Join(tlsDir, "cli-key.pem")}
	desk := func(args ...string) (string, error) {
		t.Helper()
		return hufu(append(append(append([]string{}, sys...), "payment-desk"), args...)...)
	}
	mustDesk := func(args ...string) string {
		t.Helper()
		out, err := desk(args...)
		if err != nil {
			t.Fatalf("hufu payment-desk %s: %s\n%s", strings.Join(args, " "), describe(err), out)
		}
		return out
	}

	must("login", "-phone", "13800138300")
	must("verify-identity", "cfca", "-name", "张三", "-id", "11010519491231002X")
	t.Setenv("HUFU_PIN", "135790")
	keyID := regexp.MustCompile(`created key (\S+)`).FindStringSubmatch(must("key", "new", "-pin", "135790"))[1]
	letter := filepath.Join(work, "letter.txt")
	if err := os.WriteFile(letter, []byte("授权书"), 0o600); err != nil {
		t.Fatal(err)
	}
	order := func() string {
		t.Helper()
		applied := must("cert", "apply", "-key", keyID, "-years", "2", "-platforms", "demo", "-sign-letter", letter)
		id := regexp.MustCompile(`(?m)^([0-9a-f]{22}) +in review`).FindStringSubmatch(applied)
		if id == nil {
			t.Fatalf("apply printed %q", applied)
		}
		must(append(append([]string{}, sys...), "review", "approve", id[1])...)
		return id[1]
	}

	if out := must("payment", "methods", "-platform", "demo"); !strings.Contains(out, "dev") || !strings.Contains(out, "hufu payment pay-offline ORDER") {
		t.Fatalf("methods: %q", out)
	}
	var methods struct {
		Methods []struct{ ID string } `json:"methods"`
	}
	if err := json.Unmarshal([]byte(must("payment", "methods", "-platform", "demo", "-o", "json")), &methods); err != nil || len(methods.Methods) != 2 {
		t.Fatalf("methods -o json: %v %v", methods, err)
	}

	o := order()
	ins := must("payment", "pay-offline", o)
	m := regexp.MustCompile(`pay +¥(\d+\.\d\d) \(exactly\)[\s\S]*account (\d+)\n +reference +(HP\w{8})`).FindStringSubmatch(ins)
	if m == nil || m[2] != cfg.Enterprises.Transfer.AccountNumber {
		t.Fatalf("pay-offline printed %q", ins)
	}
	price, ref := m[1], m[3]
	if _, err := hufu("payment-desk", "pending"); err == nil || !strings.Contains(err.Error(), "client certificate") {
		t.Fatalf("the desk without a client certificate: %v", err)
	}
	if out := mustDesk("pending"); !strings.Contains(out, o) || !strings.Contains(out, ref) {
		t.Fatalf("pending: %q", out)
	}
	var pending struct {
		Payments []struct {
			OrderID string `json:"order_id"`
		} `json:"payments"`
	}
	if err := json.Unmarshal([]byte(mustDesk("pending", "-o", "json")), &pending); err != nil || len(pending.Payments) != 1 || pending.Payments[0].OrderID != o {
		t.Fatalf("pending -o json: %v %v", pending, err)
	}
	out, err := desk("confirm", o, "-reference", "BANK-20261201-7", "-amount", "1.00")
	if exitCode(err) != exitInvalid || !strings.Contains(out+err.Error(), "amount_fen") {
		t.Fatalf("a wrong amount: exit %d %v %q", exitCode(err), err, out)
	}
	if _, err := desk("confirm", o, "-amount", price); exitCode(err) != exitUsage {
		t.Fatalf("confirm without a reference: %v", err)
	}
	first := mustDesk("confirm", o, "-reference", "BANK-20261201-7", "-amount", price)
	serial := regexp.MustCompile(`certificate ([0-9a-f]{32}) issued`).FindStringSubmatch(first)
	if serial == nil || !strings.Contains(first, "已确认") {
		t.Fatalf("confirm printed %q", first)
	}
	if again := mustDesk("confirm", o, "-reference", "BANK-20261201-7", "-amount", price); !strings.Contains(again, serial[1]) {
		t.Fatalf("confirming again: %q", again)
	}
	if list := must("cert", "list"); !strings.Contains(list, serial[1]) {
		t.Fatalf("the certificate is not listed: %q", list)
	}

	o2 := order()
	must("payment", "pay-offline", o2)
	if _, err := desk("reject", o2); exitCode(err) != exitUsage {
		t.Fatalf("reject without a reason: %v", err)
	}
	if out := mustDesk("reject", o2, "-reason", "未收到款项"); !strings.Contains(out, "未收到款项") || !strings.Contains(out, "rejected") {
		t.Fatalf("reject printed %q", out)
	}
	if out := mustDesk("ledger-check"); !strings.Contains(out, "1 entries") || !strings.Contains(out, "the ledger balances") {
		t.Fatalf("ledger-check: %q", out)
	}

	// A refund of the order paid at the counter is owed until the desk pays it out.
	if out := mustDesk("refunds"); !strings.Contains(out, "no refunds due") {
		t.Fatalf("refunds before any: %q", out)
	}
	if _, err := desk("payout", o, "-reference", "BANK-OUT-1", "-amount", price); exitCode(err) != exitConflict {
		t.Fatalf("a payout nothing is owed for: %v", err)
	}
	if out := must("aftersales", "apply", o, "-reason", "not_needed", "-yes"); !strings.Contains(out, "付款台") {
		t.Fatalf("apply does not say how the money goes back: %q", out)
	}
	caseID := regexp.MustCompile(`(?m)^([0-9a-f]{22})  `).FindStringSubmatch(must("aftersales", "list"))
	if caseID == nil {
		t.Fatal("no after-sales case listed")
	}
	must(append(append([]string{}, sys...), "aftersales-desk", "refund", caseID[1])...)
	if out := mustDesk("refunds"); !strings.Contains(out, o) || !strings.Contains(out, "待退款") {
		t.Fatalf("refunds due: %q", out)
	}
	if out := mustDesk("payout", o, "-reference", "BANK-OUT-1", "-amount", price); !strings.Contains(out, "已退款") || !strings.Contains(out, "BANK-OUT-1") {
		t.Fatalf("payout printed %q", out)
	}
	if out := mustDesk("ledger-check"); !strings.Contains(out, "3 entries") || !strings.Contains(out, "the ledger balances") {
		t.Fatalf("ledger-check after the payout: %q", out)
	}
}

func TestYuanArg(t *testing.T) {
	for in, want := range map[string]int64{"360": 36000, "360.5": 36050, "0.37": 37, "¥1.00": 100} {
		if got, err := yuanArg("amount", in); err != nil || got != want {
			t.Errorf("%s: %d %v, want %d", in, got, err, want)
		}
	}
	for _, bad := range []string{"", "1.234", "-1", "abc", ".5", "1.x"} {
		if _, err := yuanArg("amount", bad); exitCode(err) != exitUsage {
			t.Errorf("%q: %v", bad, err)
		}
	}
}

// FuzzYuanArg: any text is an amount in fen that prints back as itself, or a usage error.
func FuzzYuanArg(f *testing.F) {
	for _, s := range []string{"360", "0.37", "¥1.00", "1.234", "-1", "9223372036854775807"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		fen, err := yuanArg("amount", s)
		if err != nil {
			if exitCode(err) != exitUsage {
				t.Fatalf("%q: %v is not a usage error", s, err)
			}
			return
		}
		if fen < 0 {
			t.Fatalf("%q: negative %d", s, fen)
		}
		back, err := yuanArg("amount", strings.TrimPrefix(fenText(fen), "¥"))
		if err != nil || back != fen {
			t.Fatalf("%q: %d does not round-trip (%d %v)", s, fen, back, err)
		}
	})
}
