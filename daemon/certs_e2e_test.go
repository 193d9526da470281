package daemon_test

import (
	"crypto/ecdsa"
	"crypto/rand"
	"encoding/pem"
	"fmt"
	"io"
	"net/http"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/emmansun/gmsm/sm2"
	"github.com/emmansun/gmsm/sm3"
	"github.com/emmansun/gmsm/smx509"
	hufuv1 "github.com/hufu-hsm/hufu/api/hufu/v1"
	"github.com/hufu-hsm/hufu/client"
	"github.com/hufu-hsm/hufu/cosign"
	"github.com/hufu-hsm/hufu/daemon/config"
	"github.com/hufu-hsm/hufu/daemon/devpki"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
)

// certAppliance is an appliance whose development CLI certificate may use the review desk
// and whose admin listener serves the CRLs.
type certAppl struct {
	*appliance
}

func certAppliance(t *testing.T, mutate ...func(*config.Config)) *certAppl {
	t.Helper()
	return &certAppl{startAppliance(t, func(c *config.Config) {
		c.SystemClients = []config.SystemClient{{Name: devpki.CLIClientName, Services: []string{"hufu.v1.ReviewService"}}}
		for _, m := range mutate {
			m(c)
		}
	})}
}

// crl fetches a CA's CRL as relying parties do: from the admin listener, without a token.
func (a *certAppl) crl(caID string) ([]byte, error) {
	resp, err := http.Get(a.live.AdminURL() + "/crl/" + caID)
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		return nil, err
	}
	if resp.StatusCode != http.StatusOK || resp.Header.Get("Content-Type") != "application/pkix-crl" {
		return nil, fmt.Errorf("GET /crl/%s: %s %q: %s", caID, resp.Status, resp.Header.Get("Content-Type"), body)
	}
	return body, nil
}

func statusCode(err error) codes.Code { return status.Code(err) }

func errMessage(err error) string {
	st, _ := status.FromError(err)
	return st.Message()
}

// desk connects as the operators' review desk with the development CLI client certificate.
func (a *appliance) desk() hufuv1.ReviewServiceClient {
	a.t.Helper()
	tls := filepath.Join(a.cfg.DataDir, "tls")
	conn, err := client.Dial(client.Config{Addr: a.addr, CAFile: filepath.Join(tls, "ca.pem"), ServerName: "localhost",
		ClientCertFile: filepath.Join(tls, "cli.pem"), ClientKeyFile: filepath.Join(tls, "cli-key.pem"), DeviceID: "desk-0001"})
	if err != nil {
		a.t.Fatal(err)
	}
	a.t.Cleanup(func() { conn.Close() })
	return hufuv1.NewReviewServiceClient(conn.ClientConn())
}

// applicant is a verified person with two split keys, applying for certificate pairs: key
// for the signing certificates, enc for the encryption certificates.
type applicant struct {
	t     *testing.T
	conn  *client.Conn
	key   *phoneKey
	enc   *phoneKey
	certs hufuv1.CertificateServiceClient
	n     int
	// encSerial is the encryption certificate of the last pair issue made.
	encSerial string
}

func newApplicant(t *testing.T, a *certAppl, phone, device, keyID string) *applicant {
	conn, userID := a.verifiedUser(phone, device)
	return &applicant{t: t, conn: conn, key: createKey(t, conn, userID, keyID, "123456"), enc: createKey(t, conn, userID, keyID+"-enc", "123456"),
		certs: hufuv1.NewCertificateServiceClient(conn.ClientConn())}
}

// csr is a PKCS#10 request signed by the signing split key through the daemon.
func (p *applicant) csr() []byte { return p.csrOf(p.key) }

// csrOf is a PKCS#10 request signed by k through the daemon.
func (p *applicant) csrOf(k *phoneKey) []byte {
	p.t.Helper()
	der, err := smx509.CreateCertificateRequest(rand.Reader, &smx509.CertificateRequest{}, k.signer())
	if err != nil {
		p.t.Fatal(err)
	}
	return der
}

func (p *applicant) letter() *hufuv1.Authorisation {
	p.t.Helper()
	letter := []byte("授权书：本人授权申请个人数字证书。")
	sig, err := p.key.signer().Sign(rand.Reader, letter, &cosign.SignerOpts{})
	if err != nil {
		p.t.Fatal(err)
	}
	return &hufuv1.Authorisation{Kind: &hufuv1.Authorisation_Online{Online: &hufuv1.SignedLetter{Letter: letter, Signature: sig}}}
}

