package daemon_test

import (
	"crypto/ecdsa"
	"crypto/rand"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/emmansun/gmsm/sm2"
	"github.com/emmansun/gmsm/sm3"
	"github.com/emmansun/gmsm/smx509"
	"google.golang.org/grpc/codes"
	"google.golang.org/protobuf/types/known/timestamppb"

	hufuv1 "github.com/hufu-hsm/hufu/api/hufu/v1"
	"github.com/hufu-hsm/hufu/cosign"
	"github.com/hufu-hsm/hufu/daemon/config"
	"github.com/hufu-hsm/hufu/daemon/devpki"
)

// TestCertificatePairEndToEnd: an application certifies two split keys; payment issues a
// signing and an encryption certificate, linked; the signing key signs and refuses to
// decrypt, the encryption key decrypts; check, download, listing, renewal and revocation
// handle the pair, and both serials reach the CRL.
func TestCertificatePairEndToEnd(t *testing.T) {
	a := certAppliance(t)
	desk := a.desk()
	p := newApplicant(t, a, phone, "device-0001", "key-pair-0001")

	// Applications without a distinct, proven encryption key are refused, naming the field.
	req := p.request()
	req.EncryptionKeyId, req.EncryptionCsr = "", nil
	_, err := p.certs.ApplyCertificate(bg, req)
	wantCode(t, err, codes.InvalidArgument, "encryption_key_id")
	req = p.request()
	req.EncryptionKeyId = p.key.id
	_, err = p.certs.ApplyCertificate(bg, req)
	wantCode(t, err, codes.InvalidArgument, "encryption_key_id")
	req = p.request()
	req.EncryptionCsr = p.csr() // signed by the signing key: no proof of the encryption key
	_, err = p.certs.ApplyCertificate(bg, req)
	wantCode(t, err, codes.InvalidArgument, "encryption_csr")

	o := p.apply()
	if o.KeyId != p.key.id || o.EncryptionKeyId != p.enc.id {
		t.Fatalf("order keys %s %s", o.KeyId, o.EncryptionKeyId)
	}
	_, err = desk.ApproveOrder(bg, &hufuv1.ApproveOrderRequest{OrderId: o.Id})
	must(t, err)
	paid, err := p.pay(o.Id, "pay-pair-0001")
	must(t, err)
	sign, encSerial := paid.Certificate, paid.Order.EncryptionSerial
	if sign.Usage != hufuv1.CertificateUsage_CERTIFICATE_USAGE_SIGNING || sign.KeyId != p.key.id || sign.PairSerial != encSerial ||
		sign.PairKeyId != p.enc.id || encSerial == "" || encSerial == sign.Serial || paid.Order.Serial != sign.Serial {
		t.Fatalf("paid: certificate %v, order %v", sign, paid.Order)
	}

	// Download returns both, each certifying its own key, with one chain.
	dl, err := p.certs.DownloadCertificate(bg, &hufuv1.DownloadCertificateRequest{Serial: sign.Serial, Format: hufuv1.CertificateFormat_CERTIFICATE_FORMAT_DER})
	must(t, err)
	enc := dl.PairCertificate
	if enc == nil || enc.Serial != encSerial || enc.Usage != hufuv1.CertificateUsage_CERTIFICATE_USAGE_ENCRYPTION || enc.KeyId != p.enc.id ||
		enc.PairSerial != sign.Serial || enc.PairKeyId != p.key.id || len(dl.Chain) != 2 {
		t.Fatalf("download: pair %v, chain %d", enc, len(dl.Chain))
	}
	signCert, err := smx509.ParseCertificate(dl.CertificateData)
	must(t, err)
	encCert, err := smx509.ParseCertificate(dl.PairCertificateData)
	must(t, err)
	if !certifies(signCert, p.key) || !certifies(encCert, p.enc) {
		t.Fatal("the certificates do not certify their keys")
	}

	// One entry per application in the listing.
	active, err := p.certs.ListCertificates(bg, &hufuv1.ListCertificatesRequest{View: hufuv1.CertificateListView_CERTIFICATE_LIST_VIEW_ACTIVE})
	must(t, err)
	if len(active.Certificates) != 1 || active.Certificates[0].Serial != sign.Serial || active.Certificates[0].PairSerial != encSerial {
		t.Fatalf("active listing %v", active.Certificates)
	}

	// The signing key signs; it refuses to decrypt; the encryption key decrypts.
	msg := []byte("投标文件摘要")
	sig, err := p.key.signer().Sign(rand.Reader, msg, &cosign.SignerOpts{})
	must(t, err)
	if err := signCert.CheckSignature(smx509.SM2WithSM3, msg, sig); err != nil {
		t.Fatalf("signature under the signing certificate: %v", err)
	}
	ct, err := sm2.Encrypt(rand.Reader, encCert.PublicKey.(*ecdsa.PublicKey), []byte("bid key"), nil)
	must(t, err)
	parsed, err := cosign.ParseCiphertext(ct, cosign.C1C3C2)
	must(t, err)
	_, err = p.key.cosign.Decrypt(bg, &hufuv1.DecryptRequest{KeyId: p.key.id, Credential: p.key.cred, C1: parsed.C1[:]})
	wantCode(t, err, codes.InvalidArgument, "key_id")
	if !strings.Contains(errMessage(err), p.enc.id) {
		t.Fatalf("refusal %q does not name the encryption key", errMessage(err))
	}
	_, err = p.key.cosign.DecryptBatch(bg, &hufuv1.DecryptBatchRequest{KeyId: p.key.id, Credential: p.key.cred, C1S: [][]byte{parsed.C1[:]}})
	wantCode(t, err, codes.InvalidArgument, "key_id")
	if pt, err := p.enc.signer().Decrypt(nil, ct, nil); err != nil || string(pt) != "bid key" {
		t.Fatalf("decrypting with the encryption key: %q %v", pt, err)
	}

	// Check covers both certificates and both keys.
	check, err := p.certs.CheckCertificate(bg, &hufuv1.CheckCertificateRequest{Serial: sign.Serial, Pin: "123456"})
	must(t, err)
	var steps []string
	for _, s := range check.Steps {
		if !s.Ok {
			t.Fatalf("check step %s: %s", s.Name, s.Detail)
		}
		steps = append(steps, s.Name)
	}
	for _, want := range []string{"pin", "chain", "validity", "revocation", "pair_chain", "pair_validity", "pair_revocation"} {
		if !slices.Contains(steps, want) {
			t.Fatalf("check steps %v lack %s", steps, want)
		}
	}
	if check.SignKeyId != p.key.id || check.DecryptKeyId != p.enc.id || check.DecryptTicket == "" || check.DecryptTicket == check.Ticket {
		t.Fatalf("check keys: sign %s, decrypt %s", check.SignKeyId, check.DecryptKeyId)
	}
	plain, err := p.enc.signer().Decrypt(nil, check.TestCiphertext, nil)
	if d := sm3.Sum(plain); err != nil || string(d[:]) != string(check.TestPlaintextSm3) {
		t.Fatalf("check's test ciphertext: %v", err)
	}

	// Renewal, asked for either certificate, renews the pair on the same two keys.
	renewal, err := p.certs.RenewCertificate(bg, &hufuv1.RenewCertificateRequest{RequestId: "renew-pair-01", Serial: encSerial, ValidityYears: 1})
	must(t, err)
	if renewal.Order.ReplacesSerial != sign.Serial || renewal.Order.KeyId != p.key.id || renewal.Order.EncryptionKeyId != p.enc.id {
		t.Fatalf("renewal order %v", renewal.Order)
	}
	renewed, err := p.pay(renewal.Order.Id, "pay-renew-pair")
	must(t, err)
	newSign, newEnc := renewed.Certificate, renewed.Order.EncryptionSerial
	if newSign.KeyId != p.key.id || newSign.PairKeyId != p.enc.id || newSign.PairSerial != newEnc || newEnc == "" || newEnc == encSerial {
		t.Fatalf("renewed pair %v", newSign)
	}
	for s, superseder := range map[string]string{sign.Serial: newSign.Serial, encSerial: newEnc} {
		if c := p.certificate(s); c.Status != hufuv1.CertificateStatus_CERTIFICATE_STATUS_SUPERSEDED || c.SupersededBy != superseder {
			t.Fatalf("%s after the renewal: %v by %s", s, c.Status, c.SupersededBy)
		}
	}
	if pt, err := p.enc.signer().Decrypt(nil, ct, nil); err != nil || string(pt) != "bid key" {
		t.Fatalf("a ciphertext to the old encryption certificate after renewal: %v", err)
	}

	// Revoking the encryption certificate revokes the pair: both keys, both on the CRL.
	pre, err := p.certs.PreviewRevocation(bg, &hufuv1.PreviewRevocationRequest{Serial: newEnc})
	must(t, err)
	if len(pre.Acknowledge) != 0 {
		t.Fatalf("the pair's other certificate needs no acknowledgement: %v", pre.Acknowledge)
	}
	_, err = p.certs.RevokeCertificate(bg, &hufuv1.RevokeCertificateRequest{Serial: newEnc, Pin: "123456", ConfirmIrreversible: true, Reason: "测试"})
	must(t, err)
	for _, s := range []string{newSign.Serial, newEnc} {
		if c := p.certificate(s); c.Status != hufuv1.CertificateStatus_CERTIFICATE_STATUS_REVOKED {
			t.Fatalf("%s after revocation: %v", s, c.Status)
		}
	}
	if _, err := p.key.signer().Sign(rand.Reader, msg, &cosign.SignerOpts{}); statusCode(err) != codes.FailedPrecondition {
		t.Fatalf("signing after the pair's revocation: %v", err)
	}
	if _, err := p.enc.signer().Decrypt(nil, ct, nil); statusCode(err) != codes.FailedPrecondition {
		t.Fatalf("decrypting after the pair's revocation: %v", err)
	}
	crlDER, err := a.crl("hufu-ca")
	must(t, err)
	crl, err := smx509.ParseRevocationList(crlDER)
	must(t, err)
	var onCRL []string
	for _, e := range crl.RevokedCertificateEntries {
		onCRL = append(onCRL, e.SerialNumber.Text(16))
	}
	for _, s := range []string{newSign.Serial, newEnc} {
		if !slices.Contains(onCRL, strings.TrimLeft(s, "0")) {
			t.Fatalf("%s is not on the CRL %v", s, onCRL)
		}
	}
}

