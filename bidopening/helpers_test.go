package bidopening

import (
	"bytes"
	"context"
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/sha256"
	"crypto/x509/pkix"
	"math/big"
	"sync"
	"testing"
	"time"

	"github.com/emmansun/gmsm/sm2"
	"github.com/emmansun/gmsm/smx509"

	"github.com/hufu-hsm/hufu/cosign"
)

// Fixed times keep every test independent of the clock: the opening's window is 09:00-10:00
// on 1 December 2026, and the bidders' certificates are valid through 2026-2028.
var (
	sealedAt    = time.Date(2026, 12, 1, 8, 0, 0, 0, time.UTC)
	windowStart = time.Date(2026, 12, 1, 9, 0, 0, 0, time.UTC)
	windowEnd   = time.Date(2026, 12, 1, 10, 0, 0, 0, time.UTC)
	closedAt    = time.Date(2026, 12, 1, 10, 5, 0, 0, time.UTC)
	certFrom    = time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	certUntil   = time.Date(2028, 12, 31, 0, 0, 0, 0, time.UTC)
	at          = func(h, m, s, ns int) time.Time { return time.Date(2026, 12, 1, h, m, s, ns, time.UTC) }
)

// testSigner is the report key, an in-memory ECDSA P-256 key standing in for the HSM.
type testSigner struct{ key *ecdsa.PrivateKey }

var _ Signer = (*testSigner)(nil)

func (s *testSigner) SignDigest(_ context.Context, digest []byte) ([]byte, error) {
	return ecdsa.SignASN1(rand.Reader, s.key, digest)
}

func (s *testSigner) PublicKey() *ecdsa.PublicKey { return &s.key.PublicKey }

// reportKey is fixed (a scalar derived from a label), so that the committed fuzz seeds that
// are whole signed reports verify in every run.
var reportKey = func() *testSigner {
	d := sha256.Sum256([]byte("hufu bidopening test report key"))
	k, err := ecdsa.ParseRawPrivateKey(elliptic.P256(), d[:])
	if err != nil {
		panic(err)
	}
	return &testSigner{k}
}()

func newP256Signer(t testing.TB) *testSigner {
	t.Helper()
	k, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	return &testSigner{k}
}

// bidder is a certificate holder: either an ordinary gmsm SM2 key or a two-party cosign key
// (the phone's half with an in-process server), with a self-signed SM2-with-SM3 certificate.
type bidder struct {
	name   string
	serial string
	signer crypto.Signer // *sm2.PrivateKey or *cosign.Key
	cert   []byte
}

func (b *bidder) point(t testing.TB) cosign.Point {
	t.Helper()
	p, err := cosign.PointFromPublicKey(b.signer.Public().(*ecdsa.PublicKey))
	if err != nil {
		t.Fatal(err)
	}
	return p
}

// sign makes the SM2 signature on a statement text: e = SM3(Z_A ‖ text) with the default
// signer ID, then gmsm's signature on e, or the two-party protocol for a cosign key.
func (b *bidder) sign(t testing.TB, text string) cosign.Signature {
	t.Helper()
	pub := b.point(t)
	e, err := cosign.Digest(&pub, nil, []byte(text))
	if err != nil {
		t.Fatal(err)
	}
	switch k := b.signer.(type) {
	case *cosign.Key:
		sig, err := k.SignDigest(context.Background(), rand.Reader, &e)
		if err != nil {
			t.Fatal(err)
		}
		return sig
	case *sm2.PrivateKey:
		der, err := sm2.SignASN1(rand.Reader, k, e[:], nil) // nil opts: e is signed as given
		if err != nil {
			t.Fatal(err)
		}
		sig, err := cosign.ParseSignatureASN1(der)
		if err != nil {
			t.Fatal(err)
		}
		return sig
	}
	t.Fatalf("unknown key type %T", b.signer)
	return cosign.Signature{}
}

