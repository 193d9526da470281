package daemon_test

import (
	"bytes"
	"fmt"
	"path/filepath"
	"sync"
	"testing"

	hufuv1 "github.com/hufu-hsm/hufu/api/hufu/v1"
	"github.com/hufu-hsm/hufu/client"
	"github.com/hufu-hsm/hufu/daemon/config"
	"github.com/hufu-hsm/hufu/daemon/devpki"
	"google.golang.org/grpc/codes"
)

// invoiceDesk connects as the invoicing desk with the development CLI client certificate.
func (a *appliance) invoiceDesk() hufuv1.InvoiceDeskServiceClient {
	a.t.Helper()
	tls := filepath.Join(a.cfg.DataDir, "tls")
	conn, err := client.Dial(client.Config{Addr: a.addr, CAFile: filepath.Join(tls, "ca.pem"), ServerName: "localhost",
		ClientCertFile: filepath.Join(tls, "cli.pem"), ClientKeyFile: filepath.Join(tls, "cli-key.pem"), DeviceID: "desk-0002"})
	if err != nil {
		a.t.Fatal(err)
	}
	a.t.Cleanup(func() { conn.Close() })
	return hufuv1.NewInvoiceDeskServiceClient(conn.ClientConn())
}

// paidOrder takes a certificate application through review and payment and returns the
// completed order.
func (p *applicant) paidOrder(desk hufuv1.ReviewServiceClient) *hufuv1.Order {
	p.t.Helper()
	o := p.apply()
	if _, err := desk.ApproveOrder(bg, &hufuv1.ApproveOrderRequest{OrderId: o.Id, Note: "ok"}); err != nil {
		p.t.Fatalf("approve: %v", err)
	}
	paid, err := p.pay(o.Id, "pay-"+o.Id)
	if err != nil {
		p.t.Fatalf("pay: %v", err)
	}
	return paid.Order
}

const (
	goodUSCC = "91350100M000100Y43"
	badUSCC  = "91350100M000100Y44" // check digit wrong
)

var testPDF = []byte("%PDF-1.7\n1 0 obj <<>> endobj\ntrailer <<>>\n%%EOF\n")

func enterpriseTitle() *hufuv1.InvoiceTitle {
	return &hufuv1.InvoiceTitle{Kind: hufuv1.InvoiceTitleKind_INVOICE_TITLE_KIND_ENTERPRISE, Name: "福州示范科技有限公司", TaxNumber: goodUSCC,
		Address: "福州市鼓楼区五四路1号", Telephone: "0591-87654321", Bank: "示范银行福州分行", BankAccount: "6222020000012345678"}
}

func personalTitle() *hufuv1.InvoiceTitle {
	return &hufuv1.InvoiceTitle{Kind: hufuv1.InvoiceTitleKind_INVOICE_TITLE_KIND_PERSONAL, Name: "张三"}
}

func invoiceable(t *testing.T, inv hufuv1.InvoiceServiceClient) map[string]int64 {
	t.Helper()
	resp, err := inv.ListInvoiceableOrders(bg, &hufuv1.ListInvoiceableOrdersRequest{})
	if err != nil {
		t.Fatal(err)
	}
	out := map[string]int64{}
	for _, g := range resp.Groups {
		var sum int64
		for _, o := range g.Orders {
			out[o.OrderId] = o.AmountFen
			sum += o.AmountFen
		}
		if sum != g.InvoiceableAmountFen {
			t.Fatalf("group %s: orders sum to %d, invoiceable %d", g.Label, sum, g.InvoiceableAmountFen)
		}
	}
	return out
}

