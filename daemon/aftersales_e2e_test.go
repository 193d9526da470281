package daemon_test

import (
	"crypto/rand"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"

	"github.com/emmansun/gmsm/smx509"
	"google.golang.org/grpc/codes"

	"github.com/hufu-hsm/hufu/admin"
	hufuv1 "github.com/hufu-hsm/hufu/api/hufu/v1"
	"github.com/hufu-hsm/hufu/client"
	"github.com/hufu-hsm/hufu/cosign"
	"github.com/hufu-hsm/hufu/daemon/config"
	"github.com/hufu-hsm/hufu/daemon/devpki"
)

// afterSalesDesk connects with the development CLI client certificate as the after-sales desk.
func (a *appliance) afterSalesDesk() hufuv1.AfterSalesDeskServiceClient {
	a.t.Helper()
	tls := filepath.Join(a.cfg.DataDir, "tls")
	conn, err := client.Dial(client.Config{Addr: a.addr, CAFile: filepath.Join(tls, "ca.pem"), ServerName: "localhost",
		ClientCertFile: filepath.Join(tls, "cli.pem"), ClientKeyFile: filepath.Join(tls, "cli-key.pem"), DeviceID: "aftersales-desk-1"})
	if err != nil {
		a.t.Fatal(err)
	}
	a.t.Cleanup(func() { conn.Close() })
	return hufuv1.NewAfterSalesDeskServiceClient(conn.ClientConn())
}

// afterSalesAppliance is a payment appliance (the ledger must balance after the test) whose
// CLI certificate also works the after-sales and invoicing desks.
func afterSalesAppliance(t *testing.T) (*certAppl, string) {
	t.Helper()
	auditor, hash, err := admin.NewToken()
	if err != nil {
		t.Fatal(err)
	}
	a := certAppliance(t, func(c *config.Config) {
		c.SystemClients = []config.SystemClient{{Name: devpki.CLIClientName, Services: []string{"hufu.v1.ReviewService",
			"hufu.v1.PaymentDeskService", "hufu.v1.AfterSalesDeskService", "hufu.v1.InvoiceDeskService"}}}
		c.Admin.Tokens = []config.AdminToken{{Name: "alice", Role: string(admin.Auditor), SHA256: hash}}
	})
	desk := a.payDesk()
	t.Cleanup(func() {
		r, err := desk.CheckLedger(bg, &hufuv1.CheckLedgerRequest{})
		if err != nil || !r.Balanced {
			t.Errorf("the ledger does not balance after the test: %v %v", r, err)
		}
	})
	return a, auditor
}

func onCRL(t *testing.T, a *certAppl, serial string) bool {
	t.Helper()
	der, err := a.crl("hufu-ca")
	if err != nil {
		t.Fatal(err)
	}
	crl, err := smx509.ParseRevocationList(der)
	if err != nil {
		t.Fatal(err)
	}
	for _, e := range crl.RevokedCertificateEntries {
		if e.SerialNumber.Text(16) == strings.TrimLeft(serial, "0") {
			return true
		}
	}
	return false
}

// certStatus finds one of the applicant's certificates in either list.
func certStatus(t *testing.T, p *applicant, serial string) hufuv1.CertificateStatus {
	t.Helper()
	return p.certificate(serial).Status // both lists, and a pair's encryption certificate
}

