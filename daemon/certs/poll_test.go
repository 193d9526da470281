package certs_test

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/emmansun/gmsm/sm2"
	"github.com/emmansun/gmsm/smx509"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"

	hufuv1 "github.com/hufu-hsm/hufu/api/hufu/v1"
	"github.com/hufu-hsm/hufu/daemon/accounts"
	"github.com/hufu-hsm/hufu/daemon/apierr"
	"github.com/hufu-hsm/hufu/daemon/authn"
	"github.com/hufu-hsm/hufu/daemon/ca"
	"github.com/hufu-hsm/hufu/daemon/certs"
	"github.com/hufu-hsm/hufu/daemon/identity"
	"github.com/hufu-hsm/hufu/store"
	"github.com/hufu-hsm/hufu/store/storepb"
)

// externalCA is a CA that reviews on its own side: the test decides.
type externalCA struct {
	mu        sync.Mutex
	decisions map[string]ca.Decision
	fetchErr  error // the CA's answer to Fetch while set
}

func (e *externalCA) ID() string       { return "ext-ca" }
func (e *externalCA) Name() string     { return "External CA" }
func (e *externalCA) DeskReview() bool { return false }
func (e *externalCA) Submit(_ context.Context, app *ca.Application) (string, error) {
	return "ext-" + app.OrderID, nil
}
func (e *externalCA) Review(_ context.Context, ref string) (ca.Decision, error) {
	e.mu.Lock()
	defer e.mu.Unlock()
	return e.decisions[ref], nil
}
func (e *externalCA) Fetch(_ context.Context, ref string, app *ca.Application) (*ca.Issued, error) {
	if app.PublicKey == nil {
		return nil, errors.New("no key")
	}
	e.mu.Lock()
	err := e.fetchErr
	e.mu.Unlock()
	if err != nil {
		return nil, err
	}
	b := make([]byte, 16)
	_, _ = rand.Read(b)
	now := time.Now()
	return &ca.Issued{DER: []byte("not parsed in this test"), Serial: hex.EncodeToString(b), NotBefore: now, NotAfter: now.AddDate(1, 0, 0)}, nil
}
func (e *externalCA) Revoke(context.Context, string, int) error { return nil }
func (e *externalCA) Chain(context.Context) ([][]byte, error)   { return nil, nil }
func (e *externalCA) CRL(context.Context) ([]byte, error)       { return nil, nil }
func (e *externalCA) decide(ref string, d ca.Decision) {
	e.mu.Lock()
	e.decisions[ref] = d
	e.mu.Unlock()
}

// fakeKeys holds an application's two keys (signing, encryption).
type fakeKeys struct{ key, enc *storepb.SplitKey }

func (f fakeKeys) OwnedKey(_ context.Context, _ authn.Caller, id string) (*storepb.SplitKey, error) {
	switch id {
	case f.key.Id:
		return f.key, nil
	case f.enc.Id:
		return f.enc, nil
	}
	return nil, apierr.New(apierr.NotFound, "no key")
}
func (fakeKeys) VerifyKeyPIN(context.Context, authn.Caller, string, string, string) error { return nil }
func (fakeKeys) OpenTicket(context.Context, authn.Caller, string, string) (string, time.Time, int, error) {
	return "", time.Time{}, 0, nil
}
func (fakeKeys) RevokeKeys(context.Context, authn.Caller, []string, string, func(*store.Tx) error) error {
	return nil
}
func (fakeKeys) KeyRevokedIn(*store.Tx, string) (bool, error) { return false, nil }

type fakeAccounts struct{}

func (fakeAccounts) VerifiedUser(_ context.Context, id string) (*storepb.User, error) {
	return &storepb.User{Id: id, Identity: &storepb.VerifiedIdentity{Name: "李四", IdNumberMasked: "110***********002X"}}, nil
}
func (fakeAccounts) VerifiedPerson(_ context.Context, id string) (identity.Person, error) {
	return identity.Person{Name: "李四", IDNumber: "11010519491231002X"}, nil
}
func (fakeAccounts) Platform(id string) (accounts.Platform, bool) {
	return accounts.Platform{ID: id, Name: "示范", Region: "330000"}, id == "demo"
}

// countingPayments counts charges (distinct idempotency keys) and refunds.
type countingPayments struct {
	mu      sync.Mutex
	charges map[string]bool
	refunds []string
}

func (p *countingPayments) Charge(_ context.Context, c certs.Charge) (string, error) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.charges[c.IdempotencyKey] = true
	return "charge-" + c.IdempotencyKey, nil
}

func (p *countingPayments) Refund(_ context.Context, ref string, _ int64) error {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.refunds = append(p.refunds, ref)
	return nil
}

type clock struct{}

func (clock) Now() time.Time { return time.Now() }

