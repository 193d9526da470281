package daemon_test

import (
	"strings"
	"testing"
	"time"

	hufuv1 "github.com/hufu-hsm/hufu/api/hufu/v1"
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
	p.t.Fatalf("certificate %s not listed", serial)
	return nil
}
