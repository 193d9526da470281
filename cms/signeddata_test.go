package cms

import (
	"bytes"
	"errors"
	"testing"
	"time"

	"github.com/emmansun/gmsm/pkcs"
	"github.com/emmansun/gmsm/pkcs7"
	"github.com/emmansun/gmsm/sm2"
	"github.com/emmansun/gmsm/smx509"

	"github.com/hufu-hsm/hufu/cosign"
)

// TestScanSigningTwoParty runs scan signing end to end with a split key: the appliance builds
// the attributes and pins e, the phone checks the attributes and recomputes e, the two
// parties sign e, the appliance assembles the SignedData, and both this package and gmsm's
// pkcs7 verify it.
func TestScanSigningTwoParty(t *testing.T) {
	c := newCA(t, "Test SM2 CA")
	s := newSplitSigner(t, c, "两方签名者")

	// Appliance: attributes for the registered digest, e pinned.
	attrs := mustAttrs(t, documentHash[:], signingTime)
	pinned, err := Digest(s.cert.PublicKey.(*ecdsaPub), attrs)
	if err != nil {
		t.Fatal(err)
	}
	// Phone: the attributes carry the digest it was shown; it recomputes e from its key.
	at, err := CheckSignedAttributes(attrs, documentHash[:])
	if err != nil || !at.Equal(signingTime) {
		t.Fatalf("phone's check: %v, %v", at, err)
	}
	e, err := Digest(s.key.Public().(*ecdsaPub), attrs)
	if err != nil || e != pinned {
		t.Fatalf("phone's e %x differs from the pinned %x (%v)", e, pinned, err)
	}
	// Both parties sign e.
	sig := s.sign(t, attrs)
	// Appliance: the SignedData.
	der, err := DetachedSignedData(attrs, sig, s.cert, []*smx509.Certificate{c.cert})
	if err != nil {
		t.Fatal(err)
	}
	got, err := VerifyDetached(der, documentHash[:], c.pool())
	if err != nil {
		t.Fatal(err)
	}
	if !got.Equal(s.cert) {
		t.Fatal("VerifyDetached returned another certificate")
	}
	// gmsm on its own, both digest modes.
	p7, err := pkcs7.Parse(der)
	if err != nil {
		t.Fatal(err)
	}
	p7.Content = documentHash[:]
	if err := p7.VerifyAsDigestWithChain(c.pool()); err != nil {
		t.Fatalf("gmsm VerifyAsDigestWithChain: %v", err)
	}
	p7.Content = document
	if err := p7.VerifyWithChain(c.pool()); err != nil {
		t.Fatalf("gmsm VerifyWithChain over the document: %v", err)
	}
	var st time.Time
	if err := p7.UnmarshalSignedAttribute(pkcs7.OIDAttributeSigningTime, &st); err != nil || !st.Equal(signingTime) {
		t.Fatalf("gmsm reads signing time %v, %v", st, err)
	}
}

func TestDetachedSignedDataRefuses(t *testing.T) {
	c := newCA(t, "Test SM2 CA")
	other := newCA(t, "Other SM2 CA")
	s := newSigner(t, c, "signer")
	s2 := newSigner(t, c, "another signer")
	attrs := mustAttrs(t, documentHash[:], signingTime)
	otherAttrs := mustAttrs(t, documentHash[:], signingTime.Add(time.Second))
	sig := s.sign(t, attrs)
	tests := []struct {
		name   string
		attrs  []byte
		sig    cosign.Signature
		signer *smx509.Certificate
		chain  []*smx509.Certificate
		part   string
		errIs  []error
	}{
		{"valid without chain", attrs, sig, s.cert, nil, "", nil},
		{"valid with chain", attrs, sig, s.cert, []*smx509.Certificate{c.cert}, "", nil},
		{"signature on other attributes", otherAttrs, sig, s.cert, nil, "signature", []error{ErrSignature}},
		{"another signer's certificate", attrs, sig, s2.cert, nil, "signature", []error{ErrSignature}},
		{"zero signature", attrs, cosign.Signature{}, s.cert, nil, "signature", []error{ErrSignature}},
		{"chain of another CA", attrs, sig, s.cert, []*smx509.Certificate{other.cert}, "chain[0]", []error{ErrChain}},
		{"nil signer", attrs, sig, nil, nil, "signer", []error{ErrInput}},
		{"P-256 signer", attrs, sig, p256Cert(t, c), nil, "signer", []error{ErrInput}},
		{"attributes not ours", []byte{0x31, 0x00}, sig, s.cert, nil, "attribute contentType", []error{ErrMalformed}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			der, err := DetachedSignedData(tc.attrs, tc.sig, tc.signer, tc.chain)
			wantErr(t, err, tc.part, tc.errIs...)
			if err == nil {
				if _, err := VerifyDetached(der, documentHash[:], c.pool()); err != nil {
					t.Fatal(err)
				}
			} else if der != nil {
				t.Fatal("output despite an error")
			}
		})
	}
}