func (p *applicant) request() *hufuv1.ApplyCertificateRequest {
	p.n++
	return &hufuv1.ApplyCertificateRequest{RequestId: fmt.Sprintf("apply-%s-%d", p.key.id, p.n), KeyId: p.key.id, CaId: "hufu-ca",
		ValidityYears: 2, Platforms: []string{"demo"}, Csr: p.csr(), Authorisation: p.letter(),
		EncryptionKeyId: p.enc.id, EncryptionCsr: p.csrOf(p.enc)}
}

func (p *applicant) apply() *hufuv1.Order {
	p.t.Helper()
	resp, err := p.certs.ApplyCertificate(bg, p.request())
	if err != nil {
		p.t.Fatalf("apply: %v", err)
	}
	return resp.Order
}

func (p *applicant) pay(orderID, idem string) (*hufuv1.PayOrderResponse, error) {
	return p.certs.PayOrder(bg, &hufuv1.PayOrderRequest{OrderId: orderID, Method: "dev", IdempotencyKey: idem})
}

// issue takes a certificate pair through the whole flow and returns the signing
// certificate's serial (p.encSerial is the encryption certificate's).
func (p *applicant) issue(desk hufuv1.ReviewServiceClient) string {
	p.t.Helper()
	o := p.apply()
	if _, err := desk.ApproveOrder(bg, &hufuv1.ApproveOrderRequest{OrderId: o.Id, Note: "ok"}); err != nil {
		p.t.Fatalf("approve: %v", err)
	}
	paid, err := p.pay(o.Id, "pay-"+o.Id)
	if err != nil {
		p.t.Fatalf("pay: %v", err)
	}
	p.encSerial = paid.Order.EncryptionSerial
	return paid.Certificate.Serial
}

// issueForEnvelopes takes a pair through the whole flow and returns what bid envelopes are
// encrypted to: the encryption certificate's serial and its key.
func (p *applicant) issueForEnvelopes(desk hufuv1.ReviewServiceClient) (string, *phoneKey) {
	p.t.Helper()
	p.issue(desk)
	return p.encSerial, p.enc
}

func (p *applicant) download(serial string) (*smx509.Certificate, *smx509.CertPool, *smx509.CertPool, *smx509.Certificate) {
	p.t.Helper()
	resp, err := p.certs.DownloadCertificate(bg, &hufuv1.DownloadCertificateRequest{Serial: serial, Format: hufuv1.CertificateFormat_CERTIFICATE_FORMAT_DER})
	if err != nil {
		p.t.Fatalf("download: %v", err)
	}
	cert, err := smx509.ParseCertificate(resp.CertificateData)
	if err != nil {
		p.t.Fatal(err)
	}
	issuing, err := smx509.ParseCertificate(resp.Chain[0])
	if err != nil {
		p.t.Fatal(err)
	}
	root, err := smx509.ParseCertificate(resp.Chain[1])
	if err != nil {
		p.t.Fatal(err)
	}
	roots, inter := smx509.NewCertPool(), smx509.NewCertPool()
	roots.AddCert(root)
	inter.AddCert(issuing)
	return cert, roots, inter, issuing
}