// certifies reports whether cert's public key is k's.
func certifies(cert *smx509.Certificate, k *phoneKey) bool {
	pub, ok := cert.PublicKey.(*ecdsa.PublicKey)
	return ok && pub.Equal(k.public.PublicKey())
}

// TestCertificateIssuedBeforePairsKeepsWorking: a certificate of an order made before pairs
// (one key, usage unspecified) still signs, decrypts, checks and renews as one certificate.
func TestCertificateIssuedBeforePairsKeepsWorking(t *testing.T) {
	a := certAppliance(t)
	desk := a.desk()
	conn, userID := a.verifiedUser(phone, "device-0001")
	p := &applicant{t: t, conn: conn, key: createKey(t, conn, userID, "key-single-01", "123456"), enc: createKey(t, conn, userID, "key-single-01-enc", "123456"),
		certs: hufuv1.NewCertificateServiceClient(conn.ClientConn())}
	serial := p.issue(desk)
	must(t, a.live.Daemon.UnpairForTest(bg, userID, serial))
	a.restart()
	// The phone signs in again on the restarted appliance.
	p.conn = a.dial("device-0001")
	a.signIn(p.conn, phone, "device-0001")
	p.certs = hufuv1.NewCertificateServiceClient(p.conn.ClientConn())
	for _, k := range []*phoneKey{p.key, p.enc} {
		k.keys, k.cosign = hufuv1.NewKeyServiceClient(p.conn.ClientConn()), hufuv1.NewCosignServiceClient(p.conn.ClientConn())
		k.cred = &hufuv1.Credential{Kind: &hufuv1.Credential_Pin{Pin: "123456"}}
	}

	c := p.certificate(serial)
	if c.Usage != hufuv1.CertificateUsage_CERTIFICATE_USAGE_UNSPECIFIED || c.PairSerial != "" {
		t.Fatalf("unpaired: %v", c)
	}
	cert, _, _, _ := p.download(serial)
	msg := []byte("old certificate")
	sig, err := p.key.signer().Sign(rand.Reader, msg, &cosign.SignerOpts{})
	must(t, err)
	must(t, cert.CheckSignature(smx509.SM2WithSM3, msg, sig))
	ct, err := sm2.Encrypt(rand.Reader, cert.PublicKey.(*ecdsa.PublicKey), []byte("old bid"), nil)
	must(t, err)
	if pt, err := p.key.signer().Decrypt(nil, ct, nil); err != nil || string(pt) != "old bid" {
		t.Fatalf("decrypting with a single certificate's key: %v", err)
	}
	check, err := p.certs.CheckCertificate(bg, &hufuv1.CheckCertificateRequest{Serial: serial, Pin: "123456"})
	must(t, err)
	if check.SignKeyId != p.key.id || check.DecryptKeyId != p.key.id || check.DecryptTicket != check.Ticket {
		t.Fatalf("check of a single certificate: sign %s decrypt %s", check.SignKeyId, check.DecryptKeyId)
	}
	renewal, err := p.certs.RenewCertificate(bg, &hufuv1.RenewCertificateRequest{RequestId: "renew-single-1", Serial: serial, ValidityYears: 1})
	must(t, err)
	if renewal.Order.EncryptionKeyId != "" {
		t.Fatalf("a single certificate's renewal became a pair: %v", renewal.Order)
	}
	renewed, err := p.pay(renewal.Order.Id, "pay-renew-single")
	must(t, err)
	if renewed.Certificate.Usage != hufuv1.CertificateUsage_CERTIFICATE_USAGE_UNSPECIFIED || renewed.Certificate.PairSerial != "" || renewed.Order.EncryptionSerial != "" {
		t.Fatalf("renewed single certificate %v", renewed.Certificate)
	}
	if pt, err := p.key.signer().Decrypt(nil, ct, nil); err != nil || string(pt) != "old bid" {
		t.Fatalf("decrypting after the renewal: %v", err)
	}
}

