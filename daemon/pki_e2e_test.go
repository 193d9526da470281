package daemon_test

import (
	"context"
	"crypto/rand"
	"encoding/pem"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/emmansun/gmsm/sm2"
	"github.com/emmansun/gmsm/smx509"

	"github.com/hufu-hsm/hufu/daemon/ca"
	"github.com/hufu-hsm/hufu/daemon/daemontest"
)

// TestPKIListenerRelyingParty checks a leaf as a relying party does, with nothing but the
// PKI listener: it fetches both CA certificates and both CRLs over plain HTTP, verifies the
// chain, each CRL's signature, issuer and freshness, and looks the certificate up at each
// depth (leaf on the issuing CRL, issuing CA on the root CRL); then the leaf is revoked and
// the same check fails at depth 0, and with the issuing CA revoked at depth 1. OpenSSL's
// `verify -crl_check_all` runs too where it can verify SM2 signatures (OpenSSL 3.0 cannot be
// given the SM2 ID there and fails every SM2 chain, with or without CRLs).
func TestPKIListenerRelyingParty(t *testing.T) {
	a := daemontest.Start(t)
	ctx := context.Background()
	e := a.Daemon.EmbeddedCA("hufu-ca")
	if e == nil || a.Daemon.PKIAddr() == nil {
		t.Fatal("no embedded CA or no PKI listener")
	}
	base := "http://" + a.Daemon.PKIAddr().String() + "/ca/hufu-ca/"
	fetch := func(name, contentType string) []byte {
		t.Helper()
		resp, err := http.Get(base + name)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		if resp.StatusCode != 200 || resp.Header.Get("Content-Type") != contentType || resp.Header.Get("ETag") == "" {
			t.Fatalf("GET %s: %d %q", name, resp.StatusCode, resp.Header.Get("Content-Type"))
		}
		return b
	}
	root, err := smx509.ParseCertificate(fetch("root.cer", "application/pkix-cert"))
	if err != nil {
		t.Fatal(err)
	}
	issuing, err := smx509.ParseCertificate(fetch("issuing.cer", "application/pkix-cert"))
	if err != nil {
		t.Fatal(err)
	}
	holder, _ := sm2.GenerateKey(rand.Reader)
	issued, err := e.Fetch(ctx, "o-rp", &ca.Application{OrderID: "o-rp", Name: "张三", IDNumber: "11010519491231002X", Usage: ca.UsageSigning, PublicKey: &holder.PublicKey, ValidityYears: 1})
	if err != nil {
		t.Fatal(err)
	}
	leaf, _ := smx509.ParseCertificate(issued.DER)

	// check returns the depth at which the chain fails its revocation check, or -1.
	check := func() int {
		t.Helper()
		roots, inter := smx509.NewCertPool(), smx509.NewCertPool()
		roots.AddCert(root)
		inter.AddCert(issuing)
		if _, err := leaf.Verify(smx509.VerifyOptions{Roots: roots, Intermediates: inter, CurrentTime: a.Clock.Now(),
			KeyUsages: []smx509.ExtKeyUsage{smx509.ExtKeyUsageAny}}); err != nil {
			t.Fatalf("chain: %v", err)
		}
		failed := -1
		for depth, c := range []struct {
			name         string
			cert, signer *smx509.Certificate
		}{{"issuing.crl", leaf, issuing}, {"root.crl", issuing, root}} {
			der := fetch(c.name, "application/pkix-crl")
			crl, err := smx509.ParseRevocationList(der)
			if err != nil {
				t.Fatal(err)
			}
			if err := crl.CheckSignatureFrom(c.signer); err != nil || crl.Issuer.String() != c.signer.Subject.String() ||
				!a.Clock.Now().Before(crl.NextUpdate) {
				t.Fatalf("%s: signature %v, issuer %v, next update %v", c.name, err, crl.Issuer, crl.NextUpdate)
			}
			for _, en := range crl.RevokedCertificateEntries {
				if en.SerialNumber.Cmp(c.cert.SerialNumber) == 0 && failed < 0 {
					failed = depth
				}
			}
		}
		opensslCheck(t, base, leaf, root, issuing, a.Clock.Now(), failed)
		return failed
	}
	if d := check(); d != -1 {
		t.Fatalf("a valid chain fails at depth %d", d)
	}
	if err := e.Revoke(ctx, issued.Serial, ca.ReasonKeyCompromise); err != nil {
		t.Fatal(err)
	}
	if d := check(); d != 0 {
		t.Fatalf("a revoked leaf: depth %d, want 0", d)
	}
	// A fresh leaf under a revoked issuing CA fails at depth 1.
	leafOK, err := e.Fetch(ctx, "o-rp2", &ca.Application{OrderID: "o-rp2", Name: "李四", IDNumber: "11010519491231002X", Usage: ca.UsageSigning, PublicKey: &holder.PublicKey, ValidityYears: 1})
	if err != nil {
		t.Fatal(err)
	}
	leaf, _ = smx509.ParseCertificate(leafOK.DER)
	if err := e.RevokeIssuingCA(ctx, ca.ReasonKeyCompromise); err != nil {
		t.Fatal(err)
	}
	if d := check(); d != 1 {
		t.Fatalf("under a revoked issuing CA: depth %d, want 1", d)
	}
}

