package daemon_test

import (
	"fmt"
	"io"
	"net/http"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/hufu-hsm/hufu/admin"
	hufuv1 "github.com/hufu-hsm/hufu/api/hufu/v1"
	"github.com/hufu-hsm/hufu/client"
	"github.com/hufu-hsm/hufu/daemon/config"
	"google.golang.org/grpc/codes"
)

// transferAppliance is a certificate appliance whose development CLI certificate may also
// work the reconciliation desk, with an auditor's token for the admin surface.
func transferAppliance(t *testing.T) (*certAppl, string) {
	auditor, hash, err := admin.NewToken()
	if err != nil {
		t.Fatal(err)
	}
	return certAppliance(t, func(c *config.Config) {
		c.SystemClients[0].Services = append(c.SystemClients[0].Services, "hufu.v1.ReconciliationService")
		c.Admin.Tokens = []config.AdminToken{{Name: "alice", Role: string(admin.Auditor), SHA256: hash}}
	}), auditor
}

// auditExport reads the whole audit log from the admin surface.
func (a *appliance) auditExport(token string) []byte {
	a.t.Helper()
	req, _ := http.NewRequest("GET", a.live.AdminURL()+"/audit/export", nil)
	req.Header.Set("Authorization", "Bearer "+token)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		a.t.Fatal(err)
	}
	defer resp.Body.Close()
	export, err := io.ReadAll(resp.Body)
	if err != nil || resp.StatusCode != http.StatusOK {
		a.t.Fatalf("audit export: %s %v", resp.Status, err)
	}
	return export
}

// recon connects as the operators' reconciliation desk with the CLI client certificate.
func (a *appliance) recon() hufuv1.ReconciliationServiceClient {
	a.t.Helper()
	tls := filepath.Join(a.cfg.DataDir, "tls")
	conn, err := client.Dial(client.Config{Addr: a.addr, CAFile: filepath.Join(tls, "ca.pem"), ServerName: "localhost",
		ClientCertFile: filepath.Join(tls, "cli.pem"), ClientKeyFile: filepath.Join(tls, "cli-key.pem"), DeviceID: "desk-0002"})
	if err != nil {
		a.t.Fatal(err)
	}
	a.t.Cleanup(func() { conn.Close() })
	return hufuv1.NewReconciliationServiceClient(conn.ClientConn())
}

func (m *member) applyTransfer(uscc, name, requestID, tail string) (*hufuv1.CorporateTransfer, error) {
	resp, err := m.ent.ApplyCorporateTransfer(bg, &hufuv1.ApplyCorporateTransferRequest{RequestId: requestID,
		Enterprise: details(m.t, uscc, name), AccountTail: tail,
		Letter: &hufuv1.ScannedLetter{FileName: "letter.png", MediaType: "image/png", Content: pngBytes(m.t)}})
	if err != nil {
		return nil, err
	}
	return resp.Transfer, nil
}

var referenceRE = regexp.MustCompile(`^HF[23456789ABCDEFGHJKMNPQRSTUVWXYZ]{6}$`)

func yuanOf(fen int64) string { return fmt.Sprintf("%d.%02d", fen/100, fen%100) }

// today is the appliance's date as a Chinese bank statement writes it.
func (a *appliance) today() string {
	return a.clock.Now().In(time.FixedZone("CST", 8*3600)).Format(time.DateOnly)
}

func importCSV(t *testing.T, rec hufuv1.ReconciliationServiceClient, csv string) *hufuv1.ImportStatementResponse {
	t.Helper()
	resp, err := rec.ImportStatement(bg, &hufuv1.ImportStatementRequest{Csv: []byte(csv)})
	if err != nil {
		t.Fatalf("import: %v", err)
	}
	return resp
}

func enterpriseNotices(t *testing.T, m *member, title string) int {
	t.Helper()
	msgs, err := m.certs.ListMessages(bg, &hufuv1.ListMessagesRequest{PageSize: 100})
	if err != nil {
		t.Fatal(err)
	}
	n := 0
	for _, msg := range msgs.Messages {
		if msg.Kind == hufuv1.MessageKind_MESSAGE_KIND_ENTERPRISE_NOTICE && msg.Title == title {
			n++
		}
	}
	return n
}

