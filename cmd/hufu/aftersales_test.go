package main

import (
	"bytes"
	"encoding/json"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"

	"github.com/hufu-hsm/hufu/daemon/daemontest"
)

// TestAfterSalesCommands: a person applies for after-sales with the CLI (the consequences shown
// and confirmed), lists and shows it; the desk (the development CLI certificate is allowed it)
// lists, refunds one case and settles another; a withdrawn case closes.
func TestAfterSalesCommands(t *testing.T) {
	d := daemontest.StartOnWallClock(t)
	cfg, a := d.Config, d.Addr
	home, work := t.TempDir(), t.TempDir()
	tlsDir := filepath.Join(cfg.DataDir, "tls")
	hufu := func(stdin string, args ...string) (string, error) {
		t.Helper()
		var out, errOut bytes.Buffer
		all := append([]string{"-addr", a, "-daemon-dir", cfg.DataDir, "-home", home}, args...)
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
	sys := []string{"-tls-cert", filepath.Join(tlsDir, "cli.pem"), "-tls-key", filepath.Join(tlsDir, "cli-key.pem")}
	desk := func(args ...string) string {
		t.Helper()
		return must(append(append(append([]string{}, sys...), "aftersales-desk"), args...)...)
	}

	must("login", "-phone", "13800138400")
	must("verify-identity", "cfca", "-name", "张三", "-id", "11010519491231002X")
	t.Setenv("HUFU_PIN", "135790")
	letter := filepath.Join(work, "letter.txt")
	if err := os.WriteFile(letter, []byte("授权书"), 0o600); err != nil {
		t.Fatal(err)
	}
	// Each order on its own key: a refund revokes the key with its certificate.
	paidOrder := func() (string, string) {
		t.Helper()
		keyID := regexp.MustCompile(`created key (\S+)`).FindStringSubmatch(must("key", "new", "-pin", "135790"))[1]
		applied := must("cert", "apply", "-key", keyID, "-years", "2", "-platforms", "demo", "-sign-letter", letter)
		id := regexp.MustCompile(`(?m)^([0-9a-f]{22}) +in review`).FindStringSubmatch(applied)
		if id == nil {
			t.Fatalf("apply printed %q", applied)
		}
		must(append(append([]string{}, sys...), "review", "approve", id[1])...)
		paid := must("cert", "pay", id[1])
		serial := regexp.MustCompile(`[0-9a-f]{32}`).FindString(paid)
		if serial == "" {
			t.Fatalf("pay printed %q", paid)
		}
		return id[1], serial
	}
	o1, serial1 := paidOrder()

	// The consequences are shown; a wrong confirmation applies for nothing.
	out, err := hufu("no\n", "aftersales", "apply", o1, "-reason", "not_needed")
	if err == nil || !strings.Contains(out, serial1) || !strings.Contains(err.Error(), "not confirmed") {
		t.Fatalf("unconfirmed apply: %v\n%s", err, out)
	}
	if _, err := hufu("", "aftersales", "apply", o1, "-reason", "bogus", "-yes"); exitCode(err) != exitUsage {
		t.Fatalf("a bad reason: %v", err)
	}
	pdf := filepath.Join(work, "receipt.pdf")
	if err := os.WriteFile(pdf, []byte("%PDF-1.7\n1 0 obj <<>> endobj\ntrailer <<>>\n%%EOF\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	out, err = hufu(o1+"\n", "aftersales", "apply", o1, "-reason", "duplicate", "-text", "重复购买", "-attach", pdf)
	caseID := regexp.MustCompile(`applied ([0-9a-f]{22})`).FindStringSubmatch(out)
	if err != nil || caseID == nil || !strings.Contains(out, "售后审核中") {
		t.Fatalf("apply: %v\n%s", err, out)
	}
	if _, err := hufu("", "aftersales", "apply", o1, "-reason", "duplicate", "-yes"); exitCode(err) != exitConflict {
		t.Fatalf("a second open case: exit %d %v", exitCode(err), err)
	}
	var listed struct {
		Cases []struct {
			ID      string   `json:"id"`
			Serials []string `json:"serials"`
		} `json:"cases"`
	}
	if err := json.Unmarshal([]byte(must("aftersales", "list", "-state", "in_review", "-o", "json")), &listed); err != nil ||
		len(listed.Cases) != 1 || listed.Cases[0].ID != caseID[1] || len(listed.Cases[0].Serials) != 2 || !slices.Contains(listed.Cases[0].Serials, serial1) {
		t.Fatalf("list -o json: %+v %v", listed, err)
	}
	if show := must("aftersales", "show", caseID[1]); !strings.Contains(show, "receipt.pdf") || !strings.Contains(show, "重复购买") {
		t.Fatalf("show: %s", show)
	}

	// The desk lists, reads the attachment and refunds.
	list := desk("list")
	att := regexp.MustCompile(`attachment ([0-9a-f]{64})`).FindStringSubmatch(list)
	if !strings.Contains(list, caseID[1]) || !strings.Contains(list, "****") || att == nil {
		t.Fatalf("desk list: %s", list)
	}
	saved := filepath.Join(work, "evidence.pdf")
	desk("attachment", caseID[1], att[1], "-out", saved)
	if b, err := os.ReadFile(saved); err != nil || !strings.HasPrefix(string(b), "%PDF-") {
		t.Fatalf("the saved attachment: %q %v", b, err)
	}
	if refunded := desk("refund", caseID[1]); !strings.Contains(refunded, "同意退款") || !strings.Contains(refunded, "ledger entry") {
		t.Fatalf("refund: %s", refunded)
	}
	if list := must("cert", "list", "-o", "json"); strings.Contains(list, serial1) {
		t.Fatalf("the refunded certificate is still active: %s", list)
	}

	// Another order: settled; a third: withdrawn.
	o2, _ := paidOrder()
	out, err = hufu("", "aftersales", "apply", o2, "-reason", "certificate_unusable", "-yes")
	case2 := regexp.MustCompile(`applied ([0-9a-f]{22})`).FindStringSubmatch(out)
	if err != nil || case2 == nil {
		t.Fatalf("apply: %v\n%s", err, out)
	}
	if _, err := hufu("", append(append(append([]string{}, sys...), "aftersales-desk"), "settle", case2[1])...); exitCode(err) != exitUsage {
		t.Fatalf("settle without an outcome: %v", err)
	}
	if settled := desk("settle", case2[1], "-outcome", "远程协助后证书可正常使用"); !strings.Contains(settled, "协商解决") {
		t.Fatalf("settle: %s", settled)
	}
	out, err = hufu("", "aftersales", "apply", o2, "-reason", "other", "-text", "再次申请", "-yes")
	case3 := regexp.MustCompile(`applied ([0-9a-f]{22})`).FindStringSubmatch(out)
	if err != nil || case3 == nil {
		t.Fatalf("apply again: %v\n%s", err, out)
	}
	if w := must("aftersales", "withdraw", case3[1]); !strings.Contains(w, "已撤销") {
		t.Fatalf("withdraw: %s", w)
	}
	if list := desk("list"); !strings.Contains(list, "no open after-sales cases") {
		t.Fatalf("desk list at the end: %s", list)
	}
	if list := must("aftersales", "list", "-keyword", "再次"); !strings.Contains(list, case3[1]) || strings.Contains(list, case2[1]) {
		t.Fatalf("keyword search: %s", list)
	}
}
