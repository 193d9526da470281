package ca_test

import (
	"bytes"
	"context"
	"crypto/ecdsa"
	"crypto/rand"
	"errors"
	"sync"
	"testing"
	"time"

	"github.com/emmansun/gmsm/sm2"
	"github.com/emmansun/gmsm/smx509"

	"github.com/hufu-hsm/hufu/daemon/ca"
	"github.com/hufu-hsm/hufu/hsm"
	"github.com/hufu-hsm/hufu/softhsm/softhsmtest"
	"github.com/hufu-hsm/hufu/store"
)

func TestMain(m *testing.M) { softhsmtest.Main(m) }

type clock struct {
	mu  sync.Mutex
	now time.Time
}

func (c *clock) Now() time.Time { c.mu.Lock(); defer c.mu.Unlock(); return c.now }
func (c *clock) Advance(d time.Duration) {
	c.mu.Lock()
	c.now = c.now.Add(d)
	c.mu.Unlock()
}

func setup(t testing.TB) (*store.Store, *hsm.Keyring, *clock) {
	t.Helper()
	tok := softhsmtest.New(t)
	kr, err := hsm.Initialize(context.Background(), hsm.Config{ModulePath: tok.ModulePath, TokenLabel: tok.Label, PINFile: tok.PINFile})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = kr.Close() })
	c := &clock{now: time.Date(2026, 11, 30, 9, 0, 0, 0, time.UTC)}
	st, err := store.Open(context.Background(), store.Options{Dir: t.TempDir(), Clock: c})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = st.Close(context.Background()) })
	return st, kr, c
}

func TestEmbeddedCA(t *testing.T) {
	ctx := context.Background()
	st, kr, c := setup(t)
	if _, err := ca.Open(ctx, st, kr, c, "test-ca", "Test CA", ca.Options{CRLNextUpdate: time.Hour, SubjectIdentity: ca.IdentityFull}); !errors.Is(err, ca.ErrNoCA) {
		t.Fatalf("open before init: %v", err)
	}
	for i, want := range []bool{true, false} {
		created, err := ca.Ensure(ctx, st, kr, "test-ca", "Test CA", c.Now(), ca.Options{})
		if err != nil || created != want {
			t.Fatalf("ensure #%d: created %v, %v", i, created, err)
		}
	}
	e, err := ca.Open(ctx, st, kr, c, "test-ca", "Test CA", ca.Options{CRLNextUpdate: time.Hour, SubjectIdentity: ca.IdentityFull})
	if err != nil {
		t.Fatal(err)
	}
	holder, _ := sm2.GenerateKey(rand.Reader)
	app := &ca.Application{OrderID: "o1", UserID: "u1", Name: "张三", IDNumberMask: "110105********002X", IDNumber: "11010519491231002X", Usage: ca.UsageSigning,
		PublicKey: &holder.PublicKey, ValidityYears: 2, Platforms: []string{"zj-ggzy"}, Regions: []string{"330000"}}
	issued, err := e.Fetch(ctx, "o1", app)
	if err != nil {
		t.Fatal(err)
	}
	cert, err := smx509.ParseCertificate(issued.DER)
	if err != nil {
		t.Fatal(err)
	}
	roots, inter := smx509.NewCertPool(), smx509.NewCertPool()
	roots.AddCert(e.Root())
	inter.AddCert(e.Issuing())
	if _, err := cert.Verify(smx509.VerifyOptions{Roots: roots, Intermediates: inter, CurrentTime: c.Now().Add(time.Hour),
		KeyUsages: []smx509.ExtKeyUsage{smx509.ExtKeyUsageAny}}); err != nil {
		t.Fatalf("chain: %v", err)
	}
	if !cert.NotAfter.Equal(cert.NotBefore.AddDate(2, 0, 0)) || cert.Subject.CommonName != "张三" {
		t.Fatalf("validity %v..%v subject %v", cert.NotBefore, cert.NotAfter, cert.Subject)
	}
	if cert.KeyUsage&smx509.KeyUsageDigitalSignature == 0 || cert.KeyUsage&smx509.KeyUsageContentCommitment == 0 || cert.IsCA {
		t.Fatalf("key usage %b", cert.KeyUsage)
	}
	if !cert.PublicKey.(*ecdsa.PublicKey).Equal(&holder.PublicKey) {
		t.Fatal("certified another key")
	}
	p, ok, err := ca.PlatformsOf(cert)
	if err != nil || !ok || p.Platforms[0] != "zj-ggzy" || p.Regions[0] != "330000" {
		t.Fatalf("platforms extension %+v %v %v", p, ok, err)
	}
	again, _ := e.Fetch(ctx, "o1", app)
	if again.Serial == issued.Serial {
		t.Fatal("serials repeat")
	}

	crl1 := mustCRL(t, e, ctx)
	if len(crl1.RevokedCertificateEntries) != 0 {
		t.Fatal("revoked before revocation")
	}
	if err := e.Revoke(ctx, issued.Serial, ca.ReasonCessation); err != nil {
		t.Fatal(err)
	}
	if err := e.Revoke(ctx, issued.Serial, ca.ReasonCessation); err != nil {
		t.Fatalf("revoking twice: %v", err)
	}
	crl2 := mustCRL(t, e, ctx)
	if crl2.Number.Cmp(crl1.Number) <= 0 || len(crl2.RevokedCertificateEntries) != 1 ||
		crl2.RevokedCertificateEntries[0].SerialNumber.Cmp(cert.SerialNumber) != 0 {
		t.Fatalf("CRL after revocation: number %v entries %d", crl2.Number, len(crl2.RevokedCertificateEntries))
	}
	// A fresh CRL is served as is; past half its validity a new one is made.
	raw1, _ := e.CRL(ctx)
	raw2, _ := e.CRL(ctx)
	if !bytes.Equal(raw1, raw2) {
		t.Fatal("a fresh CRL was remade")
	}
	c.Advance(40 * time.Minute)
	crl3 := mustCRL(t, e, ctx)
	if crl3.Number.Cmp(crl2.Number) <= 0 || !crl3.NextUpdate.Equal(crl3.ThisUpdate.Add(time.Hour)) {
		t.Fatalf("CRL not renewed: %v next %v", crl3.Number, crl3.NextUpdate)
	}
}

func mustCRL(t *testing.T, e *ca.Embedded, ctx context.Context) *smx509.RevocationList {
	t.Helper()
	der, err := e.CRL(ctx)
	if err != nil {
		t.Fatal(err)
	}
	crl, err := smx509.ParseRevocationList(der)
	if err != nil {
		t.Fatal(err)
	}
	if err := crl.CheckSignatureFrom(e.Issuing()); err != nil {
		t.Fatalf("CRL signature: %v", err)
	}
	if crl.Issuer.String() != e.Issuing().Subject.String() {
		t.Fatalf("CRL issuer %v", crl.Issuer)
	}
	return crl
}