type fixture struct {
	reg    *prometheus.Registry
	s      *certs.Service
	ext    *externalCA
	pay    *countingPayments
	apply  func(n string) *storepb.Order
	caller authn.Caller
}

func newFixture(t *testing.T) *fixture {
	ctx := context.Background()
	st, err := store.Open(ctx, store.Options{Dir: t.TempDir()})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = st.Close(ctx) })
	priv, _ := sm2.GenerateKey(rand.Reader)
	pub := append([]byte{4}, append(priv.X.FillBytes(make([]byte, 32)), priv.Y.FillBytes(make([]byte, 32))...)...)
	encPriv, _ := sm2.GenerateKey(rand.Reader)
	encPub := append([]byte{4}, append(encPriv.X.FillBytes(make([]byte, 32)), encPriv.Y.FillBytes(make([]byte, 32))...)...)
	ext := &externalCA{decisions: map[string]ca.Decision{}}
	pay := &countingPayments{charges: map[string]bool{}}
	reg := prometheus.NewRegistry()
	s, err := certs.New(certs.Options{ValidityYears: []int{1}, CAs: []certs.CA{{Connector: ext, Prices: map[string]map[int]int64{"personal": {1: 100}}}}},
		certs.Deps{Store: st, Keys: fakeKeys{&storepb.SplitKey{Id: "key-0000001", UserId: "u1", PublicKey: pub, Status: 1},
			&storepb.SplitKey{Id: "key-0000002", UserId: "u1", PublicKey: encPub, Status: 1}},
			Accounts: fakeAccounts{}, Payments: pay, Clock: clock{}, Registry: reg})
	if err != nil {
		t.Fatal(err)
	}
	csr, _ := smx509.CreateCertificateRequest(rand.Reader, &smx509.CertificateRequest{}, priv)
	encCSR, _ := smx509.CreateCertificateRequest(rand.Reader, &smx509.CertificateRequest{}, encPriv)
	letter := []byte("letter")
	sig, _ := priv.Sign(rand.Reader, letter, sm2.DefaultSM2SignerOpts)
	caller := authn.Caller{UserID: "u1", DeviceID: "d1"}
	apply := func(n string) *storepb.Order {
		o, err := s.Apply(ctx, caller, &hufuv1.ApplyCertificateRequest{RequestId: "request-" + n, KeyId: "key-0000001", CaId: "ext-ca",
			ValidityYears: 1, Platforms: []string{"demo"}, Csr: csr, EncryptionKeyId: "key-0000002", EncryptionCsr: encCSR,
			Authorisation: &hufuv1.Authorisation{Kind: &hufuv1.Authorisation_Online{Online: &hufuv1.SignedLetter{Letter: letter, Signature: sig}}}})
		if err != nil {
			t.Fatal(err)
		}
		return o
	}
	return &fixture{reg: reg, s: s, ext: ext, pay: pay, apply: apply, caller: caller}
}

func TestExternalCAReviewsArePolled(t *testing.T) {
	ctx := context.Background()
	f := newFixture(t)
	s, ext, caller := f.s, f.ext, f.caller
	approved, rejected, pending := f.apply("1"), f.apply("2"), f.apply("3")
	if n, err := s.PollReviews(ctx); n != 0 || err != nil {
		t.Fatalf("nothing decided yet: %d %v", n, err)
	}
	ext.decide(approved.CaRef, ca.Decision{State: ca.Approved})
	ext.decide(rejected.CaRef, ca.Decision{State: ca.Rejected, Reason: "照片不清晰"})
	if n, err := s.PollReviews(ctx); n != 2 || err != nil {
		t.Fatalf("polled %d, %v", n, err)
	}
	for _, tc := range []struct {
		o      *storepb.Order
		status hufuv1.OrderStatus
		reason string
	}{
		{approved, hufuv1.OrderStatus_ORDER_STATUS_AWAITING_PAYMENT, ""},
		{rejected, hufuv1.OrderStatus_ORDER_STATUS_CANCELLED, "照片不清晰"},
		{pending, hufuv1.OrderStatus_ORDER_STATUS_IN_REVIEW, ""},
	} {
		got, err := s.GetOrder(ctx, caller, tc.o.Id)
		if err != nil || hufuv1.OrderStatus(got.Status) != tc.status || got.CancelReason != tc.reason {
			t.Fatalf("order %s: %v %q %v", tc.o.Id, hufuv1.OrderStatus(got.GetStatus()), got.GetCancelReason(), err)
		}
	}
	// A decided order is not asked about again.
	if n, err := s.PollReviews(ctx); n != 0 || err != nil {
		t.Fatalf("second poll %d %v", n, err)
	}
}

