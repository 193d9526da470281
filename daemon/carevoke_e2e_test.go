package daemon_test

import (
	"crypto/rand"
	"errors"
	"io"
	"net/http"
	"strings"
	"testing"

	"google.golang.org/grpc/codes"

	"github.com/emmansun/gmsm/sm2"
	"github.com/emmansun/gmsm/smx509"

	"github.com/hufu-hsm/hufu/admin"
	hufuv1 "github.com/hufu-hsm/hufu/api/hufu/v1"
	"github.com/hufu-hsm/hufu/daemon/apierr"
	"github.com/hufu-hsm/hufu/daemon/ca"
	"github.com/hufu-hsm/hufu/daemon/certs"
)

// TestAdminRevokeIssuingCA walks the operator's revocation of an embedded CA's issuing CA
// (issue 17) through the real admin listener, SoftHSM and Pebble: bad requests are refused
// naming the field, the asking officer cannot approve, a second officer's approval revokes
// it and publishes a root CRL on the PKI listener that lists the issuing CA's serial with
// the reason, a second request is refused, the CA signs nothing more (FailedPrecondition),
// the gauge says so, and the request, approval and revocation are audited.
func TestAdminRevokeIssuingCA(t *testing.T) {
	a := startAdminAppliance(t, nil)
	sam, sue := a.adminClient(admin.SecurityOfficer), a.adminClient(secondOfficer)
	e := a.d.EmbeddedCA("hufu-ca")
	if e == nil || a.d.PKIAddr() == nil {
		t.Fatal("no embedded CA hufu-ca or no PKI listener")
	}
	holder, _ := sm2.GenerateKey(rand.Reader)
	app := func(order string) *ca.Application {
		return &ca.Application{OrderID: order, Name: "张三", IDNumber: "11010519491231002X", Usage: ca.UsageSigning, PublicKey: &holder.PublicKey, ValidityYears: 1}
	}
	if _, err := e.Fetch(bg, "o-before", app("o-before")); err != nil {
		t.Fatalf("issuing before the revocation: %v", err)
	}

	for _, c := range []struct {
		name, ca, reason string
		code             int
		msg              string
	}{
		{"no CA", "", "keyCompromise", http.StatusBadRequest, "ca:"},
		{"not a CA id", "Hufu CA", "keyCompromise", http.StatusBadRequest, "ca: want the id"},
		{"no reason", "hufu-ca", "", http.StatusBadRequest, "reason:"},
		{"a leaf's reason", "hufu-ca", "privilegeWithdrawn", http.StatusBadRequest, "reason: want keyCompromise"},
		{"reason by number", "hufu-ca", "1", http.StatusBadRequest, "reason:"},
		{"unknown CA", "other-ca", "keyCompromise", http.StatusNotFound, "no embedded CA \"other-ca\""},
	} {
		_, err := sam.RevokeIssuingCA(bg, c.ca, c.reason)
		wantStatus(t, c.name, err, c.code, c.msg)
	}
	if code, body := a.callBody("POST", "/ca/revoke-issuing", admin.Operator, `{"ca":"hufu-ca","reason":"keyCompromise"}`); code != http.StatusForbidden {
		t.Fatalf("an operator asks: %d %s", code, body)
	}

	req, err := sam.RevokeIssuingCA(bg, "hufu-ca", "cACompromise")
	if err != nil {
		t.Fatal(err)
	}
	if r := req.Approval.IssuingCARevocation; req.Approval.Kind != admin.ApprovalIssuingCARevocation || req.Approval.State != admin.ApprovalPending ||
		r == nil || r.CA != "hufu-ca" || r.Reason != "cACompromise" {
		t.Fatalf("request: %+v", req.Approval)
	}
	if _, err := e.Fetch(bg, "o-pending", app("o-pending")); err != nil {
		t.Fatalf("a pending request revokes nothing yet: %v", err)
	}
	_, err = sam.Approve(bg, req.Approval.ID)
	wantStatus(t, "self-approval", err, http.StatusForbidden, "second security officer")
	if _, revoked, err := e.IssuingCARevocation(bg); err != nil || revoked {
		t.Fatalf("after a refused self-approval: revoked %v, %v", revoked, err)
	}

	d, err := sue.Approve(bg, req.Approval.ID)
	if err != nil {
		t.Fatal(err)
	}
	serial := e.Issuing().SerialNumber
	if got := d.IssuingCARevoked; d.Approval.State != admin.ApprovalApproved || got == nil || got.CA != "hufu-ca" || got.Reason != "cACompromise" ||
		got.IssuingSerial != strings.Repeat("0", 32-len(serial.Text(16)))+serial.Text(16) || got.RootCRLNumber == 0 || got.RootCRLError != "" {
		t.Fatalf("decision: %+v %+v", d.Approval, d.IssuingCARevoked)
	}
	// The answer's time is the batch's, as the entry stores it (nothing reads it back after
	// the commit, where a failure would report a revocation that took effect as refused).
	if r, _, err := e.IssuingCARevocation(bg); err != nil || !r.At.Equal(d.IssuingCARevoked.Revoked) || r.Reason != ca.ReasonCACompromise {
		t.Fatalf("answered revoked at %v, the entry says %+v (%v)", d.IssuingCARevoked.Revoked, r, err)
	}

	// A relying party fetching the root CRL from the PKI listener now finds the issuing CA.
	resp, err := http.Get("http://" + a.d.PKIAddr().String() + "/ca/hufu-ca/root.crl")
	if err != nil {
		t.Fatal(err)
	}
	der, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("root.crl: %d", resp.StatusCode)
	}
	crl, err := smx509.ParseRevocationList(der)
	if err != nil {
		t.Fatal(err)
	}
	if err := crl.CheckSignatureFrom(e.Root()); err != nil || crl.Number.Uint64() != d.IssuingCARevoked.RootCRLNumber {
		t.Fatalf("root CRL: signature %v, number %v, want %d", err, crl.Number, d.IssuingCARevoked.RootCRLNumber)
	}
	found := false
	for _, en := range crl.RevokedCertificateEntries {
		if en.SerialNumber.Cmp(serial) == 0 {
			found = en.ReasonCode == ca.ReasonCACompromise
		}
	}
	if !found || len(crl.RevokedCertificateEntries) != 1 {
		t.Fatalf("root CRL entries %+v: want the issuing CA %x with reason cACompromise", crl.RevokedCertificateEntries, serial)
	}

	// Nothing more is issued under it: refused as FailedPrecondition, at planning and at
	// signing.
	var refused *apierr.Error
	if _, err := e.Plan(app("o-after")); !errors.Is(err, ca.ErrIssuingCARevoked) || !errors.As(err, &refused) || refused.Kind != apierr.FailedPrecondition {
		t.Fatalf("planning under a revoked issuing CA: %v", err)
	}
	if _, err := e.Fetch(bg, "o-after", app("o-after")); !errors.Is(err, ca.ErrIssuingCARevoked) || !errors.As(err, &refused) || refused.Kind != apierr.FailedPrecondition {
		t.Fatalf("issuing under a revoked issuing CA: %v", err)
	}

	// Asking again is refused; so is approving the decided request again.
	_, err = sam.RevokeIssuingCA(bg, "hufu-ca", "keyCompromise")
	wantStatus(t, "revoking again", err, http.StatusConflict, "revoked already")
	_, err = sam.Approve(bg, req.Approval.ID)
	wantStatus(t, "approving again", err, http.StatusConflict, "already approved")

	if code, body := a.callBody("GET", "/metrics", admin.MetricsReader, ""); code != http.StatusOK || !strings.Contains(string(body), `hufu_ca_issuing_revoked{ca="hufu-ca"} 1`) {
		t.Fatalf("metrics: %d, no hufu_ca_issuing_revoked 1 for hufu-ca", code)
	}

	var asked, approved, revoked, refusedUnknown bool
	for _, r := range records(t, a.export()) {
		d, _ := r["details"].(map[string]any)
		ok := r["outcome"] == "ok"
		asked = asked || (ok && r["action"] == "admin.approval.request" && d["kind"] == admin.ApprovalIssuingCARevocation && d["token"] == "sam" && d["ca"] == "hufu-ca" && d["reason"] == "cACompromise")
		approved = approved || (ok && r["action"] == "admin.approval.approve" && d["kind"] == admin.ApprovalIssuingCARevocation && d["token"] == "sue" && d["ca"] == "hufu-ca")
		revoked = revoked || (ok && r["action"] == "ca.revoke" && r["actor"] == "admin:sue" && d["level"] == "root" && d["reason"] == "2")
		refusedUnknown = refusedUnknown || (r["outcome"] == "denied" && r["action"] == "admin.ca.revoke_issuing" && d["ca"] == "other-ca")
	}
	if !asked || !approved || !revoked || !refusedUnknown {
		t.Fatalf("audit: asked %v, approved %v, revoked %v, unknown CA refused %v", asked, approved, revoked, refusedUnknown)
	}
}