// TestInvoicesEndToEnd: a paid certificate order is invoiced once (also under concurrent
// requests), bad titles are refused naming the field, the desk rejects (the order is
// invoiceable again) and issues (the user downloads the same bytes).
func TestInvoicesEndToEnd(t *testing.T) {
	a := certAppliance(t, func(c *config.Config) {
		c.SystemClients[0].Services = append(c.SystemClients[0].Services, "hufu.v1.InvoiceDeskService")
		c.Invoices.MaxTitlesPerUser = 2
	})
	review, desk := a.desk(), a.invoiceDesk()
	p := newApplicant(t, a, phone, "device-inv-01", "key-inv-0001")
	order := p.paidOrder(review)
	inv := hufuv1.NewInvoiceServiceClient(p.conn.ClientConn())

	opts, err := inv.GetInvoiceOptions(bg, &hufuv1.GetInvoiceOptionsRequest{})
	if err != nil || len(opts.Types) != 3 || len(opts.Categories) != 3 || opts.MaxTitles != 2 {
		t.Fatalf("options: %v %v", opts, err)
	}
	if help, err := inv.GetInvoicingHelp(bg, &hufuv1.GetInvoicingHelpRequest{}); err != nil || help.Text == "" {
		t.Fatalf("help: %v %v", help, err)
	}
	resp, err := inv.ListInvoiceableOrders(bg, &hufuv1.ListInvoiceableOrdersRequest{Category: hufuv1.InvoiceCategory_INVOICE_CATEGORY_CA_CERTIFICATE})
	if err != nil || len(resp.Groups) != 1 || len(resp.Groups[0].Orders) != 1 || resp.Groups[0].InvoiceableAmountFen != order.PriceFen ||
		resp.Groups[0].Label != "CA证书" || order.PriceFen != 36000 {
		t.Fatalf("invoiceable CA证书 orders: %v %v (order of %d fen)", resp, err, order.PriceFen)
	}

	req := func(id string, kind hufuv1.InvoiceKind, title *hufuv1.InvoiceTitle, orders ...string) *hufuv1.RequestInvoiceRequest {
		return &hufuv1.RequestInvoiceRequest{RequestId: id, Kind: kind, Title: title, OrderIds: orders}
	}
	ordinary, special := hufuv1.InvoiceKind_INVOICE_KIND_ORDINARY, hufuv1.InvoiceKind_INVOICE_KIND_SPECIAL_VAT
	bad := enterpriseTitle()
	bad.TaxNumber = badUSCC
	incomplete := enterpriseTitle()
	incomplete.Bank = ""
	refusals := []struct {
		name  string
		req   *hufuv1.RequestInvoiceRequest
		code  codes.Code
		field string
	}{
		{"bad USCC", req("inv-bad-uscc", ordinary, bad, order.Id), codes.InvalidArgument, "title.tax_number"},
		{"special VAT for a person", req("inv-special-person", special, personalTitle(), order.Id), codes.InvalidArgument, "kind"},
		{"special VAT without bank", req("inv-special-nobank", special, incomplete, order.Id), codes.InvalidArgument, "title.bank"},
		{"no orders", req("inv-no-orders", ordinary, personalTitle()), codes.InvalidArgument, "order_ids"},
		{"an order twice", req("inv-twice-0001", ordinary, personalTitle(), order.Id, order.Id), codes.InvalidArgument, "order_ids[1]"},
		{"not an order id", req("inv-not-id-01", ordinary, personalTitle(), "x"), codes.InvalidArgument, "order_ids[0]"},
		{"no title", req("inv-no-title-1", ordinary, nil, order.Id), codes.InvalidArgument, "title"},
		{"no kind", req("inv-no-kind-01", 0, personalTitle(), order.Id), codes.InvalidArgument, "kind"},
		{"bad request id", req("x", ordinary, personalTitle(), order.Id), codes.InvalidArgument, "request_id"},
		{"personal title with a tax number", req("inv-person-tax", ordinary,
			&hufuv1.InvoiceTitle{Kind: hufuv1.InvoiceTitleKind_INVOICE_TITLE_KIND_PERSONAL, Name: "张三", TaxNumber: goodUSCC}, order.Id),
			codes.InvalidArgument, "title.tax_number"},
	}
	for _, r := range refusals {
		t.Run(r.name, func(t *testing.T) {
			_, err := inv.RequestInvoice(bg, r.req)
			wantCode(t, err, r.code, r.field)
		})
	}

	// Another user cannot invoice this user's order, nor see it.
	other, _ := a.verifiedUser("13800138111", "device-inv-02")
	otherInv := hufuv1.NewInvoiceServiceClient(other.ClientConn())
	_, err = otherInv.RequestInvoice(bg, req("inv-other-0001", ordinary, personalTitle(), order.Id))
	wantCode(t, err, codes.NotFound, "")
	if got := invoiceable(t, otherInv); len(got) != 0 {
		t.Fatalf("another user sees %v", got)
	}

	// Concurrent requests for the same order with different idempotency keys: exactly one
	// succeeds, the others are refused.
	var (
		wg       sync.WaitGroup
		mu       sync.Mutex
		won      []*hufuv1.Invoice
		refused  int
		unwanted []error
	)
	for i := range 8 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			r, err := inv.RequestInvoice(bg, req(fmt.Sprintf("inv-race-%04d", i), ordinary, personalTitle(), order.Id))
			mu.Lock()
			defer mu.Unlock()
			switch {
			case err == nil:
				won = append(won, r.Invoice)
			case statusCode(err) == codes.FailedPrecondition:
				refused++
			default:
				unwanted = append(unwanted, err)
			}
		}()
	}
	wg.Wait()
	if len(won) != 1 || refused != 7 || len(unwanted) != 0 {
		t.Fatalf("%d won, %d refused, others: %v", len(won), refused, unwanted)
	}
	first := won[0]
	if first.State != hufuv1.InvoiceState_INVOICE_STATE_SUBMITTED || first.AmountFen != order.PriceFen || len(first.Orders) != 1 ||
		first.Category != hufuv1.InvoiceCategory_INVOICE_CATEGORY_CA_CERTIFICATE {
		t.Fatalf("invoice: %v", first)
	}
	// The winner's key again is answered with the same invoice; a new key is refused.
	var winnerKey string
	for i := range 8 {
		r, err := inv.RequestInvoice(bg, req(fmt.Sprintf("inv-race-%04d", i), ordinary, personalTitle(), order.Id))
		if err == nil && r.Invoice.Id == first.Id {
			winnerKey = fmt.Sprintf("inv-race-%04d", i)
		}
	}
	if winnerKey == "" {
		t.Fatal("retrying the winning request id did not return its invoice")
	}
	_, err = inv.RequestInvoice(bg, req("inv-again-0001", ordinary, personalTitle(), order.Id))
	wantCode(t, err, codes.FailedPrecondition, "")
	if got := invoiceable(t, inv); len(got) != 0 {
		t.Fatalf("still invoiceable: %v", got)
	}

	// The desk lists it, rejects it with a reason; the order is invoiceable again.
	list, err := desk.ListSubmittedInvoices(bg, &hufuv1.ListSubmittedInvoicesRequest{})
	if err != nil || len(list.Invoices) != 1 || list.Invoices[0].Id != first.Id || list.Invoices[0].UserId == "" {
		t.Fatalf("desk list: %v %v", list, err)
	}
	_, err = desk.RejectInvoice(bg, &hufuv1.RejectInvoiceRequest{InvoiceId: first.Id})
	wantCode(t, err, codes.InvalidArgument, "reason")
	rejected, err := desk.RejectInvoice(bg, &hufuv1.RejectInvoiceRequest{InvoiceId: first.Id, Reason: "抬头与付款人不符"})
	if err != nil || rejected.Invoice.State != hufuv1.InvoiceState_INVOICE_STATE_REJECTED {
		t.Fatalf("reject: %v %v", rejected, err)
	}
	if again, err := desk.RejectInvoice(bg, &hufuv1.RejectInvoiceRequest{InvoiceId: first.Id, Reason: "抬头与付款人不符"}); err != nil || again.Invoice.Id != first.Id {
		t.Fatalf("repeated reject: %v", err)
	}
	_, err = desk.IssueInvoice(bg, &hufuv1.IssueInvoiceRequest{InvoiceId: first.Id, Number: "12345678", Document: testPDF})
	wantCode(t, err, codes.FailedPrecondition, "")
	if got := invoiceable(t, inv); got[order.Id] != order.PriceFen {
		t.Fatalf("after rejection: %v", got)
	}
	shown, err := inv.GetInvoice(bg, &hufuv1.GetInvoiceRequest{InvoiceId: first.Id})
	if err != nil || shown.Invoice.RejectReason != "抬头与付款人不符" || shown.Invoice.UserId != "" {
		t.Fatalf("user's view of the rejected invoice: %v %v", shown, err)
	}

	// Saved titles: add (idempotent), limit, edit, list; a special VAT invoice with one.
	added, err := inv.AddInvoiceTitle(bg, &hufuv1.AddInvoiceTitleRequest{RequestId: "title-0001", Title: enterpriseTitle()})
	if err != nil {
		t.Fatal(err)
	}
	if again, err := inv.AddInvoiceTitle(bg, &hufuv1.AddInvoiceTitleRequest{RequestId: "title-0001", Title: enterpriseTitle()}); err != nil || again.Title.Id != added.Title.Id {
		t.Fatalf("repeated add: %v %v", again, err)
	}
	_, err = inv.AddInvoiceTitle(bg, &hufuv1.AddInvoiceTitleRequest{RequestId: "title-0002", Title: bad})
	wantCode(t, err, codes.InvalidArgument, "title.tax_number")
	if _, err := inv.AddInvoiceTitle(bg, &hufuv1.AddInvoiceTitleRequest{RequestId: "title-0003", Title: personalTitle()}); err != nil {
		t.Fatal(err)
	}
	_, err = inv.AddInvoiceTitle(bg, &hufuv1.AddInvoiceTitleRequest{RequestId: "title-0004", Title: personalTitle()})
	wantCode(t, err, codes.FailedPrecondition, "")
	edited := enterpriseTitle()
	edited.Address = "福州市鼓楼区五四路2号"
	if e, err := inv.EditInvoiceTitle(bg, &hufuv1.EditInvoiceTitleRequest{TitleId: added.Title.Id, Title: edited}); err != nil || e.Title.Address != edited.Address {
		t.Fatalf("edit: %v %v", e, err)
	}
	titles, err := inv.ListInvoiceTitles(bg, &hufuv1.ListInvoiceTitlesRequest{})
	if err != nil || len(titles.Titles) != 2 {
		t.Fatalf("titles: %v %v", titles, err)
	}
	second, err := inv.RequestInvoice(bg, &hufuv1.RequestInvoiceRequest{RequestId: "inv-special-0001", Kind: special, TitleId: added.Title.Id,
		OrderIds: []string{order.Id}, Email: "finance@example.cn"})
	if err != nil || second.Invoice.Title.Address != edited.Address || second.Invoice.Kind != special {
		t.Fatalf("special VAT invoice with a saved title: %v %v", second, err)
	}
	if _, err := inv.DeleteInvoiceTitle(bg, &hufuv1.DeleteInvoiceTitleRequest{TitleId: added.Title.Id}); err != nil {
		t.Fatal(err)
	}
	_, err = inv.DeleteInvoiceTitle(bg, &hufuv1.DeleteInvoiceTitleRequest{TitleId: added.Title.Id})
	wantCode(t, err, codes.NotFound, "")

	// The desk issues it: the document is type-checked; the user downloads the same bytes.
	id := second.Invoice.Id
	_, err = inv.DownloadInvoice(bg, &hufuv1.DownloadInvoiceRequest{InvoiceId: id})
	wantCode(t, err, codes.FailedPrecondition, "")
	for _, r := range []struct {
		req   *hufuv1.IssueInvoiceRequest
		field string
	}{
		{&hufuv1.IssueInvoiceRequest{InvoiceId: id, Number: "12", Document: testPDF}, "number"},
		{&hufuv1.IssueInvoiceRequest{InvoiceId: id, Number: "24332000000012345678"}, "document"},
		{&hufuv1.IssueInvoiceRequest{InvoiceId: id, Number: "24332000000012345678", Document: []byte("\x89PNG\r\n\x1a\nnot an invoice")}, "document"},
		{&hufuv1.IssueInvoiceRequest{InvoiceId: id, Number: "24332000000012345678", Document: []byte("%PDF-1.7\ntruncated")}, "document"},
		{&hufuv1.IssueInvoiceRequest{InvoiceId: id, Number: "24332000000012345678", Document: testPDF, MediaType: "application/ofd"}, "media_type"},
		{&hufuv1.IssueInvoiceRequest{InvoiceId: id, Number: "24332000000012345678", Document: append(bytes.Repeat([]byte("%PDF-1.7\n"), 1<<20), "%%EOF"...)}, "document"},
	} {
		_, err := desk.IssueInvoice(bg, r.req)
		wantCode(t, err, codes.InvalidArgument, r.field)
	}
	_, err = desk.IssueInvoice(bg, &hufuv1.IssueInvoiceRequest{InvoiceId: "00000000000000000000ff", Number: "24332000000012345678", Document: testPDF})
	wantCode(t, err, codes.NotFound, "")
	issued, err := desk.IssueInvoice(bg, &hufuv1.IssueInvoiceRequest{InvoiceId: id, Number: "24332000000012345678", Document: testPDF, MediaType: "application/pdf"})
	if err != nil || issued.Invoice.State != hufuv1.InvoiceState_INVOICE_STATE_ISSUED || issued.Invoice.Number != "24332000000012345678" {
		t.Fatalf("issue: %v %v", issued, err)
	}
	if again, err := desk.IssueInvoice(bg, &hufuv1.IssueInvoiceRequest{InvoiceId: id, Number: "24332000000012345678", Document: testPDF}); err != nil || again.Invoice.IssuedAt.AsTime() != issued.Invoice.IssuedAt.AsTime() {
		t.Fatalf("repeated issue: %v", err)
	}
	_, err = desk.IssueInvoice(bg, &hufuv1.IssueInvoiceRequest{InvoiceId: id, Number: "24332000000099999999", Document: testPDF})
	wantCode(t, err, codes.FailedPrecondition, "")
	dl, err := inv.DownloadInvoice(bg, &hufuv1.DownloadInvoiceRequest{InvoiceId: id})
	if err != nil || !bytes.Equal(dl.Content, testPDF) || dl.MediaType != "application/pdf" || dl.Sha256 != issued.Invoice.DocumentSha256 {
		t.Fatalf("download: %v %v", dl, err)
	}
	_, err = otherInv.DownloadInvoice(bg, &hufuv1.DownloadInvoiceRequest{InvoiceId: id})
	wantCode(t, err, codes.NotFound, "")
	// Issued: the order stays invoiced.
	_, err = inv.RequestInvoice(bg, req("inv-after-issue", ordinary, personalTitle(), order.Id))
	wantCode(t, err, codes.FailedPrecondition, "")
	if list, err := desk.ListSubmittedInvoices(bg, &hufuv1.ListSubmittedInvoicesRequest{}); err != nil || len(list.Invoices) != 0 {
		t.Fatalf("desk queue after deciding everything: %v %v", list, err)
	}
	hist, err := inv.ListInvoices(bg, &hufuv1.ListInvoicesRequest{})
	if err != nil || len(hist.Invoices) != 2 || hist.Invoices[0].Id != id || hist.Invoices[1].Id != first.Id {
		t.Fatalf("history (newest first): %v %v", hist, err)
	}
	if issuedOnly, err := inv.ListInvoices(bg, &hufuv1.ListInvoicesRequest{State: hufuv1.InvoiceState_INVOICE_STATE_ISSUED}); err != nil || len(issuedOnly.Invoices) != 1 {
		t.Fatalf("issued history: %v %v", issuedOnly, err)
	}
	if page, err := inv.ListInvoices(bg, &hufuv1.ListInvoicesRequest{PageSize: 1}); err != nil || len(page.Invoices) != 1 || page.NextPageToken == "" {
		t.Fatalf("paging: %v %v", page, err)
	}
	_, err = inv.ListInvoices(bg, &hufuv1.ListInvoicesRequest{PageToken: "bogus"})
	wantCode(t, err, codes.InvalidArgument, "page_token")

	// The user's session is no desk.
	_, err = hufuv1.NewInvoiceDeskServiceClient(p.conn.ClientConn()).ListSubmittedInvoices(bg, &hufuv1.ListSubmittedInvoicesRequest{})
	if c := statusCode(err); c != codes.PermissionDenied && c != codes.Unauthenticated {
		t.Fatalf("a user at the desk: %v", err)
	}
}

// TestInvoiceDeskNeedsThePermission: a system client not allowed InvoiceDeskService is
// refused at the desk.
func TestInvoiceDeskNeedsThePermission(t *testing.T) {
	a := startAppliance(t, func(c *config.Config) {
		c.SystemClients = []config.SystemClient{{Name: devpki.CLIClientName, Services: []string{"hufu.v1.ReviewService"}}}
	})
	desk := a.invoiceDesk()
	_, err := desk.ListSubmittedInvoices(bg, &hufuv1.ListSubmittedInvoicesRequest{})
	wantCode(t, err, codes.PermissionDenied, "")
	_, err = desk.RejectInvoice(bg, &hufuv1.RejectInvoiceRequest{InvoiceId: "00000000000000000000ff", Reason: "x"})
	wantCode(t, err, codes.PermissionDenied, "")
}
