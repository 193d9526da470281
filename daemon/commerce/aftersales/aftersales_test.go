package aftersales

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	hufuv1 "github.com/hufu-hsm/hufu/api/hufu/v1"
	"github.com/hufu-hsm/hufu/daemon/apierr"
	"github.com/hufu-hsm/hufu/daemon/attachments"
	"github.com/hufu-hsm/hufu/daemon/authn"
	"github.com/hufu-hsm/hufu/daemon/certs"
	"github.com/hufu-hsm/hufu/store"
	"github.com/hufu-hsm/hufu/store/storepb"
)

// The refund's crash and failure paths need failures the real CA and payment provider do not
// produce on demand: these tests use a real store and stand-ins for the certificate orders
// and the payments that fail when told to. The happy paths run against the real daemon
// (daemon/aftersales_e2e_test.go).

type clock struct{ now time.Time }

func (c *clock) Now() time.Time { return c.now }

type signer struct{ k *ecdsa.PrivateKey }

func (s signer) SignDigest(_ context.Context, d []byte) ([]byte, error) {
	return ecdsa.SignASN1(rand.Reader, s.k, d)
}
func (s signer) PublicKey() *ecdsa.PublicKey { return &s.k.PublicKey }

const (
	user1   = "user-one"
	orderID = "00000000000000000000a1"
)

var (
	person = authn.Caller{UserID: user1, DeviceID: "device-1"}
	desk   = authn.Caller{System: "as-desk"}
)

// standIn is one completed certificate order with its certificates, and the payment
// provider; failRevoke and failRefund make the next calls fail.
type standIn struct {
	st                     *store.Store
	order                  *storepb.Order
	serials                []string
	failRevoke, failRefund int
	revokes, refunds       int
	revoked                bool
}

func (f *standIn) GetOrder(_ context.Context, caller authn.Caller, id string) (*storepb.Order, error) {
	if caller.UserID != user1 || id != orderID {
		return nil, apierr.New(apierr.NotFound, "no order %q", id)
	}
	return f.order, nil
}

func (f *standIn) OrderByID(_ context.Context, id string) (*storepb.Order, error) {
	if id != orderID {
		return nil, apierr.New(apierr.NotFound, "no order %q", id)
	}
	return f.order, nil
}

func (f *standIn) PaidOrderIn(_ *store.Tx, user, id string) (certs.PaidOrder, error) {
	if user != user1 || id != orderID {
		return certs.PaidOrder{}, store.ErrNotFound
	}
	refunded := slices.ContainsFunc(f.order.Steps, func(s *storepb.ReviewStep) bool { return s.Name == certs.StepRefunded || s.Name == certs.StepRefunding })
	return certs.PaidOrder{ID: id, Kind: "new", AmountFen: f.order.PriceFen, Refunded: refunded}, nil
}

func (f *standIn) RefundRevokes(context.Context, *storepb.Order) ([]string, error) {
	if f.revoked {
		return nil, nil
	}
	return f.serials, nil
}

func (f *standIn) RefundStepIn(tx *store.Tx, user, id, name, actor, note string) (*storepb.Order, error) {
	if !slices.ContainsFunc(f.order.Steps, func(s *storepb.ReviewStep) bool { return s.Name == name }) {
		f.order.Steps = append(f.order.Steps, &storepb.ReviewStep{Name: name, Actor: actor, Note: note})
	}
	return f.order, nil
}

var errDown = errors.New("stand-in: down")

func (f *standIn) RevokeForRefund(ctx context.Context, _ authn.Caller, serial, _ string, with func(tx *store.Tx) error) error {
	if serial != f.order.Serial {
		return apierr.New(apierr.NotFound, "no certificate %q", serial)
	}
	if f.failRevoke > 0 {
		f.failRevoke--
		return &apierr.Error{Kind: apierr.Unavailable, Message: "the CA did not confirm the revocation; retry", Cause: errDown}
	}
	f.revokes++
	if err := f.st.Update(ctx, with); err != nil {
		return err
	}
	f.revoked = true
	return nil
}