func TestCertificateLifecycleEndToEnd(t *testing.T) {
	a := certAppliance(t)
	desk := a.desk()
	p := newApplicant(t, a, phone, "device-0001", "key-cert-0001")

	cas, err := p.certs.ListCertificateAuthorities(bg, &hufuv1.ListCertificateAuthoritiesRequest{})
	if err != nil || len(cas.Authorities) != 1 || len(cas.Authorities[0].Prices) != 6 {
		t.Fatalf("CAs %v %v", cas, err)
	}
	req := p.request()
	o, err := p.certs.ApplyCertificate(bg, req)
	if err != nil {
		t.Fatal(err)
	}
	if o.Order.Status != hufuv1.OrderStatus_ORDER_STATUS_IN_REVIEW || o.Order.PriceFen != 36000 || o.Order.SubjectName != "张三" ||
		o.Order.AuthorisationMethod != "online" || strings.Contains(o.Order.SubjectIdMasked, "19491231") {
		t.Fatalf("new order %v", o.Order)
	}
	// The request id is the idempotency key.
	again, err := p.certs.ApplyCertificate(bg, req)
	if err != nil || again.Order.Id != o.Order.Id {
		t.Fatalf("repeated application: %v %v", again, err)
	}
	pending, err := desk.ListReviews(bg, &hufuv1.ListReviewsRequest{})
	if err != nil || len(pending.Orders) != 1 || pending.Orders[0].Id != o.Order.Id {
		t.Fatalf("desk list %v %v", pending, err)
	}
	// The user cannot use the desk, and the desk is not a user.
	_, err = hufuv1.NewReviewServiceClient(a.dial("device-0001").ClientConn()).ApproveOrder(bg, &hufuv1.ApproveOrderRequest{OrderId: o.Order.Id})
	if code := statusCode(err); code != codes.Unauthenticated && code != codes.PermissionDenied {
		t.Fatalf("a phone approved an order: %v", err)
	}
	letter, err := desk.GetAuthorisationLetter(bg, &hufuv1.GetAuthorisationLetterRequest{OrderId: o.Order.Id})
	if err != nil || letter.Method != "online" || letter.Sha256 != o.Order.AuthorisationSha256 ||
		!sm2.VerifyASN1WithSM2(p.key.public.PublicKey(), nil, letter.Content, letter.Signature) {
		t.Fatalf("letter for the desk: %v", err)
	}
	if _, err := desk.ApproveOrder(bg, &hufuv1.ApproveOrderRequest{OrderId: o.Order.Id, Note: "材料齐全"}); err != nil {
		t.Fatal(err)
	}
	a.clock.Advance(time.Minute)
	paid, err := p.pay(o.Order.Id, "payment-0001")
	if err != nil {
		t.Fatal(err)
	}
	if paid.Order.Status != hufuv1.OrderStatus_ORDER_STATUS_COMPLETED || paid.Certificate.Serial == "" {
		t.Fatalf("after payment %v", paid)
	}
	var steps []string
	for _, s := range paid.Order.Steps {
		steps = append(steps, s.Name)
	}
	if got := strings.Join(steps, ","); got != "submitted,approved,paid,issued" {
		t.Fatalf("progress %s", got)
	}
	// Paying again with the same key is the same answer.
	again2, err := p.pay(o.Order.Id, "payment-0001")
	if err != nil || again2.Certificate.Serial != paid.Certificate.Serial {
		t.Fatalf("repeated payment: %v %v", again2, err)
	}

	// Download, verify the chain and the profile, sign with the certificate's key.
	cert, roots, inter, issuing := p.download(paid.Certificate.Serial)
	if _, err := cert.Verify(smx509.VerifyOptions{Roots: roots, Intermediates: inter, CurrentTime: a.clock.Now(),
		KeyUsages: []smx509.ExtKeyUsage{smx509.ExtKeyUsageClientAuth}}); err != nil {
		t.Fatalf("chain: %v", err)
	}
	if cert.Subject.CommonName != "张三" || cert.NotAfter.Sub(cert.NotBefore) < 2*365*24*time.Hour {
		t.Fatalf("subject %v validity %v..%v", cert.Subject, cert.NotBefore, cert.NotAfter)
	}
	msg := []byte("投标文件")
	sig, err := p.key.signer().Sign(rand.Reader, msg, &cosign.SignerOpts{})
	if err != nil {
		t.Fatal(err)
	}
	if !sm2.VerifyASN1WithSM2(cert.PublicKey.(*ecdsa.PublicKey), nil, msg, sig) {
		t.Fatal("the signature does not verify under the certificate's public key")
	}
	if err := cert.CheckSignature(smx509.SM2WithSM3, msg, sig); err != nil {
		t.Fatalf("smx509 check: %v", err)
	}
	pemResp, err := p.certs.DownloadCertificate(bg, &hufuv1.DownloadCertificateRequest{Serial: cert.SerialNumber.Text(16)})
	if err != nil || !strings.HasPrefix(string(pemResp.CertificateData), "-----BEGIN CERTIFICATE-----") || strings.Count(string(pemResp.Chain[0]), "BEGIN CERTIFICATE") != 2 {
		t.Fatalf("PEM download: %v", err)
	}
	if b, _ := pem.Decode(pemResp.CertificateData); b == nil || string(b.Bytes) != string(cert.Raw) {
		t.Fatal("PEM and DER differ")
	}

	// The inbox says approved, payment due, ready — newest first.
	msgs, err := p.certs.ListMessages(bg, &hufuv1.ListMessagesRequest{})
	if err != nil {
		t.Fatal(err)
	}
	var kinds []string
	for _, m := range msgs.Messages {
		kinds = append(kinds, strings.TrimPrefix(m.Kind.String(), "MESSAGE_KIND_"))
	}
	if got := strings.Join(kinds, ","); got != "CERTIFICATE_READY,PAYMENT_DUE,REVIEW_APPROVED" {
		t.Fatalf("inbox %s", got)
	}

	// Label, lists, check.
	if _, err := p.certs.SetCertificateLabel(bg, &hufuv1.SetCertificateLabelRequest{Serial: paid.Certificate.Serial, Label: "投标专用"}); err != nil {
		t.Fatal(err)
	}
	active, _ := p.certs.ListCertificates(bg, &hufuv1.ListCertificatesRequest{View: hufuv1.CertificateListView_CERTIFICATE_LIST_VIEW_ACTIVE})
	if len(active.Certificates) != 1 || active.Certificates[0].Label != "投标专用" {
		t.Fatalf("active %v", active)
	}
	check, err := p.certs.CheckCertificate(bg, &hufuv1.CheckCertificateRequest{Serial: paid.Certificate.Serial, Pin: "123456"})
	if err != nil {
		t.Fatal(err)
	}
	for _, s := range check.Steps {
		if !s.Ok {
			t.Fatalf("check step %s failed: %s", s.Name, s.Detail)
		}
	}
	if check.SignKeyId != p.key.id || check.DecryptKeyId != p.enc.id || check.DecryptTicket == "" {
		t.Fatalf("check keys: sign %s, decrypt %s", check.SignKeyId, check.DecryptKeyId)
	}
	plain, err := p.enc.signer().Decrypt(nil, check.TestCiphertext, nil)
	if err != nil {
		t.Fatal(err)
	}
	if d := sm3.Sum(plain); string(d[:]) != string(check.TestPlaintextSm3) {
		t.Fatal("the test decryption does not match")
	}

	// Renew keeps the keys: a file encrypted to the old encryption certificate still decrypts.
	encCert, _, _, _ := p.download(paid.Order.EncryptionSerial)
	ct, err := sm2.Encrypt(rand.Reader, encCert.PublicKey.(*ecdsa.PublicKey), []byte("old bid"), nil)
	if err != nil {
		t.Fatal(err)
	}
	renewal, err := p.certs.RenewCertificate(bg, &hufuv1.RenewCertificateRequest{RequestId: "renew-0001", Serial: paid.Certificate.Serial, ValidityYears: 3})
	if err != nil {
		t.Fatal(err)
	}
	if renewal.Order.Status != hufuv1.OrderStatus_ORDER_STATUS_AWAITING_PAYMENT || renewal.Order.PriceFen != 50000 {
		t.Fatalf("renewal order %v", renewal.Order)
	}
	renewed, err := p.pay(renewal.Order.Id, "payment-renew")
	if err != nil {
		t.Fatal(err)
	}
	newCert, _, _, _ := p.download(renewed.Certificate.Serial)
	if !newCert.PublicKey.(*ecdsa.PublicKey).Equal(cert.PublicKey) || renewed.Certificate.Label != "投标专用" {
		t.Fatal("renewal changed the key or lost the label")
	}
	if pt, err := p.enc.signer().Decrypt(nil, ct, nil); err != nil || string(pt) != "old bid" {
		t.Fatalf("old ciphertext after renewal: %v", err)
	}
	lists := func(view hufuv1.CertificateListView) []string {
		r, err := p.certs.ListCertificates(bg, &hufuv1.ListCertificatesRequest{View: view})
		if err != nil {
			t.Fatal(err)
		}
		var out []string
		for _, c := range r.Certificates {
			out = append(out, c.Serial+":"+strings.TrimPrefix(c.Status.String(), "CERTIFICATE_STATUS_"))
		}
		return out
	}
	if got := lists(hufuv1.CertificateListView_CERTIFICATE_LIST_VIEW_NO_LONGER_VALID); len(got) != 1 || got[0] != paid.Certificate.Serial+":SUPERSEDED" {
		t.Fatalf("no longer valid after renewal: %v", got)
	}

	// Upgrade adds a platform and its region, keeping the expiry.
	up, err := p.certs.UpgradeCertificate(bg, &hufuv1.UpgradeCertificateRequest{RequestId: "upgrade-0001", Serial: renewed.Certificate.Serial, Platforms: []string{"hangzhou"}})
	if err != nil {
		t.Fatal(err)
	}
	upgraded, err := p.pay(up.Order.Id, "payment-upgrade")
	if err != nil {
		t.Fatal(err)
	}
	if got := strings.Join(upgraded.Certificate.Regions, ","); got != "330000,330100" ||
		!upgraded.Certificate.NotAfter.AsTime().Equal(renewed.Certificate.NotAfter.AsTime()) {
		t.Fatalf("upgrade: regions %s, not after %v vs %v", got, upgraded.Certificate.NotAfter.AsTime(), renewed.Certificate.NotAfter.AsTime())
	}

	// Revoke: PIN-confirmed, irreversible; the share is destroyed and the serial is on the CRL.
	serial := upgraded.Certificate.Serial
	_, err = p.certs.RevokeCertificate(bg, &hufuv1.RevokeCertificateRequest{Serial: serial, Pin: "123456"})
	wantCode(t, err, codes.InvalidArgument, "confirm_irreversible")
	_, err = p.certs.RevokeCertificate(bg, &hufuv1.RevokeCertificateRequest{Serial: serial, Pin: "654321", ConfirmIrreversible: true})
	wantCode(t, err, codes.PermissionDenied, "") // wrong certificate PIN
	if _, err := p.certs.RevokeCertificate(bg, &hufuv1.RevokeCertificateRequest{Serial: serial, Pin: "123456", ConfirmIrreversible: true, Reason: "不再使用"}); err != nil {
		t.Fatal(err)
	}
	_, err = p.key.signer().Decrypt(nil, ct, nil)
	if statusCode(err) != codes.FailedPrecondition || !strings.Contains(err.Error(), "server share deleted") {
		t.Fatalf("decrypting after revocation: %v", err)
	}
	if _, err := p.key.signer().Sign(rand.Reader, msg, &cosign.SignerOpts{}); statusCode(err) != codes.FailedPrecondition {
		t.Fatalf("signing after revocation: %v", err)
	}
	if got := lists(hufuv1.CertificateListView_CERTIFICATE_LIST_VIEW_ACTIVE); len(got) != 0 {
		t.Fatalf("active after revocation: %v", got)
	}
	crlDER, err := a.crl("hufu-ca")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := a.crl("no-such-ca"); err == nil || !strings.Contains(err.Error(), "404") {
		t.Fatalf("an unknown CA's CRL: %v", err)
	}
	crl, err := smx509.ParseRevocationList(crlDER)
	if err != nil {
		t.Fatal(err)
	}
	if err := crl.CheckSignatureFrom(issuing); err != nil {
		t.Fatalf("CRL signature: %v", err)
	}
	found := false
	for _, e := range crl.RevokedCertificateEntries {
		found = found || e.SerialNumber.Text(16) == strings.TrimLeft(serial, "0")
	}
	if !found || crl.NextUpdate.Sub(crl.ThisUpdate) != 24*time.Hour {
		t.Fatalf("serial on CRL %v, next update %v", found, crl.NextUpdate.Sub(crl.ThisUpdate))
	}
	_, err = p.certs.RevokeCertificate(bg, &hufuv1.RevokeCertificateRequest{Serial: serial, Pin: "123456", ConfirmIrreversible: true})
	wantCode(t, err, codes.FailedPrecondition, "")
}

