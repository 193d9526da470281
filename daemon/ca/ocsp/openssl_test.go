package ocsp_test

import (
	"bytes"
	"context"
	"crypto/rand"
	"crypto/x509/pkix"
	"encoding/hex"
	"encoding/pem"
	"math/big"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/emmansun/gmsm/sm2"
	"github.com/emmansun/gmsm/sm3"
	"github.com/emmansun/gmsm/smx509"

	"github.com/hufu-hsm/hufu/daemon/ca/ocsp"
)

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

func writePEM(t *testing.T, path string, c *smx509.Certificate) {
	t.Helper()
	if err := os.WriteFile(path, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: c.Raw}), 0o600); err != nil {
		t.Fatal(err)
	}
}

// TestOpenSSLRelyingParty asks the responder as a relying party does, with `openssl ocsp`,
// which checks the nonce, prints the status and verifies the response.
//
// OpenSSL 3.0's `ocsp` has no option to set the SM2 distinguishing ID and verifies SM2
// signatures with an empty one, so it prints "Response Verify Failure" with
// "ocsp_verify:signature failure" for a response signed, as it must be, with the default
// ID 1234567812345678. The test requires that this is the only complaint (the signer is
// found, the nonce matches, the response parses), then verifies the signature with
// `openssl pkeyutl -pkeyopt distid:1234567812345678` and with gmsm (ParseResponse);
// TestOpenSSLVerifiesWithItsOwnID shows OpenSSL accepts the very same encoding when the
// signature is made with its ID.
func TestOpenSSLRelyingParty(t *testing.T) {
	needOpenSSL(t)
	// OpenSSL checks thisUpdate and nextUpdate against the real time.
	f := newFixtureAt(t, ocsp.Config{}, time.Now().Add(-time.Hour))
	dir := t.TempDir()
	path := func(name string) string { return filepath.Join(dir, name) }
	writePEM(t, path("root.pem"), f.ca.Root())
	writePEM(t, path("issuing.pem"), f.ca.Issuing())
	for _, c := range []struct {
		name string
		cert *smx509.Certificate
	}{{"good", f.good}, {"revoked", f.revoked}, {"unknown", f.unknown}} {
		writePEM(t, path(c.name+".pem"), c.cert)
	}
	sha1ID, err := ocsp.NewCertID(ocsp.SHA1, f.ca.Issuing(), f.good.SerialNumber)
	if err != nil {
		t.Fatal(err)
	}
	// byKey: the SHA-1 of the issuing CA's public key, as in a SHA-1 CertID.
	responderID := "Responder Id: " + strings.ToUpper(hex.EncodeToString(sha1ID.IssuerKeyHash))
	if os.Getenv("HUFU_OCSP_SEEDS") != "" {
		// Requests without a responder: several certificates, other CertID hashes, signed.
		for name, extra := range map[string][]string{
			"two-sha256": {"-sha256", "-cert", path("good.pem"), "-cert", path("revoked.pem")},
			"sm3":        {"-sm3", "-cert", path("good.pem"), "-no_nonce"},
		} {
			args := append([]string{"ocsp", "-issuer", path("issuing.pem"), "-reqout", path(name + ".req")}, extra...)
			if out, err := exec.Command("openssl", args...).CombinedOutput(); err != nil {
				t.Fatalf("%s: %v %s", name, err, out)
			}
			req, _ := os.ReadFile(path(name + ".req"))
			writeFile(t, filepath.Join("testdata", "fuzz", "FuzzParseRequest", "openssl-"+name),
				[]byte("go test fuzz v1\n[]byte("+strconv.Quote(string(req))+")\n"))
		}
	}
	for _, tc := range []struct {
		name, cert string
		nonce      bool
		want       []string
	}{
		{"good", "good", true, []string{"good.pem: good"}},
		{"good without nonce", "good", false, []string{"good.pem: good"}},
		{"revoked", "revoked", true, []string{"revoked.pem: revoked", "Reason: keyCompromise",
			"Revocation Time: " + f.revokedAt.Format("Jan _2 15:04:05 2006 GMT")}},
		{"revoked without nonce", "revoked", false, []string{"revoked.pem: revoked", "Reason: keyCompromise"}},
		{"unknown", "unknown", true, []string{"unknown.pem: unknown"}},
		{"unknown without nonce", "unknown", false, []string{"unknown.pem: unknown"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			name := strings.ReplaceAll(tc.name, " ", "-")
			args := []string{"ocsp", "-issuer", path("issuing.pem"), "-cert", path(tc.cert + ".pem"),
				"-url", f.srv.URL + "/", "-CAfile", path("root.pem"), "-resp_text",
				"-reqout", path(name + ".req"), "-respout", path(name + ".resp")}
			if !tc.nonce {
				args = append(args, "-no_nonce")
			}
			out, _ := exec.Command("openssl", args...).CombinedOutput()
			text := string(out)
			for _, want := range append(tc.want, responderID, "Signature Algorithm: SM2-with-SM3",
				"This Update:", "Next Update:") {
				if !strings.Contains(text, want) {
					t.Fatalf("openssl output lacks %q:\n%s", want, text)
				}
			}
			if tc.nonce && !strings.Contains(text, "OCSP Nonce:") {
				t.Fatalf("no nonce in the response:\n%s", text)
			}
			if strings.Contains(text, "WARNING") || strings.Contains(text, "Nonce Verify error") {
				t.Fatalf("openssl complains:\n%s", text)
			}
			if !strings.Contains(text, "Response verify OK") {
				// Only the SM2 ID may be in the way (see above).
				if !strings.Contains(text, "ocsp_verify:signature failure") || strings.Count(text, ":error:") != 4 {
					t.Fatalf("openssl refuses the response for another reason:\n%s", text)
				}
				t.Logf("openssl ocsp, as expected without a way to set the SM2 ID: Response Verify Failure (ocsp_verify:signature failure)")
			}
			der, err := os.ReadFile(path(name + ".resp"))
			if err != nil {
				t.Fatal(err)
			}
			tbs, sig := splitBasicResponse(t, der)
			writeFile(t, path(name+".tbs"), tbs)
			writeFile(t, path(name+".sig"), sig)
			verify := func(extra ...string) error {
				return exec.Command("openssl", append([]string{"pkeyutl", "-verify", "-certin", "-inkey", path("issuing.pem"),
					"-rawin", "-digest", "sm3", "-in", path(name + ".tbs"), "-sigfile", path(name + ".sig")}, extra...)...).Run()
			}
			if err := verify("-pkeyopt", "distid:1234567812345678"); err != nil {
				t.Fatalf("openssl pkeyutl does not verify the signature with the default SM2 ID: %v", err)
			}
			if verify() == nil {
				t.Fatal("the signature verifies with OpenSSL's empty ID too: the test's premise is wrong")
			}
			f.parse(t, der) // gmsm
			if os.Getenv("HUFU_OCSP_SEEDS") != "" {
				req, _ := os.ReadFile(path(name + ".req"))
				writeFile(t, filepath.Join("testdata", "fuzz", "FuzzParseRequest", "openssl-"+name),
					[]byte("go test fuzz v1\n[]byte("+strconv.Quote(string(req))+")\n"))
			}
		})
	}
}

