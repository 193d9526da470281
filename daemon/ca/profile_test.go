package ca_test

import (
	"context"
	"crypto/ecdsa"
	"crypto/hmac"
	"crypto/rand"
	"encoding/asn1"
	"encoding/hex"
	"encoding/pem"
	"errors"
	"github.com/hufu-hsm/hufu/cosign"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/emmansun/gmsm/sm2"
	"github.com/emmansun/gmsm/sm3"
	"github.com/emmansun/gmsm/smx509"

	"github.com/hufu-hsm/hufu/daemon/ca"
)

const (
	testPublicURL = "https://pki.example.cn/hufu/" // the trailing slash is not doubled
	testIDNumber  = "11010519491231002x"           // normalised to upper case
	testUSCC      = "91330106MA2B0XYZ1K"
)

// The test vector of docs/certificates.md: HMAC-SM3 under the key 00 01 … 1f of
// "11010519491231002X", as `openssl mac -digest SM3 -macopt hexkey:… HMAC` prints it.
const (
	vectorKey   = "000102030405060708090a0b0c0d0e0f101112131415161718191a1b1c1d1e1f"
	vectorValue = "B0388348088FD3F9C27114FB639A0F32B762DD6E5194279CED98D8455EEF3AC5"
)

var (
	oidKeyUsage         = asn1.ObjectIdentifier{2, 5, 29, 15}
	oidBasicConstraints = asn1.ObjectIdentifier{2, 5, 29, 19}
	oidSKI              = asn1.ObjectIdentifier{2, 5, 29, 14}
	oidAKI              = asn1.ObjectIdentifier{2, 5, 29, 35}
	oidCDP              = asn1.ObjectIdentifier{2, 5, 29, 31}
	oidAIA              = asn1.ObjectIdentifier{1, 3, 6, 1, 5, 5, 7, 1, 1}
	oidEKU              = asn1.ObjectIdentifier{2, 5, 29, 37}
)

// sm3KeyID recomputes the documented Subject Key Identifier from the key itself: SM3 of the
// uncompressed point, leftmost 20 bytes.
func sm3KeyID(pub *ecdsa.PublicKey) []byte {
	point, err := cosign.PointFromPublicKey(pub)
	if err != nil {
		panic(err)
	}
	h := sm3.Sum(point[:])
	return h[:20]
}

// subjectAttr is one attribute of a parsed raw subject, with its ASN.1 string tag.
type subjectAttr struct {
	oid   string
	tag   int
	value string
}

// rdnSET is a relative distinguished name; encoding/asn1 reads a slice type named …SET
// as a SET OF.
type rdnSET []struct {
	Type  asn1.ObjectIdentifier
	Value asn1.RawValue
}

func rawSubjectOf(t *testing.T, cert *smx509.Certificate) []subjectAttr {
	t.Helper()
	var rdns []rdnSET
	if rest, err := asn1.Unmarshal(cert.RawSubject, &rdns); err != nil || len(rest) != 0 {
		t.Fatalf("subject: %v", err)
	}
	var out []subjectAttr
	for _, rdn := range rdns {
		if len(rdn) != 1 {
			t.Fatalf("a multi-valued RDN: %v", rdn)
		}
		out = append(out, subjectAttr{rdn[0].Type.String(), rdn[0].Value.Tag, string(rdn[0].Value.Bytes)})
	}
	return out
}

func extension(t *testing.T, cert *smx509.Certificate, oid asn1.ObjectIdentifier) (critical, found bool) {
	t.Helper()
	for _, e := range cert.Extensions {
		if e.Id.Equal(oid) {
			return e.Critical, true
		}
	}
	return false, false
}

func hmacSM3(t *testing.T, keyHex, msg string) string {
	t.Helper()
	key, _ := hex.DecodeString(keyHex)
	m := hmac.New(sm3.New, key)
	m.Write([]byte(msg))
	return strings.ToUpper(hex.EncodeToString(m.Sum(nil)))
}