func TestAfterSalesRefundEndToEnd(t *testing.T) {
	a, auditor := afterSalesAppliance(t)
	review, desk := a.desk(), a.afterSalesDesk()
	p := newApplicant(t, a, phone, "device-as-01", "key-as-0001")
	as := hufuv1.NewAfterSalesServiceClient(p.conn.ClientConn())

	reasons, err := as.ListAfterSalesReasons(bg, &hufuv1.ListAfterSalesReasonsRequest{})
	if err != nil || len(reasons.Reasons) != 6 || reasons.Reasons[0].Label != "不需要了" || !reasons.Reasons[5].TextRequired || reasons.MaxAttachments != 3 {
		t.Fatalf("reasons: %v %v", reasons, err)
	}

	// An order not completed has no after-sales.
	pending := p.approved(review)
	_, err = as.PreviewAfterSales(bg, &hufuv1.PreviewAfterSalesRequest{OrderId: pending.Id})
	wantCode(t, err, codes.FailedPrecondition, "")

	order := p.paidOrder(review)
	serial := order.Serial
	// The preview names the certificates a refund revokes (the pair) and the amount.
	pv, err := as.PreviewAfterSales(bg, &hufuv1.PreviewAfterSalesRequest{OrderId: order.Id})
	if err != nil || pv.RefundAmountFen != order.PriceFen || len(pv.RevokedSerials) != 2 || !slices.Contains(pv.RevokedSerials, serial) ||
		order.EncryptionSerial == "" || !slices.Contains(pv.RevokedSerials, order.EncryptionSerial) ||
		pv.Acknowledgement == "" || !strings.Contains(strings.Join(pv.Consequences, ""), serial) {
		t.Fatalf("preview: %v %v", pv, err)
	}

	apply := func(id, ack string, reason hufuv1.AfterSalesReason, text string) (*hufuv1.ApplyAfterSalesResponse, error) {
		return as.ApplyAfterSales(bg, &hufuv1.ApplyAfterSalesRequest{RequestId: id, OrderId: order.Id, Reason: reason, Text: text,
			Acknowledgement: ack, Attachments: []*hufuv1.NewAttachment{{FileName: "receipt.pdf", Content: testPDF}}})
	}
	notNeeded := hufuv1.AfterSalesReason_AFTER_SALES_REASON_NOT_NEEDED
	// Nobody confirms blind: no acknowledgement, or a wrong one, is refused.
	_, err = apply("as-apply-0001", "", notNeeded, "")
	wantCode(t, err, codes.InvalidArgument, "acknowledgement")
	_, err = apply("as-apply-0001", "0123456789abcdef", notNeeded, "")
	wantCode(t, err, codes.FailedPrecondition, "")
	_, err = apply("as-apply-0001", pv.Acknowledgement, hufuv1.AfterSalesReason_AFTER_SALES_REASON_OTHER, "")
	wantCode(t, err, codes.InvalidArgument, "text")
	_, err = apply("as-apply-0001", pv.Acknowledgement, hufuv1.AfterSalesReason_AFTER_SALES_REASON_UNSPECIFIED, "")
	wantCode(t, err, codes.InvalidArgument, "reason")

	applied, err := apply("as-apply-0001", pv.Acknowledgement, notNeeded, "误购，已不参加该项目投标")
	if err != nil {
		t.Fatal(err)
	}
	c := applied.Case
	if c.State != hufuv1.AfterSalesState_AFTER_SALES_STATE_IN_REVIEW || c.AmountFen != order.PriceFen || len(c.Attachments) != 1 ||
		c.PhoneMasked != "" || c.ReasonLabel != "不需要了" {
		t.Fatalf("case: %v", c)
	}
	// The same request again answers the same case; another request is refused: one open case.
	if again, err := apply("as-apply-0001", pv.Acknowledgement, notNeeded, "误购，已不参加该项目投标"); err != nil || again.Case.Id != c.Id {
		t.Fatalf("repeated apply: %v %v", again, err)
	}
	_, err = apply("as-apply-0002", pv.Acknowledgement, notNeeded, "")
	if statusCode(err) != codes.FailedPrecondition || !strings.Contains(errMessage(err), c.Id) {
		t.Fatalf("second open case: %v", err)
	}

	// List, filter and search like orders.
	list := func(state hufuv1.AfterSalesState, kw string) int {
		t.Helper()
		r, err := as.ListAfterSales(bg, &hufuv1.ListAfterSalesRequest{State: state, Keyword: kw})
		if err != nil {
			t.Fatal(err)
		}
		return len(r.Cases)
	}
	if list(hufuv1.AfterSalesState_AFTER_SALES_STATE_IN_REVIEW, "") != 1 || list(hufuv1.AfterSalesState_AFTER_SALES_STATE_REFUNDED, "") != 0 ||
		list(0, "误购") != 1 || list(0, "nothing-like-it") != 0 || list(0, order.Id) != 1 {
		t.Fatal("listing by state and keyword")
	}

	// Another person sees nothing of it.
	other, _ := a.verifiedUser("13800138222", "device-as-02")
	otherAS := hufuv1.NewAfterSalesServiceClient(other.ClientConn())
	_, err = otherAS.GetAfterSales(bg, &hufuv1.GetAfterSalesRequest{CaseId: c.Id})
	wantCode(t, err, codes.NotFound, "")

	// The desk sees it with the masked phone, and refunds.
	open, err := desk.ListOpenAfterSales(bg, &hufuv1.ListOpenAfterSalesRequest{})
	if err != nil || len(open.Cases) != 1 || open.Cases[0].Id != c.Id || !strings.Contains(open.Cases[0].PhoneMasked, "****") {
		t.Fatalf("open cases: %v %v", open, err)
	}
	att, err := desk.GetAfterSalesAttachment(bg, &hufuv1.GetAfterSalesAttachmentRequest{CaseId: c.Id, AttachmentId: c.Attachments[0].Id})
	if err != nil || string(att.Content) != string(testPDF) || att.Attachment.FileName != "receipt.pdf" {
		t.Fatalf("the desk reads the attachment: %v %v", att, err)
	}
	refunded, err := desk.RefundAfterSales(bg, &hufuv1.RefundAfterSalesRequest{CaseId: c.Id})
	if err != nil {
		t.Fatal(err)
	}
	if r := refunded.Case; r.State != hufuv1.AfterSalesState_AFTER_SALES_STATE_REFUNDED || r.RefundEntryId == "" || len(r.Serials) != 2 || !slices.Contains(r.Serials, serial) || !slices.Contains(r.Serials, order.EncryptionSerial) {
		t.Fatalf("refunded: %v", r)
	}
	// Again: the same answer, nothing more moves.
	if again, err := desk.RefundAfterSales(bg, &hufuv1.RefundAfterSalesRequest{CaseId: c.Id}); err != nil || again.Case.RefundEntryId != refunded.Case.RefundEntryId {
		t.Fatalf("refund again: %v %v", again, err)
	}
	if _, err := desk.SettleAfterSales(bg, &hufuv1.SettleAfterSalesRequest{CaseId: c.Id, Outcome: "x"}); statusCode(err) != codes.FailedPrecondition {
		t.Fatalf("settling a refunded case: %v", err)
	}
	_, err = desk.GetAfterSalesAttachment(bg, &hufuv1.GetAfterSalesAttachmentRequest{CaseId: c.Id, AttachmentId: c.Attachments[0].Id})
	wantCode(t, err, codes.FailedPrecondition, "")

	// The certificate is revoked, its key's share destroyed, its serial on the CRL.
	// A refund revokes the pair: the encryption certificate and its key go too.
	for _, sn := range []string{serial, order.EncryptionSerial} {
		if st := certStatus(t, p, sn); st != hufuv1.CertificateStatus_CERTIFICATE_STATUS_REVOKED {
			t.Fatalf("certificate %s after the refund: %v", sn, st)
		}
	}
	if _, err := p.enc.signer().Decrypt(nil, mustEncrypt(t, p.enc.public.PublicKey()), nil); statusCode(err) != codes.FailedPrecondition {
		t.Fatalf("decrypting with the encryption key after the refund: %v", err)
	}
	if _, err := p.key.signer().Sign(rand.Reader, []byte("bid"), &cosign.SignerOpts{}); statusCode(err) != codes.FailedPrecondition {
		t.Fatalf("signing after the refund: %v", err)
	}
	if !onCRL(t, a, serial) {
		t.Fatal("the refunded certificate is not on the CRL")
	}
	// The person sees 同意退款; the order is no longer invoiceable, and gets no new case.
	if list(hufuv1.AfterSalesState_AFTER_SALES_STATE_REFUNDED, "") != 1 || list(hufuv1.AfterSalesState_AFTER_SALES_STATE_IN_REVIEW, "") != 0 {
		t.Fatal("listing after the refund")
	}
	if inv := invoiceable(t, hufuv1.NewInvoiceServiceClient(p.conn.ClientConn())); inv[order.Id] != 0 {
		t.Fatalf("a refunded order is invoiceable: %v", inv)
	}
	_, err = as.PreviewAfterSales(bg, &hufuv1.PreviewAfterSalesRequest{OrderId: order.Id})
	wantCode(t, err, codes.FailedPrecondition, "")

	// The ledger: the payment and its reversal, and the audit trail of every step.
	export := a.auditExport(auditor)
	_, lines := ledgerFromAudit(t, export)
	entries := entriesOf(lines, order.Id)
	if len(entries) != 2 || entries[1].kind != "refund" || entries[1].reverses != entries[0].entry || entries[1].entry != refunded.Case.RefundEntryId ||
		entries[1].amount != order.PriceFen || entries[1].debit != entries[0].credit {
		t.Fatalf("ledger entries of the order: %+v", entries)
	}
	for _, action := range []string{"aftersales.apply", "aftersales.refund.start", "aftersales.revoke", "cert.revoke", "aftersales.refund"} {
		if !strings.Contains(string(export), `"action":"`+action+`"`) {
			t.Errorf("no %s in the audit log", action)
		}
	}
	if strings.Contains(string(export), "误购") {
		t.Error("the audit log holds the person's text")
	}
	if r, err := a.payDesk().CheckLedger(bg, &hufuv1.CheckLedgerRequest{}); err != nil || !r.Balanced {
		t.Fatalf("ledger check: %v %v", r, err)
	}
}

