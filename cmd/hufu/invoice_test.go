package main

import (
	"bytes"
	"encoding/json"
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

// TestInvoiceCommands: a paid enterprise-verification order (信息服务) is invoiced with the
// CLI on a saved enterprise title, the desk issues it and the user downloads the document.
func TestInvoiceCommands(t *testing.T) {
	d := daemontest.StartOnWallClock(t, func(c *config.Config) {
		c.SystemClients = []config.SystemClient{{Name: devpki.CLIClientName, Services: []string{"hufu.v1.ReconciliationService", "hufu.v1.InvoiceDeskService"}}}
		c.Enterprises.VerificationPriceFen = 12345
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
		return must(append([]string{"-tls-cert", filepath.Join(tlsDir, "cli.pem"), "-tls-key", filepath.Join(tlsDir, "cli-key.pem")}, args...)...)
	}

	// A paid order: corporate-transfer verification, reconciled and paid.
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
	must("login", "-phone", "13800138201")
	must("verify-identity", "cfca", "-name", "张三", "-id", "11010519491231002X")
	applied := must("enterprise", "transfer-apply", "-uscc", "91350100M000100Y43", "-name", "福州发票科技有限公司",
		"-legal-rep-name", "李四", "-legal-rep-id", "11010519491231002X", "-legal-rep-phone", "13900139000",
		"-licence", licence, "-letter", letter, "-account-tail", "246810")
	m := regexp.MustCompile(`application ([0-9a-f]{20})[\s\S]*amount +¥(\d+)\.(\d\d) \(exactly\)\n +remark +(HF\w{6})`).FindStringSubmatch(applied)
	if m == nil {
		t.Fatalf("transfer-apply printed %q", applied)
	}
	yuan, _ := strconv.Atoi(m[2])
	fen, _ := strconv.Atoi(m[3])
	statement := filepath.Join(work, "statement.csv")
	day := time.Now().In(time.FixedZone("CST", 8*3600)).Format(time.DateOnly)
	csv := fmt.Sprintf("date,amount,payer_account,payer_name,remark\n%s,%d.%02d,6222000000246810,福州发票科技有限公司,对公认证 %s\n", day, yuan, fen, m[4])
	if err := os.WriteFile(statement, []byte(csv), 0o600); err != nil {
		t.Fatal(err)
	}
	desk("reconcile", "import", statement)
	order := regexp.MustCompile(`order ([0-9a-f]{22})`).FindStringSubmatch(must("enterprise", "transfers", m[1]))
	if order == nil {
		t.Fatal("no verification order")
	}
	must("cert", "pay", order[1])

	// The user's side.
	if out := must("invoice", "orders"); !strings.Contains(out, "信息服务: 1 orders, invoiceable ¥123.45") || !strings.Contains(out, order[1]) {
		t.Fatalf("invoice orders printed %q", out)
	}
	if out := must("invoice", "help"); !strings.Contains(out, "增值税专用发票") || !strings.Contains(out, "enterprise_verification") {
		t.Fatalf("invoice help printed %q", out)
	}
	out, err := hufu("invoice", "title-add", "-name", "福州发票科技有限公司", "-tax-number", "91350100M000100Y44")
	if exitCode(err) != exitInvalid || !strings.Contains(out+describe(err), "title.tax_number") {
		t.Fatalf("bad USCC: exit %d, %v %q", exitCode(err), err, out)
	}
	added := must("invoice", "title-add", "-name", "福州发票科技有限公司", "-tax-number", "91350100M000100Y43",
		"-address", "福州市鼓楼区五四路1号", "-telephone", "0591-87654321", "-bank", "示范银行福州分行", "-bank-account", "6222020000012345678")
	title := regexp.MustCompile(`^([0-9a-f]{16}) `).FindStringSubmatch(added)
	if title == nil {
		t.Fatalf("title-add printed %q", added)
	}
	if out := must("invoice", "title-edit", title[1], "-name", "福州发票科技有限公司", "-tax-number", "91350100M000100Y43",
		"-address", "福州市鼓楼区五四路2号", "-telephone", "0591-87654321", "-bank", "示范银行福州分行", "-bank-account", "6222020000012345678"); !strings.Contains(out, "五四路2号") {
		t.Fatalf("title-edit printed %q", out)
	}
	if out := must("invoice", "titles"); !strings.Contains(out, title[1]) {
		t.Fatalf("titles printed %q", out)
	}
	out, err = hufu("invoice", "request", "-type", "special", "-name", "张三", order[1])
	if exitCode(err) != exitInvalid {
		t.Fatalf("special VAT for a person: exit %d, %v %q", exitCode(err), err, out)
	}
	requested := must("invoice", "request", "-type", "special", "-title-id", title[1], "-email", "finance@example.cn", order[1])
	inv := regexp.MustCompile(`^([0-9a-f]{22}) +已提交`).FindStringSubmatch(requested)
	if inv == nil || !strings.Contains(requested, "¥123.45") {
		t.Fatalf("request printed %q", requested)
	}
	out, err = hufu("invoice", "request", "-name", "张三", order[1])
	if exitCode(err) != exitConflict {
		t.Fatalf("invoicing the order again: exit %d, %v %q", exitCode(err), err, out)
	}

	// The desk's side.
	if _, err := hufu("invoice-desk", "list"); err == nil || !strings.Contains(err.Error(), "client certificate") {
		t.Fatalf("desk without a client certificate: %v", err)
	}
	if out := desk("invoice-desk", "list"); !strings.Contains(out, inv[1]) {
		t.Fatalf("desk list printed %q", out)
	}
	if out := desk("invoice-desk", "reject", inv[1], "-reason", "请核对开户行"); !strings.Contains(out, "已驳回") {
		t.Fatalf("reject printed %q", out)
	}
	if out := must("invoice", "orders", "-category", "info"); !strings.Contains(out, order[1]) {
		t.Fatalf("after rejection, invoice orders printed %q", out)
	}
	requested = must("invoice", "request", "-title-id", title[1], order[1])
	if inv = regexp.MustCompile(`^([0-9a-f]{22}) +已提交`).FindStringSubmatch(requested); inv == nil {
		t.Fatalf("request printed %q", requested)
	}
	pdf := filepath.Join(work, "invoice.pdf")
	content := []byte("%PDF-1.7\n% an invoice\n%%EOF\n")
	if err := os.WriteFile(pdf, content, 0o600); err != nil {
		t.Fatal(err)
	}
	if out := desk("invoice-desk", "issue", inv[1], "-number", "24332000000012345678", "-document", pdf); !strings.Contains(out, "已开具") {
		t.Fatalf("issue printed %q", out)
	}
	got := filepath.Join(work, "downloaded.pdf")
	must("invoice", "download", inv[1], "-o", got)
	if b, err := os.ReadFile(got); err != nil || !bytes.Equal(b, content) {
		t.Fatalf("downloaded %q, %v", b, err)
	}
	var list struct {
		Invoices []struct {
			ID     string `json:"id"`
			State  string `json:"state"`
			Number string `json:"number"`
		} `json:"invoices"`
	}
	if err := json.Unmarshal([]byte(must("invoice", "list", "-o", "json")), &list); err != nil || len(list.Invoices) != 2 ||
		list.Invoices[0].State != "INVOICE_STATE_ISSUED" || list.Invoices[0].Number != "24332000000012345678" {
		t.Fatalf("list -o json: %+v %v", list, err)
	}
	if out := must("invoice", "show", inv[1]); !strings.Contains(out, "number 24332000000012345678") || !strings.Contains(out, order[1]) {
		t.Fatalf("show printed %q", out)
	}
	if out := must("invoice", "title-delete", title[1]); !strings.Contains(out, "deleted") {
		t.Fatalf("title-delete printed %q", out)
	}
}
