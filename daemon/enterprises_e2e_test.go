package daemon_test

import (
	"bytes"
	"crypto/ecdsa"
	"crypto/rand"
	"encoding/json"
	"encoding/pem"
	"errors"
	"fmt"
	"image"
	"image/color"
	"image/png"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/emmansun/gmsm/sm2"
	"github.com/emmansun/gmsm/smx509"
	"github.com/hufu-hsm/hufu/admin"
	hufuv1 "github.com/hufu-hsm/hufu/api/hufu/v1"
	"github.com/hufu-hsm/hufu/client"
	"github.com/hufu-hsm/hufu/client/keystore"
	"github.com/hufu-hsm/hufu/cosign"
	"github.com/hufu-hsm/hufu/daemon/config"
	"github.com/hufu-hsm/hufu/daemon/devpki"
	"google.golang.org/grpc/codes"
)

// Real, check-digit-valid unified social credit codes (see daemon/identity's tests).
const (
	usccA = "91350100M000100Y43"
	usccB = "91110000802100433B"
)

// pngBytes is a small real PNG (a business licence or a stamped letter, as photographed).
func pngBytes(t testing.TB) []byte { return pngOfSize(t, 8) }

func pngOfSize(t testing.TB, side int) []byte {
	t.Helper()
	img := image.NewNRGBA(image.Rect(0, 0, side, side))
	img.Set(1, 1, color.NRGBA{R: 200, A: 255})
	var b bytes.Buffer
	if err := png.Encode(&b, img); err != nil {
		t.Fatal(err)
	}
	return b.Bytes()
}

// member is a verified person of the enterprise tests: their connection, account id and
// the enterprise service.
type member struct {
	*applicant
	userID, device, phone string
	ent                   hufuv1.EnterpriseServiceClient
}

func newMember(t *testing.T, a *certAppl, phone, device string) *member {
	t.Helper()
	conn, userID := a.verifiedUser(phone, device)
	return &member{applicant: &applicant{t: t, conn: conn, certs: hufuv1.NewCertificateServiceClient(conn.ClientConn())},
		userID: userID, device: device, phone: phone, ent: hufuv1.NewEnterpriseServiceClient(conn.ClientConn())}
}

func details(t testing.TB, uscc, name string) *hufuv1.EnterpriseDetails {
	return &hufuv1.EnterpriseDetails{Name: name, Uscc: uscc, LegalRepName: "李四", LegalRepIdType: hufuv1.IdType_ID_TYPE_RESIDENT_ID,
		LegalRepIdNumber: "11010519491231002X", LegalRepPhone: "13900139000", Licence: pngBytes(t), LicenceFileName: "licence.png"}
}

// claim makes the member's enterprise keys (signing and encryption, if it has none) and
// submits a claim for the certificate pair.
func (m *member) claim(uscc, name, requestID string) (*hufuv1.Order, error) {
	return m.claimOrJoin(uscc, name, requestID, false)
}

// claimOrJoin is claim, or with join the purchase of a certificate to join (§1.6.3.5).
func (m *member) claimOrJoin(uscc, name, requestID string, join bool) (*hufuv1.Order, error) {
	m.t.Helper()
	if m.key == nil {
		m.key = createKey(m.t, m.conn, m.userID, "ent-key-"+m.device, "654321")
	}
	if m.enc == nil {
		m.enc = createKey(m.t, m.conn, m.userID, "ent-enc-"+m.device, "654321")
	}
	resp, err := m.ent.ClaimEnterprise(bg, &hufuv1.ClaimEnterpriseRequest{RequestId: requestID, Enterprise: details(m.t, uscc, name),
		KeyId: m.key.id, Csr: m.csr(), CaId: "hufu-ca", ValidityYears: 1, Platforms: []string{"demo"},
		RoamingRegions: []string{"110000"}, Join: join, EncryptionKeyId: m.enc.id, EncryptionCsr: m.csrOf(m.enc),
		Authorisation: &hufuv1.Authorisation{Kind: &hufuv1.Authorisation_Scan{Scan: &hufuv1.ScannedLetter{
			FileName: "letter.png", MediaType: "image/png", Content: pngBytes(m.t)}}}})
	if err != nil {
		return nil, err
	}
	return resp.Order, nil
}

// claimAndPay claims an enterprise through review and payment: the member becomes its
// administrator. It returns the enterprise signing certificate's serial (m.encSerial is the
// encryption certificate's).
func (m *member) claimAndPay(desk hufuv1.ReviewServiceClient, uscc, name string) string {
	m.t.Helper()
	o, err := m.claim(uscc, name, "claim-"+m.device)
	if err != nil {
		m.t.Fatalf("claim: %v", err)
	}
	if _, err := desk.ApproveOrder(bg, &hufuv1.ApproveOrderRequest{OrderId: o.Id}); err != nil {
		m.t.Fatal(err)
	}
	paid, err := m.pay(o.Id, "pay-"+o.Id)
	if err != nil {
		m.t.Fatalf("pay: %v", err)
	}
	if paid.Order.EncryptionSerial == "" {
		m.t.Fatalf("an enterprise claim issued no encryption certificate: %v", paid.Order)
	}
	m.encSerial = paid.Order.EncryptionSerial
	return paid.Certificate.Serial
}

// keystoreEnterpriseKeys makes a member's enterprise keys (signing and encryption, one PIN)
// in its keystore, as `hufu enterprise claim` does, for a claim and the SDK's grants.
func keystoreEnterpriseKeys(t *testing.T, m *member, ks *keystore.Store, pin string) {
	t.Helper()
	for _, k := range []**phoneKey{&m.key, &m.enc} {
		entry, err := client.CreateKey(bg, m.conn, ks, pin, "enterprise")
		if err != nil {
			t.Fatal(err)
		}
		*k = &phoneKey{id: entry.ID, public: entry.Public, share: entry.Share, keys: m.conn.Keys, cosign: m.conn.Cosign,
			cred: client.PINCredential(pin)}
	}
}

// saveEnterpriseKeys puts a member's enterprise keys, held by the test's phoneKeys, in a
// keystore for the SDK's grant.
func saveEnterpriseKeys(t *testing.T, m *member) *keystore.Store {
	t.Helper()
	ks, err := keystore.Open(t.TempDir(), "")
	if err != nil {
		t.Fatal(err)
	}
	for _, k := range []*phoneKey{m.key, m.enc} {
		if err := ks.Save(&keystore.Entry{ID: k.id, AccountID: m.userID,
			PhoneKey: cosign.PhoneKey{Public: k.public, Version: 1, Share: k.share}}); err != nil {
			t.Fatal(err)
		}
	}
	return ks
}

func (m *member) join(req *hufuv1.ApplyToJoinRequest) (*hufuv1.JoinApplication, error) {
	resp, err := m.ent.ApplyToJoin(bg, req)
	if err != nil {
		return nil, err
	}
	return resp.Application, nil
}