func TestCertificateApplicationRefusals(t *testing.T) {
	a := certAppliance(t)
	p := newApplicant(t, a, phone, "device-0001", "key-cert-0002")
	other := newApplicant(t, a, "13900139000", "device-0002", "key-cert-0003")

	// A CSR signed by another key (another person's split key, or any SM2 key) is refused.
	stranger, _ := sm2.GenerateKey(rand.Reader)
	strangerCSR, _ := smx509.CreateCertificateRequest(rand.Reader, &smx509.CertificateRequest{}, stranger)
	for name, csr := range map[string][]byte{"stranger": strangerCSR, "other applicant": other.csr(), "garbage": []byte("not a csr")} {
		req := p.request()
		req.Csr = csr
		_, err := p.certs.ApplyCertificate(bg, req)
		if statusCode(err) != codes.InvalidArgument || !strings.HasPrefix(errMessage(err), "csr: ") {
			t.Fatalf("%s CSR: %v", name, err)
		}
	}
	// A letter signed by another key, an empty authorisation, a scan of a wrong type.
	req := p.request()
	req.Authorisation = other.letter()
	_, err := p.certs.ApplyCertificate(bg, req)
	wantCode(t, err, codes.InvalidArgument, "authorisation.online.signature")
	req = p.request()
	req.Authorisation = nil
	_, err = p.certs.ApplyCertificate(bg, req)
	wantCode(t, err, codes.InvalidArgument, "authorisation")
	req = p.request()
	req.Authorisation = &hufuv1.Authorisation{Kind: &hufuv1.Authorisation_Scan{Scan: &hufuv1.ScannedLetter{FileName: "a.exe", MediaType: "application/x-msdownload", Content: []byte("MZ")}}}
	_, err = p.certs.ApplyCertificate(bg, req)
	wantCode(t, err, codes.InvalidArgument, "authorisation.scan.media_type")
	// A scanned letter is accepted and kept with its hash.
	req = p.request()
	req.Authorisation = &hufuv1.Authorisation{Kind: &hufuv1.Authorisation_Scan{Scan: &hufuv1.ScannedLetter{FileName: "授权书.jpg", MediaType: "image/jpeg", Content: []byte("\xff\xd8 scan")}}}
	o, err := p.certs.ApplyCertificate(bg, req)
	if err != nil || o.Order.AuthorisationMethod != "scan" || len(o.Order.AuthorisationSha256) != 64 {
		t.Fatalf("scanned letter: %v %v", o, err)
	}
	scan, err := a.desk().GetAuthorisationLetter(bg, &hufuv1.GetAuthorisationLetterRequest{OrderId: o.Order.Id})
	if err != nil || string(scan.Content) != "\xff\xd8 scan" || scan.FileName != "授权书.jpg" || scan.MediaType != "image/jpeg" {
		t.Fatalf("scan for the desk: %v", err)
	}
	// Bad choices.
	for field, mut := range map[string]func(*hufuv1.ApplyCertificateRequest){
		"validity_years": func(r *hufuv1.ApplyCertificateRequest) { r.ValidityYears = 4 },
		"ca_id":          func(r *hufuv1.ApplyCertificateRequest) { r.CaId = "nope" },
		"platforms":      func(r *hufuv1.ApplyCertificateRequest) { r.Platforms = []string{"mars"} },
	} {
		r := p.request()
		mut(r)
		_, err := p.certs.ApplyCertificate(bg, r)
		wantCode(t, err, codes.InvalidArgument, field)
	}
	// Another person's key does not exist for you.
	r := p.request()
	r.KeyId = other.key.id
	_, err = p.certs.ApplyCertificate(bg, r)
	wantCode(t, err, codes.NotFound, "")
	// Other people's orders do not exist for you either.
	_, err = other.certs.GetOrder(bg, &hufuv1.GetOrderRequest{OrderId: o.Order.Id})
	wantCode(t, err, codes.NotFound, "")
}