func TestAfterSalesSettleWithdrawAndInvoice(t *testing.T) {
	a, auditor := afterSalesAppliance(t)
	review, desk := a.desk(), a.afterSalesDesk()
	p := newApplicant(t, a, phone, "device-as-11", "key-as-0011")
	as := hufuv1.NewAfterSalesServiceClient(p.conn.ClientConn())
	applyFor := func(o *hufuv1.Order, id string) *hufuv1.AfterSalesCase {
		t.Helper()
		pv, err := as.PreviewAfterSales(bg, &hufuv1.PreviewAfterSalesRequest{OrderId: o.Id})
		if err != nil {
			t.Fatal(err)
		}
		r, err := as.ApplyAfterSales(bg, &hufuv1.ApplyAfterSalesRequest{RequestId: id, OrderId: o.Id, Reason: hufuv1.AfterSalesReason_AFTER_SALES_REASON_CERTIFICATE_UNUSABLE,
			Acknowledgement: pv.Acknowledgement})
		if err != nil {
			t.Fatal(err)
		}
		return r.Case
	}

	// 协商解决: closed with the agreed outcome; no money moves, the certificate stays.
	o1 := p.paidOrder(review)
	c1 := applyFor(o1, "as-settle-0001")
	_, err := desk.SettleAfterSales(bg, &hufuv1.SettleAfterSalesRequest{CaseId: c1.Id})
	wantCode(t, err, codes.InvalidArgument, "outcome")
	settled, err := desk.SettleAfterSales(bg, &hufuv1.SettleAfterSalesRequest{CaseId: c1.Id, Outcome: "已远程协助重新安装证书，可正常使用"})
	if err != nil || settled.Case.State != hufuv1.AfterSalesState_AFTER_SALES_STATE_SETTLED || settled.Case.Outcome == "" {
		t.Fatalf("settle: %v %v", settled, err)
	}
	if _, err := desk.RefundAfterSales(bg, &hufuv1.RefundAfterSalesRequest{CaseId: c1.Id}); statusCode(err) != codes.FailedPrecondition {
		t.Fatalf("refunding a settled case: %v", err)
	}
	if st := certStatus(t, p, o1.Serial); st != hufuv1.CertificateStatus_CERTIFICATE_STATUS_ACTIVE {
		t.Fatalf("certificate after settling: %v", st)
	}
	// Closed, the order may have a new case; withdrawn, that one is closed too. While it is
	// open, the account cannot be deleted, and the preview names the case.
	c1b := applyFor(o1, "as-settle-0002")
	pre, err := p.conn.Accounts.PreviewAccountDeletion(bg, &hufuv1.PreviewAccountDeletionRequest{})
	if err != nil {
		t.Fatal(err)
	}
	blocked := false
	for _, b := range pre.Blockers {
		blocked = blocked || (b.Precondition == "after_sales" && strings.Contains(b.Message, c1b.Id))
	}
	if !blocked {
		t.Fatalf("account deletion preview with an open case: %v", pre.Blockers)
	}
	w, err := as.WithdrawAfterSales(bg, &hufuv1.WithdrawAfterSalesRequest{CaseId: c1b.Id})
	if err != nil || w.Case.State != hufuv1.AfterSalesState_AFTER_SALES_STATE_WITHDRAWN {
		t.Fatalf("withdraw: %v %v", w, err)
	}
	if r, err := as.ListAfterSales(bg, &hufuv1.ListAfterSalesRequest{State: hufuv1.AfterSalesState_AFTER_SALES_STATE_SETTLED}); err != nil || len(r.Cases) != 1 {
		t.Fatalf("settled list: %v %v", r, err)
	}

	// An invoiced order: the refund is refused (and recorded) until the invoice is rejected.
	o2 := p.paidOrder(review)
	inv := hufuv1.NewInvoiceServiceClient(p.conn.ClientConn())
	ir, err := inv.RequestInvoice(bg, &hufuv1.RequestInvoiceRequest{RequestId: "as-inv-0001", Kind: hufuv1.InvoiceKind_INVOICE_KIND_ORDINARY,
		Title: personalTitle(), OrderIds: []string{o2.Id}})
	if err != nil {
		t.Fatal(err)
	}
	pv, err := as.PreviewAfterSales(bg, &hufuv1.PreviewAfterSalesRequest{OrderId: o2.Id})
	if err != nil || pv.InvoiceId != ir.Invoice.Id {
		t.Fatalf("preview of an invoiced order: %v %v", pv, err)
	}
	c2 := applyFor(o2, "as-inv-case-0001")
	_, err = desk.RefundAfterSales(bg, &hufuv1.RefundAfterSalesRequest{CaseId: c2.Id})
	if statusCode(err) != codes.FailedPrecondition || !strings.Contains(errMessage(err), ir.Invoice.Id) {
		t.Fatalf("refunding an invoiced order: %v", err)
	}
	if got, _ := as.GetAfterSales(bg, &hufuv1.GetAfterSalesRequest{CaseId: c2.Id}); got.Case.State != hufuv1.AfterSalesState_AFTER_SALES_STATE_IN_REVIEW {
		t.Fatalf("the refused case is %v", got.Case.State)
	}
	if _, err := a.invoiceDesk().RejectInvoice(bg, &hufuv1.RejectInvoiceRequest{InvoiceId: ir.Invoice.Id, Reason: "订单申请退款"}); err != nil {
		t.Fatal(err)
	}
	if r, err := desk.RefundAfterSales(bg, &hufuv1.RefundAfterSalesRequest{CaseId: c2.Id}); err != nil || r.Case.State != hufuv1.AfterSalesState_AFTER_SALES_STATE_REFUNDED {
		t.Fatalf("refund after the invoice's rejection: %v %v", r, err)
	}
	// Once refunding started, the order can no longer be invoiced.
	_, err = inv.RequestInvoice(bg, &hufuv1.RequestInvoiceRequest{RequestId: "as-inv-0002", Kind: hufuv1.InvoiceKind_INVOICE_KIND_ORDINARY,
		Title: personalTitle(), OrderIds: []string{o2.Id}})
	if err == nil {
		t.Fatal("a refunded order was invoiced")
	}

	// Money moved only for o2; the refusal is in the audit log.
	export := a.auditExport(auditor)
	_, lines := ledgerFromAudit(t, export)
	if n := len(entriesOf(lines, o1.Id)); n != 1 {
		t.Fatalf("the settled order has %d ledger entries", n)
	}
	if n := len(entriesOf(lines, o2.Id)); n != 2 {
		t.Fatalf("the refunded order has %d ledger entries", n)
	}
	if !strings.Contains(string(export), `"outcome":"denied"`) || !strings.Contains(string(export), `"action":"aftersales.settle"`) {
		t.Error("the refusal or the settlement is not in the audit log")
	}
}