func TestEnterpriseClaimAndJoin(t *testing.T) {
	a := certAppliance(t)
	desk := a.desk()
	admin := newMember(t, a, "13800138001", "admin-dev-01")
	staff := newMember(t, a, "13800138002", "staff-dev-01")
	outsider := newMember(t, a, "13800138003", "outside-dev-01")

	// Search: an unregistered code may be claimed or verified by corporate transfer.
	found, err := admin.ent.SearchEnterprises(bg, &hufuv1.SearchEnterprisesRequest{Query: " 91350100m000100y43 "})
	if err != nil || len(found.Results) != 1 || found.Results[0].Registered || found.Results[0].Uscc != usccA ||
		fmt.Sprint(found.Results[0].NextSteps) != "[NEXT_STEP_CLAIM NEXT_STEP_CORPORATE_TRANSFER]" {
		t.Fatalf("search unregistered: %v %v", found, err)
	}
	_, err = admin.ent.SearchEnterprises(bg, &hufuv1.SearchEnterprisesRequest{})
	wantCode(t, err, codes.InvalidArgument, "query")

	// Claims with bad data name the field.
	for _, tc := range []struct {
		name, field string
		edit        func(*hufuv1.EnterpriseDetails)
	}{
		{"corrupted USCC", "enterprise.uscc", func(d *hufuv1.EnterpriseDetails) { d.Uscc = "91350100M000100Y44" }},
		{"no name", "enterprise.name", func(d *hufuv1.EnterpriseDetails) { d.Name = " " }},
		{"bad legal representative ID", "enterprise.legal_rep_id_number", func(d *hufuv1.EnterpriseDetails) { d.LegalRepIdNumber = "110105194912310021" }},
		{"no ID type", "enterprise.legal_rep_id_type", func(d *hufuv1.EnterpriseDetails) { d.LegalRepIdType = 0 }},
		{"bad phone", "enterprise.legal_rep_phone", func(d *hufuv1.EnterpriseDetails) { d.LegalRepPhone = "12345" }},
		{"licence not an image", "enterprise.licence", func(d *hufuv1.EnterpriseDetails) { d.Licence = []byte("not a licence") }},
	} {
		t.Run(tc.name, func(t *testing.T) {
			admin.key = createKey(t, admin.conn, admin.userID, "ent-key-"+strings.ReplaceAll(tc.name, " ", "-"), "654321")
			d := details(t, usccA, "福州示范科技有限公司")
			tc.edit(d)
			_, err := admin.ent.ClaimEnterprise(bg, &hufuv1.ClaimEnterpriseRequest{RequestId: "claim-bad-data", Enterprise: d,
				KeyId: admin.key.id, Csr: admin.csr(), CaId: "hufu-ca", ValidityYears: 1, Platforms: []string{"demo"},
				Authorisation: admin.letter()})
			wantCode(t, err, codes.InvalidArgument, tc.field)
		})
	}
	admin.key = nil

	// Claim → review → pay: the claimant is the administrator; the certificate names the
	// enterprise.
	serial := admin.claimAndPay(desk, usccA, "福州示范科技有限公司")
	cert, roots, inter, _ := admin.download(serial)
	if cert.Subject.CommonName != "福州示范科技有限公司" || cert.Subject.SerialNumber != usccA || cert.Subject.Organization[0] != "福州示范科技有限公司" {
		t.Fatalf("enterprise certificate subject: %v", cert.Subject)
	}
	if _, err := cert.Verify(smx509.VerifyOptions{Roots: roots, Intermediates: inter, KeyUsages: []smx509.ExtKeyUsage{smx509.ExtKeyUsageAny}}); err != nil {
		t.Fatalf("chain: %v", err)
	}
	got, err := admin.ent.GetEnterprise(bg, &hufuv1.GetEnterpriseRequest{Uscc: usccA})
	if err != nil || got.Role != hufuv1.MemberRole_MEMBER_ROLE_ADMIN || !got.Enterprise.AdminClaimed || got.Enterprise.CertSerial != serial ||
		got.Enterprise.LegalRepIdMasked != "110***********002X" || got.Enterprise.LegalRepPhoneMasked != "139****9000" ||
		got.Enterprise.KeyId != admin.key.id || !bytes.Equal(got.Enterprise.PublicKey, admin.key.public[:]) {
		t.Fatalf("enterprise after claim: %v %v", got, err)
	}
	// A second claim of a registered enterprise is refused up front.
	_, err = staff.claim(usccA, "福州示范科技有限公司", "claim-again-1")
	wantCode(t, err, codes.FailedPrecondition, "")

	// Search by name: full-width characters and spaces are normalised.
	found, err = outsider.ent.SearchEnterprises(bg, &hufuv1.SearchEnterprisesRequest{Query: "福州 示范科技有限公司"})
	if err != nil || len(found.Results) != 1 || !found.Results[0].Registered ||
		fmt.Sprint(found.Results[0].NextSteps) != "[NEXT_STEP_JOIN NEXT_STEP_CORPORATE_TRANSFER]" {
		t.Fatalf("search by name: %v %v", found, err)
	}

	// The outsider sees nothing beyond search results.
	_, err = outsider.ent.GetEnterprise(bg, &hufuv1.GetEnterpriseRequest{Uscc: usccA})
	wantCode(t, err, codes.NotFound, "")
	_, err = outsider.ent.ListMembers(bg, &hufuv1.ListMembersRequest{Uscc: usccA})
	wantCode(t, err, codes.NotFound, "")
	_, err = outsider.ent.CreateInvite(bg, &hufuv1.CreateInviteRequest{Uscc: usccA})
	wantCode(t, err, codes.NotFound, "")
	_, err = outsider.ent.ListJoinApplications(bg, &hufuv1.ListJoinApplicationsRequest{Uscc: usccA})
	wantCode(t, err, codes.NotFound, "")

	// Join by application: the administrator must be named right, without the refusal
	// saying who it is.
	_, err = staff.join(&hufuv1.ApplyToJoinRequest{RequestId: "join-wrong-1", Uscc: usccA, AdminName: "张三", AdminPhone: "13800138009"})
	wantCode(t, err, codes.InvalidArgument, "admin")
	if strings.Contains(errMessage(err), admin.phone) {
		t.Fatalf("refusal reveals the administrator: %v", err)
	}
	app, err := staff.join(&hufuv1.ApplyToJoinRequest{RequestId: "join-right-1", Uscc: usccA, AdminName: "张三", AdminPhone: admin.phone})
	if err != nil || app.Status != hufuv1.JoinStatus_JOIN_STATUS_PENDING {
		t.Fatalf("apply: %v %v", app, err)
	}
	again, err := staff.join(&hufuv1.ApplyToJoinRequest{RequestId: "join-right-1", Uscc: usccA, AdminName: "张三", AdminPhone: admin.phone})
	if err != nil || again.Id != app.Id {
		t.Fatalf("the request id is an idempotency key: %v %v", again, err)
	}
	_, err = staff.join(&hufuv1.ApplyToJoinRequest{RequestId: "join-right-2", Uscc: usccA, AdminName: "张三", AdminPhone: admin.phone})
	wantCode(t, err, codes.FailedPrecondition, "")
	// Withdraw (撤回); the administrator cannot approve a withdrawn application.
	w, err := staff.ent.WithdrawJoin(bg, &hufuv1.WithdrawJoinRequest{ApplicationId: app.Id})
	if err != nil || w.Application.Status != hufuv1.JoinStatus_JOIN_STATUS_WITHDRAWN {
		t.Fatalf("withdraw: %v %v", w, err)
	}
	_, err = admin.ent.ApproveJoin(bg, &hufuv1.ApproveJoinRequest{ApplicationId: app.Id})
	wantCode(t, err, codes.FailedPrecondition, "")
	// Return (退回) with a reason; the applicant sees it.
	app, err = staff.join(&hufuv1.ApplyToJoinRequest{RequestId: "join-right-3", Uscc: usccA, AdminName: "张三", AdminPhone: admin.phone})
	if err != nil {
		t.Fatal(err)
	}
	pending, err := admin.ent.ListJoinApplications(bg, &hufuv1.ListJoinApplicationsRequest{Uscc: usccA, Status: hufuv1.JoinStatus_JOIN_STATUS_PENDING})
	if err != nil || len(pending.Applications) != 1 || pending.Applications[0].Id != app.Id || pending.Applications[0].ApplicantPhoneMasked != "138****8002" {
		t.Fatalf("pending applications: %v %v", pending, err)
	}
	_, err = staff.ent.ApproveJoin(bg, &hufuv1.ApproveJoinRequest{ApplicationId: app.Id})
	wantCode(t, err, codes.NotFound, "")
	_, err = admin.ent.ReturnJoin(bg, &hufuv1.ReturnJoinRequest{ApplicationId: app.Id})
	wantCode(t, err, codes.InvalidArgument, "reason")
	ret, err := admin.ent.ReturnJoin(bg, &hufuv1.ReturnJoinRequest{ApplicationId: app.Id, Reason: "请使用企业邮箱"})
	if err != nil || ret.Application.Status != hufuv1.JoinStatus_JOIN_STATUS_RETURNED {
		t.Fatalf("return: %v %v", ret, err)
	}
	mine, err := staff.ent.ListJoinApplications(bg, &hufuv1.ListJoinApplicationsRequest{})
	if err != nil || len(mine.Applications) != 2 || !slices.ContainsFunc(mine.Applications, func(a *hufuv1.JoinApplication) bool {
		return a.Status == hufuv1.JoinStatus_JOIN_STATUS_RETURNED && a.Reason == "请使用企业邮箱"
	}) {
		t.Fatalf("own applications: %v %v", mine, err)
	}

	// Join by invite (the enterprise's QR code): a tampered or revoked invite is refused.
	inv, err := admin.ent.CreateInvite(bg, &hufuv1.CreateInviteRequest{Uscc: usccA, TtlSeconds: 300})
	if err != nil || !strings.HasPrefix(inv.Payload, "HUFU1.INV.") {
		t.Fatalf("invite: %v %v", inv, err)
	}
	tampered := strings.Replace(inv.Payload, usccA, usccB, 1)
	_, err = staff.join(&hufuv1.ApplyToJoinRequest{RequestId: "join-invite-0", Invite: tampered})
	wantCode(t, err, codes.InvalidArgument, "invite")
	revoked, err := admin.ent.CreateInvite(bg, &hufuv1.CreateInviteRequest{Uscc: usccA})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := admin.ent.RevokeInvite(bg, &hufuv1.RevokeInviteRequest{Uscc: usccA, InviteId: revoked.InviteId}); err != nil {
		t.Fatal(err)
	}
	_, err = staff.join(&hufuv1.ApplyToJoinRequest{RequestId: "join-invite-1", Invite: revoked.Payload})
	wantCode(t, err, codes.FailedPrecondition, "")
	app, err = staff.join(&hufuv1.ApplyToJoinRequest{RequestId: "join-invite-2", Invite: inv.Payload})
	if err != nil {
		t.Fatalf("join by invite: %v", err)
	}
	ok, err := admin.ent.ApproveJoin(bg, &hufuv1.ApproveJoinRequest{ApplicationId: app.Id})
	if err != nil || ok.Application.Status != hufuv1.JoinStatus_JOIN_STATUS_APPROVED || !ok.Application.ViaInvite {
		t.Fatalf("approve: %v %v", ok, err)
	}
	ms, err := staff.ent.ListMembers(bg, &hufuv1.ListMembersRequest{Uscc: usccA})
	if err != nil || len(ms.Members) != 2 || ms.Members[0].UserId != admin.userID || ms.Members[1].Role != hufuv1.MemberRole_MEMBER_ROLE_STAFF {
		t.Fatalf("members: %v %v", ms, err)
	}
	// Staff may invite too; only the administrator decides.
	if _, err := staff.ent.CreateInvite(bg, &hufuv1.CreateInviteRequest{Uscc: usccA}); err != nil {
		t.Fatalf("staff invite: %v", err)
	}
	_, err = staff.ent.ReturnJoin(bg, &hufuv1.ReturnJoinRequest{ApplicationId: app.Id, Reason: "x"})
	wantCode(t, err, codes.NotFound, "")

	// Enterprise notices (消息-企业通知) reached both sides.
	for _, m := range []*member{admin, staff} {
		msgs, err := m.certs.ListMessages(bg, &hufuv1.ListMessagesRequest{PageSize: 50})
		if err != nil {
			t.Fatal(err)
		}
		n := 0
		for _, msg := range msgs.Messages {
			if msg.Kind == hufuv1.MessageKind_MESSAGE_KIND_ENTERPRISE_NOTICE {
				n++
			}
		}
		if n < 3 {
			t.Fatalf("%s has %d enterprise notices: %v", m.device, n, msgs.Messages)
		}
	}
	mineEnts, err := staff.ent.ListMyEnterprises(bg, &hufuv1.ListMyEnterprisesRequest{})
	if err != nil || len(mineEnts.Enterprises) != 1 || mineEnts.Enterprises[0].Role != hufuv1.MemberRole_MEMBER_ROLE_STAFF {
		t.Fatalf("my enterprises: %v %v", mineEnts, err)
	}

	// Removing a member takes them out.
	if _, err := admin.ent.RemoveMember(bg, &hufuv1.RemoveMemberRequest{Uscc: usccA, UserId: staff.userID}); err != nil {
		t.Fatal(err)
	}
	_, err = staff.ent.GetEnterprise(bg, &hufuv1.GetEnterpriseRequest{Uscc: usccA})
	wantCode(t, err, codes.NotFound, "")

	// Join by buying a certificate of one's own (购买证书加入企业): the outsider becomes staff
	// holding an enterprise certificate on its own key; the administrator stays.
	_, err = outsider.claimOrJoin(usccA, "福州另一家公司", "buy-join-0", true)
	wantCode(t, err, codes.InvalidArgument, "enterprise.name")
	_, err = outsider.claimOrJoin(usccB, "北京竞速建设有限公司", "buy-join-1", true)
	wantCode(t, err, codes.FailedPrecondition, "")
	bought, err := outsider.claimOrJoin(usccA, "福州示范科技有限公司", "buy-join-2", true)
	if err != nil {
		t.Fatalf("buy to join: %v", err)
	}
	if _, err := desk.ApproveOrder(bg, &hufuv1.ApproveOrderRequest{OrderId: bought.Id}); err != nil {
		t.Fatal(err)
	}
	paid, err := outsider.pay(bought.Id, "pay-"+bought.Id)
	if err != nil || paid.Certificate.Subject == "" {
		t.Fatalf("pay to join: %v %v", paid, err)
	}
	joined, err := outsider.ent.GetEnterprise(bg, &hufuv1.GetEnterpriseRequest{Uscc: usccA})
	if err != nil || joined.Role != hufuv1.MemberRole_MEMBER_ROLE_STAFF || joined.Enterprise.CertSerial != serial {
		t.Fatalf("after buying to join: %v %v", joined, err)
	}
	oc, _, _, _ := outsider.download(paid.Certificate.Serial)
	if oc.Subject.SerialNumber != usccA {
		t.Fatalf("the bought certificate's subject: %v", oc.Subject)
	}
}

