package daemon_test

import (
	"bytes"
	"encoding/asn1"
	"encoding/base64"
	"fmt"
	"io"
	"math/big"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/emmansun/gmsm/sm3"
	"github.com/emmansun/gmsm/smx509"

	hufuv1 "github.com/hufu-hsm/hufu/api/hufu/v1"
	"github.com/hufu-hsm/hufu/daemon/ca"
	"github.com/hufu-hsm/hufu/daemon/ca/ocsp"
	"github.com/hufu-hsm/hufu/daemon/config"
)

// TestRelyingParty is issue 17's relying-party suite on one appliance (certificates.ocsp on,
// certificates.public_url the PKI listener on loopback). A person applies for a pair, the
// desk approves, the person pays and downloads both certificates, and an enterprise is
// claimed (one certificate: a claim certifies one key today); from then on the test knows
// only what a relying party knows: the certificates and the root it trusts. From each
// certificate it follows the CRL distribution point and the AIA caIssuers and OCSP URLs
// over HTTP (no other paths), fetches the issuing CA and from its CDP and caIssuers the root
// CRL and root, verifies the chain with gmsm and each signature with `openssl pkeyutl` (SM2
// ID 1234567812345678), checks revocation at depth 0 (issuing CRL) and 1 (root CRL), asks
// OCSP by POST with a nonce and by GET without, and checks the profile (key usage and its
// criticality, EKU, basic constraints, SKI/AKI, subject serialNumber a PrintableString,
// HufuPlatforms). The person then revokes the signing certificate: a fresh issuing CRL (its
// number increased) lists both certificates of the pair with the reason, and OCSP says
// revoked, with the time and reason, for both, by GET too (the cached good answer is not
// reused), and the enterprise's certificate stays good until the issuing CA is revoked,
// when the fresh root CRL fails its chain at depth 1. `openssl x509`, `openssl crl` and
// `openssl ocsp -resp_text` parse everything. With HUFU_X509_TEXT_OUT set it writes there
// the `openssl x509 -text` of the pair and of the enterprise certificate.
func TestRelyingParty(t *testing.T) {
	pki := freePort(t)
	public := "http://" + pki
	a := certAppliance(t, func(c *config.Config) {
		c.Listen.PKI, c.Certificates.PublicURL, c.Certificates.OCSP = pki, public, true
	})
	if got := a.live.Daemon.PKIAddr(); got == nil || got.String() != pki {
		t.Fatalf("PKI listener on %v, want %s", got, pki)
	}
	p := newApplicant(t, a, phone, "device-rp-01", "key-rp-0001")
	signSerial := p.issue(a.desk())
	dl, err := p.certs.DownloadCertificate(bg, &hufuv1.DownloadCertificateRequest{Serial: signSerial, Format: hufuv1.CertificateFormat_CERTIFICATE_FORMAT_DER})
	must(t, err)
	if len(dl.Chain) != 2 || len(dl.PairCertificateData) == 0 {
		t.Fatalf("download: chain %d, pair certificate %d bytes", len(dl.Chain), len(dl.PairCertificateData))
	}
	// The trust anchor: the root as the person received it (out of band for a relying party).
	anchor, err := smx509.ParseCertificate(dl.Chain[1])
	must(t, err)
	rp := &relyingParty{t: t, public: public, anchor: anchor, now: a.clock.Now, dir: t.TempDir(), validity: a.cfg.Certificates.CRLNextUpdate.Std()}
	if _, err := exec.LookPath("openssl"); err != nil {
		rp.noOpenSSL = true
		t.Log("openssl not found: interoperability with OpenSSL not checked")
	}
	sign := rp.parse("signing", dl.CertificateData)
	enc := rp.parse("encryption", dl.PairCertificateData)
	_, signID := subjectSerialNumber(t, sign)
	if _, encID := subjectSerialNumber(t, enc); signID != encID || sign.Subject.CommonName != enc.Subject.CommonName {
		t.Fatalf("the pair names two holders: %q %q", sign.Subject, enc.Subject)
	}
	// An enterprise's certificate pair: a claim certifies two keys, a signing and an
	// encryption certificate naming the enterprise alike (docs/certificates.md).
	const enterprise = "福州示范科技有限公司"
	m := newMember(t, a, "13800138077", "device-rp-ent")
	entDL, err := m.certs.DownloadCertificate(bg, &hufuv1.DownloadCertificateRequest{Serial: m.claimAndPay(a.desk(), usccA, enterprise),
		Format: hufuv1.CertificateFormat_CERTIFICATE_FORMAT_DER})
	must(t, err)
	if len(entDL.PairCertificateData) == 0 || entDL.PairCertificate.GetSerial() != m.encSerial {
		t.Fatalf("an enterprise claim issued no pair: pair certificate %v", entDL.PairCertificate)
	}
	ent := rp.parse("enterprise", entDL.CertificateData)
	entEnc := rp.parse("enterprise-encryption", entDL.PairCertificateData)
	if ent.Subject.String() != entEnc.Subject.String() {
		t.Fatalf("the enterprise pair names two holders: %q %q", ent.Subject, entEnc.Subject)
	}

	signingKU, signingEKU := smx509.KeyUsageDigitalSignature|smx509.KeyUsageContentCommitment,
		[]smx509.ExtKeyUsage{smx509.ExtKeyUsageClientAuth, smx509.ExtKeyUsageEmailProtection}
	encryptionKU := smx509.KeyUsageKeyEncipherment | smx509.KeyUsageDataEncipherment
	for _, c := range []struct {
		cert          *smx509.Certificate
		ku            smx509.KeyUsage
		eku           []smx509.ExtKeyUsage
		text          string
		org, identity string
		years         int // as applied for
		regions       []string
	}{
		{sign, signingKU, signingEKU, "Digital Signature, Non Repudiation", ca.OrganizationPerson, signID, 2, []string{"330000"}},
		{enc, encryptionKU, []smx509.ExtKeyUsage{smx509.ExtKeyUsageEmailProtection}, "Key Encipherment, Data Encipherment", ca.OrganizationPerson, signID, 2,
			[]string{"330000"}},
		// The claim roams to 110000 besides the demo platform's region.
		{ent, signingKU, signingEKU, "Digital Signature, Non Repudiation", enterprise, usccA, 1, []string{"330000", "110000"}},
		{entEnc, encryptionKU, []smx509.ExtKeyUsage{smx509.ExtKeyUsageEmailProtection}, "Key Encipherment, Data Encipherment", enterprise, usccA, 1,
			[]string{"330000", "110000"}},
	} {
		rp.checkProfile(c.cert, c.ku, c.eku, c.text, c.org, c.identity)
		if pl, ok, err := ca.PlatformsOf(c.cert); err != nil || !ok || !slices.Equal(pl.Platforms, []string{"demo"}) || !slices.Equal(pl.Regions, c.regions) {
			t.Fatalf("%s: HufuPlatforms %+v (present %v, %v), want demo in %v", c.cert.Subject, pl, ok, err, c.regions)
		}
		if !c.cert.NotAfter.Equal(c.cert.NotBefore.AddDate(c.years, 0, 0)) {
			t.Fatalf("%s: valid %v to %v, applied for %d years", c.cert.Subject, c.cert.NotBefore, c.cert.NotAfter, c.years)
		}
		path := rp.path(c.cert)
		if rev := path.revokedAt(); rev != -1 {
			t.Fatalf("%s: a new certificate fails revocation at depth %d", c.cert.SerialNumber.Text(16), rev)
		}
		for _, nonce := range [][]byte{[]byte("rp-nonce-0001"), nil} {
			if s := rp.ocsp(path, nonce); s.Status.Status != ocsp.Good {
				t.Fatalf("OCSP (nonce %q) of a new certificate: %v", nonce, s.Status.Status)
			}
		}
		rp.opensslOCSP(path, "good", "")
	}
	if sign.Issuer.String() != enc.Issuer.String() || !bytes.Equal(sign.AuthorityKeyId, enc.AuthorityKeyId) {
		t.Fatal("the pair has two issuers")
	}
	before := rp.path(sign).crls[0].Number
	issuingCRL := sign.CRLDistributionPoints[0]
	if !rp.notModified(issuingCRL) {
		t.Fatal("a conditional GET of the unchanged issuing CRL is not answered 304")
	}

	// The person revokes the signing certificate: the pair goes.
	_, err = p.certs.RevokeCertificate(bg, &hufuv1.RevokeCertificateRequest{Serial: signSerial, Pin: "123456", ConfirmIrreversible: true, Reason: "不再使用"})
	must(t, err)
	if rp.notModified(issuingCRL) {
		t.Fatal("a conditional GET of the issuing CRL with the ETag from before the revocation is answered 304")
	}
	var revokedAt time.Time
	for _, c := range []*smx509.Certificate{sign, enc} {
		path := rp.path(c) // fetched afresh
		if rev := path.revokedAt(); rev != 0 {
			t.Fatalf("%s after the pair's revocation: revoked at depth %d, want 0", c.SerialNumber.Text(16), rev)
		}
		crl := path.crls[0]
		if crl.Number == nil || crl.Number.Cmp(before) <= 0 {
			t.Fatalf("the issuing CRL after a revocation: number %v, before %v", crl.Number, before)
		}
		entry := crlEntry(crl, c.SerialNumber)
		if entry.ReasonCode != ca.ReasonCessation || entry.RevocationTime.IsZero() {
			t.Fatalf("CRL entry of %s: reason %d, time %v", c.SerialNumber.Text(16), entry.ReasonCode, entry.RevocationTime)
		}
		if revokedAt.IsZero() {
			revokedAt = entry.RevocationTime
		} else if !entry.RevocationTime.Equal(revokedAt) {
			t.Fatalf("the pair's CRL entries differ in time: %v and %v", revokedAt, entry.RevocationTime)
		}
		for _, nonce := range [][]byte{[]byte("rp-nonce-0002"), nil} {
			s := rp.ocsp(path, nonce)
			if s.Status.Status != ocsp.Revoked || s.Status.Reason != ca.ReasonCessation || !s.Status.RevokedAt.Equal(entry.RevocationTime) {
				t.Fatalf("OCSP (nonce %q) after the revocation: %+v, CRL says %v", nonce, s.Status, entry.RevocationTime)
			}
		}
		rp.opensslOCSP(path, "revoked", "cessationOfOperation")
	}
	// The enterprise's certificates are not the person's: still good.
	for _, c := range []*smx509.Certificate{ent, entEnc} {
		if path := rp.path(c); path.revokedAt() != -1 || rp.ocsp(path, nil).Status.Status != ocsp.Good {
			t.Fatal("an enterprise certificate went with the person's pair")
		}
	}

	if out := os.Getenv("HUFU_X509_TEXT_OUT"); out != "" {
		var b strings.Builder
		for _, c := range []struct {
			title string
			cert  *smx509.Certificate
		}{{"Personal pair: signing certificate", sign}, {"Personal pair: encryption certificate", enc},
			{"Enterprise pair: signing certificate", ent}, {"Enterprise pair: encryption certificate", entEnc}} {
			fmt.Fprintf(&b, "===== %s =====\n%s\n", c.title, rp.openssl("x509", c.cert.Raw, "x509", "-text", "-noout", "-nameopt", "oneline,-esc_msb"))
		}
		must(t, os.WriteFile(out, []byte(b.String()), 0o644))
	}

	// Depth 1: with the issuing CA revoked (no operator surface does this yet; the CA's own
	// call), a fresh root CRL from the issuing CA's CDP fails the enterprise's chain there.
	rootCRL := rp.path(ent).crls[1]
	must(t, a.live.Daemon.EmbeddedCA("hufu-ca").RevokeIssuingCA(bg, ca.ReasonKeyCompromise))
	path := rp.path(ent)
	if d := path.revokedAt(); d != 1 || path.crls[1].Number.Cmp(rootCRL.Number) <= 0 ||
		crlEntry(path.crls[1], path.certs[1].SerialNumber).ReasonCode != ca.ReasonKeyCompromise {
		t.Fatalf("under a revoked issuing CA: depth %d, root CRL number %v (before %v)", d, path.crls[1].Number, rootCRL.Number)
	}
	// The issuing CA's OCSP goes on answering, signed by the issuing key (rp.ocsp checks the
	// signature): revoked, at the issuing CA's revocation time, for a certificate that was
	// good, with cACompromise for the issuing CA's keyCompromise.
	caEntry := crlEntry(path.crls[1], path.certs[1].SerialNumber)
	for _, nonce := range [][]byte{nil, []byte("after the CA")} {
		if s := rp.ocsp(path, nonce); s.Status.Status != ocsp.Revoked || s.Status.Reason != ca.ReasonCACompromise || !s.Status.RevokedAt.Equal(caEntry.RevocationTime) {
			t.Fatalf("OCSP (nonce %q) under a revoked issuing CA: %+v, the root CRL says %v", nonce, s.Status, caEntry.RevocationTime)
		}
	}
	rp.opensslOCSP(path, "revoked", "cACompromise")
}

