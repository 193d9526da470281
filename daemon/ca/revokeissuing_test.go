package ca_test

import (
	"context"
	"crypto/ecdsa"
	"crypto/rand"
	"errors"
	"math/big"
	"testing"
	"time"

	"github.com/emmansun/gmsm/sm2"

	"github.com/hufu-hsm/hufu/daemon/ca"
	"github.com/hufu-hsm/hufu/daemon/ca/ocsp"
)

// gatedKeyring is the real SoftHSM keyring whose Unwrap waits at a gate once armed: a
// certificate signing is then held between its check of the root's list and its signature.
type gatedKeyring struct {
	ca.Keyring
	armed   chan struct{} // closed to arm the gate
	reached chan struct{} // receives when an Unwrap waits at the gate
	release chan struct{} // closed to let it through
}

func (k *gatedKeyring) Unwrap(ctx context.Context, blob, ad []byte) ([]byte, error) {
	select {
	case <-k.armed:
		k.reached <- struct{}{}
		<-k.release
	default:
	}
	return k.Keyring.Unwrap(ctx, blob, ad)
}

// TestSigningOrderedAgainstIssuingCARevocation: a certificate signing that passed its check
// of the root's list before the issuing CA's revocation finishes before the revocation
// commits (the revocation waits for it), and one that starts after is refused; no
// certificate is signed after the revocation committed.
func TestSigningOrderedAgainstIssuingCARevocation(t *testing.T) {
	ctx := context.Background()
	st, kr, c := setup(t)
	gk := &gatedKeyring{Keyring: kr, armed: make(chan struct{}), reached: make(chan struct{}, 1), release: make(chan struct{})}
	e := openCA(t, st, gk, c, time.Hour)
	holder, _ := sm2.GenerateKey(rand.Reader)
	app := &ca.Application{OrderID: "o-race", Name: "张三", IDNumber: "11010519491231002X", Usage: ca.UsageSigning, PublicKey: &holder.PublicKey, ValidityYears: 1}
	p, err := e.Plan(app)
	if err != nil {
		t.Fatal(err)
	}

	close(gk.armed)
	signed := make(chan error, 1)
	go func() { _, err := e.IssuePlanned(ctx, app, p); signed <- err }()
	<-gk.reached // checked the list (not revoked), now unwrapping the key to sign

	revoked := make(chan error, 1)
	go func() {
		_, err := e.RevokeIssuingCAApproved(ctx, ca.ReasonKeyCompromise, "admin:sue", nil)
		revoked <- err
	}()
	select {
	case err := <-revoked:
		t.Fatalf("the revocation committed while a signing that checked before it was signing: %v", err)
	case <-time.After(200 * time.Millisecond):
	}
	if _, r, err := e.IssuingCARevocation(ctx); err != nil || r {
		t.Fatalf("revoked while the signing is held: %v %v", r, err)
	}
	close(gk.release)
	if err := <-signed; err != nil {
		t.Fatalf("the signing that checked before the revocation: %v", err)
	}
	if err := <-revoked; err != nil {
		t.Fatal(err)
	}
	if _, err := e.IssuePlanned(ctx, app, p); !errors.Is(err, ca.ErrIssuingCARevoked) {
		t.Fatalf("signing after the revocation committed: %v", err)
	}
}

// TestRevokedIssuingCAStillPublishes: after the issuing CA is revoked, its CRL goes on being
// made and signed by the issuing key (a leaf revoked afterwards is listed), and its OCSP
// responder goes on answering, signed by the issuing key: every certificate it issued is
// revoked at the issuing CA's revocation time (reason cACompromise for a compromised
// issuing key) unless its own entry is earlier; a serial it never issued stays unknown.
func TestRevokedIssuingCAStillPublishes(t *testing.T) {
	ctx := context.Background()
	st, kr, c := setup(t)
	e := openCA(t, st, kr, c, time.Hour)
	early, good, late := issue(t, e, "o-early"), issue(t, e, "o-good"), issue(t, e, "o-late")
	if err := e.Revoke(ctx, early.Serial, ca.ReasonSuperseded); err != nil {
		t.Fatal(err)
	}
	earlyAt := c.Now()
	c.Advance(time.Minute)
	caAt, err := e.RevokeIssuingCAApproved(ctx, ca.ReasonKeyCompromise, "admin:sue", nil)
	if err != nil {
		t.Fatal(err)
	}
	c.Advance(time.Minute)
	if err := e.Revoke(ctx, late.Serial, ca.ReasonCessation); err != nil {
		t.Fatal(err)
	}

	crl := levelCRL(t, e, ca.LevelIssuing, time.Hour) // signed by the issuing key, checked
	if len(crl.RevokedCertificateEntries) != 2 {
		t.Fatalf("issuing CRL after the CA's revocation: %d entries, want the early and the late leaf", len(crl.RevokedCertificateEntries))
	}

	issuedSerials := map[string]bool{early.Serial: true, good.Serial: true, late.Serial: true}
	src := e.OCSPSource(func(_ context.Context, serial string) (bool, error) { return issuedSerials[serial], nil })
	for _, tc := range []struct {
		name   string
		serial string
		want   ocsp.Status
	}{
		{"revoked before the CA", early.Serial, ocsp.Status{Status: ocsp.Revoked, RevokedAt: earlyAt, Reason: ca.ReasonSuperseded}},
		{"good until the CA's revocation", good.Serial, ocsp.Status{Status: ocsp.Revoked, RevokedAt: caAt, Reason: ca.ReasonCACompromise}},
		{"revoked after the CA", late.Serial, ocsp.Status{Status: ocsp.Revoked, RevokedAt: caAt, Reason: ca.ReasonCACompromise}},
		{"never issued", "7f", ocsp.Status{Status: ocsp.Unknown}},
	} {
		n, ok := new(big.Int).SetString(tc.serial, 16)
		if !ok {
			t.Fatalf("%s: serial %q", tc.name, tc.serial)
		}
		got, err := src.Status(ctx, n)
		if err != nil || got.Status != tc.want.Status || !got.RevokedAt.Equal(tc.want.RevokedAt) || got.Reason != tc.want.Reason {
			t.Fatalf("%s: OCSP status %+v (%v), want %+v", tc.name, got, err, tc.want)
		}
	}
	tbs := []byte("tbsResponseData")
	sig, err := e.SignOCSP(ctx, tbs)
	if err != nil {
		t.Fatalf("signing an OCSP response under the revoked issuing CA: %v", err)
	}
	if !sm2.VerifyASN1WithSM2(e.Issuing().PublicKey.(*ecdsa.PublicKey), nil, tbs, sig) {
		t.Fatal("the OCSP response's signature does not verify with the issuing CA's key")
	}
}
