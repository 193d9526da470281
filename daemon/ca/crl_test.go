package ca_test

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/pem"
	"errors"
	"math/big"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/emmansun/gmsm/sm2"
	"github.com/emmansun/gmsm/smx509"

	"github.com/hufu-hsm/hufu/daemon/apierr"
	"github.com/hufu-hsm/hufu/daemon/ca"
	"github.com/hufu-hsm/hufu/store"
	"github.com/hufu-hsm/hufu/store/storepb"
)

func openCA(t testing.TB, st *store.Store, kr ca.Keyring, c ca.Clock, next time.Duration) *ca.Embedded {
	t.Helper()
	ctx := context.Background()
	if _, err := ca.Ensure(ctx, st, kr, "test-ca", "Test CA", c.Now(), ca.Options{}); err != nil {
		t.Fatal(err)
	}
	e, err := ca.Open(ctx, st, kr, c, "test-ca", "Test CA", ca.Options{CRLNextUpdate: next, SubjectIdentity: ca.IdentityFull})
	if err != nil {
		t.Fatal(err)
	}
	return e
}

func issue(t *testing.T, e *ca.Embedded, order string) *ca.Issued {
	t.Helper()
	holder, _ := sm2.GenerateKey(rand.Reader)
	issued, err := e.Fetch(context.Background(), order, &ca.Application{OrderID: order, UserID: "u1", Name: "张三",
		IDNumber: "11010519491231002X", Usage: ca.UsageSigning, PublicKey: &holder.PublicKey, ValidityYears: 1})
	if err != nil {
		t.Fatal(err)
	}
	return issued
}

// levelCRL returns level's CRL, checked as a relying party checks it: it parses, its
// signature verifies with the level's certificate (gmsm, and OpenSSL when installed), its
// issuer and AKI name that certificate, and its nextUpdate is thisUpdate plus the interval.
func levelCRL(t *testing.T, e *ca.Embedded, l ca.Level, interval time.Duration) *smx509.RevocationList {
	t.Helper()
	c, err := e.CRLAt(context.Background(), l)
	if err != nil {
		t.Fatal(err)
	}
	crl, err := smx509.ParseRevocationList(c.DER)
	if err != nil {
		t.Fatalf("%s CRL: %v", l, err)
	}
	signer := e.Issuing()
	if l == ca.LevelRoot {
		signer = e.Root()
	}
	if err := crl.CheckSignatureFrom(signer); err != nil {
		t.Fatalf("%s CRL signature: %v", l, err)
	}
	if !bytes.Equal(crl.RawIssuer, signer.RawSubject) || !bytes.Equal(crl.AuthorityKeyId, signer.SubjectKeyId) || len(signer.SubjectKeyId) == 0 {
		t.Fatalf("%s CRL issuer %v AKI %x, want %v %x", l, crl.Issuer, crl.AuthorityKeyId, signer.Subject, signer.SubjectKeyId)
	}
	if !crl.NextUpdate.Equal(crl.ThisUpdate.Add(interval)) || crl.Number.Uint64() != c.Number ||
		!crl.ThisUpdate.Equal(c.ThisUpdate) || !crl.NextUpdate.Equal(c.NextUpdate) {
		t.Fatalf("%s CRL times %v..%v number %v, record %+v", l, crl.ThisUpdate, crl.NextUpdate, crl.Number, c)
	}
	opensslVerifyCRL(t, c.DER, signer)
	return crl
}