// Every profile of the table, issued by the real embedded CA (SoftHSM2, Pebble) and parsed:
// key usage and its criticality, extended key usage, basic constraints, SKI as documented,
// AKI the issuer's SKI, CRL distribution point, AIA caIssuers and OCSP (on and off), the
// subject's attributes with their string types, and the platforms extension.
func TestProfilesParsed(t *testing.T) {
	ctx := context.Background()
	st, kr, c := setup(t)
	if _, err := ca.Ensure(ctx, st, kr, "test-ca", "Test CA", c.Now(), ca.Options{PublicURL: testPublicURL}); err != nil {
		t.Fatal(err)
	}
	key, _ := hex.DecodeString(vectorKey)
	const base = "https://pki.example.cn/hufu"

	// The CA certificates: SM3 key identifiers, the issuing CA pointing to the root's CRL
	// and certificate.
	e, err := ca.Open(ctx, st, kr, c, "test-ca", "Test CA", ca.Options{PublicURL: testPublicURL, SubjectIdentity: ca.IdentityFull})
	if err != nil {
		t.Fatal(err)
	}
	root, iss := e.Root(), e.Issuing()
	if !slices.Equal(root.SubjectKeyId, sm3KeyID(root.PublicKey.(*ecdsa.PublicKey))) ||
		!slices.Equal(iss.SubjectKeyId, sm3KeyID(iss.PublicKey.(*ecdsa.PublicKey))) || !slices.Equal(iss.AuthorityKeyId, root.SubjectKeyId) {
		t.Fatalf("CA key identifiers: root SKI %x, issuing SKI %x AKI %x", root.SubjectKeyId, iss.SubjectKeyId, iss.AuthorityKeyId)
	}
	if !slices.Equal(iss.CRLDistributionPoints, []string{base + "/ca/test-ca/root.crl"}) ||
		!slices.Equal(iss.IssuingCertificateURL, []string{base + "/ca/test-ca/root.cer"}) || len(iss.OCSPServer) != 0 {
		t.Fatalf("issuing CA: CDP %v AIA %v OCSP %v", iss.CRLDistributionPoints, iss.IssuingCertificateURL, iss.OCSPServer)
	}
	if len(root.CRLDistributionPoints) != 0 || len(root.IssuingCertificateURL) != 0 {
		t.Fatalf("the root points somewhere: %v %v", root.CRLDistributionPoints, root.IssuingCertificateURL)
	}

	for _, tc := range []struct {
		holder ca.Holder
		usage  ca.Usage
		policy ca.IdentityPolicy
		ocsp   bool
		ku     smx509.KeyUsage
		eku    []smx509.ExtKeyUsage
		org    string
		serial string
	}{
		{ca.HolderPerson, ca.UsageSigning, ca.IdentityFull, true,
			smx509.KeyUsageDigitalSignature | smx509.KeyUsageContentCommitment,
			[]smx509.ExtKeyUsage{smx509.ExtKeyUsageClientAuth, smx509.ExtKeyUsageEmailProtection}, "个人", "11010519491231002X"},
		{ca.HolderPerson, ca.UsageEncryption, ca.IdentityKeyedHash, false,
			smx509.KeyUsageKeyEncipherment | smx509.KeyUsageDataEncipherment,
			[]smx509.ExtKeyUsage{smx509.ExtKeyUsageEmailProtection}, "个人", vectorValue},
		{ca.HolderEnterprise, ca.UsageSigning, ca.IdentityKeyedHash, false,
			smx509.KeyUsageDigitalSignature | smx509.KeyUsageContentCommitment,
			[]smx509.ExtKeyUsage{smx509.ExtKeyUsageClientAuth, smx509.ExtKeyUsageEmailProtection}, "杭州示范建设有限公司", testUSCC},
		{ca.HolderEnterprise, ca.UsageEncryption, ca.IdentityFull, true,
			smx509.KeyUsageKeyEncipherment | smx509.KeyUsageDataEncipherment,
			[]smx509.ExtKeyUsage{smx509.ExtKeyUsageEmailProtection}, "杭州示范建设有限公司", testUSCC},
	} {
		t.Run(tc.holder.String()+"-"+tc.usage.String(), func(t *testing.T) {
			e, err := ca.Open(ctx, st, kr, c, "test-ca", "Test CA", ca.Options{PublicURL: testPublicURL, OCSP: tc.ocsp,
				SubjectIdentity: tc.policy, SubjectIdentityKey: key})
			if err != nil {
				t.Fatal(err)
			}
			holder, _ := sm2.GenerateKey(rand.Reader)
			app := &ca.Application{OrderID: "o1", UserID: "u1", Name: "张三", IDNumber: testIDNumber, Usage: tc.usage,
				PublicKey: &holder.PublicKey, ValidityYears: 1, Platforms: []string{"zj-ggzy"}, Regions: []string{"330000"}}
			if tc.holder == ca.HolderEnterprise {
				app.Name, app.IDNumber, app.USCC = "杭州示范建设有限公司", "", testUSCC
			}
			if p, err := ca.ProfileOf(tc.holder, tc.usage); err != nil || p.KeyUsage != tc.ku || !slices.Equal(p.ExtKeyUsage, tc.eku) {
				t.Fatalf("table: %+v %v", p, err)
			}
			issued, err := e.Fetch(ctx, "o1", app)
			if err != nil {
				t.Fatal(err)
			}
			cert, err := smx509.ParseCertificate(issued.DER)
			if err != nil {
				t.Fatal(err)
			}
			roots, inter := smx509.NewCertPool(), smx509.NewCertPool()
			roots.AddCert(root)
			inter.AddCert(iss)
			if _, err := cert.Verify(smx509.VerifyOptions{Roots: roots, Intermediates: inter, CurrentTime: c.Now().Add(time.Hour),
				KeyUsages: tc.eku}); err != nil {
				t.Fatalf("chain for %v: %v", tc.eku, err)
			}
			if critical, ok := extension(t, cert, oidKeyUsage); !ok || !critical || cert.KeyUsage != tc.ku {
				t.Fatalf("key usage %b (critical %v, present %v), want %b", cert.KeyUsage, critical, ok, tc.ku)
			}
			if critical, ok := extension(t, cert, oidEKU); !ok || critical || !slices.Equal(cert.ExtKeyUsage, tc.eku) || len(cert.UnknownExtKeyUsage) != 0 {
				t.Fatalf("extended key usage %v (critical %v)", cert.ExtKeyUsage, critical)
			}
			if critical, ok := extension(t, cert, oidBasicConstraints); !ok || !critical || !cert.BasicConstraintsValid || cert.IsCA {
				t.Fatalf("basic constraints: critical %v valid %v CA %v", critical, cert.BasicConstraintsValid, cert.IsCA)
			}
			if critical, ok := extension(t, cert, oidSKI); !ok || critical || !slices.Equal(cert.SubjectKeyId, sm3KeyID(&holder.PublicKey)) {
				t.Fatalf("SKI %x, want SM3 of the key %x", cert.SubjectKeyId, sm3KeyID(&holder.PublicKey))
			}
			if _, ok := extension(t, cert, oidAKI); !ok || !slices.Equal(cert.AuthorityKeyId, iss.SubjectKeyId) {
				t.Fatalf("AKI %x, issuer's SKI %x", cert.AuthorityKeyId, iss.SubjectKeyId)
			}
			if critical, ok := extension(t, cert, oidCDP); !ok || critical || !slices.Equal(cert.CRLDistributionPoints, []string{base + "/ca/test-ca/issuing.crl"}) {
				t.Fatalf("CDP %v", cert.CRLDistributionPoints)
			}
			if critical, ok := extension(t, cert, oidAIA); !ok || critical || !slices.Equal(cert.IssuingCertificateURL, []string{base + "/ca/test-ca/issuing.cer"}) {
				t.Fatalf("AIA caIssuers %v", cert.IssuingCertificateURL)
			}
			var wantOCSP []string
			if tc.ocsp {
				wantOCSP = []string{base + "/ocsp/test-ca"}
			}
			if !slices.Equal(cert.OCSPServer, wantOCSP) {
				t.Fatalf("AIA OCSP %v, want %v", cert.OCSPServer, wantOCSP)
			}
			wantSubject := []subjectAttr{
				{"2.5.4.6", asn1.TagPrintableString, "CN"},
				{"2.5.4.10", asn1.TagUTF8String, tc.org},
				{"2.5.4.5", asn1.TagPrintableString, tc.serial},
				{"2.5.4.3", asn1.TagUTF8String, app.Name},
			}
			if got := rawSubjectOf(t, cert); !slices.Equal(got, wantSubject) {
				t.Fatalf("subject %+v, want %+v", got, wantSubject)
			}
			p, ok, err := ca.PlatformsOf(cert)
			if critical, _ := extension(t, cert, ca.OIDPlatforms); err != nil || !ok || critical || !slices.Equal(p.Platforms, []string{"zj-ggzy"}) || !slices.Equal(p.Regions, []string{"330000"}) {
				t.Fatalf("platforms extension %+v %v %v", p, ok, err)
			}
			if len(cert.Extensions) != 8 {
				t.Fatalf("%d extensions, want KU, EKU, BC, SKI, AKI, CDP, AIA, platforms and nothing else", len(cert.Extensions))
			}
		})
	}
}