// TestEnterpriseClaimRace pays two approved claims of one enterprise at once: exactly one
// claimant becomes the administrator; the other payment is refused with the join path.
func TestEnterpriseClaimRace(t *testing.T) {
	a := certAppliance(t)
	desk := a.desk()
	rivals := []*member{newMember(t, a, "13800138011", "race-dev-01"), newMember(t, a, "13800138012", "race-dev-02")}
	orders := make([]*hufuv1.Order, len(rivals))
	for i, m := range rivals {
		o, err := m.claim(usccB, "北京竞速建设有限公司", "claim-race-"+m.device)
		if err != nil {
			t.Fatalf("claim %d: %v", i, err)
		}
		if _, err := desk.ApproveOrder(bg, &hufuv1.ApproveOrderRequest{OrderId: o.Id}); err != nil {
			t.Fatal(err)
		}
		orders[i] = o
	}
	errs := make([]error, len(rivals))
	var wg sync.WaitGroup
	for i, m := range rivals {
		wg.Go(func() { _, errs[i] = m.pay(orders[i].Id, "pay-race-"+m.device) })
	}
	wg.Wait()
	winner := -1
	for i, err := range errs {
		switch {
		case err == nil:
			if winner >= 0 {
				t.Fatal("both claims succeeded")
			}
			winner = i
		default:
			wantCode(t, err, codes.FailedPrecondition, "")
			if !strings.Contains(errMessage(err), "ApplyToJoin") {
				t.Fatalf("the refusal does not point to joining: %v", err)
			}
		}
	}
	if winner < 0 {
		t.Fatalf("no claim succeeded: %v", errs)
	}
	got, err := rivals[winner].ent.GetEnterprise(bg, &hufuv1.GetEnterpriseRequest{Uscc: usccB})
	if err != nil || got.Role != hufuv1.MemberRole_MEMBER_ROLE_ADMIN {
		t.Fatalf("winner: %v %v", got, err)
	}
	loser := rivals[1-winner]
	_, err = loser.ent.GetEnterprise(bg, &hufuv1.GetEnterpriseRequest{Uscc: usccB})
	wantCode(t, err, codes.NotFound, "")
	// The loser's payment was either refused before it was taken (its order still awaits
	// payment) or, when both reserved before the winner recorded, taken and given back with
	// the order cancelled (certs' abandon): which one depends on the interleaving. Never is
	// it kept, nor the order completed.
	o, err := loser.certs.GetOrder(bg, &hufuv1.GetOrderRequest{OrderId: orders[1-winner].Id})
	if err != nil {
		t.Fatal(err)
	}
	switch o.Order.Status {
	case hufuv1.OrderStatus_ORDER_STATUS_AWAITING_PAYMENT:
	case hufuv1.OrderStatus_ORDER_STATUS_CANCELLED:
		if !strings.Contains(o.Order.CancelReason, "already has an administrator") {
			t.Fatalf("the losing order was cancelled for another reason: %v", o.Order)
		}
		if n := len(o.Order.Steps); n == 0 || !strings.Contains(o.Order.Steps[n-1].Note, "payment is given back") {
			t.Fatalf("the losing order was cancelled without giving the payment back: %v", o.Order)
		}
	default:
		t.Fatalf("the losing order is neither unpaid nor cancelled and refunded: %v", o.Order)
	}
}

