package cms

import (
	"bytes"
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509/pkix"
	"encoding/pem"
	"errors"
	"math/big"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/emmansun/gmsm/sm2"
	"github.com/emmansun/gmsm/sm3"
	"github.com/emmansun/gmsm/smx509"

	"github.com/hufu-hsm/hufu/cosign"
)

// Fixed times keep every test independent of the clock: certificates are valid for 2025–2026
// and documents are signed in the middle.
var (
	certNotBefore = time.Date(2025, 1, 1, 0, 0, 0, 0, time.UTC)
	certNotAfter  = time.Date(2026, 12, 31, 23, 59, 59, 0, time.UTC)
	signingTime   = time.Date(2025, 6, 1, 8, 30, 15, 0, time.UTC)
	document      = []byte("招标文件 — bid document, page 1 of 1\n")
	documentHash  = sm3.Sum(document)
)

// ca is a self-made SM2 certification authority.
type ca struct {
	key    *sm2.PrivateKey
	cert   *smx509.Certificate
	serial int64
}

func newCA(t testing.TB, name string) *ca {
	t.Helper()
	key, err := sm2.GenerateKey(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &smx509.Certificate{
		SerialNumber:          big.NewInt(1),
		Subject:               pkix.Name{CommonName: name, Organization: []string{"hufu test"}, Country: []string{"CN"}},
		NotBefore:             certNotBefore.AddDate(-1, 0, 0),
		NotAfter:              certNotAfter.AddDate(5, 0, 0),
		IsCA:                  true,
		BasicConstraintsValid: true,
		KeyUsage:              smx509.KeyUsageCertSign | smx509.KeyUsageCRLSign,
	}
	der, err := smx509.CreateCertificate(rand.Reader, tmpl, tmpl, key.Public(), key)
	if err != nil {
		t.Fatal(err)
	}
	cert, err := smx509.ParseCertificate(der)
	if err != nil {
		t.Fatal(err)
	}
	return &ca{key: key, cert: cert, serial: 100}
}

// issue makes an end-entity certificate for pub.
func (c *ca) issue(t testing.TB, name string, pub any, notBefore, notAfter time.Time) *smx509.Certificate {
	t.Helper()
	c.serial++
	tmpl := &smx509.Certificate{
		SerialNumber: big.NewInt(c.serial),
		Subject:      pkix.Name{CommonName: name, Organization: []string{"某某建设有限公司"}, Country: []string{"CN"}},
		NotBefore:    notBefore,
		NotAfter:     notAfter,
		KeyUsage:     smx509.KeyUsageDigitalSignature | smx509.KeyUsageContentCommitment | smx509.KeyUsageKeyEncipherment,
		ExtKeyUsage:  []smx509.ExtKeyUsage{smx509.ExtKeyUsageAny},
	}
	der, err := smx509.CreateCertificate(rand.Reader, tmpl, c.cert, pub, c.key)
	if err != nil {
		t.Fatal(err)
	}
	cert, err := smx509.ParseCertificate(der)
	if err != nil {
		t.Fatal(err)
	}
	return cert
}

func (c *ca) pool() *smx509.CertPool {
	p := smx509.NewCertPool()
	p.AddCert(c.cert)
	return p
}

// signer is an ordinary (not split) SM2 key with its certificate.
type signer struct {
	key  *sm2.PrivateKey
	cert *smx509.Certificate
}

func newSigner(t testing.TB, c *ca, name string) *signer {
	t.Helper()
	key, err := sm2.GenerateKey(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	return &signer{key: key, cert: c.issue(t, name, key.Public(), certNotBefore, certNotAfter)}
}

// sign signs e = Digest(cert key, attrs) with the ordinary key.
func (s *signer) sign(t testing.TB, attrs []byte) cosign.Signature {
	t.Helper()
	e, err := Digest(&s.key.PublicKey, attrs)
	if err != nil {
		t.Fatal(err)
	}
	der, err := sm2.SignASN1(rand.Reader, s.key, e[:], nil)
	if err != nil {
		t.Fatal(err)
	}
	sig, err := cosign.ParseSignatureASN1(der)
	if err != nil {
		t.Fatal(err)
	}
	return sig
}

// splitSigner is a two-party key (phone share and in-process server share) with its
// certificate.
type splitSigner struct {
	key  *cosign.Key
	cert *smx509.Certificate
}

func newSplitSigner(t testing.TB, c *ca, name string) *splitSigner {
	t.Helper()
	key, _, err := cosign.NewLocalPair(rand.Reader, cosign.KeygenContext("user-1", "key-1"))
	if err != nil {
		t.Fatal(err)
	}
	return &splitSigner{key: key, cert: c.issue(t, name, key.Public(), certNotBefore, certNotAfter)}
}

func (s *splitSigner) sign(t testing.TB, attrs []byte) cosign.Signature {
	t.Helper()
	e, err := Digest(s.key.Public().(*ecdsa.PublicKey), attrs)
	if err != nil {
		t.Fatal(err)
	}
	sig, err := s.key.SignDigest(context.Background(), rand.Reader, &e)
	if err != nil {
		t.Fatal(err)
	}
	return sig
}

func mustAttrs(t testing.TB, digest []byte, at time.Time) []byte {
	t.Helper()
	der, err := SignedAttributes(digest, at)
	if err != nil {
		t.Fatal(err)
	}
	return der
}

// p256Cert is a certificate for a NIST P-256 key, which nothing here may accept as SM2.
func p256Cert(t testing.TB, c *ca) *smx509.Certificate {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	return c.issue(t, "p256", key.Public(), certNotBefore, certNotAfter)
}

// wantErr checks that err matches every sentinel in want (nil want: no error) and is an
// *Error naming part (when part is not empty).
func wantErr(t *testing.T, err error, part string, want ...error) {
	t.Helper()
	if len(want) == 0 {
		if err != nil {
			t.Fatalf("unexpected error: %v", err)
		}
		return
	}
	if err == nil {
		t.Fatalf("no error, want %v", want)
	}
	for _, w := range want {
		if !errors.Is(err, w) {
			t.Fatalf("error %q does not match %q", err, w)
		}
	}
	var e *Error
	if !errors.As(err, &e) {
		t.Fatalf("error %q is not a *cms.Error", err)
	}
	if part != "" && e.Part != part {
		t.Fatalf("error %q names part %q, want %q", err, e.Part, part)
	}
}

func writePEM(t testing.TB, dir, name, typ string, der []byte) string {
	t.Helper()
	path := filepath.Join(dir, name)
	if err := os.WriteFile(path, pem.EncodeToMemory(&pem.Block{Type: typ, Bytes: der}), 0o600); err != nil {
		t.Fatal(err)
	}
	return path
}

func writeFile(t testing.TB, dir, name string, b []byte) string {
	t.Helper()
	path := filepath.Join(dir, name)
	if err := os.WriteFile(path, b, 0o600); err != nil {
		t.Fatal(err)
	}
	return path
}

// replaceOnce replaces the single occurrence of old in b.
func replaceOnce(t testing.TB, b, old, new []byte) []byte {
	t.Helper()
	if bytes.Count(b, old) != 1 {
		t.Fatalf("pattern occurs %d times", bytes.Count(b, old))
	}
	return bytes.Replace(b, old, new, 1)
}

type ecdsaPub = ecdsa.PublicKey

func sm3Sum(b []byte) [32]byte { return sm3.Sum(b) }

func cosignSignature(der []byte) (cosign.Signature, error) { return cosign.ParseSignatureASN1(der) }