// TestOpeningTakesEnvelopesForThePairsEncryptionCertificate: an envelope registered under a
// pair's signing certificate could never be opened (its key does not decrypt): refused,
// naming the field and the encryption certificate; under the encryption certificate it is
// taken.
func TestOpeningTakesEnvelopesForThePairsEncryptionCertificate(t *testing.T) {
	a := certAppliance(t, func(c *config.Config) {
		c.SystemClients = []config.SystemClient{
			{Name: devpki.CLIClientName, Services: []string{"hufu.v1.ReviewService", "hufu.v1.ScanService", "hufu.v1.OpeningService"}},
		}
	})
	sys, _ := a.openingSystem(devpki.CLIClientName)
	p := newApplicant(t, a, "13800138076", "pair-phone-01", "pair-key-01")
	signSerial := p.issue(a.desk())
	encCert, _, _, _ := p.download(p.encSerial)
	now := a.clock.Now()
	created, err := sys.CreateOpening(bg, &hufuv1.CreateOpeningRequest{RequestId: "pair-0001", ProjectCode: "PAIR-1", ProjectName: "加密证书开标",
		PlatformId: "demo", WindowStart: timestamppb.New(now.Add(time.Hour)), WindowEnd: timestamppb.New(now.Add(2 * time.Hour))})
	must(t, err)
	ct := mustEncrypt(t, encCert.PublicKey.(*ecdsa.PublicKey))
	_, err = sys.RegisterEnvelopes(bg, &hufuv1.RegisterEnvelopesRequest{OpeningId: created.Opening.Id, Envelopes: []*hufuv1.EnvelopeRegistration{
		{EnvelopeId: "bid-1", CertificateSerial: signSerial, Ciphertext: ct}}})
	wantCode(t, err, codes.InvalidArgument, "envelopes[0].certificate_serial")
	if !strings.Contains(errMessage(err), p.encSerial) {
		t.Fatalf("refusal %q does not name the encryption certificate", errMessage(err))
	}
	if _, err := sys.RegisterEnvelopes(bg, &hufuv1.RegisterEnvelopesRequest{OpeningId: created.Opening.Id, Envelopes: []*hufuv1.EnvelopeRegistration{
		{EnvelopeId: "bid-1", CertificateSerial: p.encSerial, Ciphertext: ct}}}); err != nil {
		t.Fatalf("registering under the encryption certificate: %v", err)
	}
}