// gmsmDetached makes a detached SignedData the way gmsm's own signer does, for a digest.
func gmsmDetached(t testing.TB, s *signer, digest []byte) []byte {
	t.Helper()
	sd, err := pkcs7.NewSMSignedDataWithDigest(digest)
	if err != nil {
		t.Fatal(err)
	}
	if err := sd.AddSigner(s.cert, s.key, pkcs7.SignerInfoConfig{}); err != nil {
		t.Fatal(err)
	}
	sd.Detach()
	der, err := sd.Finish()
	if err != nil {
		t.Fatal(err)
	}
	return der
}

func TestVerifyDetached(t *testing.T) {
	c := newCA(t, "Test SM2 CA")
	other := newCA(t, "Other SM2 CA")
	s := newSigner(t, c, "signer")
	s2 := newSigner(t, c, "another signer")
	attrs := mustAttrs(t, documentHash[:], signingTime)
	sig := s.sign(t, attrs)
	sigDER := sig.ASN1()
	good, err := DetachedSignedData(attrs, sig, s.cert, []*smx509.Certificate{c.cert})
	if err != nil {
		t.Fatal(err)
	}
	build := func(attrs, sigDER []byte, sid *smx509.Certificate, certs ...*smx509.Certificate) []byte {
		raw := make([][]byte, len(certs))
		for i, c := range certs {
			raw[i] = c.Raw
		}
		der, err := assemble(attrs, sigDER, sid, raw)
		if err != nil {
			t.Fatal(err)
		}
		return der
	}
	// The same attributes one second later: same length, so the structure stays well-formed.
	later := mustAttrs(t, documentHash[:], signingTime.Add(time.Second))
	expired := mustAttrs(t, documentHash[:], certNotAfter.Add(time.Hour))
	early := mustAttrs(t, documentHash[:], certNotBefore.Add(-time.Hour))
	// gmsm's own forms.
	gmsmGood := gmsmDetached(t, s, documentHash[:])
	attached, err := pkcs7.NewSMSignedData(document)
	if err != nil {
		t.Fatal(err)
	}
	if err := attached.AddSigner(s.cert, s.key, pkcs7.SignerInfoConfig{}); err != nil {
		t.Fatal(err)
	}
	attachedDER, err := attached.Finish()
	if err != nil {
		t.Fatal(err)
	}
	pkcs7OIDs, err := pkcs7.NewSignedDataWithDigest(documentHash[:])
	if err != nil {
		t.Fatal(err)
	}
	pkcs7OIDs.SetDigestAlgorithm(pkcs7.OIDDigestAlgorithmSM3)
	if err := pkcs7OIDs.AddSigner(s.cert, s.key, pkcs7.SignerInfoConfig{}); err != nil {
		t.Fatal(err)
	}
	pkcs7OIDsDER, err := pkcs7OIDs.Finish()
	if err != nil {
		t.Fatal(err)
	}
	envelope, err := pkcs7.EncryptSM(pkcs.SM4CBC, document, []*smx509.Certificate{s.cert})
	if err != nil {
		t.Fatal(err)
	}

	tests := []struct {
		name   string
		der    []byte
		digest []byte
		roots  *smx509.CertPool
		part   string
		errIs  []error
	}{
		{"valid, chain to the root", good, documentHash[:], c.pool(), "", nil},
		{"valid, signature only", good, documentHash[:], nil, "", nil},
		{"gmsm's own detached SM2 SignedData", gmsmGood, documentHash[:], c.pool(), "", nil},
		{"wrong digest", good, bytes.Repeat([]byte{1}, 32), c.pool(), "attribute messageDigest", []error{ErrDigestMismatch}},
		{"digest of wrong size", good, documentHash[:16], c.pool(), "content digest", []error{ErrInput}},
		{"altered attributes", replaceOnce(t, good, attrs[2:], later[2:]), documentHash[:], nil, "signerInfo.encryptedDigest", []error{ErrSignature}},
		{"wrong signer's certificate", build(attrs, sigDER, s2.cert, s2.cert, c.cert), documentHash[:], nil, "signerInfo.encryptedDigest", []error{ErrSignature}},
		{"signer's certificate missing", build(attrs, sigDER, s.cert, s2.cert, c.cert), documentHash[:], nil, "signerInfo.issuerAndSerialNumber", []error{ErrSigner}},
		{"no certificates", build(attrs, sigDER, s.cert), documentHash[:], nil, "signerInfo.issuerAndSerialNumber", []error{ErrSigner}},
		{"untrusted root", good, documentHash[:], other.pool(), "signer", []error{ErrChain}},
		{"signed after the certificate expired", build(expired, sigASN1(s.sign(t, expired)), s.cert, s.cert), documentHash[:], nil, "attribute signingTime", []error{ErrSigningTime}},
		{"signed before the certificate was valid", build(early, sigASN1(s.sign(t, early)), s.cert, s.cert), documentHash[:], nil, "attribute signingTime", []error{ErrSigningTime}},
		{"signature not DER", build(attrs, []byte{1, 2, 3}, s.cert, s.cert), documentHash[:], nil, "signerInfo.encryptedDigest", []error{ErrSignature}},
		{"attached content", attachedDER, documentHash[:], nil, "signedData.contentInfo.content", []error{ErrUnsupported}},
		{"PKCS#7 OIDs", pkcs7OIDsDER, documentHash[:], nil, "contentInfo.contentType", []error{ErrUnsupported}},
		{"an EnvelopedData", envelope, documentHash[:], nil, "contentInfo.contentType", []error{ErrUnsupported}},
		{"empty", nil, documentHash[:], nil, "contentInfo", []error{ErrMalformed}},
		{"garbage", []byte("%PDF-1.7 not a signature"), documentHash[:], nil, "contentInfo", []error{ErrMalformed}},
		{"truncated", good[:len(good)-10], documentHash[:], nil, "contentInfo", []error{ErrMalformed}},
		{"trailing byte", append(append([]byte{}, good...), 0), documentHash[:], nil, "contentInfo", []error{ErrMalformed}},
		{"zero padding as in a PDF /Contents", append(append([]byte{}, good...), make([]byte, 64)...), documentHash[:], nil, "contentInfo", []error{ErrMalformed}},
		{"indefinite length (BER)", append([]byte{0x30, 0x80}, append(good[4:], 0, 0)...), documentHash[:], nil, "contentInfo", []error{ErrMalformed}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			got, err := VerifyDetached(tc.der, tc.digest, tc.roots)
			wantErr(t, err, tc.part, tc.errIs...)
			if err == nil && !got.Equal(s.cert) {
				t.Fatal("wrong signer returned")
			}
			if err != nil && got != nil {
				t.Fatal("signer returned with an error")
			}
		})
	}
}

