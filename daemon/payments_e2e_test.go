package daemon_test

import (
	"bufio"
	"bytes"
	"encoding/json"
	"fmt"
	"net/http"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"testing"

	"github.com/hufu-hsm/hufu/admin"
	hufuv1 "github.com/hufu-hsm/hufu/api/hufu/v1"
	"github.com/hufu-hsm/hufu/client"
	"github.com/hufu-hsm/hufu/daemon/config"
	"github.com/hufu-hsm/hufu/daemon/devpki"
	"google.golang.org/grpc/codes"
)

// payAppliance is a certificate appliance whose development CLI certificate works the
// review and the payment desks, with an auditor's token for the audit export. After the
// test the ledger must balance.
func payAppliance(t *testing.T) (*certAppl, string) {
	t.Helper()
	auditor, hash, err := admin.NewToken()
	if err != nil {
		t.Fatal(err)
	}
	a := certAppliance(t, func(c *config.Config) {
		c.SystemClients = []config.SystemClient{{Name: devpki.CLIClientName, Services: []string{"hufu.v1.ReviewService", "hufu.v1.PaymentDeskService"}}}
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

// payDesk connects as the operators' payment desk with the CLI client certificate.
func (a *appliance) payDesk() hufuv1.PaymentDeskServiceClient {
	a.t.Helper()
	tls := filepath.Join(a.cfg.DataDir, "tls")
	conn, err := client.Dial(client.Config{Addr: a.addr, CAFile: filepath.Join(tls, "ca.pem"), ServerName: "localhost",
		ClientCertFile: filepath.Join(tls, "cli.pem"), ClientKeyFile: filepath.Join(tls, "cli-key.pem"), DeviceID: "desk-0003"})
	if err != nil {
		a.t.Fatal(err)
	}
	a.t.Cleanup(func() { conn.Close() })
	return hufuv1.NewPaymentDeskServiceClient(conn.ClientConn())
}

// approved applies for a certificate and has the review desk approve it: awaiting payment.
func (p *applicant) approved(desk hufuv1.ReviewServiceClient) *hufuv1.Order {
	p.t.Helper()
	o := p.apply()
	if _, err := desk.ApproveOrder(bg, &hufuv1.ApproveOrderRequest{OrderId: o.Id}); err != nil {
		p.t.Fatalf("approve: %v", err)
	}
	return o
}

// ledgerLine is one ledger.post audit record.
type ledgerLine struct {
	entry, kind, debit, credit, order, reverses string
	amount                                      int64
}

// ledgerFromAudit sums the ledger explicitly, from the audit log's record of every entry:
// the balance (debits - credits) of each account, and the entries.
func ledgerFromAudit(t *testing.T, export []byte) (map[string]int64, []ledgerLine) {
	t.Helper()
	balances := map[string]int64{}
	var lines []ledgerLine
	sc := bufio.NewScanner(bytes.NewReader(export))
	sc.Buffer(make([]byte, 1<<20), 1<<20)
	for sc.Scan() {
		var rec struct {
			Action  string            `json:"action"`
			Details map[string]string `json:"details"`
		}
		if err := json.Unmarshal(sc.Bytes(), &rec); err != nil {
			t.Fatal(err)
		}
		if rec.Action != "ledger.post" {
			continue
		}
		d := rec.Details
		amount, err := strconv.ParseInt(d["amount_fen"], 10, 64)
		if err != nil || amount <= 0 {
			t.Fatalf("ledger.post without a positive amount: %v", d)
		}
		balances[d["debit"]] += amount
		balances[d["credit"]] -= amount
		lines = append(lines, ledgerLine{entry: d["entry"], kind: d["kind"], debit: d["debit"], credit: d["credit"], order: d["order"],
			reverses: d["reverses"], amount: amount})
	}
	var sum int64
	for _, b := range balances {
		sum += b
	}
	if sum != 0 {
		t.Fatalf("the ledger's balances sum to %d, not 0: %v", sum, balances)
	}
	return balances, lines
}

func entriesOf(lines []ledgerLine, order string) []ledgerLine {
	var out []ledgerLine
	for _, l := range lines {
		if l.order == order {
			out = append(out, l)
		}
	}
	return out
}

var offlineRefRE = regexp.MustCompile(`^HP[23456789ABCDEFGHJKMNPQRSTUVWXYZ]{8}$`)

func TestPaymentsEndToEnd(t *testing.T) {
	a, auditor := payAppliance(t)
	review, desk := a.desk(), a.payDesk()
	p := newApplicant(t, a, phone, "device-0001", "key-pay-0001")
	pay := hufuv1.NewPaymentServiceClient(p.conn.ClientConn())

	// The phone asks which methods its platform offers.
	ms, err := pay.ListPaymentMethods(bg, &hufuv1.ListPaymentMethodsRequest{Platform: "demo"})
	if err != nil || len(ms.Methods) != 2 || ms.Methods[0].Id != "dev" || ms.Methods[1].Id != "offline" || !ms.Methods[1].Offline {
		t.Fatalf("methods: %v %v", ms, err)
	}
	_, err = pay.ListPaymentMethods(bg, &hufuv1.ListPaymentMethodsRequest{Platform: "nowhere"})
	wantCode(t, err, codes.InvalidArgument, "platform")

	// Paid by the development provider: one entry; the same payment reported again: still one.
	o1 := p.approved(review)
	first, err := p.pay(o1.Id, "pay-"+o1.Id)
	if err != nil {
		t.Fatal(err)
	}
	again, err := p.pay(o1.Id, "pay-"+o1.Id)
	if err != nil || again.Certificate.Serial != first.Certificate.Serial {
		t.Fatalf("repeated payment: %v %v", again, err)
	}
	_, err = p.certs.PayOrder(bg, &hufuv1.PayOrderRequest{OrderId: o1.Id, Method: "wechat", IdempotencyKey: "pay-other"})
	if statusCode(err) != codes.FailedPrecondition {
		t.Fatalf("paying a paid order with another key: %v", err)
	}

	// Paid offline: instructions, pending, confirmed at the desk.
	o2 := p.approved(review)
	_, err = p.certs.PayOrder(bg, &hufuv1.PayOrderRequest{OrderId: o2.Id, Method: "offline", IdempotencyKey: "pay-" + o2.Id})
	if statusCode(err) != codes.FailedPrecondition || !strings.Contains(errMessage(err), "PayOffline") {
		t.Fatalf("PayOrder offline: %v", err)
	}
	_, err = p.certs.PayOrder(bg, &hufuv1.PayOrderRequest{OrderId: o2.Id, Method: "wechat", IdempotencyKey: "pay-" + o2.Id})
	wantCode(t, err, codes.InvalidArgument, "method")
	ins, err := pay.PayOffline(bg, &hufuv1.PayOfflineRequest{OrderId: o2.Id})
	if err != nil {
		t.Fatal(err)
	}
	in := ins.Payment
	if !offlineRefRE.MatchString(in.Reference) || in.AmountFen != o2.PriceFen || in.Account.GetAccountNumber() != "6222020000000000000" ||
		in.State != hufuv1.OfflinePaymentState_OFFLINE_PAYMENT_STATE_PENDING || in.UserId != "" {
		t.Fatalf("instructions: %v", in)
	}
	if again, err := pay.PayOffline(bg, &hufuv1.PayOfflineRequest{OrderId: o2.Id}); err != nil || again.Payment.Reference != in.Reference {
		t.Fatalf("asking again: %v %v", again, err)
	}
	if got, _ := p.certs.GetOrder(bg, &hufuv1.GetOrderRequest{OrderId: o2.Id}); got.Order.Status != hufuv1.OrderStatus_ORDER_STATUS_AWAITING_PAYMENT {
		t.Fatalf("the order is %v while the payment is pending", got.Order.Status)
	}
	pending, err := desk.ListPendingPayments(bg, &hufuv1.ListPendingPaymentsRequest{})
	if err != nil || len(pending.Payments) != 1 || pending.Payments[0].Reference != in.Reference || pending.Payments[0].UserId == "" {
		t.Fatalf("pending: %v %v", pending, err)
	}
	// Refusals name the field; a wrong amount is refused (and recorded).
	_, err = desk.ConfirmOfflinePayment(bg, &hufuv1.ConfirmOfflinePaymentRequest{OrderId: o2.Id, OperatorReference: "BANK-0001", AmountFen: o2.PriceFen - 1})
	wantCode(t, err, codes.InvalidArgument, "amount_fen")
	_, err = desk.ConfirmOfflinePayment(bg, &hufuv1.ConfirmOfflinePaymentRequest{OrderId: o2.Id, OperatorReference: "银行 1", AmountFen: o2.PriceFen})
	wantCode(t, err, codes.InvalidArgument, "operator_reference")
	_, err = desk.ConfirmOfflinePayment(bg, &hufuv1.ConfirmOfflinePaymentRequest{OrderId: o2.Id, OperatorReference: "BANK-0001"})
	wantCode(t, err, codes.InvalidArgument, "amount_fen")
	// Concurrent confirmations of the same receipt: one payment, one certificate, one entry.
	const n = 8
	var wg sync.WaitGroup
	serials, errs := make([]string, n), make([]error, n)
	for i := range n {
		wg.Go(func() {
			r, err := desk.ConfirmOfflinePayment(bg, &hufuv1.ConfirmOfflinePaymentRequest{OrderId: o2.Id, OperatorReference: "BANK-0001", AmountFen: o2.PriceFen})
			errs[i] = err
			if err == nil {
				serials[i] = r.Serial
			}
		})
	}
	wg.Wait()
	for i := range n {
		if errs[i] != nil || serials[i] == "" || serials[i] != serials[0] {
			t.Fatalf("confirmation %d: %q %v (first %q)", i, serials[i], errs[i], serials[0])
		}
	}
	_, err = desk.ConfirmOfflinePayment(bg, &hufuv1.ConfirmOfflinePaymentRequest{OrderId: o2.Id, OperatorReference: "BANK-0002", AmountFen: o2.PriceFen})
	if statusCode(err) != codes.FailedPrecondition {
		t.Fatalf("confirming with another receipt: %v", err)
	}
	got, _ := p.certs.GetOrder(bg, &hufuv1.GetOrderRequest{OrderId: o2.Id})
	if got.Order.Status != hufuv1.OrderStatus_ORDER_STATUS_COMPLETED || got.Order.Serial != serials[0] {
		t.Fatalf("after the confirmation: %v", got.Order)
	}
	if pending, _ := desk.ListPendingPayments(bg, &hufuv1.ListPendingPaymentsRequest{}); len(pending.Payments) != 0 {
		t.Fatalf("still pending: %v", pending.Payments)
	}

	// The same receipt cannot pay a second order.
	o3 := p.approved(review)
	if _, err := pay.PayOffline(bg, &hufuv1.PayOfflineRequest{OrderId: o3.Id}); err != nil {
		t.Fatal(err)
	}
	_, err = desk.ConfirmOfflinePayment(bg, &hufuv1.ConfirmOfflinePaymentRequest{OrderId: o3.Id, OperatorReference: "BANK-0001", AmountFen: o3.PriceFen})
	if statusCode(err) != codes.FailedPrecondition || !strings.Contains(errMessage(err), "BANK-0001") {
		t.Fatalf("a receipt used twice: %v", err)
	}
	// A cancelled order's confirmation is refused and recorded; the payment leaves the list.
	if _, err := p.certs.CancelOrder(bg, &hufuv1.CancelOrderRequest{OrderId: o3.Id, Reason: "改用其他方式"}); err != nil {
		t.Fatal(err)
	}
	_, err = desk.ConfirmOfflinePayment(bg, &hufuv1.ConfirmOfflinePaymentRequest{OrderId: o3.Id, OperatorReference: "BANK-0003", AmountFen: o3.PriceFen})
	if statusCode(err) != codes.FailedPrecondition || !strings.Contains(errMessage(err), "cancelled") {
		t.Fatalf("confirming a cancelled order: %v", err)
	}
	if pending, _ := desk.ListPendingPayments(bg, &hufuv1.ListPendingPaymentsRequest{}); len(pending.Payments) != 0 {
		t.Fatalf("a cancelled order's payment is pending: %v", pending.Payments)
	}

	// Rejected with a reason; the payer may start again with a new reference.
	o4 := p.approved(review)
	in4, err := pay.PayOffline(bg, &hufuv1.PayOfflineRequest{OrderId: o4.Id})
	if err != nil {
		t.Fatal(err)
	}
	_, err = desk.RejectOfflinePayment(bg, &hufuv1.RejectOfflinePaymentRequest{OrderId: o4.Id})
	wantCode(t, err, codes.InvalidArgument, "reason")
	rej, err := desk.RejectOfflinePayment(bg, &hufuv1.RejectOfflinePaymentRequest{OrderId: o4.Id, Reason: "未收到款项"})
	if err != nil || rej.Payment.State != hufuv1.OfflinePaymentState_OFFLINE_PAYMENT_STATE_REJECTED {
		t.Fatalf("reject: %v %v", rej, err)
	}
	_, err = desk.ConfirmOfflinePayment(bg, &hufuv1.ConfirmOfflinePaymentRequest{OrderId: o4.Id, OperatorReference: "BANK-0004", AmountFen: o4.PriceFen})
	if statusCode(err) != codes.FailedPrecondition {
		t.Fatalf("confirming a rejected payment: %v", err)
	}
	restart, err := pay.PayOffline(bg, &hufuv1.PayOfflineRequest{OrderId: o4.Id})
	if err != nil || restart.Payment.Reference == in4.Payment.Reference || restart.Payment.State != hufuv1.OfflinePaymentState_OFFLINE_PAYMENT_STATE_PENDING {
		t.Fatalf("starting again: %v %v", restart, err)
	}

	// The books: checked by the appliance, and summed here from the audit log.
	check, err := desk.CheckLedger(bg, &hufuv1.CheckLedgerRequest{})
	if err != nil || !check.Balanced || check.Entries != 2 || check.DebitsFen != o1.PriceFen+o2.PriceFen {
		t.Fatalf("ledger check: %v %v", check, err)
	}
	export := a.auditExport(auditor)
	balances, lines := ledgerFromAudit(t, export)
	if len(lines) != 2 || len(entriesOf(lines, o1.Id)) != 1 || len(entriesOf(lines, o2.Id)) != 1 {
		t.Fatalf("entries: %+v", lines)
	}
	if balances["clearing:dev"] != o1.PriceFen || balances["clearing:offline"] != o2.PriceFen ||
		balances["revenue:certificates"] != -(o1.PriceFen+o2.PriceFen) || len(balances) != 3 {
		t.Fatalf("balances: %v", balances)
	}
	for _, want := range []string{`"action":"payment.offline.confirm","subject":"p/offline/` + o2.Id + `","outcome":"ok"`,
		`"action":"payment.offline.confirm","subject":"p/offline/` + o3.Id + `","outcome":"denied"`,
		`"action":"payment.offline.reject"`, `"action":"payment.offline.start"`} {
		if !strings.Contains(string(export), want) {
			t.Errorf("the audit log lacks %s", want)
		}
	}
}

// TestRacingPaymentsAreBookedOnce: payments of one order with different idempotency keys race;
// one completes it, and every other charge that was taken is given back and booked as the
// charge and its reversing entry.
func TestRacingPaymentsAreBookedOnce(t *testing.T) {
	a, auditor := payAppliance(t)
	p := newApplicant(t, a, phone, "device-0001", "key-pay-0002")
	o := p.approved(a.desk())
	const n = 8
	var wg sync.WaitGroup
	errs := make([]error, n)
	for i := range n {
		wg.Go(func() { _, errs[i] = p.pay(o.Id, fmt.Sprintf("race-pay-%d", i)) })
	}
	wg.Wait()
	ok := 0
	for _, err := range errs {
		switch statusCode(err) {
		case codes.OK:
			ok++
		case codes.FailedPrecondition:
		default:
			t.Fatalf("payment: %v", err)
		}
	}
	if ok != 1 {
		t.Fatalf("%d payments completed the order", ok)
	}
	balances, lines := ledgerFromAudit(t, a.auditExport(auditor))
	var payments, refunds int
	charged := map[string]bool{}
	for _, l := range entriesOf(lines, o.Id) {
		switch l.kind {
		case "payment":
			payments++
			charged[l.entry] = true
		case "refund":
			refunds++
			if l.debit != "revenue:certificates" || l.credit != "clearing:dev" || l.amount != o.PriceFen {
				t.Fatalf("a refund is not the reversing entry: %+v", l)
			}
		}
	}
	for _, l := range lines {
		if l.kind == "refund" && !charged[l.reverses] {
			t.Fatalf("refund %s reverses %q, not a payment of the order", l.entry, l.reverses)
		}
	}
	if payments-refunds != 1 || balances["clearing:dev"] != o.PriceFen {
		t.Fatalf("%d payments, %d refunds, clearing:dev %d (price %d)", payments, refunds, balances["clearing:dev"], o.PriceFen)
	}
	t.Logf("%d racing payments: %d charges given back", n, refunds)
}

// TestPaymentDeskNeedsItsPermission: a system client without PaymentDeskService, and a
// phone, are refused at the desk.
func TestPaymentDeskNeedsItsPermission(t *testing.T) {
	a := certAppliance(t) // the CLI certificate may use the review desk only
	desk := a.payDesk()
	_, err := desk.ListPendingPayments(bg, &hufuv1.ListPendingPaymentsRequest{})
	if statusCode(err) != codes.PermissionDenied {
		t.Fatalf("desk without the permission: %v", err)
	}
	_, err = desk.ConfirmOfflinePayment(bg, &hufuv1.ConfirmOfflinePaymentRequest{OrderId: "0123456789abcdef012345", OperatorReference: "X1", AmountFen: 1})
	if statusCode(err) != codes.PermissionDenied {
		t.Fatalf("confirm without the permission: %v", err)
	}
	p := newApplicant(t, a, phone, "device-0001", "key-pay-0003")
	_, err = hufuv1.NewPaymentDeskServiceClient(p.conn.ClientConn()).ListPendingPayments(bg, &hufuv1.ListPendingPaymentsRequest{})
	if c := statusCode(err); c != codes.PermissionDenied && c != codes.Unauthenticated {
		t.Fatalf("a phone at the desk: %v", err)
	}
}

// TestOnlinePaymentClosesAPendingOfflinePayment: the payer starts an offline payment, then
// pays online; the offline payment leaves the desk's list and its confirmation is refused.
func TestOnlinePaymentClosesAPendingOfflinePayment(t *testing.T) {
	a, _ := payAppliance(t)
	desk := a.payDesk()
	p := newApplicant(t, a, phone, "device-0001", "key-pay-0004")
	o := p.approved(a.desk())
	if _, err := hufuv1.NewPaymentServiceClient(p.conn.ClientConn()).PayOffline(bg, &hufuv1.PayOfflineRequest{OrderId: o.Id}); err != nil {
		t.Fatal(err)
	}
	if _, err := p.pay(o.Id, "pay-"+o.Id); err != nil {
		t.Fatal(err)
	}
	if pending, err := desk.ListPendingPayments(bg, &hufuv1.ListPendingPaymentsRequest{}); err != nil || len(pending.Payments) != 0 {
		t.Fatalf("pending after an online payment: %v %v", pending, err)
	}
	_, err := desk.ConfirmOfflinePayment(bg, &hufuv1.ConfirmOfflinePaymentRequest{OrderId: o.Id, OperatorReference: "BANK-0009", AmountFen: o.PriceFen})
	if statusCode(err) != codes.FailedPrecondition {
		t.Fatalf("confirming a closed offline payment: %v", err)
	}
	if r, err := desk.CheckLedger(bg, &hufuv1.CheckLedgerRequest{}); err != nil || r.Entries != 1 {
		t.Fatalf("one payment, one entry: %v %v", r, err)
	}
}

// TestGrantingThePaymentDeskNeedsASecondOfficer: registering a system client with
// PaymentDeskService is a request that a second security officer must approve.
func TestGrantingThePaymentDeskNeedsASecondOfficer(t *testing.T) {
	a := startAdminAppliance(t, nil)
	req, _ := http.NewRequest("POST", a.adminURL+"/system-clients", strings.NewReader(`{"name":"cashier-1","services":["hufu.v1.PaymentDeskService"]}`))
	req.Header.Set("Authorization", "Bearer "+a.tokens[admin.SecurityOfficer])
	resp, err := a.http.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var body struct{ Approval admin.Approval }
	if err := json.NewDecoder(resp.Body).Decode(&body); err != nil || resp.StatusCode != http.StatusAccepted ||
		body.Approval.State != admin.ApprovalPending || len(body.Approval.Desks) != 1 || body.Approval.Desks[0] != "payment" {
		t.Fatalf("register a payment desk: %d %+v %v", resp.StatusCode, body, err)
	}
}