func writeFile(t *testing.T, path string, b []byte) {
	t.Helper()
	if err := os.WriteFile(path, b, 0o644); err != nil {
		t.Fatal(err)
	}
}

// opensslIDSigner signs as OpenSSL 3.0 verifies when no SM2 ID is set: Z_A over an empty
// ID (ENTL = 0). Only TestOpenSSLVerifiesWithItsOwnID uses it; hufu signs with the
// default ID.
type opensslIDSigner struct{ key *sm2.PrivateKey }

func (s opensslIDSigner) SignOCSP(_ context.Context, tbs []byte) ([]byte, error) {
	c := sm2.P256().Params()
	za := sm3.New()
	za.Write([]byte{0, 0}) // ENTL: no ID
	for _, v := range []*big.Int{new(big.Int).Sub(c.P, big.NewInt(3)), c.B, c.Gx, c.Gy, s.key.X, s.key.Y} {
		za.Write(v.FillBytes(make([]byte, 32)))
	}
	e := sm3.New()
	e.Write(za.Sum(nil))
	e.Write(tbs)
	return s.key.Sign(rand.Reader, e.Sum(nil), nil)
}

type goodSource struct{}

func (goodSource) Status(context.Context, *big.Int) (ocsp.Status, error) {
	return ocsp.Status{Status: ocsp.Good}, nil
}

// TestOpenSSLVerifiesWithItsOwnID shows that OpenSSL accepts hufu's response encoding in
// full (signature over the tbsResponseData as it re-encodes it, responder by key, signer in
// certs, chain, nonce) when the signature is made with the ID OpenSSL assumes: so the only
// obstacle in TestOpenSSLRelyingParty is the SM2 ID.
func TestOpenSSLVerifiesWithItsOwnID(t *testing.T) {
	needOpenSSL(t)
	key, _ := sm2.GenerateKey(rand.Reader)
	now := time.Now()
	tmpl := &smx509.Certificate{SerialNumber: big.NewInt(7), Subject: pkix.Name{CommonName: "OpenSSL-ID CA"},
		NotBefore: now.Add(-time.Hour), NotAfter: now.Add(time.Hour), IsCA: true, BasicConstraintsValid: true,
		KeyUsage: smx509.KeyUsageCertSign}
	der, err := smx509.CreateCertificate(rand.Reader, tmpl, tmpl, key.Public(), key)
	if err != nil {
		t.Fatal(err)
	}
	cert, _ := smx509.ParseCertificate(der)
	h, err := ocsp.NewHandler(ocsp.Config{Issuer: cert, Source: goodSource{}, Signer: opensslIDSigner{key},
		Clock: &clock{now: now.Add(-time.Minute)}, IncludeIssuer: true})
	if err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewServer(h)
	defer srv.Close()
	dir := t.TempDir()
	writePEM(t, filepath.Join(dir, "ca.pem"), cert)
	ca := filepath.Join(dir, "ca.pem")
	out, err := exec.Command("openssl", "ocsp", "-issuer", ca, "-cert", ca, "-url", srv.URL+"/", "-CAfile", ca).CombinedOutput()
	if err != nil || !strings.Contains(string(out), "Response verify OK") || !strings.Contains(string(out), ": good") {
		t.Fatalf("openssl ocsp: %v\n%s", err, out)
	}
}