// TestVerifyDetachedLibraryAgrees checks that gmsm's pkcs7 gives the same verdict on the
// corrupted forms, so the second opinion is not vacuous.
func TestVerifyDetachedLibraryAgrees(t *testing.T) {
	c := newCA(t, "Test SM2 CA")
	s := newSigner(t, c, "signer")
	attrs := mustAttrs(t, documentHash[:], signingTime)
	later := mustAttrs(t, documentHash[:], signingTime.Add(time.Second))
	good, err := DetachedSignedData(attrs, s.sign(t, attrs), s.cert, nil)
	if err != nil {
		t.Fatal(err)
	}
	if err := libraryVerify(good, documentHash[:], c.pool()); err != nil {
		t.Fatal(err)
	}
	if err := libraryVerify(replaceOnce(t, good, attrs[2:], later[2:]), documentHash[:], c.pool()); err == nil {
		t.Fatal("gmsm accepts altered attributes")
	}
	var mismatch *pkcs7.MessageDigestMismatchError
	if err := libraryVerify(good, make([]byte, 32), nil); !errors.As(err, &mismatch) {
		t.Fatalf("gmsm on a wrong digest: %v", err)
	}
}

func TestDetachedSignedDataDER(t *testing.T) {
	// The certificates are a DER SET OF, sorted whatever the order given; the result
	// re-parses to the same bytes with encoding/asn1 (no BER anywhere).
	c := newCA(t, "Test SM2 CA")
	s := newSigner(t, c, "signer")
	attrs := mustAttrs(t, documentHash[:], signingTime)
	sig := s.sign(t, attrs)
	a, err := DetachedSignedData(attrs, sig, s.cert, []*smx509.Certificate{c.cert})
	if err != nil {
		t.Fatal(err)
	}
	p, err := parseDetached("test", a)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(p.signedAttrs, attrs) || !bytes.Equal(p.signature, sig.ASN1()) || len(p.certs) != 2 {
		t.Fatal("parse does not give back what was assembled")
	}
	if bytes.Compare(p.certs[0].Raw, p.certs[1].Raw) >= 0 {
		t.Fatal("certificates are not in DER SET OF order")
	}
	if !sm2.VerifyASN1WithSM2(&s.key.PublicKey, nil, p.signedAttrs, p.signature) {
		t.Fatal("signature is not over the attributes with the SET tag")
	}
}

func sigASN1(sig cosign.Signature) []byte { return sig.ASN1() }
