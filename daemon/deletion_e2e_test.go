package daemon_test

import (
	"bytes"
	"path/filepath"
	"strings"
	"testing"

	"github.com/cockroachdb/pebble/v2"
	hufuv1 "github.com/hufu-hsm/hufu/api/hufu/v1"
	"github.com/hufu-hsm/hufu/daemon/accounts"
	"github.com/hufu-hsm/hufu/store/storepb"
	"google.golang.org/grpc/codes"
	"google.golang.org/protobuf/proto"
)

// TestAccountDeletionEndToEnd: a person with a bank card, a certificate, an open order and
// an enterprise membership is refused with each precondition named; once they are cleared
// a fresh SMS code deletes the account, its personal data is gone from the store, its
// tokens stop working and the number registers again as a new account.
func TestAccountDeletionEndToEnd(t *testing.T) {
	a := certAppliance(t)
	desk := a.desk()
	const (
		delPhone = "13912345678"
		delName  = "欧阳明月"
		delID    = "11010519491231002X"
		device   = "delete-dev-01"
		card     = "6222020200112233446"
	)
	admin := newMember(t, a, "13800138001", "admin-del-01")
	admin.claimAndPay(desk, usccA, "福州示范科技有限公司")

	conn := a.dial(device)
	signed := a.signIn(conn, delPhone, device)
	userID := signed.Account.Id
	if _, err := conn.Identity.VerifyWithCfca(bg, &hufuv1.VerifyWithCfcaRequest{Name: delName, IdNumber: delID}); err != nil {
		t.Fatal(err)
	}
	p := &applicant{t: t, conn: conn, key: createKey(t, conn, userID, "key-del-0001", "123456"), enc: createKey(t, conn, userID, "key-del-0001-enc", "123456"), certs: hufuv1.NewCertificateServiceClient(conn.ClientConn())}
	person := &member{applicant: p, userID: userID, device: device, phone: delPhone, ent: hufuv1.NewEnterpriseServiceClient(conn.ClientConn())}
	serial := p.issue(desk)
	open := p.apply()
	// A key never certified: its server share must not outlive the account either.
	createKey(t, conn, userID, "key-del-0002", "123456")
	cards := hufuv1.NewBankCardServiceClient(conn.ClientConn())
	bound, err := cards.BindBankCard(bg, &hufuv1.BindBankCardRequest{RequestId: "bind-del-00001", CardNumber: card, ReservedPhone: delPhone})
	must(t, err)
	app, err := person.join(&hufuv1.ApplyToJoinRequest{RequestId: "join-del-00001", Uscc: usccA, AdminName: "张三", AdminPhone: admin.phone})
	must(t, err)
	if _, err := admin.ent.ApproveJoin(bg, &hufuv1.ApproveJoinRequest{ApplicationId: app.Id}); err != nil {
		t.Fatal(err)
	}
	invoices := hufuv1.NewInvoiceServiceClient(conn.ClientConn())
	if _, err := invoices.AddInvoiceTitle(bg, &hufuv1.AddInvoiceTitleRequest{RequestId: "title-del-0001",
		Title: &hufuv1.InvoiceTitle{Kind: hufuv1.InvoiceTitleKind_INVOICE_TITLE_KIND_PERSONAL, Name: delName}}); err != nil {
		t.Fatal(err)
	}

	preview := func() []string {
		t.Helper()
		resp, err := conn.Accounts.PreviewAccountDeletion(bg, &hufuv1.PreviewAccountDeletionRequest{})
		must(t, err)
		var names []string
		for _, b := range resp.Blockers {
			names = append(names, b.Precondition)
		}
		return names
	}
	if got := strings.Join(preview(), ","); got != "bank_cards,certificates,enterprises,orders" {
		t.Fatalf("preconditions: %s", got)
	}
	// Refused before any code is spent, naming each precondition and what it is about.
	_, err = conn.Accounts.DeleteAccount(bg, &hufuv1.DeleteAccountRequest{Code: "123456", ConfirmIrreversible: true})
	wantCode(t, err, codes.FailedPrecondition, "")
	// Both certificates of the pair are named; revoking one below revokes both.
	for _, want := range []string{"bank_cards", "certificates: revoke every certificate first (注销): ", serial, p.encSerial, "enterprises", usccA, "orders", open.Id} {
		if !strings.Contains(errMessage(err), want) {
			t.Fatalf("refusal %q does not name %q", errMessage(err), want)
		}
	}

	// Cleared one by one, the preview follows.
	_, err = cards.UnbindBankCard(bg, &hufuv1.UnbindBankCardRequest{CardId: bound.Card.Id})
	must(t, err)
	_, err = p.certs.CancelOrder(bg, &hufuv1.CancelOrderRequest{OrderId: open.Id, Reason: "不需要了"})
	must(t, err)
	if got := strings.Join(preview(), ","); got != "certificates,enterprises" {
		t.Fatalf("preconditions after unbinding and cancelling: %s", got)
	}
	_, err = admin.ent.RemoveMember(bg, &hufuv1.RemoveMemberRequest{Uscc: usccA, UserId: userID})
	must(t, err)
	_, err = p.certs.RevokeCertificate(bg, &hufuv1.RevokeCertificateRequest{Serial: serial, Pin: "123456", ConfirmIrreversible: true})
	must(t, err)
	if got := preview(); len(got) != 0 {
		t.Fatalf("preconditions after clearing all: %v", got)
	}

	// Irreversible: confirmation and a fresh code for this purpose are required.
	_, err = conn.Accounts.DeleteAccount(bg, &hufuv1.DeleteAccountRequest{Code: "123456"})
	wantCode(t, err, codes.InvalidArgument, "confirm_irreversible")
	_, err = conn.Accounts.DeleteAccount(bg, &hufuv1.DeleteAccountRequest{Code: "123456", ConfirmIrreversible: true})
	wantCode(t, err, codes.Unauthenticated, "")
	if _, err := conn.Accounts.SendSmsCode(bg, &hufuv1.SendSmsCodeRequest{Phone: delPhone, Purpose: hufuv1.SmsPurpose_SMS_PURPOSE_DELETE_ACCOUNT}); err != nil {
		t.Fatal(err)
	}
	_, err = conn.Accounts.DeleteAccount(bg, &hufuv1.DeleteAccountRequest{Code: a.code(delPhone, accounts.PurposeDeleteAccount), ConfirmIrreversible: true})
	must(t, err)

	// Its sessions are gone.
	_, err = conn.Accounts.GetAccount(bg, &hufuv1.GetAccountRequest{})
	wantCode(t, err, codes.Unauthenticated, "")
	_, err = conn.Accounts.RefreshSession(bg, &hufuv1.RefreshSessionRequest{RefreshToken: signed.Session.RefreshToken})
	wantCode(t, err, codes.Unauthenticated, "")

	// No personal data of the account is left in the store: its number, name and ID number
	// appear in no key and no value (audit records included), except in the issued
	// certificate, which the CA must keep (电子签名法 §24).
	a.live.Stop()
	leaks := scanStore(t, filepath.Join(a.cfg.DataDir, "store"), []string{delPhone, delName, delID}, func(key string) bool {
		return strings.HasPrefix(key, "c/cert/")
	})
	if len(leaks) > 0 {
		t.Fatalf("personal data left after deletion:\n%s", strings.Join(leaks, "\n"))
	}
	// Every key of the account is revoked, its server share gone.
	for _, id := range []string{"key-del-0001", "key-del-0002"} {
		var k storepb.SplitKey
		readRecord(t, filepath.Join(a.cfg.DataDir, "store"), "k/"+id, &k)
		if k.Status != 3 || len(k.ShareWrapped) != 0 {
			t.Fatalf("key %s after deletion: status %d, share %d bytes", id, k.Status, len(k.ShareWrapped))
		}
	}
	a.restart()

	// The number registers again, as a new account with nothing of the old one.
	again := a.dial("delete-dev-02")
	resp := a.signIn(again, delPhone, "delete-dev-02")
	if !resp.Registered || resp.Account.Id == userID || resp.Account.Identity.Verified {
		t.Fatalf("re-registration: %v", resp)
	}
	certsResp, err := hufuv1.NewCertificateServiceClient(again.ClientConn()).ListCertificates(bg, &hufuv1.ListCertificatesRequest{})
	if err != nil || len(certsResp.Certificates) != 0 {
		t.Fatalf("new account's certificates: %v %v", certsResp, err)
	}
}

