package daemon_test

import (
	"crypto/ecdsa"
	"crypto/rand"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/emmansun/gmsm/sm2"
	hufuv1 "github.com/hufu-hsm/hufu/api/hufu/v1"
	"github.com/hufu-hsm/hufu/cosign"
	"github.com/hufu-hsm/hufu/daemon/config"
	"google.golang.org/grpc/codes"
)

// TestRenewalExtendsFromTheOldExpiry: a 2-year certificate renewed a year early for 2 years
// ends 2 years after its old end, not 2 years after today; an expired one renewed counts
// from the day of issue. A certificate has one open renewal or upgrade order at a time.
func TestRenewalExtendsFromTheOldExpiry(t *testing.T) {
	a := certAppliance(t)
	desk := a.desk()
	p := newApplicant(t, a, phone, "device-0001", "key-renew-0001")
	serial := p.issue(desk)
	first := p.certificate(serial)
	oldEnd := first.NotAfter.AsTime()

	a.clock.Advance(365 * 24 * time.Hour)
	a.signIn(p.conn, phone, "device-0001") // the session expired with the clock
	r, err := p.certs.RenewCertificate(bg, &hufuv1.RenewCertificateRequest{RequestId: "renew-early-1", Serial: serial, ValidityYears: 2})
	must(t, err)

	// One open follow-up per certificate: another renewal or an upgrade waits for this one.
	_, err = p.certs.RenewCertificate(bg, &hufuv1.RenewCertificateRequest{RequestId: "renew-early-2", Serial: serial, ValidityYears: 1})
	wantCode(t, err, codes.FailedPrecondition, "")
	if !strings.Contains(errMessage(err), r.Order.Id) {
		t.Fatalf("refusal %q does not name the open order %s", errMessage(err), r.Order.Id)
	}
	_, err = p.certs.UpgradeCertificate(bg, &hufuv1.UpgradeCertificateRequest{RequestId: "upgrade-early-1", Serial: serial, Platforms: []string{"hangzhou"}})
	wantCode(t, err, codes.FailedPrecondition, "")
	// The same request again is the same order, not a second one.
	again, err := p.certs.RenewCertificate(bg, &hufuv1.RenewCertificateRequest{RequestId: "renew-early-1", Serial: serial, ValidityYears: 2})
	if err != nil || again.Order.Id != r.Order.Id {
		t.Fatalf("repeated renewal request: %v %v", again, err)
	}
	// Cancelling frees the certificate for another follow-up.
	_, err = p.certs.CancelOrder(bg, &hufuv1.CancelOrderRequest{OrderId: r.Order.Id, Reason: "换个年限"})
	must(t, err)
	r, err = p.certs.RenewCertificate(bg, &hufuv1.RenewCertificateRequest{RequestId: "renew-early-3", Serial: serial, ValidityYears: 2})
	must(t, err)
	paid, err := p.pay(r.Order.Id, "pay-renew-early-3")
	must(t, err)
	if got, want := paid.Certificate.NotAfter.AsTime(), oldEnd.AddDate(2, 0, 0); !got.Equal(want) {
		t.Fatalf("renewed a year early: ends %v, want %v (the old end %v plus 2 years)", got, want, oldEnd)
	}
	// Completed: the renewed certificate may be followed up again.
	up, err := p.certs.UpgradeCertificate(bg, &hufuv1.UpgradeCertificateRequest{RequestId: "upgrade-after-1", Serial: paid.Certificate.Serial, Platforms: []string{"hangzhou"}})
	must(t, err)
	_, err = p.certs.CancelOrder(bg, &hufuv1.CancelOrderRequest{OrderId: up.Order.Id, Reason: "不升级了"})
	must(t, err)

	// Expired: the renewal counts from the day it is issued.
	a.clock.Advance(5 * 366 * 24 * time.Hour)
	a.signIn(p.conn, phone, "device-0001")
	r, err = p.certs.RenewCertificate(bg, &hufuv1.RenewCertificateRequest{RequestId: "renew-late-1", Serial: paid.Certificate.Serial, ValidityYears: 1})
	must(t, err)
	late, err := p.pay(r.Order.Id, "pay-renew-late-1")
	must(t, err)
	now := a.clock.Now().UTC().Truncate(time.Second)
	if got, want := late.Certificate.NotAfter.AsTime(), now.AddDate(1, 0, 0); !got.Equal(want) {
		t.Fatalf("renewed after expiry: ends %v, want %v", got, want)
	}
}