// selfSigned makes a self-signed certificate for key (SM2 with SM3 for an SM2 key).
func selfSigned(t testing.TB, key crypto.Signer, name, serial string, from, until time.Time) []byte {
	t.Helper()
	n, ok := new(big.Int).SetString(serial, 16)
	if !ok {
		t.Fatalf("bad serial %q", serial)
	}
	tmpl := &smx509.Certificate{
		SerialNumber: n,
		Subject:      pkix.Name{CommonName: name, Organization: []string{"某某建设有限公司"}, Country: []string{"CN"}},
		NotBefore:    from,
		NotAfter:     until,
		KeyUsage:     smx509.KeyUsageDigitalSignature | smx509.KeyUsageContentCommitment | smx509.KeyUsageKeyEncipherment,
	}
	der, err := smx509.CreateCertificate(rand.Reader, tmpl, tmpl, key.Public(), key)
	if err != nil {
		t.Fatal(err)
	}
	return der
}

func newSM2Key(t testing.TB) *sm2.PrivateKey {
	t.Helper()
	k, err := sm2.GenerateKey(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	return k
}

// fixture is built once per test binary: key generation and certificates are the slow part.
type fixture struct {
	alpha, beta, gamma *bidder
	t1                 cosign.Point // a stand-in for T1 (any valid point)
}

var (
	fixtureOnce sync.Once
	theFixture  *fixture
)

func getFixture(t testing.TB) *fixture {
	t.Helper()
	fixtureOnce.Do(func() {
		f := &fixture{}
		alphaKey := newSM2Key(t)
		f.alpha = &bidder{name: "alpha", serial: "4a3f0c9e7d21b65580aa", signer: alphaKey}
		f.alpha.cert = selfSigned(t, alphaKey, "甲公司", f.alpha.serial, certFrom, certUntil)
		betaKey, _, err := cosign.NewLocalPair(rand.Reader, []byte("bidopening test beta"))
		if err != nil {
			t.Fatal(err)
		}
		f.beta = &bidder{name: "beta", serial: "5B00C1D2E3F4A5B6C7D8E9F0A1B2C3D4", signer: betaKey}
		f.beta.cert = selfSigned(t, betaKey, "乙公司", f.beta.serial, certFrom, certUntil)
		// gamma registered an envelope but never consents: no key needed.
		f.gamma = &bidder{name: "gamma", serial: "0c0ffee0"}
		f.t1 = f.alpha.point(t)
		theFixture = f
	})
	if theFixture == nil {
		t.Fatal("fixture setup failed")
	}
	return theFixture
}

func ctHash(label string) [32]byte { return sha256.Sum256([]byte("SM2 ciphertext of " + label)) }

// envelopes of the fixture report, in id order.
func (f *fixture) envelopes() []Envelope {
	return []Envelope{
		{ID: "env-a1", Serial: f.alpha.serial, CiphertextSHA256: ctHash("a1"), RegisteredAt: at(7, 10, 0, 0)},
		{ID: "env-a2", Serial: f.alpha.serial, CiphertextSHA256: ctHash("a2"), RegisteredAt: at(7, 12, 30, 250000000)},
		{ID: "env-b1", Serial: f.beta.serial, CiphertextSHA256: ctHash("b1"), RegisteredAt: at(7, 40, 0, 1)},
		{ID: "env-c1", Serial: f.gamma.serial, CiphertextSHA256: ctHash("c1"), RegisteredAt: sealedAt},
	}
}

// statement returns bidder b's consent statement for the given envelopes of the fixture.
func (f *fixture) statement(b *bidder, session string, when time.Time, ids ...string) Statement {
	s := Statement{Opening: "opn-2026-0042", Project: "ZB-2026-0815", Serial: b.serial, Session: session, Time: when}
	for _, e := range f.envelopes() {
		for _, id := range ids {
			if e.ID == id {
				s.Envelopes = append(s.Envelopes, StatementEnvelope{ID: id, CiphertextSHA256: e.CiphertextSHA256, T1SHA256: T1Hash(&f.t1)})
			}
		}
	}
	return s
}

// consent signs s with b's key and makes the consent line's value.
func consentFor(t testing.TB, b *bidder, s Statement, accepted time.Time, delegated bool) Consent {
	t.Helper()
	text, err := s.Marshal()
	if err != nil {
		t.Fatal(err)
	}
	return Consent{
		Session: s.Session, Serial: b.serial, Delegated: delegated, AcceptedAt: accepted,
		Statement: text, Signature: b.sign(t, text), Certificate: b.cert,
	}
}

// report is a realistic opening: alpha consents to both of their envelopes and both are
// released in bulk (one fails its C3 check); beta, an enterprise member with a delegated
// pair, consents and decrypts through the phone; gamma never consents. Refused attempts
// before the window and after it.
func (f *fixture) report(t testing.TB) *Report {
	t.Helper()
	envs := f.envelopes()
	return &Report{
		Opening: Opening{
			ID: "opn-2026-0042", System: "kaibiao-01", ProjectCode: "ZB-2026-0815",
			ProjectName: "某市第二污水处理厂扩建工程（第一标段） \"A\" & <B>", Platform: "某市公共资源交易中心",
			WindowStart: windowStart, WindowEnd: windowEnd, SealedAt: sealedAt, ClosedAt: closedAt,
			ManifestSHA256: ManifestSHA256(envs),
		},
		Envelopes: envs,
		Consents: []Consent{
			consentFor(t, f.alpha, f.statement(f.alpha, "scan-7f3a", at(9, 0, 58, 123456789), "env-a1", "env-a2"), at(9, 1, 0, 0), false),
			consentFor(t, f.beta, f.statement(f.beta, "scan-80c2", at(9, 2, 30, 0), "env-b1"), at(9, 2, 30, 500000000), true),
		},
		Releases: []Release{
			{Envelope: "env-b1", At: at(9, 3, 0, 0), Outcome: OutcomeOK, Via: ViaPhone},
			{Envelope: "env-a1", At: at(9, 5, 0, 0), Outcome: OutcomeOK, Via: ViaRelease},
			{Envelope: "env-a2", At: at(9, 5, 0, 1), Outcome: "c3_mismatch", Via: ViaRelease},
		},
		Attempts: []Attempt{
			{At: at(8, 30, 0, 0), Via: ViaDecrypt, Envelope: "env-a1", Reason: "before_window"},
			{At: at(8, 59, 59, 999999999), Via: ViaConsent, Envelope: "", Reason: "before_window"},
			{At: at(9, 10, 0, 0), Via: ViaRelease, Envelope: "env-c1", Reason: "no_consent"},
		},
		Audit: AuditPosition{Seq: 48213, Head: sha256.Sum256([]byte("audit head"))},
	}
}

// resign writes r without Sign's checks and signs it with key: a report that a faulty or
// dishonest appliance could make, which only Verify's own checks can reject.
func resign(t testing.TB, r *Report, key *testSigner) []byte {
	t.Helper()
	body, err := r.marshalBody()
	if err != nil {
		t.Fatal(err)
	}
	return signBody(t, body, key)
}

func signBody(t testing.TB, body []byte, key *testSigner) []byte {
	t.Helper()
	id, err := keyID(key.PublicKey())
	if err != nil {
		t.Fatal(err)
	}
	out, err := appendSignature(context.Background(), body, key, key.PublicKey(), id)
	if err != nil {
		t.Fatal(err)
	}
	return out
}

func mustSign(t testing.TB, r *Report, key *testSigner) []byte {
	t.Helper()
	b, err := r.Sign(context.Background(), key)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// splitLines returns the lines of a report, each with its "\n".
func splitLines(b []byte) [][]byte {
	var lines [][]byte
	for len(b) > 0 {
		i := bytes.IndexByte(b, '\n')
		if i < 0 {
			return append(lines, b)
		}
		lines = append(lines, b[:i+1])
		b = b[i+1:]
	}
	return lines
}

func joinLines(lines [][]byte) []byte {
	var out []byte
	for _, l := range lines {
		out = append(out, l...)
	}
	return out
}