// TestCorporateTransferVerifiesAnAdministrator: apply → partial lines reported and not
// applied → the right line verifies → the applicant is the unclaimed administrator → the
// verification order is paid without a CA → joins wait for the claim → claim → approve.
func TestCorporateTransferVerifiesAnAdministrator(t *testing.T) {
	a, auditor := transferAppliance(t)
	desk, rec := a.desk(), a.recon()
	app := newMember(t, a, "13800138101", "xfer-dev-01")
	const name = "福州对公科技有限公司"

	// Bad inputs name the field.
	for _, tc := range []struct {
		name, field string
		edit        func(*hufuv1.ApplyCorporateTransferRequest)
	}{
		{"bad request id", "request_id", func(r *hufuv1.ApplyCorporateTransferRequest) { r.RequestId = "x" }},
		{"short account tail", "account_tail", func(r *hufuv1.ApplyCorporateTransferRequest) { r.AccountTail = "12345" }},
		{"letters in the tail", "account_tail", func(r *hufuv1.ApplyCorporateTransferRequest) { r.AccountTail = "12345a" }},
		{"no letter", "letter", func(r *hufuv1.ApplyCorporateTransferRequest) { r.Letter = nil }},
		{"letter not a scan", "letter", func(r *hufuv1.ApplyCorporateTransferRequest) { r.Letter.Content = []byte("GIF89a....") }},
		{"corrupted USCC", "enterprise.uscc", func(r *hufuv1.ApplyCorporateTransferRequest) { r.Enterprise.Uscc = "91350100M000100Y44" }},
		{"no licence", "enterprise.licence", func(r *hufuv1.ApplyCorporateTransferRequest) { r.Enterprise.Licence = nil }},
	} {
		t.Run(tc.name, func(t *testing.T) {
			req := &hufuv1.ApplyCorporateTransferRequest{RequestId: "xfer-bad-input", Enterprise: details(t, usccA, name), AccountTail: "654321",
				Letter: &hufuv1.ScannedLetter{FileName: "letter.png", MediaType: "image/png", Content: pngBytes(t)}}
			tc.edit(req)
			_, err := app.ent.ApplyCorporateTransfer(bg, req)
			wantCode(t, err, codes.InvalidArgument, tc.field)
		})
	}

	tr, err := app.applyTransfer(usccA, name, "xfer-apply-0001", "654321")
	if err != nil {
		t.Fatalf("apply: %v", err)
	}
	want := a.cfg.Enterprises.Transfer
	if tr.State != hufuv1.TransferState_TRANSFER_STATE_AWAITING_TRANSFER || tr.AmountFen < 1 || tr.AmountFen > 99 ||
		!referenceRE.MatchString(tr.Reference) || tr.ReceivingAccount.AccountNumber != want.AccountNumber ||
		tr.ReceivingAccount.AccountName != want.AccountName || tr.ReceivingAccount.Bank != want.Bank ||
		tr.ExpiresAt.AsTime().Sub(tr.CreatedAt.AsTime()) != 7*24*time.Hour || len(tr.LetterSha256) != 64 {
		t.Fatalf("application: %v", tr)
	}
	again, err := app.applyTransfer(usccA, name, "xfer-apply-0001", "654321")
	if err != nil || again.Id != tr.Id || again.AmountFen != tr.AmountFen || again.Reference != tr.Reference {
		t.Fatalf("request_id is an idempotency key: %v %v", again, err)
	}
	_, err = app.applyTransfer(usccA, name, "xfer-apply-0002", "654321")
	wantCode(t, err, codes.FailedPrecondition, "")
	if n := enterpriseNotices(t, app, "对公打款认证申请已提交"); n != 1 {
		t.Fatalf("%d application notices", n)
	}

	// The desk is for system clients only, and system clients are not users.
	_, err = hufuv1.NewReconciliationServiceClient(app.conn.ClientConn()).ListTransfers(bg, &hufuv1.ListTransfersRequest{})
	if c := statusCode(err); c != codes.Unauthenticated && c != codes.PermissionDenied {
		t.Fatalf("a user at the desk: %v", err)
	}
	_, err = hufuv1.NewReconciliationServiceClient(app.conn.ClientConn()).ConfirmTransfer(bg, &hufuv1.ConfirmTransferRequest{TransferId: tr.Id, Note: "mine"})
	if c := statusCode(err); c != codes.Unauthenticated && c != codes.PermissionDenied {
		t.Fatalf("a user confirming: %v", err)
	}
	tls := filepath.Join(a.cfg.DataDir, "tls")
	sys, err := client.Dial(client.Config{Addr: a.addr, CAFile: filepath.Join(tls, "ca.pem"), ServerName: "localhost",
		ClientCertFile: filepath.Join(tls, "cli.pem"), ClientKeyFile: filepath.Join(tls, "cli-key.pem"), DeviceID: "desk-0003"})
	if err != nil {
		t.Fatal(err)
	}
	defer sys.Close()
	_, err = hufuv1.NewEnterpriseServiceClient(sys.ClientConn()).ListCorporateTransfers(bg, &hufuv1.ListCorporateTransfersRequest{})
	if c := statusCode(err); c != codes.Unauthenticated && c != codes.PermissionDenied {
		t.Fatalf("the desk as a user: %v", err)
	}
	listed, err := rec.ListTransfers(bg, &hufuv1.ListTransfersRequest{})
	if err != nil || len(listed.Transfers) != 1 || listed.Transfers[0].Id != tr.Id {
		t.Fatalf("desk list: %v %v", listed, err)
	}

	// A malformed statement is refused whole, each bad line named by line and column.
	_, err = rec.ImportStatement(bg, &hufuv1.ImportStatementRequest{Csv: []byte("date,amount,payer_account,payer_name,remark\n" +
		a.today() + ",0.375,6222000000654321," + name + ",x\n" +
		"2024/01/02,0.37,6222000000654321," + name + ",x\n" +
		a.today() + ",0.37,62-22," + name + ",x\n" +
		a.today() + ",0.37,6222000000654321,x\n")})
	wantCode(t, err, codes.InvalidArgument, "csv")
	for _, part := range []string{"line 2, column 2 (amount): \"0.375\" has more than 2 decimals", "line 3, column 1 (date)",
		"line 4, column 3 (payer_account)", "line 5: 4 fields"} {
		if !strings.Contains(errMessage(err), part) {
			t.Fatalf("refusal %q does not say %q", errMessage(err), part)
		}
	}

	// Partial matches are reported and not applied.
	other := tr.AmountFen%99 + 1
	partial := importCSV(t, rec, "\ufeffdate,amount,payer_account,payer_name,remark\n"+
		a.today()+","+yuanOf(tr.AmountFen)+",6222000000111111,"+name+",对公认证 "+tr.Reference+"\n"+ // wrong tail
		a.today()+","+yuanOf(other)+",6222000000654321,"+name+","+strings.ToLower(tr.Reference)+"\n"+ // wrong amount
		a.today()+","+yuanOf(tr.AmountFen)+",6222000000654321,"+name+",货款\n"+ // no reference
		// The applicant's own account, ending in the digits the applicant gave: the bank's
		// payer name is not the enterprise's, so nothing verifies automatically.
		a.today()+","+yuanOf(tr.AmountFen)+",6222000000654321,李某某,对公认证 "+tr.Reference+"\n"+
		a.today()+",1234.50,6222000000999999,某公司,其他来款\n")
	if partial.Partial != 4 || partial.Unmatched != 1 || partial.Matched != 0 {
		t.Fatalf("partial import: %v", partial)
	}
	for i, want := range []string{"account_tail", "amount", "reference", "payer_name"} {
		l := partial.Lines[i]
		if l.Line != uint32(i+2) || l.TransferId != tr.Id || !slices.Equal(l.Mismatches, []string{want}) {
			t.Fatalf("line %d: %v, want mismatch %s", i+2, l, want)
		}
	}
	if partial.Lines[4].AmountFen != 123450 {
		t.Fatalf("money is fen: %v", partial.Lines[4])
	}
	_, err = app.ent.GetEnterprise(bg, &hufuv1.GetEnterpriseRequest{Uscc: usccA})
	wantCode(t, err, codes.NotFound, "")

	// The line with amount, tail and reference verifies: the applicant is the administrator,
	// not yet claimed.
	line := a.today() + "," + yuanOf(tr.AmountFen) + ",6222000000654321,福州对公科技 有限公司," + "认证 " + tr.Reference + " 福州对公\n"
	matched := importCSV(t, rec, line)
	if matched.Matched != 1 || matched.Lines[0].TransferId != tr.Id {
		t.Fatalf("matching import: %v", matched)
	}
	got, err := app.ent.GetCorporateTransfer(bg, &hufuv1.GetCorporateTransferRequest{TransferId: tr.Id})
	if err != nil || got.Transfer.State != hufuv1.TransferState_TRANSFER_STATE_VERIFIED || got.Transfer.Role != hufuv1.MemberRole_MEMBER_ROLE_ADMIN ||
		got.Transfer.VerifiedVia != "statement" || got.Transfer.OrderId == "" {
		t.Fatalf("after matching: %v %v", got, err)
	}
	ent, err := app.ent.GetEnterprise(bg, &hufuv1.GetEnterpriseRequest{Uscc: usccA})
	if err != nil || ent.Role != hufuv1.MemberRole_MEMBER_ROLE_ADMIN || ent.Enterprise.AdminClaimed || ent.Enterprise.Name != name ||
		ent.Enterprise.LegalRepIdMasked != "110***********002X" || ent.Enterprise.CertSerial != "" {
		t.Fatalf("enterprise after verification: %v %v", ent, err)
	}
	// Re-importing matches nothing twice; so does the same line twice in one statement.
	dup := importCSV(t, rec, line+line)
	if dup.Matched != 0 || dup.Duplicate != 2 {
		t.Fatalf("re-import: %v", dup)
	}
	_, err = rec.ConfirmTransfer(bg, &hufuv1.ConfirmTransferRequest{TransferId: tr.Id, Note: "again"})
	wantCode(t, err, codes.FailedPrecondition, "")
	if n := enterpriseNotices(t, app, "对公打款认证审核通过"); n != 1 {
		t.Fatalf("%d verification notices", n)
	}

	// The enterprise-verification order awaits 确认支付; paying it needs no CA.
	orders, err := app.certs.ListOrders(bg, &hufuv1.ListOrdersRequest{})
	if err != nil || len(orders.Orders) != 1 || orders.Orders[0].Id != got.Transfer.OrderId ||
		orders.Orders[0].Kind != hufuv1.OrderKind_ORDER_KIND_ENTERPRISE_VERIFICATION || orders.Orders[0].CertKind != "verification" ||
		orders.Orders[0].Status != hufuv1.OrderStatus_ORDER_STATUS_AWAITING_PAYMENT || orders.Orders[0].EnterpriseUscc != usccA {
		t.Fatalf("orders: %v %v", orders, err)
	}
	_, err = app.certs.CancelOrder(bg, &hufuv1.CancelOrderRequest{OrderId: got.Transfer.OrderId, Reason: "不要了"})
	wantCode(t, err, codes.FailedPrecondition, "")
	paid, err := app.pay(got.Transfer.OrderId, "pay-verification-1")
	if err != nil || paid.Order.Status != hufuv1.OrderStatus_ORDER_STATUS_COMPLETED || paid.Certificate != nil {
		t.Fatalf("pay verification: %v %v", paid, err)
	}
	if again, err := app.pay(got.Transfer.OrderId, "pay-verification-1"); err != nil || again.Order.Status != hufuv1.OrderStatus_ORDER_STATUS_COMPLETED {
		t.Fatalf("pay again with the same key: %v %v", again, err)
	}
	_, err = app.pay(got.Transfer.OrderId, "pay-verification-2")
	wantCode(t, err, codes.FailedPrecondition, "")

	// Until the administrator claims, joins wait.
	joiner := newMember(t, a, "13800138102", "xfer-dev-02")
	j, err := joiner.join(&hufuv1.ApplyToJoinRequest{RequestId: "join-xfer-0001", Uscc: usccA, AdminName: "张三", AdminPhone: app.phone})
	if err != nil {
		t.Fatalf("join: %v", err)
	}
	_, err = app.ent.ApproveJoin(bg, &hufuv1.ApproveJoinRequest{ApplicationId: j.Id})
	wantCode(t, err, codes.FailedPrecondition, "")
	serial := app.claimAndPay(desk, usccA, name)
	ent, err = app.ent.GetEnterprise(bg, &hufuv1.GetEnterpriseRequest{Uscc: usccA})
	if err != nil || !ent.Enterprise.AdminClaimed || ent.Enterprise.CertSerial != serial || ent.Role != hufuv1.MemberRole_MEMBER_ROLE_ADMIN {
		t.Fatalf("after the claim: %v %v", ent, err)
	}
	if _, err := app.ent.ApproveJoin(bg, &hufuv1.ApproveJoinRequest{ApplicationId: j.Id}); err != nil {
		t.Fatalf("approve after the claim: %v", err)
	}

	// The audit log recorded every step without the payer's account.
	export := a.auditExport(auditor)
	for _, action := range []string{"enterprise.transfer.apply", "enterprise.statement.line", "enterprise.transfer.verify"} {
		if !strings.Contains(string(export), action) {
			t.Fatalf("no %s in the audit log", action)
		}
	}
	if strings.Contains(string(export), "6222000000654321") || strings.Contains(string(export), "654321") {
		t.Fatal("the payer's account is in the audit log")
	}
}

