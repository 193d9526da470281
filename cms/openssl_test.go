package cms

import (
	"bytes"
	"encoding/hex"
	"os/exec"
	"strings"
	"testing"
	"time"

	"github.com/emmansun/gmsm/pkcs7"
	"github.com/emmansun/gmsm/smx509"
)

// OpenSSL 3 (3.0.x here) and GM/T 0010 CMS:
//
//   - `openssl cms -verify` refuses the GM/T 0010 signedData content type
//     (1.2.156.10197.6.1.4.2.2): "cms_get0_signed: content type not signed data". Even an
//     SM2 SignedData with the PKCS#7 OIDs (gmsm's NewSignedData with SM3) fails in
//     CMS_SignerInfo_verify, as `openssl cms` has no way to set the SM2 distinguishing ID
//     (1234567812345678) that the signature's Z_A is computed over; `openssl cms -sign` with
//     an SM2 key fails outright. Likewise `openssl cms -decrypt` refuses the GM/T 0010
//     envelopedData content type.
//   - OpenSSL verifies the signature itself: `openssl pkeyutl -verify -rawin -digest sm3
//     -pkeyopt distid:1234567812345678` over the DER signed attributes (SET tag) with the
//     encryptedDigest as the signature, under the public key of the certificate.
//   - OpenSSL opens the envelope by hand: `openssl pkeyutl -decrypt` of the key transport
//     (GM/T 0009 ASN.1 is OpenSSL's SM2 ciphertext form) gives the SM4 key, and
//     `openssl enc -d -sm4-cbc` with the IV from the parameters gives the content.
//
// These tests run those commands on what this package builds and skip without openssl.

func openssl(t *testing.T, stdin []byte, args ...string) ([]byte, error) {
	t.Helper()
	cmd := exec.Command("openssl", args...)
	cmd.Stdin = bytes.NewReader(stdin)
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		return out, &opensslError{args: strings.Join(args, " "), err: err, stderr: stderr.String()}
	}
	return out, nil
}

type opensslError struct {
	args, stderr string
	err          error
}

func (e *opensslError) Error() string {
	return "openssl " + e.args + ": " + e.err.Error() + "\n" + e.stderr
}

func needOpenSSL(t *testing.T) {
	t.Helper()
	out, err := exec.Command("openssl", "version").Output()
	if err != nil {
		t.Skip("openssl not installed")
	}
	if !bytes.HasPrefix(out, []byte("OpenSSL 3")) {
		t.Skipf("need OpenSSL 3, have %s", out)
	}
}