func TestOrderTransitions(t *testing.T) {
	a := certAppliance(t)
	desk := a.desk()
	p := newApplicant(t, a, phone, "device-0001", "key-cert-0004")

	approve := func(id string) error {
		_, err := desk.ApproveOrder(bg, &hufuv1.ApproveOrderRequest{OrderId: id})
		return err
	}
	reject := func(id string) error {
		_, err := desk.RejectOrder(bg, &hufuv1.RejectOrderRequest{OrderId: id, Reason: "材料不清晰"})
		return err
	}
	cancel := func(id string) error {
		_, err := p.certs.CancelOrder(bg, &hufuv1.CancelOrderRequest{OrderId: id, Reason: "不需要了"})
		return err
	}
	pay := func(id string) error {
		_, err := p.pay(id, "pay-"+id)
		return err
	}
	inReview := func() string { return p.apply().Id }
	awaiting := func() string { id := inReview(); must(t, approve(id)); return id }
	completed := func() string { id := awaiting(); must(t, pay(id)); return id }
	cancelled := func() string { id := inReview(); must(t, cancel(id)); return id }
	rejected := func() string { id := inReview(); must(t, reject(id)); return id }

	illegal := []struct {
		name  string
		state func() string
		op    func(string) error
	}{
		{"pay in review", inReview, pay},
		{"approve awaiting payment", awaiting, approve},
		{"reject awaiting payment", awaiting, reject},
		{"approve completed", completed, approve},
		{"reject completed", completed, reject},
		{"cancel completed", completed, cancel},
		{"approve cancelled", cancelled, approve},
		{"reject cancelled", cancelled, reject},
		{"cancel cancelled", cancelled, cancel},
		{"pay cancelled", cancelled, pay},
		{"approve rejected", rejected, approve},
		{"pay rejected", rejected, pay},
		{"cancel rejected", rejected, cancel},
	}
	for _, tc := range illegal {
		t.Run(tc.name, func(t *testing.T) {
			err := tc.op(tc.state())
			wantCode(t, err, codes.FailedPrecondition, "")
		})
	}
	// A completed order paid again with another idempotency key is refused too.
	id := completed()
	_, err := p.pay(id, "another-payment")
	wantCode(t, err, codes.FailedPrecondition, "")
	// Rejections and cancellations need a reason; the rejection's reason reaches the user.
	_, err = desk.RejectOrder(bg, &hufuv1.RejectOrderRequest{OrderId: inReview()})
	wantCode(t, err, codes.InvalidArgument, "reason")
	rid := rejected()
	got, err := p.certs.GetOrder(bg, &hufuv1.GetOrderRequest{OrderId: rid})
	if err != nil || got.Order.CancelledBy != "reviewer" || got.Order.CancelReason != "材料不清晰" {
		t.Fatalf("rejected order %v %v", got, err)
	}

	// Reorder: a cancelled order pre-fills a new application.
	cid := cancelled()
	draft, err := p.certs.ReorderDraft(bg, &hufuv1.ReorderDraftRequest{OrderId: cid})
	if err != nil {
		t.Fatal(err)
	}
	if draft.Draft.KeyId != p.key.id || draft.Draft.CaId != "hufu-ca" || draft.Draft.ValidityYears != 2 || draft.Draft.ReorderedFrom != cid {
		t.Fatalf("draft %v", draft.Draft)
	}
	d := draft.Draft
	if d.EncryptionKeyId != p.enc.id {
		t.Fatalf("draft's encryption key %q", d.EncryptionKeyId)
	}
	d.RequestId, d.Csr, d.Authorisation, d.EncryptionCsr = "reorder-0001", p.csr(), p.letter(), p.csrOf(p.enc)
	re, err := p.certs.ApplyCertificate(bg, d)
	if err != nil || re.Order.ReorderedFrom != cid || re.Order.Status != hufuv1.OrderStatus_ORDER_STATUS_IN_REVIEW {
		t.Fatalf("reorder %v %v", re, err)
	}
	_, err = p.certs.ReorderDraft(bg, &hufuv1.ReorderDraftRequest{OrderId: re.Order.Id})
	wantCode(t, err, codes.FailedPrecondition, "")

	// Listing: status filter, keyword, pages.
	all, err := p.certs.ListOrders(bg, &hufuv1.ListOrdersRequest{PageSize: 100})
	if err != nil {
		t.Fatal(err)
	}
	var seen []string
	token := ""
	for {
		page, err := p.certs.ListOrders(bg, &hufuv1.ListOrdersRequest{PageSize: 3, PageToken: token})
		if err != nil {
			t.Fatal(err)
		}
		for _, o := range page.Orders {
			seen = append(seen, o.Id)
		}
		if token = page.NextPageToken; token == "" {
			break
		}
	}
	if len(seen) != len(all.Orders) || len(seen) < 15 {
		t.Fatalf("paged %d of %d orders", len(seen), len(all.Orders))
	}
	for i := 1; i < len(all.Orders); i++ {
		if all.Orders[i].CreatedAt.AsTime().After(all.Orders[i-1].CreatedAt.AsTime()) {
			t.Fatal("orders are not newest first")
		}
	}
	cancelledList, _ := p.certs.ListOrders(bg, &hufuv1.ListOrdersRequest{Status: hufuv1.OrderStatus_ORDER_STATUS_CANCELLED, PageSize: 100})
	for _, o := range cancelledList.Orders {
		if o.Status != hufuv1.OrderStatus_ORDER_STATUS_CANCELLED {
			t.Fatal("status filter leaks")
		}
	}
	byKeyword, _ := p.certs.ListOrders(bg, &hufuv1.ListOrdersRequest{Keyword: rid[len(rid)-8:]})
	if len(byKeyword.Orders) != 1 || byKeyword.Orders[0].Id != rid {
		t.Fatalf("keyword search found %d", len(byKeyword.Orders))
	}
}