// verifyWithOpenSSL has OpenSSL 3 (when installed) verify an SM2 signature under a
// certificate, and encrypt to it for the caller to decrypt; it returns the ciphertext, or
// nil when OpenSSL is missing.
func verifyWithOpenSSL(t *testing.T, certDER, msg, sig []byte) []byte {
	t.Helper()
	return verifyAndEncryptWithOpenSSL(t, certDER, certDER, msg, sig)
}

// verifyAndEncryptWithOpenSSL checks sig on msg under certDER with OpenSSL and returns msg
// encrypted by OpenSSL to encCertDER (nil without openssl).
func verifyAndEncryptWithOpenSSL(t *testing.T, certDER, encCertDER, msg, sig []byte) []byte {
	t.Helper()
	if _, err := exec.LookPath("openssl"); err != nil {
		t.Log("openssl not found: interoperability with OpenSSL not checked")
		return nil
	}
	dir := t.TempDir()
	path := func(name string) string { return filepath.Join(dir, name) }
	for name, b := range map[string][]byte{
		"cert.pem": pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: certDER}), "msg": msg, "msg.sig": sig,
		"enc.pem": pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: encCertDER}),
	} {
		if err := os.WriteFile(path(name), b, 0o600); err != nil {
			t.Fatal(err)
		}
	}
	cmd := exec.Command("openssl", "pkeyutl", "-verify", "-certin", "-inkey", path("cert.pem"), "-rawin", "-digest", "sm3",
		"-in", path("msg"), "-sigfile", path("msg.sig"), "-pkeyopt", "distid:"+cosign.DefaultSignerID)
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("openssl verify under the enterprise certificate: %v\n%s", err, out)
	}
	cmd = exec.Command("openssl", "pkeyutl", "-encrypt", "-certin", "-inkey", path("enc.pem"), "-in", path("msg"), "-out", path("msg.enc"))
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("openssl encrypt: %v\n%s", err, out)
	}
	ct, err := os.ReadFile(path("msg.enc"))
	if err != nil {
		t.Fatal(err)
	}
	return ct
}

func mustEncryptMsg(t *testing.T, pub *ecdsa.PublicKey, msg []byte) []byte {
	t.Helper()
	ct, err := sm2.Encrypt(rand.Reader, pub, msg, sm2.ASN1EncrypterOpts)
	if err != nil {
		t.Fatal(err)
	}
	return ct
}

// keystoreMember is a member whose device keeps its shares in a keystore, as the SDK does.
func keystoreMember(t *testing.T, a *certAppl, phone, device string) (*member, *keystore.Store) {
	m := newMember(t, a, phone, device)
	ks, err := keystore.Open(t.TempDir(), "")
	if err != nil {
		t.Fatal(err)
	}
	return m, ks
}

func signWith(t *testing.T, conn *client.Conn, ks *keystore.Store, keyID, pin string, msg []byte) ([]byte, error) {
	t.Helper()
	k, err := client.OpenKey(bg, conn, ks, keyID, pin)
	if err != nil {
		return nil, err
	}
	return k.Sign(rand.Reader, msg, &cosign.SignerOpts{})
}

