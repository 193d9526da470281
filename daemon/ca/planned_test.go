package ca_test

import (
	"bytes"
	"context"
	"crypto/rand"
	"testing"
	"time"

	"github.com/emmansun/gmsm/sm2"
	"github.com/emmansun/gmsm/smx509"

	"github.com/hufu-hsm/hufu/daemon/ca"
)

// A planned certificate signed twice (the second time after a crash, from the reservation)
// has the same serial, validity and content; a plan outside the issuing CA is refused.
func TestPlannedIssueIsRepeatable(t *testing.T) {
	ctx := context.Background()
	st, kr, c := setup(t)
	if _, err := ca.Ensure(ctx, st, kr, "test-ca", "Test CA", c.Now(), ca.Options{}); err != nil {
		t.Fatal(err)
	}
	e, err := ca.Open(ctx, st, kr, c, "test-ca", "Test CA", ca.Options{CRLNextUpdate: time.Hour, SubjectIdentity: ca.IdentityFull})
	if err != nil {
		t.Fatal(err)
	}
	holder, _ := sm2.GenerateKey(rand.Reader)
	app := &ca.Application{OrderID: "o1", UserID: "u1", Name: "张三", IDNumber: "11010519491231002X", Usage: ca.UsageSigning,
		PublicKey: &holder.PublicKey, ValidityYears: 1, Platforms: []string{"zj-ggzy"}, Regions: []string{"330000"}}
	p, err := e.Plan(app)
	if err != nil {
		t.Fatal(err)
	}
	if _, ok := ca.ParseSerial(p.Serial); !ok || len(p.Serial) != 32 {
		t.Fatalf("planned serial %q", p.Serial)
	}
	c.Advance(time.Hour) // the second signature comes later: the plan, not the clock, decides
	var tbs [][]byte
	for range 2 {
		issued, err := e.IssuePlanned(ctx, app, p)
		if err != nil {
			t.Fatal(err)
		}
		cert, err := smx509.ParseCertificate(issued.DER)
		if err != nil {
			t.Fatal(err)
		}
		if issued.Serial != p.Serial || cert.SerialNumber.Text(16) != p.Serial || !cert.NotBefore.Equal(p.NotBefore) || !cert.NotAfter.Equal(p.NotAfter) {
			t.Fatalf("issued %s %v..%v, planned %s %v..%v", issued.Serial, cert.NotBefore, cert.NotAfter, p.Serial, p.NotBefore, p.NotAfter)
		}
		if err := cert.CheckSignatureFrom(e.Issuing()); err != nil {
			t.Fatal(err)
		}
		tbs = append(tbs, cert.RawTBSCertificate)
	}
	if !bytes.Equal(tbs[0], tbs[1]) {
		t.Fatal("signing the same plan twice made different certificate contents")
	}
	beyond := p
	beyond.NotAfter = e.Issuing().NotAfter.Add(time.Hour)
	if _, err := e.IssuePlanned(ctx, app, beyond); err == nil {
		t.Fatal("a plan beyond the issuing CA was signed")
	}
	if _, err := e.IssuePlanned(ctx, app, ca.Planned{Serial: "zz", NotBefore: p.NotBefore, NotAfter: p.NotAfter}); err == nil {
		t.Fatal("a bad serial was signed")
	}
}