// opensslVerifyCRL checks the CRL's signature with OpenSSL, when it is installed, as the
// repository's other OpenSSL checks do: pkeyutl over the TBSCertList with SM3 and the
// standard SM2 ID 1234567812345678. (`openssl crl -verify` and `openssl verify` cannot be
// given the ID in OpenSSL 3.0 and fail on every SM2 signature, gmsm's own CRLs included.)
func opensslVerifyCRL(t *testing.T, der []byte, signer *smx509.Certificate) {
	t.Helper()
	if _, err := exec.LookPath("openssl"); err != nil {
		t.Log("openssl not installed: CRL checked with gmsm only")
		return
	}
	crl, err := smx509.ParseRevocationList(der)
	if err != nil {
		t.Fatal(err)
	}
	pub, err := smx509.MarshalPKIXPublicKey(signer.PublicKey)
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	path := func(n string) string { return filepath.Join(dir, n) }
	for name, b := range map[string][]byte{"tbs": crl.RawTBSRevocationList, "sig": crl.Signature,
		"pub.pem": pem.EncodeToMemory(&pem.Block{Type: "PUBLIC KEY", Bytes: pub})} {
		if err := os.WriteFile(path(name), b, 0o600); err != nil {
			t.Fatal(err)
		}
	}
	out, err := exec.Command("openssl", "pkeyutl", "-verify", "-pubin", "-inkey", path("pub.pem"), "-rawin", "-digest", "sm3",
		"-in", path("tbs"), "-sigfile", path("sig"), "-pkeyopt", "distid:1234567812345678").CombinedOutput()
	if err != nil || !strings.Contains(string(out), "Verified Successfully") {
		t.Fatalf("openssl pkeyutl -verify of the CRL: %v\n%s", err, out)
	}
}

func TestCRLPerLevel(t *testing.T) {
	ctx := context.Background()
	st, kr, c := setup(t)
	e := openCA(t, st, kr, c, time.Hour)

	iss1, root1 := levelCRL(t, e, ca.LevelIssuing, time.Hour), levelCRL(t, e, ca.LevelRoot, time.Hour)
	if len(iss1.RevokedCertificateEntries) != 0 || len(root1.RevokedCertificateEntries) != 0 {
		t.Fatal("entries before any revocation")
	}
	leafA, leafB := issue(t, e, "oa"), issue(t, e, "ob")
	c.Advance(time.Minute)
	if err := e.Revoke(ctx, leafA.Serial, ca.ReasonKeyCompromise); err != nil {
		t.Fatal(err)
	}
	c.Advance(time.Minute)
	if err := e.Revoke(ctx, leafB.Serial, ca.ReasonUnspecified); err != nil {
		t.Fatal(err)
	}
	if err := e.Revoke(ctx, leafB.Serial, ca.ReasonCessation); err != nil {
		t.Fatalf("revoking twice: %v", err)
	}
	iss2 := levelCRL(t, e, ca.LevelIssuing, time.Hour)
	if iss2.Number.Cmp(iss1.Number) <= 0 || len(iss2.RevokedCertificateEntries) != 2 {
		t.Fatalf("issuing CRL after two revocations: number %v after %v, %d entries", iss2.Number, iss1.Number, len(iss2.RevokedCertificateEntries))
	}
	want := map[string]struct {
		at     time.Time
		reason int
	}{leafA.Serial: {c.Now().Add(-time.Minute), ca.ReasonKeyCompromise}, leafB.Serial: {c.Now(), ca.ReasonUnspecified}}
	for _, en := range iss2.RevokedCertificateEntries {
		w, ok := want[fmtSerial(en.SerialNumber)]
		if !ok || !en.RevocationTime.Equal(w.at.Truncate(time.Second)) || en.ReasonCode != w.reason {
			t.Fatalf("entry %x at %v reason %d, want %+v", en.SerialNumber, en.RevocationTime, en.ReasonCode, w)
		}
		r, revoked, err := e.Revocation(ctx, fmtSerial(en.SerialNumber))
		if err != nil || !revoked || !r.At.Equal(w.at) || r.Reason != w.reason {
			t.Fatalf("Revocation(%x) = %+v %v %v", en.SerialNumber, r, revoked, err)
		}
	}
	if _, revoked, err := e.Revocation(ctx, issue(t, e, "oc").Serial); revoked || err != nil {
		t.Fatalf("a certificate never revoked: %v %v", revoked, err)
	}
	if root2 := levelCRL(t, e, ca.LevelRoot, time.Hour); root2.Number.Cmp(root1.Number) != 0 {
		t.Fatalf("root CRL remade without a change: %v after %v", root2.Number, root1.Number)
	}

	// Half the validity later both levels are renewed, each with its own next number.
	c.Advance(31 * time.Minute)
	iss3, root3 := levelCRL(t, e, ca.LevelIssuing, time.Hour), levelCRL(t, e, ca.LevelRoot, time.Hour)
	if iss3.Number.Cmp(iss2.Number) <= 0 || root3.Number.Cmp(root1.Number) <= 0 || len(iss3.RevokedCertificateEntries) != 2 {
		t.Fatalf("renewal: issuing %v after %v, root %v after %v", iss3.Number, iss2.Number, root3.Number, root1.Number)
	}

	// Revoking the issuing CA puts it on the root CRL; the CA issues nothing more.
	if err := e.RevokeIssuingCA(ctx, ca.ReasonKeyCompromise); err != nil {
		t.Fatal(err)
	}
	root4 := levelCRL(t, e, ca.LevelRoot, time.Hour)
	if len(root4.RevokedCertificateEntries) != 1 || root4.RevokedCertificateEntries[0].SerialNumber.Cmp(e.Issuing().SerialNumber) != 0 ||
		root4.RevokedCertificateEntries[0].ReasonCode != ca.ReasonKeyCompromise || root4.Number.Cmp(root3.Number) <= 0 {
		t.Fatalf("root CRL after revoking the issuing CA: %+v", root4.RevokedCertificateEntries)
	}
	holder, _ := sm2.GenerateKey(rand.Reader)
	if _, err := e.Fetch(ctx, "od", &ca.Application{OrderID: "od", Name: "张三", IDNumber: "11010519491231002X", Usage: ca.UsageSigning, PublicKey: &holder.PublicKey, ValidityYears: 1}); err == nil ||
		!strings.Contains(err.Error(), "revoked") {
		t.Fatalf("issuing under a revoked issuing CA: %v", err)
	}
	if _, err := e.CRLAt(ctx, "middle"); err == nil {
		t.Fatal("a CRL of an unknown level")
	}
}