// opensslCheck runs `openssl verify -crl_check_all` over the CRLs fetched from the listener
// when this OpenSSL verifies SM2 chains at all (probed without CRLs first).
func opensslCheck(t *testing.T, base string, leaf, root, issuing *smx509.Certificate, at time.Time, failedDepth int) {
	t.Helper()
	if _, err := exec.LookPath("openssl"); err != nil {
		return
	}
	dir := t.TempDir()
	path := func(n string) string { return filepath.Join(dir, n) }
	write := func(name string, ders ...[]byte) {
		var b strings.Builder
		for _, d := range ders {
			b.WriteString(pemOf("CERTIFICATE", d))
		}
		if err := os.WriteFile(path(name), []byte(b.String()), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	write("root.pem", root.Raw)
	write("issuing.pem", issuing.Raw)
	write("leaf.pem", leaf.Raw)
	attime := "-attime=" + strconvItoa(at.Unix())
	if out, err := exec.Command("openssl", "verify", attime, "-CAfile", path("root.pem"), "-untrusted", path("issuing.pem"), path("leaf.pem")).CombinedOutput(); err != nil {
		t.Logf("this OpenSSL does not verify SM2 chains (%s): -crl_check_all skipped", strings.TrimSpace(strings.SplitN(string(out), "\n", 3)[1]))
		return
	}
	var crls strings.Builder
	for _, n := range []string{"issuing.crl", "root.crl"} {
		resp, err := http.Get(base + n)
		if err != nil {
			t.Fatal(err)
		}
		b, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		crls.WriteString(pemOf("X509 CRL", b))
	}
	if err := os.WriteFile(path("crls.pem"), []byte(crls.String()), 0o600); err != nil {
		t.Fatal(err)
	}
	out, err := exec.Command("openssl", "verify", attime, "-crl_check_all", "-CAfile", path("root.pem"), "-untrusted", path("issuing.pem"),
		"-CRLfile", path("crls.pem"), path("leaf.pem")).CombinedOutput()
	switch {
	case failedDepth < 0 && err != nil:
		t.Fatalf("openssl verify -crl_check_all: %v\n%s", err, out)
	case failedDepth >= 0 && (err == nil || !strings.Contains(string(out), "certificate revoked") || !strings.Contains(string(out), "depth lookup") && !strings.Contains(string(out), "at "+strconvItoa(int64(failedDepth))+" depth")):
		t.Fatalf("openssl verify -crl_check_all of a chain revoked at depth %d: %v\n%s", failedDepth, err, out)
	}
}

func pemOf(typ string, der []byte) string {
	return string(pem.EncodeToMemory(&pem.Block{Type: typ, Bytes: der}))
}

func strconvItoa(n int64) string { return strconv.FormatInt(n, 10) }