// TestCorporateTransferRaceAndStaff races a claim's payment against a transfer's
// verification on one unregistered enterprise (exactly one administrator results), then
// verifies a second applicant on the registered enterprise by hand (staff), and rejects a
// third.
func TestCorporateTransferRaceAndStaff(t *testing.T) {
	a, _ := transferAppliance(t)
	desk, rec := a.desk(), a.recon()
	const name = "北京对公建设有限公司"
	claimant := newMember(t, a, "13800138111", "xfer-dev-11")
	payer := newMember(t, a, "13800138112", "xfer-dev-12")
	o, err := claimant.claim(usccB, name, "claim-xfer-race")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := desk.ApproveOrder(bg, &hufuv1.ApproveOrderRequest{OrderId: o.Id}); err != nil {
		t.Fatal(err)
	}
	tr, err := payer.applyTransfer(usccB, name, "xfer-race-0001", "112233")
	if err != nil {
		t.Fatal(err)
	}
	var (
		wg             sync.WaitGroup
		payErr, conErr error
	)
	wg.Add(2)
	go func() { defer wg.Done(); _, payErr = claimant.pay(o.Id, "pay-race-0001") }()
	go func() {
		defer wg.Done()
		_, conErr = rec.ConfirmTransfer(bg, &hufuv1.ConfirmTransferRequest{TransferId: tr.Id, Note: "到账核对：网银回单"})
	}()
	wg.Wait()
	if conErr != nil {
		t.Fatalf("confirm: %v", conErr)
	}
	ms, err := payer.ent.ListMembers(bg, &hufuv1.ListMembersRequest{Uscc: usccB})
	if err != nil {
		t.Fatal(err)
	}
	admins := 0
	for _, m := range ms.Members {
		if m.Role == hufuv1.MemberRole_MEMBER_ROLE_ADMIN {
			admins++
		}
	}
	if admins != 1 {
		t.Fatalf("%d administrators after the race: %v", admins, ms.Members)
	}
	got, _ := payer.ent.GetCorporateTransfer(bg, &hufuv1.GetCorporateTransferRequest{TransferId: tr.Id})
	switch got.Transfer.Role {
	case hufuv1.MemberRole_MEMBER_ROLE_STAFF: // the claim was paid first
		if payErr != nil {
			t.Fatalf("the claim won but its payment failed: %v", payErr)
		}
	case hufuv1.MemberRole_MEMBER_ROLE_ADMIN: // the transfer was verified first
		wantCode(t, payErr, codes.FailedPrecondition, "")
	default:
		t.Fatalf("transfer after the race: %v", got.Transfer)
	}

	// A second applicant on the registered enterprise, verified by hand: staff.
	second := newMember(t, a, "13800138113", "xfer-dev-13")
	tr2, err := second.applyTransfer(usccB, name, "xfer-staff-0001", "445566")
	if err != nil {
		t.Fatal(err)
	}
	if tr2.AmountFen == tr.AmountFen {
		t.Fatalf("two live applications share an amount")
	}
	_, err = rec.ConfirmTransfer(bg, &hufuv1.ConfirmTransferRequest{TransferId: tr2.Id})
	wantCode(t, err, codes.InvalidArgument, "note")
	_, err = rec.ConfirmTransfer(bg, &hufuv1.ConfirmTransferRequest{TransferId: "00000000000000000000", Note: "x"})
	wantCode(t, err, codes.NotFound, "")
	ok, err := rec.ConfirmTransfer(bg, &hufuv1.ConfirmTransferRequest{TransferId: tr2.Id, Note: "到账核对：网银回单"})
	if err != nil || ok.Transfer.State != hufuv1.TransferState_TRANSFER_STATE_VERIFIED || ok.Transfer.Role != hufuv1.MemberRole_MEMBER_ROLE_STAFF ||
		ok.Transfer.VerifiedVia != "desk" {
		t.Fatalf("confirm by hand: %v %v", ok, err)
	}
	ent, err := second.ent.GetEnterprise(bg, &hufuv1.GetEnterpriseRequest{Uscc: usccB})
	if err != nil || ent.Role != hufuv1.MemberRole_MEMBER_ROLE_STAFF {
		t.Fatalf("second applicant: %v %v", ent, err)
	}
	verified, err := rec.ListTransfers(bg, &hufuv1.ListTransfersRequest{State: hufuv1.TransferState_TRANSFER_STATE_VERIFIED})
	if err != nil || len(verified.Transfers) != 2 {
		t.Fatalf("verified list: %v %v", verified, err)
	}

	// A third is rejected with a reason the applicant sees.
	third := newMember(t, a, "13800138114", "xfer-dev-14")
	tr3, err := third.applyTransfer(usccB, name, "xfer-reject-0001", "778899")
	if err != nil {
		t.Fatal(err)
	}
	_, err = rec.RejectTransfer(bg, &hufuv1.RejectTransferRequest{TransferId: tr3.Id})
	wantCode(t, err, codes.InvalidArgument, "reason")
	if _, err := rec.RejectTransfer(bg, &hufuv1.RejectTransferRequest{TransferId: tr3.Id, Reason: "授权书未盖公章"}); err != nil {
		t.Fatal(err)
	}
	got, err = third.ent.GetCorporateTransfer(bg, &hufuv1.GetCorporateTransferRequest{TransferId: tr3.Id})
	if err != nil || got.Transfer.State != hufuv1.TransferState_TRANSFER_STATE_REJECTED || got.Transfer.Reason != "授权书未盖公章" {
		t.Fatalf("rejected: %v %v", got, err)
	}
	// A rejected application's transfer arriving later verifies nothing.
	late := importCSV(t, rec, a.today()+","+yuanOf(tr3.AmountFen)+",6222000000778899,"+name+","+tr3.Reference+"\n")
	if late.Partial != 1 || !slices.Equal(late.Lines[0].Mismatches, []string{"state"}) {
		t.Fatalf("line for a rejected application: %v", late)
	}
	if n := enterpriseNotices(t, third, "对公打款认证未通过"); n != 1 {
		t.Fatalf("%d rejection notices", n)
	}
	// Nobody else sees an application.
	_, err = second.ent.GetCorporateTransfer(bg, &hufuv1.GetCorporateTransferRequest{TransferId: tr3.Id})
	wantCode(t, err, codes.NotFound, "")
}