// TestEnterpriseDelegatedKey: the administrator grants staff a pair of the enterprise key;
// the staff signature verifies under the enterprise certificate; a recall stops the staff
// member at once and no one else; the administrator role moves to a member with a pair.
func TestEnterpriseDelegatedKey(t *testing.T) {
	auditor, hash, err := admin.NewToken()
	if err != nil {
		t.Fatal(err)
	}
	a := certAppliance(t, func(c *config.Config) {
		c.Admin.Tokens = []config.AdminToken{{Name: "alice", Role: string(admin.Auditor), SHA256: hash}}
	})
	desk := a.desk()
	boss, adminKS := keystoreMember(t, a, "13800138021", "deleg-admin-01")
	staff, staffKS := keystoreMember(t, a, "13800138022", "deleg-staff-01")
	other, otherKS := keystoreMember(t, a, "13800138023", "deleg-other-01")

	const adminPIN, staffPIN, otherPIN = "246810", "135791", "112233"
	keystoreEnterpriseKeys(t, boss, adminKS, adminPIN)
	serial := boss.claimAndPay(desk, usccA, "福州示范科技有限公司")
	cert, _, _, _ := boss.download(serial)
	encCert, _, _, _ := boss.download(boss.encSerial)
	keyID, encKeyID := boss.key.id, boss.enc.id
	if ent, err := boss.ent.GetEnterprise(bg, &hufuv1.GetEnterpriseRequest{Uscc: usccA}); err != nil ||
		ent.Enterprise.KeyId != keyID || ent.Enterprise.EncryptionKeyId != encKeyID || ent.Enterprise.CertSerial != serial {
		t.Fatalf("the enterprise after its claim of a pair: %v %v", ent, err)
	}

	// Two staff members join by invite and register their devices.
	inv, err := boss.ent.CreateInvite(bg, &hufuv1.CreateInviteRequest{Uscc: usccA})
	if err != nil {
		t.Fatal(err)
	}
	for i, m := range []*member{staff, other} {
		app, err := m.join(&hufuv1.ApplyToJoinRequest{RequestId: fmt.Sprintf("join-deleg-%d", i), Invite: inv.Payload})
		if err != nil {
			t.Fatal(err)
		}
		if _, err := boss.ent.ApproveJoin(bg, &hufuv1.ApproveJoinRequest{ApplicationId: app.Id}); err != nil {
			t.Fatal(err)
		}
	}
	// A grant needs a registered device.
	_, err = client.GrantDelegation(bg, boss.conn, adminKS, usccA, staff.userID, "x", client.PINCredential(adminPIN))
	if err == nil || !strings.Contains(err.Error(), "not registered a device") {
		t.Fatalf("grant before registration: %v", err)
	}
	for _, p := range []struct {
		m  *member
		ks *keystore.Store
	}{{staff, staffKS}, {other, otherKS}} {
		if _, err := client.RegisterDelegationDevice(bg, p.m.conn, p.ks, usccA); err != nil {
			t.Fatal(err)
		}
	}
	fingerprint := func(ks *keystore.Store) string {
		fp, err := client.ThisDeviceFingerprint(ks)
		if err != nil {
			t.Fatal(err)
		}
		return fp
	}
	// The administrator's device seals nothing to a device key whose fingerprint was not read
	// from the member's phone (an appliance swapping in its own key would get the share).
	_, err = client.GrantDelegation(bg, boss.conn, adminKS, usccA, staff.userID, fingerprint(otherKS), client.PINCredential(adminPIN))
	if !errors.Is(err, client.ErrFingerprint) {
		t.Fatalf("grant to a device key of another fingerprint: %v", err)
	}
	// Only the administrator grants; a wrong PIN is refused.
	_, err = client.GrantDelegation(bg, staff.conn, staffKS, usccA, other.userID, fingerprint(otherKS), client.PINCredential(staffPIN))
	if err == nil {
		t.Fatal("staff granted the enterprise key")
	}
	_, err = client.GrantDelegation(bg, boss.conn, adminKS, usccA, staff.userID, fingerprint(staffKS), client.PINCredential("000000"))
	wantCode(t, err, codes.PermissionDenied, "")
	_, err = staff.ent.GrantDelegation(bg, &hufuv1.GrantDelegationRequest{Uscc: usccA, MemberUserId: other.userID, Scope: []string{"everything"}})
	wantCode(t, err, codes.InvalidArgument, "scope[0]")
	// The enterprise has an encryption key: a grant of the signing key alone is refused,
	// naming the missing part.
	_, err = boss.ent.GrantDelegation(bg, &hufuv1.GrantDelegationRequest{Uscc: usccA, MemberUserId: staff.userID,
		Credential: client.PINCredential(adminPIN), Grant: make([]byte, 32), Envelope: []byte{1}})
	wantCode(t, err, codes.InvalidArgument, "encryption")
	// The administrator's device grants the encryption key only if the key it holds under
	// that id is the one the enterprise's encryption certificate carries: here the entry holds
	// the signing key's share, and nothing is sent.
	encEntry, err := adminKS.Load(encKeyID)
	must(t, err)
	signEntry, err := adminKS.Load(keyID)
	must(t, err)
	must(t, adminKS.Save(&keystore.Entry{ID: encKeyID, Label: encEntry.Label, AccountID: encEntry.AccountID, PhoneKey: signEntry.PhoneKey}))
	_, err = client.GrantDelegation(bg, boss.conn, adminKS, usccA, staff.userID, fingerprint(staffKS), client.PINCredential(adminPIN))
	if !errors.Is(err, client.ErrBadAnswer) {
		t.Fatalf("grant of an encryption key that is not the certificate's: %v", err)
	}
	must(t, adminKS.Save(encEntry))
	encEntry.Share.Destroy()
	signEntry.Share.Destroy()
	if ms, err := boss.ent.ListMembers(bg, &hufuv1.ListMembersRequest{Uscc: usccA}); err != nil ||
		slices.ContainsFunc(ms.Members, func(x *hufuv1.Member) bool { return x.DelegationPending }) {
		t.Fatalf("members after a grant refused on the device: %v %v", ms, err)
	}

	for _, p := range []struct {
		m   *member
		ks  *keystore.Store
		pin string
	}{{staff, staffKS, staffPIN}, {other, otherKS, otherPIN}} {
		if _, err := client.GrantDelegation(bg, boss.conn, adminKS, usccA, p.m.userID, fingerprint(p.ks), client.PINCredential(adminPIN)); err != nil {
			t.Fatalf("grant: %v", err)
		}
		ms, err := boss.ent.ListMembers(bg, &hufuv1.ListMembersRequest{Uscc: usccA})
		if err != nil || !slices.ContainsFunc(ms.Members, func(x *hufuv1.Member) bool { return x.UserId == p.m.userID && x.DelegationPending }) {
			t.Fatalf("members after grant: %v %v", ms, err)
		}
		// The pending pair signs nothing but its challenge.
		_, err = p.m.conn.Cosign.Sign(bg, &hufuv1.SignRequest{KeyId: keyID, Credential: client.PINCredential(p.pin),
			SignRequest: make([]byte, 97)})
		if statusCode(err) != codes.FailedPrecondition && statusCode(err) != codes.InvalidArgument {
			t.Fatalf("pending pair answered: %v", err)
		}
		if _, err := client.AcceptDelegation(bg, p.m.conn, p.ks, usccA, p.pin); err != nil {
			t.Fatalf("accept: %v", err)
		}
	}

	// Members download the enterprise certificate they sign under.
	ec, err := staff.ent.GetEnterpriseCertificate(bg, &hufuv1.GetEnterpriseCertificateRequest{Uscc: usccA})
	if err != nil || !bytes.Equal(ec.Certificate, cert.Raw) || len(ec.Chain) != 2 ||
		ec.EncryptionSerial != boss.encSerial || !bytes.Equal(ec.EncryptionCertificate, encCert.Raw) {
		t.Fatalf("staff downloads the enterprise certificate pair: %v", err)
	}
	_, err = hufuv1.NewEnterpriseServiceClient(a.dial("deleg-outside-01").ClientConn()).GetEnterpriseCertificate(bg, &hufuv1.GetEnterpriseCertificateRequest{Uscc: usccA})
	if statusCode(err) == codes.OK {
		t.Fatal("an anonymous caller downloaded the enterprise certificate")
	}

	// The staff member signs with its own pair of the signing key and PIN; OpenSSL verifies
	// the signature under the enterprise signing certificate, and the staff pair of the
	// encryption key decrypts what OpenSSL (or gmsm) encrypted to the enterprise encryption
	// certificate. The staff pair of the signing key does not decrypt.
	msg := []byte("投标文件：福州示范科技有限公司")
	sig, err := signWith(t, staff.conn, staffKS, keyID, staffPIN, msg)
	if err != nil {
		t.Fatalf("staff sign: %v", err)
	}
	ct := verifyAndEncryptWithOpenSSL(t, cert.Raw, encCert.Raw, msg, sig)
	if ct == nil {
		ct = mustEncryptMsg(t, encCert.PublicKey.(*ecdsa.PublicKey), msg)
	}
	staffDecrypt := func(keyID string) ([]byte, error) {
		k, err := client.OpenKey(bg, staff.conn, staffKS, keyID, staffPIN)
		if err != nil {
			return nil, err
		}
		return k.Decrypt(nil, ct, nil)
	}
	if got, err := staffDecrypt(encKeyID); err != nil || !bytes.Equal(got, msg) {
		t.Fatalf("staff decrypt with its pair of the enterprise encryption key: %q %v", got, err)
	}
	if _, err := staffDecrypt(keyID); statusCode(err) != codes.InvalidArgument || !strings.Contains(err.Error(), "does not decrypt") {
		t.Fatalf("the staff pair of the enterprise signing key decrypted: %v", err)
	}
	pub := cert.PublicKey.(*ecdsa.PublicKey)
	if !sm2.VerifyASN1WithSM2(pub, nil, msg, sig) {
		t.Fatal("staff signature does not verify under the enterprise certificate")
	}
	// The staff PIN is the staff member's own: the administrator's does not open its pair.
	_, err = signWith(t, staff.conn, staffKS, keyID, adminPIN, msg)
	wantCode(t, err, codes.PermissionDenied, "")
	// Usage records say which member and device signed.
	usage, err := boss.conn.Keys.ListUsage(bg, &hufuv1.ListUsageRequest{KeyId: keyID})
	if err != nil || !slices.ContainsFunc(usage.Records, func(r *hufuv1.UsageRecord) bool {
		return r.Operation == "sign" && r.DeviceId == staff.device
	}) {
		t.Fatalf("usage after a staff signature: %v %v", usage, err)
	}

	// Recall (收回): the staff member is refused at once, the administrator and the other
	// member still sign.
	if _, err := boss.ent.RecallDelegation(bg, &hufuv1.RecallDelegationRequest{Uscc: usccA, MemberUserId: staff.userID}); err != nil {
		t.Fatalf("recall: %v", err)
	}
	_, err = signWith(t, staff.conn, staffKS, keyID, staffPIN, msg)
	wantCode(t, err, codes.PermissionDenied, "")
	// The recall destroyed the staff pair of the encryption key with it.
	if _, err := staffDecrypt(encKeyID); statusCode(err) != codes.PermissionDenied {
		t.Fatalf("the staff pair of the encryption key after the recall: %v", err)
	}
	if _, err := signWith(t, boss.conn, adminKS, keyID, adminPIN, msg); err != nil {
		t.Fatalf("administrator after recall: %v", err)
	}
	if _, err := signWith(t, other.conn, otherKS, keyID, otherPIN, msg); err != nil {
		t.Fatalf("other member after recall: %v", err)
	}
	_, err = boss.ent.RecallDelegation(bg, &hufuv1.RecallDelegationRequest{Uscc: usccA, MemberUserId: staff.userID})
	wantCode(t, err, codes.FailedPrecondition, "")

	// 授权记录: the administrator sees every record, a member its own.
	recs, err := boss.ent.ListAuthorisationRecords(bg, &hufuv1.ListAuthorisationRecordsRequest{Uscc: usccA})
	if err != nil || len(recs.Records) != 5 || recs.Records[0].Action != "recall" {
		t.Fatalf("records: %v %v", recs, err)
	}
	for _, r := range recs.Records {
		if r.KeyId != keyID || r.EncryptionKeyId != encKeyID {
			t.Fatalf("an authorisation record does not name both enterprise keys: %v", r)
		}
	}
	own, err := other.ent.ListAuthorisationRecords(bg, &hufuv1.ListAuthorisationRecordsRequest{Uscc: usccA})
	if err != nil || len(own.Records) != 2 {
		t.Fatalf("a member's own records: %v %v", own, err)
	}

	// Administrator transfer (转移): offered to the member with a pair, accepted from its
	// device; the old administrator's pair is destroyed, the new one signs.
	_, err = boss.ent.TransferAdmin(bg, &hufuv1.TransferAdminRequest{Uscc: usccA, ToUserId: staff.userID})
	wantCode(t, err, codes.FailedPrecondition, "")
	if _, err := boss.ent.TransferAdmin(bg, &hufuv1.TransferAdminRequest{Uscc: usccA, ToUserId: other.userID}); err != nil {
		t.Fatalf("transfer: %v", err)
	}
	_, err = staff.ent.AcceptAdminTransfer(bg, &hufuv1.AcceptAdminTransferRequest{Uscc: usccA})
	wantCode(t, err, codes.FailedPrecondition, "")
	got, err := client.AcceptAdminTransfer(bg, other.conn, otherKS, usccA, client.PINCredential(otherPIN))
	if err != nil {
		t.Fatalf("accept transfer: %v", err)
	}
	if got.AdminName == "" {
		t.Fatalf("enterprise after transfer: %v", got)
	}
	role, err := other.ent.GetEnterprise(bg, &hufuv1.GetEnterpriseRequest{Uscc: usccA})
	if err != nil || role.Role != hufuv1.MemberRole_MEMBER_ROLE_ADMIN {
		t.Fatalf("new administrator: %v %v", role, err)
	}
	if _, err := signWith(t, boss.conn, adminKS, keyID, adminPIN, msg); err == nil {
		t.Fatal("the old administrator's pair still signs after the transfer")
	}
	sig, err = signWith(t, other.conn, otherKS, keyID, otherPIN, msg)
	if err != nil || !sm2.VerifyASN1WithSM2(pub, nil, msg, sig) {
		t.Fatalf("new administrator signs: %v", err)
	}
	// The enterprise certificate moved to the new administrator, who renews and downloads it.
	if _, err := other.certs.DownloadCertificate(bg, &hufuv1.DownloadCertificateRequest{Serial: serial}); err != nil {
		t.Fatalf("the new administrator downloads the enterprise certificate: %v", err)
	}
	_, err = boss.certs.DownloadCertificate(bg, &hufuv1.DownloadCertificateRequest{Serial: serial})
	wantCode(t, err, codes.NotFound, "")
	// The encryption certificate moved with it, and the new administrator's pair of the
	// encryption key, promoted and refreshed with the signing key's, decrypts; the old
	// administrator's does not.
	if _, err := other.certs.DownloadCertificate(bg, &hufuv1.DownloadCertificateRequest{Serial: boss.encSerial}); err != nil {
		t.Fatalf("the new administrator downloads the enterprise encryption certificate: %v", err)
	}
	_, err = boss.certs.DownloadCertificate(bg, &hufuv1.DownloadCertificateRequest{Serial: boss.encSerial})
	wantCode(t, err, codes.NotFound, "")
	if ek, err := otherKS.Load(encKeyID); err != nil || ek.Version < 3 {
		t.Fatalf("the new administrator's pair of the encryption key after the transfer: version %v, %v", ek, err)
	}
	if k, err := client.OpenKey(bg, other.conn, otherKS, encKeyID, otherPIN); err != nil {
		t.Fatal(err)
	} else if got, err := k.Decrypt(nil, ct, nil); err != nil || !bytes.Equal(got, msg) {
		t.Fatalf("the new administrator decrypts with the enterprise encryption key: %q %v", got, err)
	}
	if k, err := client.OpenKey(bg, boss.conn, adminKS, encKeyID, adminPIN); err == nil {
		if _, err := k.Decrypt(nil, ct, nil); err == nil {
			t.Fatal("the old administrator's pair of the encryption key still decrypts after the transfer")
		}
	}
	// The new administrator's pair was refreshed: the old administrator's copy of it is useless.
	k, err := otherKS.Load(keyID)
	if err != nil || k.Version < 3 {
		t.Fatalf("the new administrator's pair after the transfer: version %v, %v", k, err)
	}
	// A key certifies one subject: the enterprise key cannot claim another enterprise.
	holder := &applicant{t: t, key: &phoneKey{id: keyID, public: k.Public, share: k.Share, keys: other.conn.Keys,
		cosign: other.conn.Cosign, cred: client.PINCredential(otherPIN)}}
	_, err = other.ent.ClaimEnterprise(bg, &hufuv1.ClaimEnterpriseRequest{RequestId: "claim-other-ent", Enterprise: details(t, usccB, "北京竞速建设有限公司"),
		KeyId: keyID, Csr: holder.csr(), CaId: "hufu-ca", ValidityYears: 1, Platforms: []string{"demo"}, Authorisation: holder.letter(),
		EncryptionKeyId: encKeyID})
	wantCode(t, err, codes.FailedPrecondition, "")
	// The new administrator manages staff: removing the old one.
	if _, err := other.ent.RemoveMember(bg, &hufuv1.RemoveMemberRequest{Uscc: usccA, UserId: boss.userID}); err != nil {
		t.Fatalf("remove the old administrator: %v", err)
	}
	// The new administrator grants the recalled staff member anew, from its own keystore;
	// removing the member destroys its pairs of both keys.
	if _, err := client.GrantDelegation(bg, other.conn, otherKS, usccA, staff.userID, fingerprint(staffKS), client.PINCredential(otherPIN)); err != nil {
		t.Fatalf("the new administrator grants: %v", err)
	}
	if _, err := client.AcceptDelegation(bg, staff.conn, staffKS, usccA, staffPIN); err != nil {
		t.Fatalf("accept the new administrator's grant: %v", err)
	}
	if got, err := staffDecrypt(encKeyID); err != nil || !bytes.Equal(got, msg) {
		t.Fatalf("staff decrypt after the new grant: %q %v", got, err)
	}
	if _, err := other.ent.RemoveMember(bg, &hufuv1.RemoveMemberRequest{Uscc: usccA, UserId: staff.userID}); err != nil {
		t.Fatalf("remove the staff member: %v", err)
	}
	_, err = signWith(t, staff.conn, staffKS, keyID, staffPIN, msg)
	wantCode(t, err, codes.PermissionDenied, "")
	if _, err := staffDecrypt(encKeyID); statusCode(err) != codes.PermissionDenied {
		t.Fatalf("the removed member's pair of the encryption key: %v", err)
	}

	// Every step is in the audit log, and no name, ID number or phone number is.
	req, _ := http.NewRequest("GET", a.live.AdminURL()+"/audit/export", nil)
	req.Header.Set("Authorization", "Bearer "+auditor)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	export, err := io.ReadAll(resp.Body)
	if err != nil || resp.StatusCode != http.StatusOK {
		t.Fatalf("audit export: %s %v", resp.Status, err)
	}
	for _, action := range []string{"enterprise.claim.submit", "enterprise.claim", "enterprise.invite.create", "enterprise.join.apply",
		"enterprise.join.approve", "enterprise.device.register", "enterprise.delegation.grant", "key.delegate.grant",
		"enterprise.delegation.accept", "enterprise.delegation.recall", "enterprise.admin.transfer.offer", "enterprise.admin.transfer",
		"enterprise.member.remove"} {
		if !bytes.Contains(export, []byte(`"action":"`+action+`"`)) {
			t.Errorf("no %s record in the audit log", action)
		}
	}
	for _, secret := range []string{"13800138021", "13900139000", "11010519491231002X", "李四", "张三"} {
		if bytes.Contains(export, []byte(secret)) {
			t.Errorf("the audit log holds personal data %q", secret)
		}
	}
}