// certificate returns one of the applicant's certificates as listed.
func (p *applicant) certificate(serial string) *hufuv1.Certificate {
	p.t.Helper()
	r, err := p.certs.ListCertificates(bg, &hufuv1.ListCertificatesRequest{})
	if err != nil {
		p.t.Fatal(err)
	}
	for _, c := range r.Certificates {
		if c.Serial == serial {
			return c
		}
	}
	// A pair is listed as its signing certificate; the encryption certificate's record
	// comes with the download.
	for _, c := range r.Certificates {
		if c.PairSerial == serial {
			dl, err := p.certs.DownloadCertificate(bg, &hufuv1.DownloadCertificateRequest{Serial: c.Serial})
			if err != nil {
				p.t.Fatal(err)
			}
			return dl.PairCertificate
		}
	}
	p.t.Fatalf("certificate %s not listed", serial)
	return nil
}

// TestDisabledCertificateCannotSignOrDecrypt: the review desk disables a certificate with a
// reason; the holder is told, it lists under 已失效 and its key neither signs nor decrypts
// until the desk enables it again.
func TestDisabledCertificateCannotSignOrDecrypt(t *testing.T) {
	a := certAppliance(t)
	desk := a.desk()
	p := newApplicant(t, a, phone, "device-0001", "key-disable-01")
	serial := p.issue(desk)
	// Disabling the signing certificate disables the pair: neither key answers.
	cert, _, _, _ := p.download(p.encSerial)
	ct, err := sm2.Encrypt(rand.Reader, cert.PublicKey.(*ecdsa.PublicKey), []byte("bid"), nil)
	must(t, err)
	sign := func() error {
		_, err := p.key.signer().Sign(rand.Reader, []byte("msg"), &cosign.SignerOpts{})
		return err
	}
	decrypt := func() error {
		_, err := p.enc.signer().Decrypt(nil, ct, nil)
		return err
	}
	must(t, sign())
	must(t, decrypt())

	_, err = desk.DisableCertificate(bg, &hufuv1.DisableCertificateRequest{Serial: serial})
	wantCode(t, err, codes.InvalidArgument, "reason")
	d, err := desk.DisableCertificate(bg, &hufuv1.DisableCertificateRequest{Serial: serial, Reason: "持有人单位申请暂停使用"})
	must(t, err)
	if d.Certificate.Status != hufuv1.CertificateStatus_CERTIFICATE_STATUS_DISABLED || d.Certificate.DisabledReason != "持有人单位申请暂停使用" {
		t.Fatalf("disabled: %v", d.Certificate)
	}
	_, err = desk.DisableCertificate(bg, &hufuv1.DisableCertificateRequest{Serial: serial, Reason: "again"})
	wantCode(t, err, codes.FailedPrecondition, "")
	wantCode(t, sign(), codes.FailedPrecondition, "")
	wantCode(t, decrypt(), codes.FailedPrecondition, "")
	invalid, err := p.certs.ListCertificates(bg, &hufuv1.ListCertificatesRequest{View: hufuv1.CertificateListView_CERTIFICATE_LIST_VIEW_NO_LONGER_VALID})
	must(t, err)
	if len(invalid.Certificates) != 1 || invalid.Certificates[0].Status != hufuv1.CertificateStatus_CERTIFICATE_STATUS_DISABLED {
		t.Fatalf("已失效 while disabled: %v", invalid.Certificates)
	}
	active, err := p.certs.ListCertificates(bg, &hufuv1.ListCertificatesRequest{View: hufuv1.CertificateListView_CERTIFICATE_LIST_VIEW_ACTIVE})
	if err != nil || len(active.Certificates) != 0 {
		t.Fatalf("生效中 while disabled: %v %v", active, err)
	}
	_, err = p.certs.RenewCertificate(bg, &hufuv1.RenewCertificateRequest{RequestId: "renew-disabled", Serial: serial, ValidityYears: 1})
	wantCode(t, err, codes.FailedPrecondition, "")
	msgs, err := p.certs.ListMessages(bg, &hufuv1.ListMessagesRequest{})
	must(t, err)
	if m := msgs.Messages[0]; m.Kind != hufuv1.MessageKind_MESSAGE_KIND_CERTIFICATE_DISABLED || m.Serial != serial || !strings.Contains(m.Body, "持有人单位申请暂停使用") {
		t.Fatalf("newest message after disabling: %v", m)
	}

	_, err = desk.EnableCertificate(bg, &hufuv1.EnableCertificateRequest{Serial: serial, Reason: "恢复"})
	must(t, err)
	must(t, sign())
	must(t, decrypt())
	msgs, err = p.certs.ListMessages(bg, &hufuv1.ListMessagesRequest{})
	must(t, err)
	if m := msgs.Messages[0]; m.Kind != hufuv1.MessageKind_MESSAGE_KIND_CERTIFICATE_ENABLED || !strings.Contains(m.Body, "恢复") {
		t.Fatalf("newest message after enabling: %v", m)
	}
	_, err = desk.EnableCertificate(bg, &hufuv1.EnableCertificateRequest{Serial: serial, Reason: "again"})
	wantCode(t, err, codes.FailedPrecondition, "")
}

