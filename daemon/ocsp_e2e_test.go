package daemon_test

import (
	"bytes"
	"crypto/rand"
	"io"
	"math/big"
	"net/http"
	"testing"

	hufuv1 "github.com/hufu-hsm/hufu/api/hufu/v1"
	"github.com/hufu-hsm/hufu/daemon/ca"
	"github.com/hufu-hsm/hufu/daemon/ca/ocsp"
	"github.com/hufu-hsm/hufu/daemon/config"
)

// TestOCSPOverTheDaemon asks the daemon's OCSP responder on the public PKI listener
// (certificates.ocsp on) about a certificate the daemon issued (good), a serial it never
// issued (unknown), and the same certificate once its holder revoked it (revoked,
// cessation).
func TestOCSPOverTheDaemon(t *testing.T) {
	a := certAppliance(t, func(c *config.Config) { c.Certificates.OCSP = true })
	p := newApplicant(t, a, phone, "device-0001", "key-ocsp-0001")
	serial := p.issue(a.desk())
	cert, _, _, issuing := p.download(serial)

	if a.live.Daemon.PKIAddr() == nil {
		t.Fatal("no PKI listener")
	}
	base := "http://" + a.live.Daemon.PKIAddr().String()

	ask := func(n *big.Int) ocsp.SingleResponse {
		t.Helper()
		id, err := ocsp.NewCertID(ocsp.SHA1, issuing, n)
		if err != nil {
			t.Fatal(err)
		}
		req, err := ocsp.MarshalRequest([]ocsp.CertID{id}, []byte("nonce-0001"))
		if err != nil {
			t.Fatal(err)
		}
		resp, err := http.Post(base+"/ocsp/hufu-ca", "application/ocsp-request", bytes.NewReader(req))
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		der, _ := io.ReadAll(resp.Body)
		r, err := ocsp.ParseResponse(der, issuing)
		if err != nil || r.Status != ocsp.Successful || len(r.Singles) != 1 {
			t.Fatalf("response %+v: %v", r, err)
		}
		return r.Singles[0]
	}
	if s := ask(cert.SerialNumber); s.Status.Status != ocsp.Good {
		t.Fatalf("an issued certificate: %v", s.Status.Status)
	}
	never, _ := rand.Int(rand.Reader, new(big.Int).Lsh(big.NewInt(1), 126))
	if s := ask(never.Add(never, big.NewInt(1))); s.Status.Status != ocsp.Unknown {
		t.Fatalf("a serial never issued: %v", s.Status.Status)
	}
	if _, err := p.certs.RevokeCertificate(bg, &hufuv1.RevokeCertificateRequest{Serial: serial, Pin: "123456", ConfirmIrreversible: true}); err != nil {
		t.Fatal(err)
	}
	if s := ask(cert.SerialNumber); s.Status.Status != ocsp.Revoked || s.Status.Reason != ca.ReasonCessation || s.Status.RevokedAt.IsZero() {
		t.Fatalf("after revocation: %+v", s.Status)
	}
}