// TestIssuanceUnderARevokedIssuingCA: through the phone's gRPC calls, an order whose payment
// was reserved before the issuing CA was revoked is abandoned when the CA refuses to sign
// (FailedPrecondition, the payment given back, the order cancelled), and a payment after the
// revocation is refused the same way before anything is reserved; neither leaves a
// certificate.
func TestIssuanceUnderARevokedIssuingCA(t *testing.T) {
	a, _, _ := issuanceAppliance(t)
	desk := a.desk()
	p := newApplicant(t, a, "13800138601", "carevoke-dev-1", "carevoke-key-1")
	first := p.issue(desk)
	renew := func(id string) string {
		t.Helper()
		r, err := p.certs.RenewCertificate(bg, &hufuv1.RenewCertificateRequest{RequestId: id, Serial: first, ValidityYears: 1})
		if err != nil {
			t.Fatal(err)
		}
		return r.Order.Id
	}
	during := renew("carevoke-renew-1")
	held, release := holdIssuanceAt(a, certs.FaultIssuingReserved)
	paid := make(chan error, 1)
	go func() { _, err := p.pay(during, "carevoke-pay-1"); paid <- err }()
	select {
	case <-held:
	case err := <-paid:
		t.Fatalf("the payment returned before its reservation was held: %v", err)
	}
	if err := a.live.Daemon.EmbeddedCA("hufu-ca").RevokeIssuingCA(bg, ca.ReasonKeyCompromise); err != nil {
		t.Fatal(err)
	}
	close(release)
	refusedForGood := func(what string, err error) {
		t.Helper()
		wantCode(t, err, codes.FailedPrecondition, "")
		if msg := errMessage(err); !strings.Contains(msg, "issuing CA of hufu-ca is revoked") || !strings.Contains(msg, "given back") {
			t.Fatalf("%s: the refusal does not say the issuing CA is revoked and the payment given back: %v", what, err)
		}
	}
	refusedForGood("reserved before the revocation", <-paid)
	after := renew("carevoke-renew-2")
	_, err := p.pay(after, "carevoke-pay-2")
	refusedForGood("paid after the revocation", err)
	for _, id := range []string{during, after} {
		got, err := p.certs.GetOrder(bg, &hufuv1.GetOrderRequest{OrderId: id})
		if err != nil || got.Order.Status == hufuv1.OrderStatus_ORDER_STATUS_COMPLETED {
			t.Fatalf("order %s after the refusal: %v %v", id, got, err)
		}
	}
	got, err := p.certs.GetOrder(bg, &hufuv1.GetOrderRequest{OrderId: during})
	if err != nil || got.Order.Status != hufuv1.OrderStatus_ORDER_STATUS_CANCELLED {
		t.Fatalf("the order reserved before the revocation: %v %v", got, err)
	}
}