// TestCertificateListingMarksTheDevice: 生效中 is per device (§1.7.1): the listing tells the
// device that holds the key's share from the person's other devices.
func TestCertificateListingMarksTheDevice(t *testing.T) {
	a := certAppliance(t)
	desk := a.desk()
	p := newApplicant(t, a, phone, "device-0001", "key-place-01")
	serial := p.issue(desk)
	other := a.dial("device-0002")
	a.signIn(other, phone, "device-0002")
	placement := func(certs hufuv1.CertificateServiceClient) hufuv1.KeyPlacement {
		t.Helper()
		r, err := certs.ListCertificates(bg, &hufuv1.ListCertificatesRequest{View: hufuv1.CertificateListView_CERTIFICATE_LIST_VIEW_ACTIVE})
		if err != nil || len(r.Certificates) != 1 || r.Certificates[0].Serial != serial {
			t.Fatalf("list: %v %v", r, err)
		}
		return r.Certificates[0].KeyPlacement
	}
	if got := placement(p.certs); got != hufuv1.KeyPlacement_KEY_PLACEMENT_THIS_DEVICE {
		t.Fatalf("on the key's device: %v", got)
	}
	if got := placement(hufuv1.NewCertificateServiceClient(other.ClientConn())); got != hufuv1.KeyPlacement_KEY_PLACEMENT_OTHER_DEVICE {
		t.Fatalf("on another device: %v", got)
	}
}

// TestCompletedOrderShowsDownloaded: a completed order offers 下载证书 until its certificate
// is first downloaded (§1.8.1.1.3).
func TestCompletedOrderShowsDownloaded(t *testing.T) {
	a := certAppliance(t)
	desk := a.desk()
	p := newApplicant(t, a, phone, "device-0001", "key-download-1")
	serial := p.issue(desk)
	order := func() *hufuv1.Order {
		t.Helper()
		r, err := p.certs.ListOrders(bg, &hufuv1.ListOrdersRequest{Status: hufuv1.OrderStatus_ORDER_STATUS_COMPLETED})
		if err != nil || len(r.Orders) != 1 {
			t.Fatalf("completed orders: %v %v", r, err)
		}
		return r.Orders[0]
	}
	if o := order(); o.Downloaded || o.DownloadedAt != nil {
		t.Fatalf("downloaded before any download: %v", o)
	}
	a.clock.Advance(time.Minute)
	p.download(serial)
	first := order()
	if !first.Downloaded || !first.DownloadedAt.AsTime().Equal(a.clock.Now()) {
		t.Fatalf("after the download: %v (now %v)", first, a.clock.Now())
	}
	a.clock.Advance(time.Minute)
	p.download(serial)
	if o := order(); !o.DownloadedAt.AsTime().Equal(first.DownloadedAt.AsTime()) {
		t.Fatalf("a second download moved the first: %v", o.DownloadedAt.AsTime())
	}
	got, err := p.certs.GetOrder(bg, &hufuv1.GetOrderRequest{OrderId: first.Id})
	if err != nil || !got.Order.Downloaded {
		t.Fatalf("GetOrder: %v %v", got, err)
	}
}