func fmtSerial(n *big.Int) string { return ca.SerialHex(n) }

// TestCRLEncoderMatchesGmsm: the streaming encoder writes the TBSCertList gmsm's
// CreateRevocationList writes for the same content, byte for byte (UTCTime and
// GeneralizedTime, serials with the top bit set, reasons present and omitted).
func TestCRLEncoderMatchesGmsm(t *testing.T) {
	ctx := context.Background()
	st, kr, c := setup(t)
	e := openCA(t, st, kr, c, time.Hour)
	at := time.Date(2027, 3, 4, 5, 6, 7, 0, time.UTC)
	entries := []smx509.RevocationListEntry{
		{SerialNumber: big.NewInt(1), RevocationTime: at, ReasonCode: 0},
		{SerialNumber: new(big.Int).SetBytes(bytes.Repeat([]byte{0xff}, 16)), RevocationTime: at.AddDate(30, 0, 0), ReasonCode: 1},
		{SerialNumber: new(big.Int).SetBytes(bytes.Repeat([]byte{0x41}, 20)), RevocationTime: at, ReasonCode: 10},
	}
	for _, n := range []int{0, len(entries)} {
		this, next := at, at.AddDate(25, 0, 0) // nextUpdate after 2049: GeneralizedTime
		ours, key, err := e.EncodeCRL(ctx, entries[:n], 300, this, next)
		if err != nil {
			t.Fatal(err)
		}
		theirs, err := smx509.CreateRevocationList(rand.Reader, &smx509.RevocationList{RevokedCertificateEntries: entries[:n],
			Number: big.NewInt(300), ThisUpdate: this, NextUpdate: next}, e.Issuing(), key)
		if err != nil {
			t.Fatal(err)
		}
		a, err := smx509.ParseRevocationList(ours)
		if err != nil {
			t.Fatalf("%d entries: %v", n, err)
		}
		b, _ := smx509.ParseRevocationList(theirs)
		if !bytes.Equal(a.RawTBSRevocationList, b.RawTBSRevocationList) {
			t.Fatalf("%d entries: TBSCertList differs from gmsm's\nours   %x\ntheirs %x", n, a.RawTBSRevocationList, b.RawTBSRevocationList)
		}
		if err := a.CheckSignatureFrom(e.Issuing()); err != nil {
			t.Fatalf("%d entries: %v", n, err)
		}
		opensslVerifyCRL(t, ours, e.Issuing())
	}
}