func (f *standIn) RefundOrder(ctx context.Context, o *storepb.Order, _ string, with func(tx *store.Tx) error) (*storepb.LedgerEntry, error) {
	if f.failRefund > 0 {
		f.failRefund--
		return nil, &apierr.Error{Kind: apierr.Unavailable, Message: "the payment provider did not refund; try again later", Cause: errDown}
	}
	f.refunds++
	return nil, f.st.Update(ctx, with)
}

func (f *standIn) Account(context.Context, authn.Caller) (*storepb.User, error) {
	return &storepb.User{Phone: "13800138000"}, nil
}

type fixture struct {
	st *store.Store
	f  *standIn
	c  *clock
	// invoice holds the order when not "".
	invoice string
}

func newFixture(t *testing.T) *fixture {
	t.Helper()
	k, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	c := &clock{now: time.Date(2026, 12, 1, 8, 0, 0, 0, time.UTC)}
	st, err := store.Open(context.Background(), store.Options{Dir: t.TempDir(), Clock: c, Signer: signer{k},
		Logger: slog.New(slog.NewTextHandler(io.Discard, nil))})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = st.Close(context.Background()) })
	o := &storepb.Order{Id: orderID, UserId: user1, Status: int32(hufuv1.OrderStatus_ORDER_STATUS_COMPLETED), PriceFen: 36000,
		Serial: "0123456789abcdef0123456789abcdef", PaymentRef: "dev-1"}
	return &fixture{st: st, c: c, f: &standIn{st: st, order: o, serials: []string{o.Serial}}}
}

// service builds a service over the fixture's store: a new one stands for a restarted daemon.
func (x *fixture) service(t *testing.T) *Service {
	t.Helper()
	att, err := attachments.New(attachments.Options{}, x.st)
	if err != nil {
		t.Fatal(err)
	}
	s, err := New(Options{}, Deps{Store: x.st, Attachments: att, Orders: x.f, Payments: x.f, Accounts: x.f, Clock: x.c,
		InvoiceOf: func(*store.Tx, string) (string, error) { return x.invoice, nil }})
	if err != nil {
		t.Fatal(err)
	}
	return s
}

func (x *fixture) apply(t *testing.T, s *Service, request string) *storepb.AfterSalesCase {
	t.Helper()
	p, err := s.Preview(context.Background(), person, orderID)
	if err != nil {
		t.Fatal(err)
	}
	c, err := s.Apply(context.Background(), person, Application{RequestID: request, OrderID: orderID,
		Reason: hufuv1.AfterSalesReason_AFTER_SALES_REASON_DUPLICATE, Acknowledgement: p.Acknowledgement})
	if err != nil {
		t.Fatal(err)
	}
	return c
}

func kindOf(err error) apierr.Kind {
	var ae *apierr.Error
	if errors.As(err, &ae) {
		return ae.Kind
	}
	return apierr.Internal
}