// TestAfterSalesDeskNeedsItsPermission: a system client without hufu.v1.AfterSalesDeskService
// is refused, and a phone cannot call the desk.
func TestAfterSalesDeskNeedsItsPermission(t *testing.T) {
	a := startAppliance(t, func(c *config.Config) {
		c.SystemClients = []config.SystemClient{{Name: devpki.CLIClientName, Services: []string{"hufu.v1.ReviewService"}}}
	})
	desk := a.afterSalesDesk()
	_, err := desk.ListOpenAfterSales(bg, &hufuv1.ListOpenAfterSalesRequest{})
	wantCode(t, err, codes.PermissionDenied, "")
	_, err = desk.RefundAfterSales(bg, &hufuv1.RefundAfterSalesRequest{CaseId: strings.Repeat("0", 22)})
	wantCode(t, err, codes.PermissionDenied, "")
	conn, _ := a.verifiedUser("13800138333", "device-as-21")
	_, err = hufuv1.NewAfterSalesDeskServiceClient(conn.ClientConn()).SettleAfterSales(bg, &hufuv1.SettleAfterSalesRequest{CaseId: strings.Repeat("0", 22), Outcome: "x"})
	if c := statusCode(err); c != codes.PermissionDenied && c != codes.Unauthenticated {
		t.Fatalf("a phone at the desk: %v", err)
	}
}