// TestRevocationsMigrate: a CA record written by an older build, with its list and CRL
// number inside, is moved to per-entry records in audited batches; running it again
// changes nothing; the next CRL lists every entry under a higher number.
func TestRevocationsMigrate(t *testing.T) {
	ctx := context.Background()
	st, kr, c := setup(t)
	e := openCA(t, st, kr, c, time.Hour)
	const n = 1203 // three batches
	var legacy []*storepb.RevokedSerial
	for i := range n {
		s := new(big.Int).Lsh(big.NewInt(int64(i+1)), 100)
		legacy = append(legacy, &storepb.RevokedSerial{Serial: s.Bytes(), RevokedUnixNano: c.Now().Add(time.Duration(i) * time.Second).UnixNano(), Reason: int32(i % 3)})
	}
	if err := ca.LegacyRevocations(ctx, st, "test-ca", legacy, 41); err != nil {
		t.Fatal(err)
	}
	before := auditCount(t, st, "ca.revocations.migrate")
	moved, err := ca.MigrateRevocations(ctx, st)
	if err != nil || moved != n {
		t.Fatalf("migrate: %d, %v", moved, err)
	}
	if got := auditCount(t, st, "ca.revocations.migrate") - before; got != 3 {
		t.Fatalf("%d audited batches, want 3", got)
	}
	if s, _ := ca.LegacyState(ctx, st, "test-ca"); len(s.Revoked) != 0 || s.CrlNumber != 0 || len(s.Crl) != 0 {
		t.Fatalf("CA record keeps %d entries, CRL number %d", len(s.Revoked), s.CrlNumber)
	}
	again, err := ca.MigrateRevocations(ctx, st)
	if err != nil || again != 0 || auditCount(t, st, "ca.revocations.migrate")-before != 3 {
		t.Fatalf("second migration: %d, %v", again, err)
	}
	// Interrupted after the first batch: the entries come back into the record (as a
	// crash before the later batches would leave them); nothing is counted twice.
	if err := ca.LegacyRevocations(ctx, st, "test-ca", legacy[:10], 0); err != nil {
		t.Fatal(err)
	}
	if again, err := ca.MigrateRevocations(ctx, st); err != nil || again != 0 {
		t.Fatalf("re-migrating moved entries: %d, %v", again, err)
	}
	crl := levelCRL(t, e, ca.LevelIssuing, time.Hour)
	if crl.Number.Uint64() != 42 || len(crl.RevokedCertificateEntries) != n {
		t.Fatalf("CRL after migration: number %v (want 42), %d entries", crl.Number, len(crl.RevokedCertificateEntries))
	}
	r, revoked, err := e.Revocation(ctx, ca.SerialHex(new(big.Int).SetBytes(legacy[7].Serial)))
	if err != nil || !revoked || r.Reason != 1 || !r.At.Equal(time.Unix(0, legacy[7].RevokedUnixNano)) {
		t.Fatalf("a migrated entry: %+v %v %v", r, revoked, err)
	}
}

func auditCount(t *testing.T, st *store.Store, action string) int {
	t.Helper()
	n := 0
	for from := uint64(1); ; {
		recs, err := st.AuditRecords(context.Background(), from, store.MaxAuditRange)
		if err != nil {
			t.Fatal(err)
		}
		if len(recs) == 0 {
			return n
		}
		for _, r := range recs {
			if r.Action == action {
				n++
			}
		}
		from = recs[len(recs)-1].Seq + 1
	}
}