func TestConcurrentApprovalsAndPaymentsIssueOneCertificate(t *testing.T) {
	a := certAppliance(t)
	desk := a.desk()
	p := newApplicant(t, a, phone, "device-0001", "key-cert-0005")
	o := p.apply()

	const n = 8
	var wg sync.WaitGroup
	errs := make([]error, n)
	for i := range n {
		wg.Go(func() {
			_, errs[i] = desk.ApproveOrder(bg, &hufuv1.ApproveOrderRequest{OrderId: o.Id})
		})
	}
	wg.Wait()
	ok := 0
	for _, err := range errs {
		switch statusCode(err) {
		case codes.OK:
			ok++
		case codes.FailedPrecondition:
		default:
			t.Fatalf("approval: %v", err)
		}
	}
	if ok != 1 {
		t.Fatalf("%d approvals succeeded", ok)
	}
	serials := make([]string, n)
	for i := range n {
		wg.Go(func() {
			// Half retry one payment, half are different payments.
			resp, err := p.pay(o.Id, fmt.Sprintf("payment-%d", i%2))
			errs[i] = err
			if err == nil {
				serials[i] = resp.Certificate.Serial
			}
		})
	}
	wg.Wait()
	distinct := map[string]bool{}
	for i, err := range errs {
		if err == nil {
			distinct[serials[i]] = true
		} else if statusCode(err) != codes.FailedPrecondition {
			t.Fatalf("payment: %v", err)
		}
	}
	list, _ := p.certs.ListCertificates(bg, &hufuv1.ListCertificatesRequest{})
	if len(distinct) != 1 || len(list.Certificates) != 1 {
		t.Fatalf("%d serials answered, %d certificates stored", len(distinct), len(list.Certificates))
	}
}