// TestEnterpriseKEKRotation: the legal representative's blobs of enterprises and of claims
// in review move to the new KEK, so finishing a rotation cannot strand them.
func TestEnterpriseKEKRotation(t *testing.T) {
	officer, hash, err := admin.NewToken()
	if err != nil {
		t.Fatal(err)
	}
	a := certAppliance(t, func(c *config.Config) {
		c.Admin.Tokens = []config.AdminToken{{Name: "sam", Role: string(admin.SecurityOfficer), SHA256: hash}}
		c.SystemClients = []config.SystemClient{{Name: devpki.CLIClientName, Services: []string{"hufu.v1.ReviewService", "hufu.v1.ScanService"}}}
	})
	call := func(method, path string) (int, []byte) {
		t.Helper()
		req, _ := http.NewRequest(method, a.live.AdminURL()+path, nil)
		req.Header.Set("Authorization", "Bearer "+officer)
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		body, _ := io.ReadAll(resp.Body)
		return resp.StatusCode, body
	}
	m := newMember(t, a, "13800138031", "rot-dev-01")
	m.claimAndPay(a.desk(), usccA, "福州示范科技有限公司")
	other := newMember(t, a, "13800138032", "rot-dev-02")
	if _, err := other.claim(usccB, "北京竞速建设有限公司", "claim-rot-2"); err != nil { // stays in review
		t.Fatal(err)
	}
	// A BIND session waiting for its scan keeps the person's ID number wrapped.
	if _, err := a.rp().CreateSession(bg, &hufuv1.CreateSessionRequest{RequestId: "bind-rot-1", Kind: hufuv1.SessionKind_SESSION_KIND_BIND,
		PlatformId: "demo", Reference: "unit-1", Subject: &hufuv1.BindSubject{PersonName: "张三", IdNumber: "11010519491231002X"}}); err != nil {
		t.Fatal(err)
	}
	if code, body := call("POST", "/kek/rotate"); code != http.StatusAccepted {
		t.Fatalf("rotate: %d %s", code, body)
	}
	var st admin.RotationStatus
	for deadline := time.Now().Add(time.Minute); ; time.Sleep(10 * time.Millisecond) {
		_, body := call("GET", "/kek")
		if err := json.Unmarshal(body, &st); err != nil {
			t.Fatal(err)
		}
		if st.State != admin.StateRunning || time.Now().After(deadline) {
			break
		}
	}
	if p := st.Progress["enterprises"]; st.State != admin.StateRewrapped || p == nil || p.Rewrapped != 2 {
		t.Fatalf("rotation %q (%s), enterprises progress %+v: want the enterprise and the claim rewrapped", st.State, st.Error, st.Progress["enterprises"])
	}
	if p := st.Progress["scan"]; p == nil || p.Rewrapped != 1 {
		t.Fatalf("scan progress %+v: want the waiting BIND session's ID number rewrapped", p)
	}
	if code, body := call("POST", "/kek/finish"); code != http.StatusOK {
		t.Fatalf("finish: %d %s", code, body)
	}
	// The claim in review still completes under the new KEK.
	o, err := other.certs.ListOrders(bg, &hufuv1.ListOrdersRequest{})
	if err != nil || len(o.Orders) != 1 {
		t.Fatal(o, err)
	}
	if _, err := a.desk().ApproveOrder(bg, &hufuv1.ApproveOrderRequest{OrderId: o.Orders[0].Id}); err != nil {
		t.Fatal(err)
	}
	if _, err := other.pay(o.Orders[0].Id, "pay-rot-2"); err != nil {
		t.Fatalf("pay after rotation: %v", err)
	}
}