// relyingParty checks certificates with the URLs in them, a trust anchor and the clock.
type relyingParty struct {
	t      *testing.T
	public string
	anchor *smx509.Certificate
	now    func() time.Time
	dir    string
	n      int
	etags  map[string]string // by URL, of the last get
	// validity is certificates.crl_next_update, the span of CRLs and OCSP answers.
	validity time.Duration
	// noOpenSSL: there is no openssl to run; the OpenSSL checks are skipped.
	noOpenSSL bool
}

// chainPath is a certificate with what its URLs led to: the issuing CA and the root, and
// the CRLs at depth 0 (the issuing CA's) and 1 (the root's).
type chainPath struct {
	certs [3]*smx509.Certificate // leaf, issuing CA, root
	crls  [2]*smx509.RevocationList
	ocsp  string
}

// get fetches one URL, which must be under public_url, with the content type wanted and
// the caching headers of docs/operations.md: an ETag, Cache-Control public with a max-age,
// for a CRL at most five minutes and never beyond its nextUpdate, and Last-Modified its
// thisUpdate. It remembers the ETag (rp.etags).
func (rp *relyingParty) get(u, contentType string) []byte {
	rp.t.Helper()
	b, h := rp.fetch(u, contentType)
	var maxAge int
	if _, err := fmt.Sscanf(h.Get("Cache-Control"), "public, no-transform, max-age=%d", &maxAge); err != nil || h.Get("ETag") == "" {
		rp.t.Fatalf("GET %s: Cache-Control %q (%v), ETag %q", u, h.Get("Cache-Control"), err, h.Get("ETag"))
	}
	if rp.etags == nil {
		rp.etags = map[string]string{}
	}
	rp.etags[u] = h.Get("ETag")
	if contentType == "application/pkix-crl" {
		crl, err := smx509.ParseRevocationList(b)
		if err != nil {
			rp.t.Fatalf("CRL at %s: %v", u, err)
		}
		modified, err := http.ParseTime(h.Get("Last-Modified"))
		if err != nil || !modified.Equal(crl.ThisUpdate.Truncate(time.Second)) || maxAge <= 0 || maxAge > 300 ||
			rp.now().Add(time.Duration(maxAge)*time.Second).After(crl.NextUpdate) {
			rp.t.Fatalf("GET %s: Last-Modified %q (thisUpdate %v), max-age %d (nextUpdate %v)", u, h.Get("Last-Modified"), crl.ThisUpdate,
				maxAge, crl.NextUpdate)
		}
	}
	return b
}