func TestExpiredCertificateKeyRefusesToCosign(t *testing.T) {
	a := certAppliance(t)
	p := newApplicant(t, a, phone, "device-0001", "key-cert-0006")
	serial := p.issue(a.desk())
	msg := []byte("bid")
	if _, err := p.key.signer().Sign(rand.Reader, msg, &cosign.SignerOpts{}); err != nil {
		t.Fatal(err)
	}
	a.clock.Advance(2*366*24*time.Hour + time.Hour)
	a.signIn(p.conn, phone, "device-0001") // the session expired with the clock
	active, _ := p.certs.ListCertificates(bg, &hufuv1.ListCertificatesRequest{View: hufuv1.CertificateListView_CERTIFICATE_LIST_VIEW_ACTIVE})
	invalid, _ := p.certs.ListCertificates(bg, &hufuv1.ListCertificatesRequest{View: hufuv1.CertificateListView_CERTIFICATE_LIST_VIEW_NO_LONGER_VALID})
	if len(active.Certificates) != 0 || len(invalid.Certificates) != 1 || invalid.Certificates[0].Status != hufuv1.CertificateStatus_CERTIFICATE_STATUS_EXPIRED {
		t.Fatalf("after expiry: active %v, no longer valid %v", active, invalid)
	}
	// The old ticket has expired with the clock; neither a new ticket nor a signature is
	// granted to a key whose certificates have all expired.
	_, err := p.key.keys.OpenTicket(bg, &hufuv1.OpenTicketRequest{KeyId: p.key.id, Pin: "123456"})
	wantCode(t, err, codes.FailedPrecondition, "")
	_, err = p.key.signer().Sign(rand.Reader, msg, &cosign.SignerOpts{})
	wantCode(t, err, codes.FailedPrecondition, "")
	// Renewal brings the key back.
	r, err := p.certs.RenewCertificate(bg, &hufuv1.RenewCertificateRequest{RequestId: "renew-expired", Serial: serial, ValidityYears: 1})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := p.pay(r.Order.Id, "pay-renew-expired"); err != nil {
		t.Fatal(err)
	}
	ticket, err := p.key.keys.OpenTicket(bg, &hufuv1.OpenTicketRequest{KeyId: p.key.id, Pin: "123456"})
	if err != nil {
		t.Fatalf("ticket after renewal: %v", err)
	}
	p.key.cred = &hufuv1.Credential{Kind: &hufuv1.Credential_Ticket{Ticket: ticket.Ticket}}
	if _, err := p.key.signer().Sign(rand.Reader, msg, &cosign.SignerOpts{}); err != nil {
		t.Fatalf("after renewal: %v", err)
	}
}