// TestEnterpriseSeals: the administrator creates and authorises the enterprise's seals;
// staff see only the seals authorised to them; an outsider sees none; leaving the
// enterprise withdraws the authorisations; a person keeps a handwritten signature.
func TestEnterpriseSeals(t *testing.T) {
	a := certAppliance(t)
	desk := a.desk()
	boss := newMember(t, a, "13800138041", "seal-admin-01")
	staff := newMember(t, a, "13800138042", "seal-staff-01")
	outsider := newMember(t, a, "13800138043", "seal-outside-01")
	serial := boss.claimAndPay(desk, usccA, "福州示范科技有限公司")
	inv, err := boss.ent.CreateInvite(bg, &hufuv1.CreateInviteRequest{Uscc: usccA})
	if err != nil {
		t.Fatal(err)
	}
	app, err := staff.join(&hufuv1.ApplyToJoinRequest{RequestId: "join-seal-1", Invite: inv.Payload})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := boss.ent.ApproveJoin(bg, &hufuv1.ApproveJoinRequest{ApplicationId: app.Id}); err != nil {
		t.Fatal(err)
	}
	sealsOf := func(m *member) hufuv1.SealServiceClient { return hufuv1.NewSealServiceClient(m.conn.ClientConn()) }

	create := func(m *member, req *hufuv1.CreateSealRequest) (*hufuv1.Seal, error) {
		resp, err := sealsOf(m).CreateSeal(bg, req)
		if err != nil {
			return nil, err
		}
		return resp.Seal, nil
	}
	official, err := create(boss, &hufuv1.CreateSealRequest{RequestId: "seal-official-1", EnterpriseUscc: usccA, Name: "公章",
		Type: hufuv1.SealType_SEAL_TYPE_OFFICIAL, Image: pngBytes(t), CertificateSerial: serial})
	if err != nil {
		t.Fatalf("create: %v", err)
	}
	_, err = create(staff, &hufuv1.CreateSealRequest{RequestId: "seal-staff-1", EnterpriseUscc: usccA, Name: "合同章",
		Type: hufuv1.SealType_SEAL_TYPE_CONTRACT, Image: pngBytes(t)})
	wantCode(t, err, codes.PermissionDenied, "")
	_, err = create(boss, &hufuv1.CreateSealRequest{RequestId: "seal-bad-1", EnterpriseUscc: usccA, Name: "合同章",
		Type: hufuv1.SealType_SEAL_TYPE_CONTRACT, Image: []byte("GIF89a")})
	wantCode(t, err, codes.InvalidArgument, "image")

	listed := func(m *member) int {
		resp, err := sealsOf(m).ListSeals(bg, &hufuv1.ListSealsRequest{EnterpriseUscc: usccA})
		if err != nil {
			if statusCode(err) == codes.NotFound {
				return -1
			}
			t.Fatalf("list: %v", err)
		}
		return len(resp.Seals)
	}
	if n := listed(staff); n != 0 {
		t.Fatalf("staff sees %d unauthorised seals", n)
	}
	if n := listed(outsider); n != -1 {
		t.Fatalf("an outsider sees the enterprise's seals: %d", n)
	}
	_, err = sealsOf(outsider).GetSeal(bg, &hufuv1.GetSealRequest{SealId: official.Id})
	wantCode(t, err, codes.NotFound, "")
	if _, err := sealsOf(boss).AuthoriseSeal(bg, &hufuv1.AuthoriseSealRequest{SealId: official.Id, UserId: staff.userID}); err != nil {
		t.Fatalf("authorise: %v", err)
	}
	_, err = sealsOf(boss).AuthoriseSeal(bg, &hufuv1.AuthoriseSealRequest{SealId: official.Id, UserId: outsider.userID})
	if statusCode(err) == codes.OK {
		t.Fatal("a seal was authorised to someone outside the enterprise")
	}
	if n := listed(staff); n != 1 {
		t.Fatalf("staff sees %d seals after the authorisation, want 1", n)
	}
	got, err := sealsOf(staff).GetSeal(bg, &hufuv1.GetSealRequest{SealId: official.Id})
	if err != nil || len(got.Seal.Image) == 0 {
		t.Fatalf("staff reads the authorised seal: %v", err)
	}
	if _, err := png.Decode(bytes.NewReader(got.Seal.Image)); err != nil {
		t.Fatalf("the stored image is not a PNG: %v", err)
	}
	// Leaving the enterprise withdraws the member's seal authorisations.
	if _, err := boss.ent.RemoveMember(bg, &hufuv1.RemoveMemberRequest{Uscc: usccA, UserId: staff.userID}); err != nil {
		t.Fatal(err)
	}
	again, err := sealsOf(boss).GetSeal(bg, &hufuv1.GetSealRequest{SealId: official.Id})
	if err != nil || len(again.Seal.AuthorisedUserIds) != 0 {
		t.Fatalf("authorisations after the member left: %v %v", again, err)
	}
	// A person's own handwritten signature, for the online-signed authorisation letter.
	sig, err := create(outsider, &hufuv1.CreateSealRequest{RequestId: "seal-own-1", Name: "手写签名",
		Type: hufuv1.SealType_SEAL_TYPE_HANDWRITTEN_SIGNATURE, Image: pngBytes(t)})
	if err != nil || sig.OwnerUserId != outsider.userID {
		t.Fatalf("personal signature: %v %v", sig, err)
	}
	// It stamps the online-signed authorisation letter of a personal application, and the
	// desk sees the stamp with the letter; someone else's seal is refused.
	outsider.key = createKey(t, outsider.conn, outsider.userID, "key-stamped-letter", "123456")
	outsider.enc = createKey(t, outsider.conn, outsider.userID, "key-stamped-letter-enc", "123456")
	stamped := outsider.request()
	stamped.Authorisation.GetOnline().SealId = official.Id
	_, err = outsider.certs.ApplyCertificate(bg, stamped)
	if statusCode(err) == codes.OK {
		t.Fatal("a letter was stamped with another's seal")
	}
	stamped = outsider.request()
	stamped.Authorisation.GetOnline().SealId = sig.Id
	applied, err := outsider.certs.ApplyCertificate(bg, stamped)
	if err != nil {
		t.Fatalf("apply with a stamped letter: %v", err)
	}
	letter, err := desk.GetAuthorisationLetter(bg, &hufuv1.GetAuthorisationLetterRequest{OrderId: applied.Order.Id})
	if err != nil || letter.SealName != "手写签名" || len(letter.SealImage) == 0 {
		t.Fatalf("the desk's letter: %v %v", letter, err)
	}
}