// TestGrantingTheAfterSalesDeskNeedsASecondOfficer: AfterSalesDeskService is in the desk table.
func TestGrantingTheAfterSalesDeskNeedsASecondOfficer(t *testing.T) {
	a := startAdminAppliance(t, nil)
	sam, sue := a.adminClient(admin.SecurityOfficer), a.adminClient(secondOfficer)
	reg, err := sam.RegisterSystemClient(bg, "as-desk", []string{"hufu.v1.AfterSalesDeskService"})
	if err != nil || reg.Approval == nil || reg.Client != nil || !equal(reg.Approval.Desks, "aftersales") {
		t.Fatalf("desk request: %+v %v", reg, err)
	}
	if d, err := sue.Approve(bg, reg.Approval.ID); err != nil || d.Approval.State != admin.ApprovalApproved {
		t.Fatalf("approve: %+v %v", d, err)
	}
}

// TestOfflineRefundIsPaidOutAtTheDesk: a refund of an order paid at the counter is owed
// (待退款) until the payment desk pays it out and confirms with its reference; the ledger
// holds the money as payable in between, and balances at every step.
func TestOfflineRefundIsPaidOutAtTheDesk(t *testing.T) {
	a, auditor := afterSalesAppliance(t)
	review, desk, pdesk := a.desk(), a.afterSalesDesk(), a.payDesk()
	p := newApplicant(t, a, phone, "device-or-01", "key-or-0001")
	as := hufuv1.NewAfterSalesServiceClient(p.conn.ClientConn())
	pay := hufuv1.NewPaymentServiceClient(p.conn.ClientConn())

	o := p.approved(review)
	if _, err := pay.PayOffline(bg, &hufuv1.PayOfflineRequest{OrderId: o.Id}); err != nil {
		t.Fatal(err)
	}
	paid, err := pdesk.ConfirmOfflinePayment(bg, &hufuv1.ConfirmOfflinePaymentRequest{OrderId: o.Id, OperatorReference: "BANK-IN-0001", AmountFen: o.PriceFen})
	if err != nil {
		t.Fatal(err)
	}
	// Nothing is owed before a refund is agreed.
	_, err = pdesk.ConfirmRefundPayout(bg, &hufuv1.ConfirmRefundPayoutRequest{OrderId: o.Id, OperatorReference: "BANK-OUT-0001", AmountFen: o.PriceFen})
	wantCode(t, err, codes.FailedPrecondition, "")

	pv, err := as.PreviewAfterSales(bg, &hufuv1.PreviewAfterSalesRequest{OrderId: o.Id})
	if err != nil || !strings.Contains(strings.Join(pv.Consequences, ""), "付款台") {
		t.Fatalf("the preview says how the money goes back: %v %v", pv, err)
	}
	applied, err := as.ApplyAfterSales(bg, &hufuv1.ApplyAfterSalesRequest{RequestId: "as-offline-01", OrderId: o.Id,
		Reason: hufuv1.AfterSalesReason_AFTER_SALES_REASON_NOT_NEEDED, Acknowledgement: pv.Acknowledgement})
	if err != nil {
		t.Fatal(err)
	}
	refunded, err := desk.RefundAfterSales(bg, &hufuv1.RefundAfterSalesRequest{CaseId: applied.Case.Id})
	if err != nil || refunded.Case.State != hufuv1.AfterSalesState_AFTER_SALES_STATE_REFUNDED {
		t.Fatalf("refund: %v %v", refunded, err)
	}
	if st := certStatus(t, p, paid.Serial); st != hufuv1.CertificateStatus_CERTIFICATE_STATUS_REVOKED {
		t.Fatalf("certificate after the refund: %v", st)
	}

	// The desk sees what it owes.
	due, err := pdesk.ListRefundsDue(bg, &hufuv1.ListRefundsDueRequest{})
	if err != nil || len(due.Payments) != 1 {
		t.Fatalf("refunds due: %v %v", due, err)
	}
	d := due.Payments[0]
	if d.OrderId != o.Id || d.State != hufuv1.OfflinePaymentState_OFFLINE_PAYMENT_STATE_REFUND_DUE || d.AmountFen != o.PriceFen ||
		d.RefundEntryId != refunded.Case.RefundEntryId || d.RefundDueAt == nil || d.UserId == "" || d.RefundedAt != nil {
		t.Fatalf("refund due: %v", d)
	}
	_, err = pdesk.ListRefundsDue(bg, &hufuv1.ListRefundsDueRequest{PageSize: 101})
	wantCode(t, err, codes.InvalidArgument, "page_size")

	export := a.auditExport(auditor)
	balances, _ := ledgerFromAudit(t, export)
	if balances["clearing:offline"] != o.PriceFen || balances["payable:offline-refunds"] != -o.PriceFen || balances["revenue:certificates"] != 0 {
		t.Fatalf("before the payout the counter holds the money and owes it: %v", balances)
	}

	// Refusals: a wrong amount (recorded), a bad reference, a reference already used.
	_, err = pdesk.ConfirmRefundPayout(bg, &hufuv1.ConfirmRefundPayoutRequest{OrderId: o.Id, OperatorReference: "BANK-OUT-0001", AmountFen: o.PriceFen - 100})
	wantCode(t, err, codes.InvalidArgument, "amount_fen")
	_, err = pdesk.ConfirmRefundPayout(bg, &hufuv1.ConfirmRefundPayoutRequest{OrderId: o.Id, OperatorReference: "退款 1", AmountFen: o.PriceFen})
	wantCode(t, err, codes.InvalidArgument, "operator_reference")
	_, err = pdesk.ConfirmRefundPayout(bg, &hufuv1.ConfirmRefundPayoutRequest{OrderId: "0123456789abcdef012345", OperatorReference: "BANK-OUT-0001", AmountFen: o.PriceFen})
	wantCode(t, err, codes.NotFound, "")

	// Concurrent confirmations of one payout: one entry.
	const n = 6
	var wg sync.WaitGroup
	errs := make([]error, n)
	outs := make([]*hufuv1.OfflinePayment, n)
	for i := range n {
		wg.Go(func() {
			r, err := pdesk.ConfirmRefundPayout(bg, &hufuv1.ConfirmRefundPayoutRequest{OrderId: o.Id, OperatorReference: "BANK-OUT-0001", AmountFen: o.PriceFen})
			errs[i] = err
			if err == nil {
				outs[i] = r.Payment
			}
		})
	}
	wg.Wait()
	for i := range n {
		if errs[i] != nil || outs[i].State != hufuv1.OfflinePaymentState_OFFLINE_PAYMENT_STATE_REFUNDED || outs[i].PayoutReference != "BANK-OUT-0001" ||
			outs[i].PayoutEntryId == "" || outs[i].PayoutEntryId != outs[0].PayoutEntryId || outs[i].RefundedAt == nil {
			t.Fatalf("payout %d: %v %v", i, outs[i], errs[i])
		}
	}
	_, err = pdesk.ConfirmRefundPayout(bg, &hufuv1.ConfirmRefundPayoutRequest{OrderId: o.Id, OperatorReference: "BANK-OUT-0002", AmountFen: o.PriceFen})
	if statusCode(err) != codes.FailedPrecondition || !strings.Contains(errMessage(err), "BANK-OUT-0001") {
		t.Fatalf("a second payout: %v", err)
	}
	if due, _ := pdesk.ListRefundsDue(bg, &hufuv1.ListRefundsDueRequest{}); len(due.Payments) != 0 {
		t.Fatalf("still owed after the payout: %v", due.Payments)
	}

	// The person is told; the books are square; every step is in the audit log.
	msgs, err := p.certs.ListMessages(bg, &hufuv1.ListMessagesRequest{})
	if err != nil {
		t.Fatal(err)
	}
	told := false
	for _, m := range msgs.Messages {
		told = told || (m.Title == "退款已退回" && strings.Contains(m.Body, "BANK-OUT-0001"))
	}
	if !told {
		t.Fatalf("no payout message: %v", msgs.Messages)
	}
	export = a.auditExport(auditor)
	balances, lines := ledgerFromAudit(t, export)
	for _, account := range []string{"clearing:offline", "payable:offline-refunds", "revenue:certificates"} {
		if balances[account] != 0 {
			t.Errorf("%s after the payout: %d", account, balances[account])
		}
	}
	if es := entriesOf(lines, o.Id); len(es) != 3 || es[2].kind != "payout" || es[2].debit != "payable:offline-refunds" || es[2].credit != "clearing:offline" {
		t.Fatalf("entries of the order: %+v", es)
	}
	for _, want := range []string{`"action":"payment.offline.refund-due"`, `"action":"payment.offline.payout","subject":"p/offline/` + o.Id + `","outcome":"ok"`,
		`"action":"payment.offline.payout","subject":"p/offline/` + o.Id + `","outcome":"denied"`} {
		if !strings.Contains(string(export), want) {
			t.Errorf("the audit log lacks %s", want)
		}
	}
}