// TestRevocationNamesTheKeysOtherCertificates: a key certified by two CAs loses both
// certificates when one is revoked; the preview names the other one and the revocation must
// echo it.
func TestRevocationNamesTheKeysOtherCertificates(t *testing.T) {
	a := certAppliance(t, func(c *config.Config) {
		second := c.Certificates.CAs[0]
		second.ID, second.Name = "second-ca", "第二CA"
		c.Certificates.CAs = append(c.Certificates.CAs, second)
	})
	desk := a.desk()
	p := newApplicant(t, a, phone, "device-0001", "key-revoke-two")
	first := p.issue(desk)
	firstEnc := p.encSerial
	req := p.request()
	req.CaId = "second-ca"
	o, err := p.certs.ApplyCertificate(bg, req)
	must(t, err)
	_, err = desk.ApproveOrder(bg, &hufuv1.ApproveOrderRequest{OrderId: o.Order.Id})
	must(t, err)
	paid, err := p.pay(o.Order.Id, "pay-second-ca")
	must(t, err)
	second, secondEnc := paid.Certificate.Serial, paid.Order.EncryptionSerial

	pre, err := p.certs.PreviewRevocation(bg, &hufuv1.PreviewRevocationRequest{Serial: first})
	must(t, err)
	var listed []string
	for _, c := range pre.Certificates {
		listed = append(listed, c.Serial)
	}
	// Both pairs are on the same two keys: all four go; first's own pair needs no echo.
	slices.Sort(pre.Acknowledge)
	wantAck := []string{second, secondEnc}
	slices.Sort(wantAck)
	if len(listed) != 4 || !slices.Contains(listed, first) || !slices.Contains(listed, firstEnc) || !slices.Contains(listed, second) || !slices.Contains(listed, secondEnc) ||
		!slices.Equal(pre.Acknowledge, wantAck) {
		t.Fatalf("preview: certificates %v, acknowledge %v", listed, pre.Acknowledge)
	}
	_, err = p.certs.RevokeCertificate(bg, &hufuv1.RevokeCertificateRequest{Serial: first, Pin: "123456", ConfirmIrreversible: true})
	wantCode(t, err, codes.InvalidArgument, "acknowledged_serials")
	if !strings.Contains(errMessage(err), second) {
		t.Fatalf("refusal %q does not name %s", errMessage(err), second)
	}
	// Nothing was revoked by the refusal.
	if c := p.certificate(second); c.Status != hufuv1.CertificateStatus_CERTIFICATE_STATUS_ACTIVE {
		t.Fatalf("after the refusal: %v", c.Status)
	}
	_, err = p.certs.RevokeCertificate(bg, &hufuv1.RevokeCertificateRequest{Serial: first, Pin: "123456", ConfirmIrreversible: true, AcknowledgedSerials: wantAck})
	must(t, err)
	for _, s := range []string{first, firstEnc, second, secondEnc} {
		if c := p.certificate(s); c.Status != hufuv1.CertificateStatus_CERTIFICATE_STATUS_REVOKED {
			t.Fatalf("%s after revocation: %v", s, c.Status)
		}
	}
}

// TestUpgradePaidAfterExpiryIsRefusedAndGivenBack: an upgrade keeps the old expiry, so one
// ordered while the certificate was valid and paid after it expired cannot be issued. The
// payment is refused as FailedPrecondition saying the money goes back (the CA's plan refuses
// before anything is reserved or signed), every time, never Unavailable ("retry later")
// with the charge kept. The upgrade order shows the ID number masked, never the full number
// or the keyed hash the certificate's subject now carries.
func TestUpgradePaidAfterExpiryIsRefusedAndGivenBack(t *testing.T) {
	a := certAppliance(t)
	desk := a.desk()
	p := newApplicant(t, a, phone, "device-0001", "key-upgrade-late")
	serial := p.issue(desk)
	up, err := p.certs.UpgradeCertificate(bg, &hufuv1.UpgradeCertificateRequest{RequestId: "upgrade-late-1", Serial: serial, Platforms: []string{"hangzhou"}})
	must(t, err)
	if m := up.Order.SubjectIdMasked; !strings.Contains(m, "*") || strings.Contains(m, "11010519491231002X") {
		t.Fatalf("the upgrade order shows the subject identity %q, want the mask", m)
	}

	a.clock.Advance(4 * 366 * 24 * time.Hour) // past the certificate's end
	a.signIn(p.conn, phone, "device-0001")
	for _, idem := range []string{"pay-upgrade-late-1", "pay-upgrade-late-2"} {
		_, err = p.pay(up.Order.Id, idem)
		wantCode(t, err, codes.FailedPrecondition, "")
		if !strings.Contains(errMessage(err), "given back") {
			t.Fatalf("the refusal does not say the payment is given back: %v", err)
		}
	}
	got, err := p.certs.GetOrder(bg, &hufuv1.GetOrderRequest{OrderId: up.Order.Id})
	if err != nil || got.Order.Status == hufuv1.OrderStatus_ORDER_STATUS_COMPLETED || got.Order.Serial != "" {
		t.Fatalf("order after the refused payments: %v %v", got, err)
	}
}