// TestCorporateTransferExpiry: past the validity the application is expired, a transfer
// that arrives late does not verify, and the desk cannot confirm it.
func TestCorporateTransferExpiry(t *testing.T) {
	a, _ := transferAppliance(t)
	rec := a.recon()
	app := newMember(t, a, "13800138121", "xfer-dev-21")
	const name = "福州过期科技有限公司"
	tr, err := app.applyTransfer(usccA, name, "xfer-expiry-001", "135790")
	if err != nil {
		t.Fatal(err)
	}
	day := a.today()
	a.clock.Advance(7*24*time.Hour + time.Minute)
	a.signIn(app.conn, app.phone, app.device) // the session expired with the clock
	got, err := app.ent.GetCorporateTransfer(bg, &hufuv1.GetCorporateTransferRequest{TransferId: tr.Id})
	if err != nil || got.Transfer.State != hufuv1.TransferState_TRANSFER_STATE_EXPIRED {
		t.Fatalf("after the validity: %v %v", got, err)
	}
	expired, err := rec.ListTransfers(bg, &hufuv1.ListTransfersRequest{State: hufuv1.TransferState_TRANSFER_STATE_EXPIRED})
	if err != nil || len(expired.Transfers) != 1 {
		t.Fatalf("expired list: %v %v", expired, err)
	}
	awaiting, err := rec.ListTransfers(bg, &hufuv1.ListTransfersRequest{})
	if err != nil || len(awaiting.Transfers) != 0 {
		t.Fatalf("awaiting list: %v %v", awaiting, err)
	}
	// The credit dated within the validity but imported after it: not verified.
	late := importCSV(t, rec, day+","+yuanOf(tr.AmountFen)+",6222000000135790,"+name+","+tr.Reference+"\n")
	if late.Matched != 0 || late.Partial != 1 || !slices.Equal(late.Lines[0].Mismatches, []string{"expired"}) {
		t.Fatalf("late line: %v", late)
	}
	_, err = app.ent.GetEnterprise(bg, &hufuv1.GetEnterpriseRequest{Uscc: usccA})
	wantCode(t, err, codes.NotFound, "")
	_, err = rec.ConfirmTransfer(bg, &hufuv1.ConfirmTransferRequest{TransferId: tr.Id, Note: "迟到的款项"})
	wantCode(t, err, codes.FailedPrecondition, "")
	// The pending claim lapsed with it: the applicant may apply again.
	if _, err := app.applyTransfer(usccA, name, "xfer-expiry-002", "135790"); err != nil {
		t.Fatalf("apply again after expiry: %v", err)
	}
}