func TestApplicantChoosesTheCA(t *testing.T) {
	a := certAppliance(t, func(c *config.Config) {
		second := c.Certificates.CAs[0]
		second.ID, second.Name = "second-ca", "第二CA"
		second.Prices = []config.Price{{CertKind: "personal", ValidityYears: 1, AmountFen: 100}, {CertKind: "personal", ValidityYears: 2, AmountFen: 150},
			{CertKind: "personal", ValidityYears: 3, AmountFen: 200}}
		c.Certificates.CAs = append(c.Certificates.CAs, second)
	})
	desk := a.desk()
	p := newApplicant(t, a, phone, "device-0001", "key-cert-0007")
	cas, err := p.certs.ListCertificateAuthorities(bg, &hufuv1.ListCertificateAuthoritiesRequest{})
	if err != nil || len(cas.Authorities) != 2 || cas.Authorities[1].Id != "second-ca" {
		t.Fatalf("CAs %v %v", cas, err)
	}
	req := p.request()
	req.CaId = "second-ca"
	o, err := p.certs.ApplyCertificate(bg, req)
	if err != nil || o.Order.PriceFen != 150 || o.Order.CaName != "第二CA" {
		t.Fatalf("order with the second CA: %v %v", o, err)
	}
	must(t, func() error {
		_, err := desk.ApproveOrder(bg, &hufuv1.ApproveOrderRequest{OrderId: o.Order.Id})
		return err
	}())
	paid, err := p.pay(o.Order.Id, "pay-second")
	if err != nil {
		t.Fatal(err)
	}
	first := p.issue(desk)
	cert, roots, inter, _ := p.download(paid.Certificate.Serial)
	if _, err := cert.Verify(smx509.VerifyOptions{Roots: roots, Intermediates: inter, CurrentTime: a.clock.Now(), KeyUsages: []smx509.ExtKeyUsage{smx509.ExtKeyUsageAny}}); err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(cert.Issuer.CommonName, "第二CA") {
		t.Fatalf("issued by %v", cert.Issuer)
	}
	// The two CAs are separate hierarchies: the first's chain does not verify the second's
	// certificate.
	_, otherRoots, otherInter, _ := p.download(first)
	if _, err := cert.Verify(smx509.VerifyOptions{Roots: otherRoots, Intermediates: otherInter, CurrentTime: a.clock.Now(), KeyUsages: []smx509.ExtKeyUsage{smx509.ExtKeyUsageAny}}); err == nil {
		t.Fatal("a certificate of the second CA verifies under the first")
	}
}

func must(t *testing.T, err error) {
	t.Helper()
	if err != nil {
		t.Fatal(err)
	}
}