func TestOpenSSLVerifiesSignature(t *testing.T) {
	needOpenSSL(t)
	c := newCA(t, "Test SM2 CA")
	plain := newSigner(t, c, "signer")
	split := newSplitSigner(t, c, "两方签名者")
	dir := t.TempDir()
	writePEM(t, dir, "ca.pem", "CERTIFICATE", c.cert.Raw)
	writeFile(t, dir, "doc.txt", document)

	attrs := mustAttrs(t, documentHash[:], signingTime)
	altered := mustAttrs(t, documentHash[:], signingTime.Add(time.Second))
	tests := []struct {
		name   string
		cert   *smx509.Certificate
		sign   func(testing.TB, []byte) []byte
		signed []byte // the attributes OpenSSL is given
		ok     bool
	}{
		{"ordinary key", plain.cert, func(t testing.TB, a []byte) []byte { return sigASN1(plain.sign(t, a)) }, attrs, true},
		{"two-party key", split.cert, func(t testing.TB, a []byte) []byte { return sigASN1(split.sign(t, a)) }, attrs, true},
		{"altered attributes", split.cert, func(t testing.TB, a []byte) []byte { return sigASN1(split.sign(t, a)) }, altered, false},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			sig, err := cosignSignature(tc.sign(t, attrs))
			if err != nil {
				t.Fatal(err)
			}
			der, err := DetachedSignedData(attrs, sig, tc.cert, []*smx509.Certificate{c.cert})
			if err != nil {
				t.Fatal(err)
			}
			sigFile := writeFile(t, dir, "sig.der", der)
			if _, err := openssl(t, nil, "cms", "-verify", "-binary", "-inform", "DER", "-in", sigFile,
				"-content", dir+"/doc.txt", "-CAfile", dir+"/ca.pem", "-out", "/dev/null"); err == nil {
				t.Log("openssl cms now verifies GM/T 0010 SignedData")
			} else {
				t.Logf("openssl cms cannot verify GM/T 0010 SignedData, as documented: %v", firstLine(err))
			}
			// What OpenSSL can check: (r, s) over the DER attributes under the certificate's key,
			// both taken from the SignedData (through gmsm's parser, not ours).
			p7, err := pkcs7.Parse(der)
			if err != nil {
				t.Fatal(err)
			}
			pub, err := smx509.MarshalPKIXPublicKey(p7.GetOnlySigner().PublicKey)
			if err != nil {
				t.Fatal(err)
			}
			writePEM(t, dir, "pub.pem", "PUBLIC KEY", pub)
			writeFile(t, dir, "attrs.der", tc.signed)
			writeFile(t, dir, "rs.der", p7.Signers[0].EncryptedDigest)
			out, err := openssl(t, nil, "pkeyutl", "-verify", "-pubin", "-inkey", dir+"/pub.pem",
				"-rawin", "-digest", "sm3", "-pkeyopt", "distid:"+DefaultSignerID,
				"-in", dir+"/attrs.der", "-sigfile", dir+"/rs.der")
			if tc.ok && (err != nil || !bytes.Contains(out, []byte("Signature Verified Successfully"))) {
				t.Fatalf("openssl does not verify: %s %v", out, err)
			}
			if !tc.ok && err == nil {
				t.Fatalf("openssl verifies altered attributes: %s", out)
			}
		})
	}
}

func TestOpenSSLOpensEnvelope(t *testing.T) {
	needOpenSSL(t)
	c := newCA(t, "Test SM2 CA")
	s := newSigner(t, c, "recipient")
	dir := t.TempDir()
	key, err := smx509.MarshalPKCS8PrivateKey(s.key)
	if err != nil {
		t.Fatal(err)
	}
	keyFile := writePEM(t, dir, "key.pem", "PRIVATE KEY", key)
	env, err := Envelope(bidFile, s.cert)
	if err != nil {
		t.Fatal(err)
	}
	_, keyTransport, err := KeyTransportC1(env, nil)
	if err != nil {
		t.Fatal(err)
	}
	sm4Key, err := openssl(t, nil, "pkeyutl", "-decrypt", "-inkey", keyFile, "-in", writeFile(t, dir, "kt.der", keyTransport))
	if err != nil {
		t.Fatal(err)
	}
	if len(sm4Key) != 16 {
		t.Fatalf("openssl recovers a %d-byte key", len(sm4Key))
	}
	e, err := parseEnvelope("test", env, nil)
	if err != nil {
		t.Fatal(err)
	}
	content, err := openssl(t, nil, "enc", "-d", "-sm4-cbc", "-K", hex.EncodeToString(sm4Key),
		"-iv", hex.EncodeToString(e.cipherAlg.Parameters.Bytes), "-in", writeFile(t, dir, "ct.bin", e.ciphertext))
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(content, bidFile) {
		t.Fatal("openssl decrypts other content")
	}
	// And our OpenEnvelope with the key OpenSSL recovered.
	got, err := OpenEnvelope(env, nil, func([]byte) ([]byte, error) { return sm4Key, nil })
	if err != nil || !bytes.Equal(got, bidFile) {
		t.Fatalf("OpenEnvelope: %v", err)
	}
}

func firstLine(err error) string {
	s := err.Error()
	if i := strings.Index(s, "\n"); i >= 0 {
		if j := strings.Index(s[i+1:], "\n"); j >= 0 {
			return s[:i] + " " + s[i+1:i+1+j]
		}
	}
	return s
}