// Without certificates.public_url (an existing development store, a CA made before it was
// configured) leaves carry no CDP or AIA, and still their key identifiers.
func TestProfileWithoutPublicURL(t *testing.T) {
	ctx := context.Background()
	st, kr, c := setup(t)
	if _, err := ca.Ensure(ctx, st, kr, "test-ca", "Test CA", c.Now(), ca.Options{}); err != nil {
		t.Fatal(err)
	}
	e, err := ca.Open(ctx, st, kr, c, "test-ca", "Test CA", ca.Options{SubjectIdentity: ca.IdentityFull, OCSP: true})
	if err != nil {
		t.Fatal(err)
	}
	holder, _ := sm2.GenerateKey(rand.Reader)
	issued, err := e.Fetch(ctx, "o1", &ca.Application{OrderID: "o1", Name: "张三", IDNumber: testIDNumber, Usage: ca.UsageSigning,
		PublicKey: &holder.PublicKey, ValidityYears: 1})
	if err != nil {
		t.Fatal(err)
	}
	cert, _ := smx509.ParseCertificate(issued.DER)
	if len(cert.CRLDistributionPoints)+len(cert.IssuingCertificateURL)+len(cert.OCSPServer) != 0 || len(e.Issuing().CRLDistributionPoints) != 0 {
		t.Fatalf("URLs without a public URL: %v %v %v", cert.CRLDistributionPoints, cert.IssuingCertificateURL, cert.OCSPServer)
	}
	if len(cert.SubjectKeyId) != 20 || !slices.Equal(cert.AuthorityKeyId, e.Issuing().SubjectKeyId) {
		t.Fatalf("SKI %x AKI %x", cert.SubjectKeyId, cert.AuthorityKeyId)
	}
}