func TestEnterpriseLetterTemplates(t *testing.T) {
	a := certAppliance(t, func(c *config.Config) {
		c.Certificates.CAs[0].RequiredAttachments = []string{"法定代表人身份证复印件"}
	})
	m := newMember(t, a, "13800138051", "letter-dev-01")
	for _, kind := range []string{"enterprise-claim", "corporate-transfer", "personal"} {
		resp, err := m.ent.GetLetterTemplate(bg, &hufuv1.GetLetterTemplateRequest{CaId: "hufu-ca", Kind: kind})
		if err != nil || !bytes.Contains(resp.Content, []byte("授权书")) || !bytes.Contains(resp.Content, []byte("致：hufu 内置CA")) ||
			fmt.Sprint(resp.RequiredAttachments) != "[法定代表人身份证复印件]" {
			t.Fatalf("%s template: %v %v", kind, resp, err)
		}
	}
	_, err := m.ent.GetLetterTemplate(bg, &hufuv1.GetLetterTemplateRequest{CaId: "hufu-ca", Kind: "other"})
	wantCode(t, err, codes.InvalidArgument, "kind")
	_, err = m.ent.GetLetterTemplate(bg, &hufuv1.GetLetterTemplateRequest{CaId: "no-ca", Kind: "personal"})
	wantCode(t, err, codes.InvalidArgument, "ca_id")

	// A claim carries exactly the attachments the CA requires; the desk sees them with the
	// business licence.
	m.key = createKey(t, m.conn, m.userID, "ent-key-attachments", "654321")
	m.enc = createKey(t, m.conn, m.userID, "ent-enc-attachments", "654321")
	req := func(atts ...*hufuv1.NamedAttachment) *hufuv1.ClaimEnterpriseRequest {
		return &hufuv1.ClaimEnterpriseRequest{RequestId: fmt.Sprintf("claim-att-%d", len(atts)), Enterprise: details(t, usccA, "福州示范科技有限公司"),
			KeyId: m.key.id, Csr: m.csr(), CaId: "hufu-ca", ValidityYears: 1, Platforms: []string{"demo"}, Authorisation: m.letter(),
			Attachments: atts, EncryptionKeyId: m.enc.id, EncryptionCsr: m.csrOf(m.enc)}
	}
	_, err = m.ent.ClaimEnterprise(bg, req())
	wantCode(t, err, codes.InvalidArgument, "attachments")
	_, err = m.ent.ClaimEnterprise(bg, req(&hufuv1.NamedAttachment{Name: "营业执照副本", FileName: "x.png", Content: pngBytes(t)}))
	wantCode(t, err, codes.InvalidArgument, "attachments[0].name")
	idCopy := pngOfSize(t, 9)
	resp, err := m.ent.ClaimEnterprise(bg, req(&hufuv1.NamedAttachment{Name: "法定代表人身份证复印件", FileName: "id.png", Content: idCopy}))
	if err != nil {
		t.Fatalf("claim with the required attachment: %v", err)
	}
	files, err := a.desk().ListOrderAttachments(bg, &hufuv1.ListOrderAttachmentsRequest{OrderId: resp.Order.Id})
	if err != nil || len(files.Attachments) != 2 {
		t.Fatalf("desk attachments: %v %v", files, err)
	}
	fields := map[string][]byte{}
	for _, f := range files.Attachments {
		if f.MediaType != "image/png" {
			t.Fatalf("desk attachment: %v", f)
		}
		fields[f.Field] = f.Content
	}
	if !bytes.Equal(fields["enterprise.licence"], pngBytes(t)) || !bytes.Equal(fields["attachments[法定代表人身份证复印件]"], idCopy) {
		t.Fatalf("desk attachments by field: %v", files)
	}
	_, err = hufuv1.NewReviewServiceClient(m.conn.ClientConn()).ListOrderAttachments(bg, &hufuv1.ListOrderAttachmentsRequest{OrderId: resp.Order.Id})
	if statusCode(err) == codes.OK {
		t.Fatal("a user read the review desk")
	}
}