func TestPaymentsThatCompleteNothingAreRefunded(t *testing.T) {
	ctx := context.Background()
	f := newFixture(t)
	o := f.apply("1")
	f.ext.decide(o.CaRef, ca.Decision{State: ca.Approved})
	if _, err := f.s.PollReviews(ctx); err != nil {
		t.Fatal(err)
	}
	const n = 6
	var wg sync.WaitGroup
	won := make([]bool, n)
	for i := range n {
		wg.Go(func() {
			_, _, err := f.s.Pay(ctx, f.caller, o.Id, "dev", fmt.Sprintf("payment-key-%d", i))
			won[i] = err == nil
		})
	}
	wg.Wait()
	winners := 0
	for _, w := range won {
		if w {
			winners++
		}
	}
	// Payments that saw the order completed were refused before charging; every other
	// charge but the winner's was refunded.
	if winners != 1 || len(f.pay.charges) != len(f.pay.refunds)+1 {
		t.Fatalf("%d payments won, %d charges, %d refunds", winners, len(f.pay.charges), len(f.pay.refunds))
	}
	// The winner's pair: two certificates.
	want := "# HELP hufu_certs_issued_total Certificates issued.\n# TYPE hufu_certs_issued_total counter\nhufu_certs_issued_total 2\n"
	if err := testutil.GatherAndCompare(f.reg, strings.NewReader(want), "hufu_certs_issued_total"); err != nil {
		t.Fatal(err)
	}
	// A payment of a cancelled order is refused before anything is charged.
	o2 := f.apply("2")
	if _, err := f.s.Cancel(ctx, f.caller, o2.Id, "不需要"); err != nil {
		t.Fatal(err)
	}
	if _, _, err := f.s.Pay(ctx, f.caller, o2.Id, "dev", "payment-key-x"); err == nil || f.pay.charges["payment-key-x"] {
		t.Fatalf("paid a cancelled order: %v", err)
	}
}

// TestOnlyARevokedIssuingCAAbandonsAPaidOrder: a CA refusing to sign with a FailedPrecondition
// or NotFound of its own keeps the paid order's reservation (Unavailable, no refund), and the
// same payment completes once the CA signs again; only ca.ErrIssuingCARevoked abandons the
// order and gives the payment back.
func TestOnlyARevokedIssuingCAAbandonsAPaidOrder(t *testing.T) {
	ctx := context.Background()
	f := newFixture(t)
	setFetchErr := func(err error) {
		f.ext.mu.Lock()
		f.ext.fetchErr = err
		f.ext.mu.Unlock()
	}
	approved := func(n string) *storepb.Order {
		o := f.apply(n)
		f.ext.decide(o.CaRef, ca.Decision{State: ca.Approved})
		if _, err := f.s.PollReviews(ctx); err != nil {
			t.Fatal(err)
		}
		return o
	}

	o := approved("1")
	for i, passing := range []error{
		apierr.New(apierr.FailedPrecondition, "the CA's signing service is in maintenance"),
		apierr.New(apierr.NotFound, "the CA has not indexed the application yet"),
	} {
		setFetchErr(passing)
		_, _, err := f.s.Pay(ctx, f.caller, o.Id, "dev", "payment-key-1")
		var refused *apierr.Error
		if !errors.As(err, &refused) || refused.Kind != apierr.Unavailable || len(f.pay.refunds) != 0 {
			t.Fatalf("refusal %d (%v): %v, %d refunds", i, passing, err, len(f.pay.refunds))
		}
		got, err := f.s.GetOrder(ctx, f.caller, o.Id)
		if err != nil || hufuv1.OrderStatus(got.Status) == hufuv1.OrderStatus_ORDER_STATUS_CANCELLED {
			t.Fatalf("refusal %d: the order was abandoned: %v %v", i, hufuv1.OrderStatus(got.GetStatus()), err)
		}
	}
	setFetchErr(nil)
	if _, _, err := f.s.Pay(ctx, f.caller, o.Id, "dev", "payment-key-1"); err != nil || len(f.pay.refunds) != 0 {
		t.Fatalf("the same payment once the CA signs again: %v, %d refunds", err, len(f.pay.refunds))
	}

	o2 := approved("2")
	setFetchErr(&apierr.Error{Kind: apierr.FailedPrecondition, Cause: ca.ErrIssuingCARevoked, Message: "the issuing CA of ext-ca is revoked"})
	_, _, err := f.s.Pay(ctx, f.caller, o2.Id, "dev", "payment-key-2")
	var refused *apierr.Error
	if !errors.As(err, &refused) || refused.Kind != apierr.FailedPrecondition || len(f.pay.refunds) != 1 {
		t.Fatalf("under a revoked issuing CA: %v, %d refunds", err, len(f.pay.refunds))
	}
	got, err := f.s.GetOrder(ctx, f.caller, o2.Id)
	if err != nil || hufuv1.OrderStatus(got.Status) != hufuv1.OrderStatus_ORDER_STATUS_CANCELLED {
		t.Fatalf("the order under a revoked issuing CA: %v %v", hufuv1.OrderStatus(got.GetStatus()), err)
	}
}