// TestRefundResumesAfterAFailure: a refund stopped by a failing CA or payment provider (or a
// crash: the retry runs on a new service over the same store) leaves the case refunding; it
// cannot be settled or withdrawn then, and a retry finishes it without revoking or refunding
// twice. The money never goes back before the revocation.
func TestRefundResumesAfterAFailure(t *testing.T) {
	for _, tc := range []struct {
		name                   string
		failRevoke, failRefund int
		revokedAfterFailure    bool
	}{
		{name: "the CA fails", failRevoke: 1},
		{name: "the provider fails after the revocation", failRefund: 1, revokedAfterFailure: true},
		{name: "both fail in turn", failRevoke: 1, failRefund: 2, revokedAfterFailure: true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			x := newFixture(t)
			s := x.service(t)
			ctx := context.Background()
			c := x.apply(t, s, "apply-0001")
			x.f.failRevoke, x.f.failRefund = tc.failRevoke, tc.failRefund
			for range tc.failRevoke + tc.failRefund {
				if _, err := s.Refund(ctx, desk, c.Id); kindOf(err) != apierr.Unavailable {
					t.Fatalf("refund with a failure: %v", err)
				}
				got, err := s.Get(ctx, person, c.Id)
				if err != nil || got.State != stateRefunding {
					t.Fatalf("after the failure: %v %v", got, err)
				}
				if x.f.refunds != 0 {
					t.Fatal("money went back")
				}
				if _, err := s.Settle(ctx, desk, c.Id, "协商"); kindOf(err) != apierr.FailedPrecondition {
					t.Fatalf("settling a refunding case: %v", err)
				}
				if _, err := s.Withdraw(ctx, person, c.Id); kindOf(err) != apierr.FailedPrecondition {
					t.Fatalf("withdrawing a refunding case: %v", err)
				}
				open, _, err := s.ListOpen(ctx, 0, "")
				if err != nil || len(open) != 1 || open[0].State != stateRefunding {
					t.Fatalf("the desk's open list: %v %v", open, err)
				}
				if ids, err := s.OpenCases(ctx, user1); err != nil || len(ids) != 1 || ids[0] != c.Id {
					t.Fatalf("open cases of the user: %v %v", ids, err)
				}
				s = x.service(t) // the daemon restarts
			}
			if got, _ := s.Get(ctx, person, c.Id); got.Revoked != tc.revokedAfterFailure {
				t.Fatalf("revoked after the failures: %v", got.Revoked)
			}
			done, err := s.Refund(ctx, desk, c.Id)
			if err != nil || done.State != stateRefunded {
				t.Fatalf("the retry: %v %v", done, err)
			}
			if x.f.revokes != 1 || x.f.refunds != 1 {
				t.Fatalf("%d revocations, %d refunds", x.f.revokes, x.f.refunds)
			}
			if again, err := s.Refund(ctx, desk, c.Id); err != nil || again.State != stateRefunded || x.f.refunds != 1 {
				t.Fatalf("refunding again: %v %v (%d refunds)", again, err, x.f.refunds)
			}
			if open, _, _ := s.ListOpen(ctx, 0, ""); len(open) != 0 {
				t.Fatalf("open after the refund: %v", open)
			}
			if ids, err := s.OpenCases(ctx, user1); err != nil || len(ids) != 0 {
				t.Fatalf("open cases of the user after the refund: %v %v", ids, err)
			}
			actions := auditActions(t, x.st)
			for _, want := range []string{"aftersales.apply", "aftersales.refund.start", "aftersales.revoke", "aftersales.refund"} {
				if !slices.Contains(actions, want) {
					t.Errorf("no %s in %v", want, actions)
				}
			}
			if i, j := slices.Index(actions, "aftersales.revoke"), slices.Index(actions, "aftersales.refund"); i > j {
				t.Errorf("refunded before revoking: %v", actions)
			}
		})
	}
}

func auditActions(t *testing.T, st *store.Store) []string {
	t.Helper()
	var out []string
	head, _ := st.Head()
	for seq := uint64(1); seq <= head; seq++ {
		r, err := st.AuditRecord(context.Background(), seq)
		if err != nil {
			t.Fatal(err)
		}
		out = append(out, r.Action)
	}
	return out
}

// TestApplyNeedsTheCurrentAcknowledgement: the acknowledgement names the consequences; when
// they change (another certificate of the key would be revoked), the old one is refused.
func TestApplyNeedsTheCurrentAcknowledgement(t *testing.T) {
	x := newFixture(t)
	s := x.service(t)
	ctx := context.Background()
	p, err := s.Preview(ctx, person, orderID)
	if err != nil {
		t.Fatal(err)
	}
	x.f.serials = append(x.f.serials, "fedcba9876543210fedcba9876543210") // a renewal of the key since
	app := Application{RequestID: "apply-0001", OrderID: orderID, Reason: hufuv1.AfterSalesReason_AFTER_SALES_REASON_DUPLICATE, Acknowledgement: p.Acknowledgement}
	if _, err := s.Apply(ctx, person, app); kindOf(err) != apierr.FailedPrecondition || !strings.Contains(err.Error(), "preview again") {
		t.Fatalf("a stale acknowledgement: %v", err)
	}
	p, err = s.Preview(ctx, person, orderID)
	if err != nil || len(p.Serials) != 2 {
		t.Fatalf("preview: %v %v", p, err)
	}
	app.Acknowledgement = p.Acknowledgement
	if _, err := s.Apply(ctx, person, app); err != nil {
		t.Fatal(err)
	}
}