// TestRevokeIssuingCAApproved: the admin surface's revocation refuses a reason a CA
// certificate is not revoked for, revokes nothing when the approval's part of the batch
// fails, writes the approval's part with the entry and its audit record, refuses a second
// revocation as FailedPrecondition, and a CA opened afterwards refuses to plan.
func TestRevokeIssuingCAApproved(t *testing.T) {
	ctx := context.Background()
	st, kr, c := setup(t)
	e := openCA(t, st, kr, c, time.Hour)
	revoked := func() bool {
		t.Helper()
		_, r, err := e.IssuingCARevocation(ctx)
		if err != nil {
			t.Fatal(err)
		}
		return r
	}
	for _, reason := range []int{ca.ReasonUnspecified, 6, ca.ReasonPrivilegeWidth, 10} {
		if _, err := e.RevokeIssuingCAApproved(ctx, reason, "admin:sue", nil); err == nil || revoked() {
			t.Fatalf("reason %d: %v", reason, err)
		}
	}
	decisionFailed := errors.New("the approval expired meanwhile")
	if _, err := e.RevokeIssuingCAApproved(ctx, ca.ReasonCACompromise, "admin:sue", func(*store.Tx) error { return decisionFailed }); !errors.Is(err, decisionFailed) || revoked() || e.IssuingRevoked() {
		t.Fatalf("a failed decision: %v, revoked %v", err, revoked())
	}
	before := auditCount(t, st, "test.decision")
	at, err := e.RevokeIssuingCAApproved(ctx, ca.ReasonCACompromise, "admin:sue", func(tx *store.Tx) error {
		return tx.Audit(store.Event{Actor: "admin:sue", Action: "test.decision", Subject: "z/approval/x", Outcome: store.OutcomeOK})
	})
	if err != nil || !revoked() || !e.IssuingRevoked() || auditCount(t, st, "test.decision") != before+1 {
		t.Fatalf("approved: %v, revoked %v", err, revoked())
	}
	// The time returned is the batch's, exactly as the entry stores it: the caller answers
	// with it instead of reading the entry back after the commit.
	if r, _, err := e.IssuingCARevocation(ctx); err != nil || !r.At.Equal(at) || at.Location() != time.UTC || !at.Equal(time.Unix(0, c.Now().UnixNano())) {
		t.Fatalf("revocation time returned %v, stored %v (%v), clock %v", at, r.At, err, c.Now())
	}
	root := levelCRL(t, e, ca.LevelRoot, time.Hour)
	if len(root.RevokedCertificateEntries) != 1 || root.RevokedCertificateEntries[0].ReasonCode != ca.ReasonCACompromise {
		t.Fatalf("root CRL: %+v", root.RevokedCertificateEntries)
	}
	var refused *apierr.Error
	_, err = e.RevokeIssuingCAApproved(ctx, ca.ReasonKeyCompromise, "admin:sue", nil)
	if !errors.Is(err, ca.ErrIssuingCARevoked) || !errors.As(err, &refused) || refused.Kind != apierr.FailedPrecondition {
		t.Fatalf("revoking again: %v", err)
	}
	if err := e.RevokeIssuingCA(ctx, ca.ReasonKeyCompromise); err != nil {
		t.Fatalf("RevokeIssuingCA stays idempotent: %v", err)
	}
	reopened := openCA(t, st, kr, c, time.Hour)
	holder, _ := sm2.GenerateKey(rand.Reader)
	if _, err := reopened.Plan(&ca.Application{OrderID: "op", Name: "张三", IDNumber: "11010519491231002X", Usage: ca.UsageSigning, PublicKey: &holder.PublicKey, ValidityYears: 1}); !errors.Is(err, ca.ErrIssuingCARevoked) || !reopened.IssuingRevoked() {
		t.Fatalf("planning with a CA opened after the revocation: %v", err)
	}
}