// notModified reports whether a conditional GET of u with the ETag of its last fetch is
// answered 304 Not Modified (else it must be 200).
func (rp *relyingParty) notModified(u string) bool {
	rp.t.Helper()
	req, _ := http.NewRequest(http.MethodGet, u, nil)
	req.Header.Set("If-None-Match", rp.etags[u])
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		rp.t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusNotModified && resp.StatusCode != http.StatusOK {
		rp.t.Fatalf("conditional GET %s: %s", u, resp.Status)
	}
	return resp.StatusCode == http.StatusNotModified
}

// fetch is get without the header checks.
func (rp *relyingParty) fetch(u, contentType string) ([]byte, http.Header) {
	rp.t.Helper()
	if !strings.HasPrefix(u, rp.public+"/") {
		rp.t.Fatalf("URL %q is not under certificates.public_url %s", u, rp.public)
	}
	resp, err := http.Get(u)
	if err != nil {
		rp.t.Fatal(err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		rp.t.Fatal(err)
	}
	if resp.StatusCode != http.StatusOK || resp.Header.Get("Content-Type") != contentType {
		rp.t.Fatalf("GET %s: %s %q, want 200 %q", u, resp.Status, resp.Header.Get("Content-Type"), contentType)
	}
	return b, resp.Header
}

// one returns the single URL of an extension.
func (rp *relyingParty) one(what string, urls []string) string {
	rp.t.Helper()
	if len(urls) != 1 {
		rp.t.Fatalf("%s: %v, want one URL", what, urls)
	}
	return urls[0]
}

// parse parses a certificate as downloaded, with gmsm and with `openssl x509`.
func (rp *relyingParty) parse(name string, der []byte) *smx509.Certificate {
	rp.t.Helper()
	c, err := smx509.ParseCertificate(der)
	if err != nil {
		rp.t.Fatalf("%s certificate: %v", name, err)
	}
	rp.openssl("x509", der, "x509", "-noout", "-subject")
	return c
}

// path follows leaf's URLs to its chain and CRLs, fetching each afresh, and verifies the
// chain to the anchor and every signature on it.
func (rp *relyingParty) path(leaf *smx509.Certificate) *chainPath {
	rp.t.Helper()
	p := &chainPath{ocsp: rp.one("leaf OCSP", leaf.OCSPServer)}
	p.certs[0] = leaf
	issuingDER := rp.get(rp.one("leaf caIssuers", leaf.IssuingCertificateURL), "application/pkix-cert")
	issuing := rp.parse("issuing CA", issuingDER)
	rootDER := rp.get(rp.one("issuing CA caIssuers", issuing.IssuingCertificateURL), "application/pkix-cert")
	if !bytes.Equal(rootDER, rp.anchor.Raw) {
		rp.t.Fatal("the root at the issuing CA's caIssuers URL is not the trusted root")
	}
	if len(issuing.OCSPServer) != 0 || len(rp.anchor.CRLDistributionPoints) != 0 {
		rp.t.Fatalf("CA URLs: issuing CA OCSP %v, root CDP %v", issuing.OCSPServer, rp.anchor.CRLDistributionPoints)
	}
	p.certs[1], p.certs[2] = issuing, rp.anchor
	rp.checkCA(rp.anchor, rp.anchor, 1)
	rp.checkCA(issuing, rp.anchor, 0)
	if !bytes.Equal(leaf.AuthorityKeyId, issuing.SubjectKeyId) || leaf.NotAfter.After(issuing.NotAfter) {
		rp.t.Fatalf("leaf AKI %x, issuing CA's SKI %x; not after %v, the issuing CA's %v", leaf.AuthorityKeyId, issuing.SubjectKeyId,
			leaf.NotAfter, issuing.NotAfter)
	}
	roots, inter := smx509.NewCertPool(), smx509.NewCertPool()
	roots.AddCert(rp.anchor)
	inter.AddCert(issuing)
	chains, err := leaf.Verify(smx509.VerifyOptions{Roots: roots, Intermediates: inter, CurrentTime: rp.now(),
		KeyUsages: []smx509.ExtKeyUsage{smx509.ExtKeyUsageAny}})
	if err != nil || len(chains) != 1 || len(chains[0]) != 3 {
		rp.t.Fatalf("chain: %d %v", len(chains), err)
	}
	rp.pkeyutl("certificate", issuing, leaf.RawTBSCertificate, leaf.Signature)
	rp.pkeyutl("issuing CA", rp.anchor, issuing.RawTBSCertificate, issuing.Signature)
	for depth, u := range []string{rp.one("leaf CDP", leaf.CRLDistributionPoints), rp.one("issuing CA CDP", issuing.CRLDistributionPoints)} {
		der := rp.get(u, "application/pkix-crl")
		crl, err := smx509.ParseRevocationList(der)
		if err != nil {
			rp.t.Fatalf("CRL at %s: %v", u, err)
		}
		signer := p.certs[depth+1]
		now := rp.now()
		if err := crl.CheckSignatureFrom(signer); err != nil || !bytes.Equal(crl.RawIssuer, signer.RawSubject) ||
			!bytes.Equal(crl.AuthorityKeyId, signer.SubjectKeyId) || crl.Number == nil || crl.ThisUpdate.After(now) || !now.Before(crl.NextUpdate) ||
			crl.NextUpdate.Sub(crl.ThisUpdate) != rp.validity {
			rp.t.Fatalf("CRL at %s: signature %v, issuer %v, AKI %x, number %v, this update %v, next update %v (now %v)",
				u, err, crl.Issuer, crl.AuthorityKeyId, crl.Number, crl.ThisUpdate, crl.NextUpdate, now)
		}
		rp.pkeyutl("CRL", signer, crl.RawTBSRevocationList, crl.Signature)
		text := rp.openssl("crl", der, "crl", "-text", "-noout")
		for _, e := range crl.RevokedCertificateEntries {
			if text != "" && (!strings.Contains(text, "Serial Number: "+strings.ToUpper(e.SerialNumber.Text(16))) ||
				e.ReasonCode == ca.ReasonCessation && !strings.Contains(text, "Cessation Of Operation")) {
				rp.t.Fatalf("openssl crl does not list %s:\n%s", e.SerialNumber.Text(16), text)
			}
		}
		p.crls[depth] = crl
	}
	return p
}

// revokedAt is the depth at which the path's CRLs revoke it, or -1.
func (p *chainPath) revokedAt() int {
	for depth, crl := range p.crls {
		for _, e := range crl.RevokedCertificateEntries {
			if e.SerialNumber.Cmp(p.certs[depth].SerialNumber) == 0 {
				return depth
			}
		}
	}
	return -1
}

func crlEntry(crl *smx509.RevocationList, serial *big.Int) smx509.RevocationListEntry {
	for _, e := range crl.RevokedCertificateEntries {
		if e.SerialNumber.Cmp(serial) == 0 {
			return e
		}
	}
	return smx509.RevocationListEntry{}
}

// ocsp asks the leaf's OCSP URL about it: POST with the nonce, or GET without one. The
// response must be signed by the issuing CA (gmsm), name the certificate, echo the nonce and
// be current; `openssl ocsp -resp_text` must read the same status.
func (rp *relyingParty) ocsp(p *chainPath, nonce []byte) ocsp.SingleResponse {
	rp.t.Helper()
	leaf, issuing := p.certs[0], p.certs[1]
	id, err := ocsp.NewCertID(ocsp.SHA1, issuing, leaf.SerialNumber)
	if err != nil {
		rp.t.Fatal(err)
	}
	req, err := ocsp.MarshalRequest([]ocsp.CertID{id}, nonce)
	if err != nil {
		rp.t.Fatal(err)
	}
	var resp *http.Response
	if nonce != nil {
		resp, err = http.Post(p.ocsp, "application/ocsp-request", bytes.NewReader(req))
	} else {
		resp, err = http.Get(p.ocsp + "/" + url.PathEscape(base64.StdEncoding.EncodeToString(req)))
	}
	if err != nil {
		rp.t.Fatal(err)
	}
	der, err := io.ReadAll(resp.Body)
	resp.Body.Close()
	if err != nil || resp.StatusCode != http.StatusOK || resp.Header.Get("Content-Type") != "application/ocsp-response" {
		rp.t.Fatalf("OCSP %s: %s %q %v", resp.Request.Method, resp.Status, resp.Header.Get("Content-Type"), err)
	}
	r, err := ocsp.ParseResponse(der, issuing)
	if err != nil || r.Status != ocsp.Successful || len(r.Singles) != 1 {
		rp.t.Fatalf("OCSP response: %+v %v", r, err)
	}
	s := r.Singles[0]
	now := rp.now()
	if s.CertID.Serial.Cmp(leaf.SerialNumber) != 0 || !bytes.Equal(s.CertID.IssuerKeyHash, id.IssuerKeyHash) ||
		!bytes.Equal(s.CertID.IssuerNameHash, id.IssuerNameHash) {
		rp.t.Fatalf("OCSP answers about %v", s.CertID)
	}
	if len(r.Certs) != 1 || !bytes.Equal(r.Certs[0].Raw, issuing.Raw) {
		rp.t.Fatalf("OCSP response carries %d certificates, want the issuing CA's", len(r.Certs))
	}
	if s.ThisUpdate.After(now) || !now.Before(s.NextUpdate) || s.NextUpdate.Sub(s.ThisUpdate) != rp.validity || r.ProducedAt.After(now) {
		rp.t.Fatalf("OCSP: this update %v, next update %v, produced %v (now %v)", s.ThisUpdate, s.NextUpdate, r.ProducedAt, now)
	}
	if echo, _ := asn1Octets(r.Nonce); !bytes.Equal(echo, nonce) {
		rp.t.Fatalf("OCSP nonce %x, sent %x", r.Nonce, nonce)
	}
	text := rp.openssl("ocsp", der, "ocsp", "-respin", rp.file("resp", der), "-resp_text", "-noverify")
	if text != "" && (!strings.Contains(text, "Cert Status: "+strings.ToLower(s.Status.Status.String())) ||
		nonce != nil && !strings.Contains(text, "OCSP Nonce") ||
		s.Status.Reason == ca.ReasonCessation && !strings.Contains(text, "Revocation Reason: cessationOfOperation")) {
		rp.t.Fatalf("openssl ocsp -resp_text (status %v, nonce %q):\n%s", s.Status.Status, nonce, text)
	}
	return s
}

// opensslOCSP asks the leaf's OCSP URL with `openssl ocsp` (its own request, with a nonce)
// and wants status in its report, with reason (its OpenSSL name) unless empty. OpenSSL 3.0
// cannot be given the SM2 ID, so the response's signature is the only complaint allowed
// (see daemon/ca/ocsp's TestOpenSSLRelyingParty).
func (rp *relyingParty) opensslOCSP(p *chainPath, status, reason string) {
	rp.t.Helper()
	if rp.noOpenSSL {
		return
	}
	pemFile := func(name string, c *smx509.Certificate) string {
		return rp.file(name+".pem", []byte(pemOf("CERTIFICATE", c.Raw)))
	}
	leaf := pemFile("leaf", p.certs[0])
	out, _ := exec.Command("openssl", "ocsp", "-issuer", pemFile("issuing", p.certs[1]), "-cert", leaf, "-url", p.ocsp,
		"-CAfile", pemFile("root", p.certs[2]), "-resp_text").CombinedOutput()
	text := string(out)
	for _, want := range []string{leaf + ": " + status, "This Update:", "Next Update:", "OCSP Nonce:", "Signature Algorithm: SM2-with-SM3"} {
		if !strings.Contains(text, want) {
			rp.t.Fatalf("openssl ocsp -url %s lacks %q:\n%s", p.ocsp, want, text)
		}
	}
	if reason != "" && !strings.Contains(text, "Reason: "+reason) {
		rp.t.Fatalf("openssl ocsp gives no reason %s:\n%s", reason, text)
	}
	if strings.Contains(text, "WARNING") || strings.Contains(text, "Nonce Verify error") ||
		!strings.Contains(text, "Response verify OK") && !strings.Contains(text, "ocsp_verify:signature failure") {
		rp.t.Fatalf("openssl ocsp complains of more than the SM2 ID:\n%s", text)
	}
}

// asn1Octets unwraps the OCTET STRING of a nonce extension's value ("" when there is none).
func asn1Octets(v []byte) ([]byte, error) {
	if v == nil {
		return nil, nil
	}
	var b []byte
	_, err := asn1.Unmarshal(v, &b)
	return b, err
}

// checkProfile checks an end-entity certificate against docs/certificates.md's table.
func (rp *relyingParty) checkProfile(c *smx509.Certificate, ku smx509.KeyUsage, eku []smx509.ExtKeyUsage, kuText, org, identity string) {
	rp.t.Helper()
	name := c.SerialNumber.Text(16)
	critical := rp.extensions(c, leafExtensions)
	if c.KeyUsage != ku || !critical["2.5.29.15"] || !slices.Equal(c.ExtKeyUsage, eku) || critical["2.5.29.37"] {
		rp.t.Fatalf("%s: key usage %b (critical %v), EKU %v (critical %v)", name, c.KeyUsage, critical["2.5.29.15"], c.ExtKeyUsage, critical["2.5.29.37"])
	}
	if !c.BasicConstraintsValid || c.IsCA || !critical["2.5.29.19"] {
		rp.t.Fatalf("%s: basic constraints %v CA %v critical %v", name, c.BasicConstraintsValid, c.IsCA, critical["2.5.29.19"])
	}
	if ski := rp.sm3KeyID(c); !bytes.Equal(c.SubjectKeyId, ski) || len(c.AuthorityKeyId) == 0 {
		rp.t.Fatalf("%s: SKI %x, want %x; AKI %x", name, c.SubjectKeyId, ski, c.AuthorityKeyId)
	}
	if c.SerialNumber.Sign() <= 0 || c.SerialNumber.BitLen() > 127 || c.SerialNumber.BitLen() < 100 {
		rp.t.Fatalf("serial %s: %d bits, want 16 random bytes (127 bits)", name, c.SerialNumber.BitLen())
	}
	if tag, got := subjectSerialNumber(rp.t, c); tag != asn1.TagPrintableString || got != identity || got == "" {
		rp.t.Fatalf("%s: subject serialNumber %q (tag %d), want %q as PrintableString", name, got, tag, identity)
	}
	if !slices.Equal(c.Subject.Organization, []string{org}) || !slices.Equal(c.Subject.Country, []string{"CN"}) || c.Subject.CommonName == "" {
		rp.t.Fatalf("%s: subject %v", name, c.Subject)
	}
	if c.SignatureAlgorithm != smx509.SM2WithSM3 || c.Version != 3 {
		rp.t.Fatalf("%s: signature algorithm %v, version %d", name, c.SignatureAlgorithm, c.Version)
	}
	if v, ok := critical[ca.OIDPlatforms.String()]; !ok || v {
		rp.t.Fatalf("%s: HufuPlatforms present %v, critical %v", name, ok, v)
	}
	text := rp.openssl("x509", c.Raw, "x509", "-text", "-noout")
	for _, want := range []string{"X509v3 Key Usage: critical", kuText, "X509v3 Basic Constraints: critical", "CA:FALSE",
		"CA Issuers - URI:" + c.IssuingCertificateURL[0], "OCSP - URI:" + c.OCSPServer[0], "URI:" + c.CRLDistributionPoints[0],
		"X509v3 Subject Key Identifier", "X509v3 Authority Key Identifier", "SM2-with-SM3"} {
		if text != "" && !strings.Contains(text, want) {
			rp.t.Fatalf("openssl x509 -text of %s lacks %q:\n%s", name, want, text)
		}
	}
}

// The extensions each certificate of the hierarchy has, exactly (docs/certificates.md):
// basic constraints, key usage, SKI, AKI, EKU, AIA, CRL distribution points, HufuPlatforms.
var (
	leafExtensions = []string{"2.5.29.19", "2.5.29.15", "2.5.29.14", "2.5.29.35", "2.5.29.37", "1.3.6.1.5.5.7.1.1", "2.5.29.31",
		ca.OIDPlatforms.String()}
	issuingExtensions = []string{"2.5.29.19", "2.5.29.15", "2.5.29.14", "2.5.29.35", "1.3.6.1.5.5.7.1.1", "2.5.29.31"}
	rootExtensions    = []string{"2.5.29.19", "2.5.29.15", "2.5.29.14"}
)

// extensions checks that c has exactly the extensions want, each once, and returns their
// criticality by OID.
func (rp *relyingParty) extensions(c *smx509.Certificate, want []string) map[string]bool {
	rp.t.Helper()
	critical := map[string]bool{}
	var got []string
	for _, e := range c.Extensions {
		critical[e.Id.String()] = e.Critical
		got = append(got, e.Id.String())
	}
	slices.Sort(got)
	want = slices.Sorted(slices.Values(want))
	if !slices.Equal(got, want) {
		rp.t.Fatalf("%s (%s): extensions %v, want %v", c.Subject, c.SerialNumber.Text(16), got, want)
	}
	return critical
}

// sm3KeyID is the key identifier of docs/certificates.md: the leftmost 160 bits of the SM3
// of the subjectPublicKey bits.
func (rp *relyingParty) sm3KeyID(c *smx509.Certificate) []byte {
	rp.t.Helper()
	var spki struct {
		Algorithm asn1.RawValue
		Key       asn1.BitString
	}
	if _, err := asn1.Unmarshal(c.RawSubjectPublicKeyInfo, &spki); err != nil {
		rp.t.Fatal(err)
	}
	sum := sm3.Sum(spki.Key.Bytes)
	return sum[:20]
}

// checkCA checks a CA certificate of the hierarchy: CA with its path length, keyCertSign
// and cRLSign (critical), an SM3 key identifier, and the issuer's key identifier as AKI.
func (rp *relyingParty) checkCA(c, issuer *smx509.Certificate, pathLen int) {
	rp.t.Helper()
	want := rootExtensions
	if c != issuer {
		want = issuingExtensions
	}
	critical := rp.extensions(c, want)
	if !c.IsCA || !c.BasicConstraintsValid || !critical["2.5.29.19"] || c.MaxPathLen != pathLen || pathLen == 0 && !c.MaxPathLenZero ||
		c.KeyUsage != smx509.KeyUsageCertSign|smx509.KeyUsageCRLSign || !critical["2.5.29.15"] {
		rp.t.Fatalf("CA %s: CA %v path length %d (zero %v), key usage %b (critical %v)", c.Subject, c.IsCA, c.MaxPathLen, c.MaxPathLenZero,
			c.KeyUsage, critical["2.5.29.15"])
	}
	if !bytes.Equal(c.SubjectKeyId, rp.sm3KeyID(c)) || c != issuer && !bytes.Equal(c.AuthorityKeyId, issuer.SubjectKeyId) {
		rp.t.Fatalf("CA %s: SKI %x, AKI %x (issuer's SKI %x)", c.Subject, c.SubjectKeyId, c.AuthorityKeyId, issuer.SubjectKeyId)
	}
	if c.NotAfter.After(issuer.NotAfter) {
		rp.t.Fatalf("CA %s outlives its issuer", c.Subject)
	}
}

// file writes b to a new file in the test's directory and returns its path.
func (rp *relyingParty) file(name string, b []byte) string {
	rp.t.Helper()
	rp.n++
	path := filepath.Join(rp.dir, fmt.Sprintf("%03d-%s", rp.n, name))
	if err := os.WriteFile(path, b, 0o600); err != nil {
		rp.t.Fatal(err)
	}
	return path
}

// openssl runs openssl on der (x509 and crl read it from -in) and returns what it printed;
// it fails the test if openssl does. Without openssl it returns "", and the callers skip
// their checks of the text.
func (rp *relyingParty) openssl(name string, der []byte, args ...string) string {
	rp.t.Helper()
	if rp.noOpenSSL {
		return ""
	}
	if args[0] != "ocsp" {
		args = append(args, "-inform", "DER", "-in", rp.file(name, der))
	}
	out, err := exec.Command("openssl", args...).CombinedOutput()
	if err != nil {
		rp.t.Fatalf("openssl %s: %v\n%s", strings.Join(args, " "), err, out)
	}
	return string(out)
}

// pkeyutl verifies an SM2-with-SM3 signature under signer's key with OpenSSL, given the
// default SM2 ID (OpenSSL 3.0's verify and ocsp cannot be given it).
func (rp *relyingParty) pkeyutl(what string, signer *smx509.Certificate, tbs, sig []byte) {
	rp.t.Helper()
	if rp.noOpenSSL {
		return
	}
	cert := rp.file("signer.pem", []byte(pemOf("CERTIFICATE", signer.Raw)))
	out, err := exec.Command("openssl", "pkeyutl", "-verify", "-certin", "-inkey", cert, "-rawin", "-digest", "sm3",
		"-in", rp.file("tbs", tbs), "-sigfile", rp.file("sig", sig), "-pkeyopt", "distid:1234567812345678").CombinedOutput()
	if err != nil {
		rp.t.Fatalf("openssl pkeyutl -verify of the %s's signature: %v\n%s", what, err, out)
	}
}