// Applications the profile cannot serve are refused precisely, and no error carries the ID
// number.
func TestProfileRefusals(t *testing.T) {
	ctx := context.Background()
	st, kr, c := setup(t)
	if _, err := ca.Ensure(ctx, st, kr, "test-ca", "Test CA", c.Now(), ca.Options{}); err != nil {
		t.Fatal(err)
	}
	if _, err := ca.Open(ctx, st, kr, c, "test-ca", "Test CA", ca.Options{SubjectIdentity: ca.IdentityKeyedHash, SubjectIdentityKey: make([]byte, 16)}); err == nil {
		t.Fatal("opened with a 16-byte identity key")
	}
	if _, err := ca.Open(ctx, st, kr, c, "test-ca", "Test CA", ca.Options{}); err == nil {
		t.Fatal("opened without a subject identity policy")
	}
	e, err := ca.Open(ctx, st, kr, c, "test-ca", "Test CA", ca.Options{SubjectIdentity: ca.IdentityFull})
	if err != nil {
		t.Fatal(err)
	}
	holder, _ := sm2.GenerateKey(rand.Reader)
	app := func(f func(a *ca.Application)) *ca.Application {
		a := &ca.Application{OrderID: "o1", Name: "张三", IDNumber: testIDNumber, Usage: ca.UsageSigning, PublicKey: &holder.PublicKey, ValidityYears: 1}
		f(a)
		return a
	}
	for name, tc := range map[string]struct {
		app  *ca.Application
		want error
	}{
		"no usage":      {app(func(a *ca.Application) { a.Usage = 0 }), ca.ErrNoUsage},
		"unknown usage": {app(func(a *ca.Application) { a.Usage = 7 }), ca.ErrNoUsage},
		"no ID number":  {app(func(a *ca.Application) { a.IDNumber = "" }), ca.ErrNoIDNumber},
		"masked number": {app(func(a *ca.Application) { a.IDNumber = "110105********002X" }), nil},
		"short USCC":    {app(func(a *ca.Application) { a.IDNumber, a.USCC = "", "9133010" }), nil},
	} {
		t.Run(name, func(t *testing.T) {
			_, err := e.Fetch(ctx, "o1", tc.app)
			if err == nil || tc.want != nil && !errors.Is(err, tc.want) {
				t.Fatalf("got %v, want %v", err, tc.want)
			}
			if strings.Contains(err.Error(), "0519491231") || strings.Contains(err.Error(), "********") {
				t.Fatalf("the error quotes the ID number: %v", err)
			}
		})
	}
}