// TestRefundOfAnInvoicedOrderIsRefused: while an invoice holds the order the refund does not
// start, and the refusal is audited.
func TestRefundOfAnInvoicedOrderIsRefused(t *testing.T) {
	x := newFixture(t)
	s := x.service(t)
	ctx := context.Background()
	c := x.apply(t, s, "apply-0001")
	x.invoice = "0000000000000000000abc"
	if _, err := s.Refund(ctx, desk, c.Id); kindOf(err) != apierr.FailedPrecondition || !strings.Contains(err.Error(), x.invoice) {
		t.Fatalf("refund of an invoiced order: %v", err)
	}
	if got, _ := s.Get(ctx, person, c.Id); got.State != stateInReview || x.f.revokes != 0 || x.f.refunds != 0 {
		t.Fatalf("after the refusal: %v, %d revocations, %d refunds", got, x.f.revokes, x.f.refunds)
	}
	if !slices.Contains(auditActions(t, x.st), "aftersales.refund.start") {
		t.Fatal("the refusal is not audited")
	}
	x.invoice = ""
	if got, err := s.Refund(ctx, desk, c.Id); err != nil || got.State != stateRefunded {
		t.Fatalf("refund after the invoice's rejection: %v %v", got, err)
	}
}

// TestOneOpenCasePerOrder: concurrent applications for one order with different request ids
// open exactly one case; the others name it.
func TestOneOpenCasePerOrder(t *testing.T) {
	x := newFixture(t)
	s := x.service(t)
	ctx := context.Background()
	p, err := s.Preview(ctx, person, orderID)
	if err != nil {
		t.Fatal(err)
	}
	const n = 8
	var wg sync.WaitGroup
	ids, errs := make([]string, n), make([]error, n)
	for i := range n {
		wg.Go(func() {
			c, err := s.Apply(ctx, person, Application{RequestID: fmt.Sprintf("apply-race-%02d", i), OrderID: orderID,
				Reason: hufuv1.AfterSalesReason_AFTER_SALES_REASON_DUPLICATE, Acknowledgement: p.Acknowledgement})
			errs[i] = err
			if err == nil {
				ids[i] = c.Id
			}
		})
	}
	wg.Wait()
	var opened []string
	for i := range n {
		switch {
		case errs[i] == nil:
			opened = append(opened, ids[i])
		case kindOf(errs[i]) != apierr.FailedPrecondition:
			t.Fatalf("apply %d: %v", i, errs[i])
		}
	}
	if len(opened) != 1 {
		t.Fatalf("%d cases opened: %v", len(opened), opened)
	}
	for i := range n {
		if errs[i] != nil && !strings.Contains(errs[i].Error(), opened[0]) {
			t.Fatalf("the refusal does not name the open case: %v", errs[i])
		}
	}
	if list, _, err := s.List(ctx, person, 0, "", 0, ""); err != nil || len(list) != 1 {
		t.Fatalf("cases: %v %v", list, err)
	}
}

// TestDeskCallers: the desk's decisions are a desk system client's or a console operator's
// (caller.Admin), recorded under their name; a person, even one who is also named an admin,
// is refused and changes nothing.
func TestDeskCallers(t *testing.T) {
	x := newFixture(t)
	s := x.service(t)
	ctx := context.Background()
	c := x.apply(t, s, "apply-desk-01")
	for _, who := range []authn.Caller{person, {UserID: user1, Admin: "olga"}, {}} {
		if _, err := s.Settle(ctx, who, c.Id, "协商解决"); kindOf(err) != apierr.PermissionDenied {
			t.Fatalf("settle by %+v: %v", who, err)
		}
		if _, err := s.Refund(ctx, who, c.Id); kindOf(err) != apierr.PermissionDenied {
			t.Fatalf("refund by %+v: %v", who, err)
		}
	}
	if got, _ := s.Get(ctx, person, c.Id); got.State != stateInReview {
		t.Fatalf("a refused caller changed the case: %v", got.State)
	}
	olga := authn.Caller{Admin: "olga"}
	got, err := s.Settle(ctx, olga, c.Id, "协商解决")
	if err != nil || got.DecidedBy != "admin:olga" {
		t.Fatalf("settled by an operator: %v %v", got, err)
	}
}