// scanStore opens a stopped appliance's Pebble directory read-only and returns every key
// (but the excluded) whose key or value contains one of needles.
func scanStore(t *testing.T, dir string, needles []string, exclude func(key string) bool) []string {
	t.Helper()
	db, err := pebble.Open(dir, &pebble.Options{ReadOnly: true})
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	it, err := db.NewIter(nil)
	if err != nil {
		t.Fatal(err)
	}
	defer it.Close()
	var out []string
	for it.First(); it.Valid(); it.Next() {
		k := string(it.Key())
		if exclude(k) {
			continue
		}
		for _, n := range needles {
			if strings.Contains(k, n) || bytes.Contains(it.Value(), []byte(n)) {
				out = append(out, k+" holds "+n)
			}
		}
	}
	return out
}

// readRecord reads one record of a stopped appliance's store, unwrapping the store's
// envelope (store/envelope.go): version, flags, optional expiry, type name, message.
func readRecord(t *testing.T, dir, key string, m proto.Message) {
	t.Helper()
	db, err := pebble.Open(dir, &pebble.Options{ReadOnly: true})
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	v, closer, err := db.Get([]byte(key))
	if err != nil {
		t.Fatalf("%s: %v", key, err)
	}
	defer closer.Close()
	off := 2
	if v[1]&1 != 0 {
		off += 8
	}
	off += 1 + int(v[off])
	if err := proto.Unmarshal(v[off:], m); err != nil {
		t.Fatalf("%s: %v", key, err)
	}
}