// The keyed hash is what a relying party computes from the ID number it knows: the
// documented vector, recomputed here with HMAC over SM3 and, when installed, by OpenSSL.
func TestSubjectIdentityKeyedHashVector(t *testing.T) {
	key, _ := hex.DecodeString(vectorKey)
	for _, in := range []string{"11010519491231002X", " 11010519491231002x\n"} {
		got, err := ca.SubjectIdentity(ca.IdentityKeyedHash, key, in)
		if err != nil || got != vectorValue {
			t.Fatalf("SubjectIdentity(%q) = %q, %v; want %s", in, got, err, vectorValue)
		}
	}
	if got := hmacSM3(t, vectorKey, "11010519491231002X"); got != vectorValue {
		t.Fatalf("HMAC-SM3 by hand %s, documented %s", got, vectorValue)
	}
	if full, err := ca.SubjectIdentity(ca.IdentityFull, nil, " 11010519491231002x"); err != nil || full != "11010519491231002X" {
		t.Fatalf("full: %q %v", full, err)
	}
	if _, err := exec.LookPath("openssl"); err != nil {
		t.Log("openssl not found: the vector is not checked against OpenSSL")
		return
	}
	cmd := exec.Command("openssl", "mac", "-digest", "SM3", "-macopt", "hexkey:"+vectorKey, "HMAC")
	cmd.Stdin = strings.NewReader("11010519491231002X")
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("openssl mac: %v\n%s", err, out)
	}
	if got := strings.TrimSpace(string(out)); got != vectorValue {
		t.Fatalf("OpenSSL computes %s, documented %s", got, vectorValue)
	}
}

// OpenSSL parses an issued leaf and names its extensions as a relying party's tools show
// them (`openssl x509 -text`).
func TestProfileOpenSSLParses(t *testing.T) {
	if _, err := exec.LookPath("openssl"); err != nil {
		t.Skip("openssl not installed")
	}
	ctx := context.Background()
	st, kr, c := setup(t)
	if _, err := ca.Ensure(ctx, st, kr, "test-ca", "Test CA", c.Now(), ca.Options{PublicURL: testPublicURL}); err != nil {
		t.Fatal(err)
	}
	key, _ := hex.DecodeString(vectorKey)
	e, err := ca.Open(ctx, st, kr, c, "test-ca", "Test CA", ca.Options{PublicURL: testPublicURL, OCSP: true,
		SubjectIdentity: ca.IdentityKeyedHash, SubjectIdentityKey: key})
	if err != nil {
		t.Fatal(err)
	}
	holder, _ := sm2.GenerateKey(rand.Reader)
	issued, err := e.Fetch(ctx, "o1", &ca.Application{OrderID: "o1", Name: "张三", IDNumber: testIDNumber, Usage: ca.UsageSigning,
		PublicKey: &holder.PublicKey, ValidityYears: 1, Platforms: []string{"zj-ggzy"}})
	if err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(t.TempDir(), "leaf.pem")
	if err := os.WriteFile(path, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: issued.DER}), 0o600); err != nil {
		t.Fatal(err)
	}
	out, err := exec.Command("openssl", "x509", "-in", path, "-noout", "-text", "-nameopt", "utf8,sep_comma_plus_space").CombinedOutput()
	if err != nil {
		t.Fatalf("openssl x509: %v\n%s", err, out)
	}
	text := string(out)
	for _, want := range []string{
		"X509v3 Key Usage: critical", "Digital Signature, Non Repudiation",
		"X509v3 Extended Key Usage", "TLS Web Client Authentication, E-mail Protection",
		"X509v3 Basic Constraints: critical", "CA:FALSE",
		"X509v3 Subject Key Identifier", "X509v3 Authority Key Identifier",
		"X509v3 CRL Distribution Points", "URI:https://pki.example.cn/hufu/ca/test-ca/issuing.crl",
		"CA Issuers - URI:https://pki.example.cn/hufu/ca/test-ca/issuing.cer",
		"OCSP - URI:https://pki.example.cn/hufu/ocsp/test-ca",
		"Subject: C=CN, O=个人, serialNumber=" + vectorValue + ", CN=张三",
		"1.3.6.1.4.1.61911.1.1",
	} {
		if !strings.Contains(text, want) {
			t.Errorf("openssl x509 -text lacks %q:\n%s", want, text)
		}
	}
}
