package invoices

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"errors"
	"io"
	"log/slog"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"

	hufuv1 "github.com/hufu-hsm/hufu/api/hufu/v1"
	"github.com/hufu-hsm/hufu/daemon/apierr"
	"github.com/hufu-hsm/hufu/daemon/authn"
	"github.com/hufu-hsm/hufu/store"
)

type clock struct{ now time.Time }

func (c *clock) Now() time.Time { return c.now }

type signer struct{ k *ecdsa.PrivateKey }

func (s signer) SignDigest(_ context.Context, d []byte) ([]byte, error) {
	return ecdsa.SignASN1(rand.Reader, s.k, d)
}
func (s signer) PublicKey() *ecdsa.PublicKey { return &s.k.PublicKey }

// standInOrders are a user's orders as the certificate domain would report them.
type standInOrders struct{ orders map[string]Order } // by id; all of one user

func (o *standInOrders) PaidOrders(context.Context, string) ([]Order, error) {
	var out []Order
	for _, ord := range o.orders {
		if !ord.PaidAt.IsZero() {
			out = append(out, ord)
		}
	}
	return out, nil
}

func (o *standInOrders) PaidOrderIn(_ *store.Tx, user, id string) (Order, error) {
	ord, ok := o.orders[id]
	switch {
	case user != user1 || !ok:
		return Order{}, store.ErrNotFound
	case ord.PaidAt.IsZero():
		return Order{}, ErrNotPaid
	}
	return ord, nil
}

const (
	user1     = "user-one"
	certOrder = "00000000000000000000a1"
	certTwo   = "00000000000000000000a2"
	verify    = "00000000000000000000b1"
	free      = "00000000000000000000c1"
	refunded  = "00000000000000000000d1"
	unpaid    = "00000000000000000000e1"
	unfiled   = "00000000000000000000f1"
)

func newFixture(t *testing.T) (*Service, *store.Store, *prometheus.Registry) {
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
	paid := c.now.Add(-time.Hour)
	orders := &standInOrders{orders: map[string]Order{
		certOrder: {ID: certOrder, Kind: "new", AmountFen: 36000, PaidAt: paid},
		certTwo:   {ID: certTwo, Kind: "renewal", AmountFen: 20000, PaidAt: paid},
		verify:    {ID: verify, Kind: "enterprise_verification", AmountFen: 99, PaidAt: paid},
		free:      {ID: free, Kind: "new", AmountFen: 0, PaidAt: paid},
		refunded:  {ID: refunded, Kind: "new", AmountFen: 36000, PaidAt: paid, Refunded: true},
		unpaid:    {ID: unpaid, Kind: "new", AmountFen: 36000},
		unfiled:   {ID: unfiled, Kind: "upgrade", AmountFen: 5000, PaidAt: paid},
	}}
	reg := prometheus.NewRegistry()
	s, err := New(Options{MaxOrdersPerInvoice: 2, Categories: map[string]hufuv1.InvoiceCategory{
		"new": hufuv1.InvoiceCategory_INVOICE_CATEGORY_CA_CERTIFICATE, "renewal": hufuv1.InvoiceCategory_INVOICE_CATEGORY_CA_CERTIFICATE,
		"enterprise_verification": hufuv1.InvoiceCategory_INVOICE_CATEGORY_INFORMATION_SERVICE,
	}}, Deps{Store: st, Orders: orders, Clock: c, Registry: reg})
	if err != nil {
		t.Fatal(err)
	}
	return s, st, reg
}

var caller = authn.Caller{UserID: user1}

func personal() *hufuv1.InvoiceTitle {
	return &hufuv1.InvoiceTitle{Kind: hufuv1.InvoiceTitleKind_INVOICE_TITLE_KIND_PERSONAL, Name: "张三"}
}

func request(id string, orders ...string) *hufuv1.RequestInvoiceRequest {
	return &hufuv1.RequestInvoiceRequest{RequestId: id, Kind: hufuv1.InvoiceKind_INVOICE_KIND_ORDINARY, Title: personal(), OrderIds: orders}
}

func kindOf(err error) (apierr.Kind, string) {
	var ae *apierr.Error
	if !errors.As(err, &ae) {
		return apierr.Internal, ""
	}
	return ae.Kind, ae.Field
}

func TestRequestRefusals(t *testing.T) {
	s, _, _ := newFixture(t)
	cases := []struct {
		name   string
		orders []string
		kind   apierr.Kind
		field  string
	}{
		{"refunded", []string{refunded}, apierr.FailedPrecondition, ""},
		{"nothing paid", []string{free}, apierr.FailedPrecondition, ""},
		{"not completed", []string{unpaid}, apierr.FailedPrecondition, ""},
		{"kind not filed under a category", []string{unfiled}, apierr.FailedPrecondition, ""},
		{"no such order", []string{"00000000000000000000ff"}, apierr.NotFound, ""},
		{"two categories", []string{certOrder, verify}, apierr.InvalidArgument, "order_ids[1]"},
		{"too many orders", []string{certOrder, certTwo, verify}, apierr.InvalidArgument, "order_ids"},
	}
	for i, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			_, err := s.Request(context.Background(), caller, request("refusal-"+string(rune('a'+i))+"-0001", c.orders...))
			if k, f := kindOf(err); k != c.kind || f != c.field {
				t.Fatalf("got %v (kind %d, field %q), want kind %d field %q", err, k, f, c.kind, c.field)
			}
		})
	}
	// Nothing refused left a claim behind: both certificate orders are invoiceable.
	groups, err := s.InvoiceableOrders(context.Background(), caller, hufuv1.InvoiceCategory_INVOICE_CATEGORY_CA_CERTIFICATE)
	if err != nil || len(groups) != 1 || len(groups[0].Orders) != 2 || groups[0].AmountFen != 56000 {
		t.Fatalf("invoiceable: %+v %v", groups, err)
	}
}

// TestStateChangesAreAudited: request, reject, request again and issue each write one audit
// record naming the invoice, the orders and the amount; the metrics count them.
func TestStateChangesAreAudited(t *testing.T) {
	s, st, reg := newFixture(t)
	ctx := context.Background()
	before, _ := st.Head()
	inv, err := s.Request(ctx, caller, request("audited-0001", certOrder, certTwo))
	if err != nil || inv.AmountFen != 56000 {
		t.Fatalf("request: %v %v", inv, err)
	}
	desk := authn.Caller{System: "invoice-desk"}
	if _, err := s.Reject(ctx, desk, inv.Id, "金额有误"); err != nil {
		t.Fatal(err)
	}
	again, err := s.Request(ctx, caller, request("audited-0002", certOrder))
	if err != nil {
		t.Fatalf("the rejected invoice's order again: %v", err)
	}
	if _, err := s.Issue(ctx, desk, again.Id, "12345678", []byte("%PDF-1.4\n%%EOF"), ""); err != nil {
		t.Fatal(err)
	}
	head, _ := st.Head()
	want := []struct{ actor, action, amount string }{
		{"user:" + user1, "invoice.request", "56000"}, {"system:invoice-desk", "invoice.reject", "56000"},
		{"user:" + user1, "invoice.request", "36000"}, {"system:invoice-desk", "invoice.issue", "36000"},
	}
	if head-before != uint64(len(want)) {
		t.Fatalf("%d audit records, want %d", head-before, len(want))
	}
	for i, w := range want {
		r, err := st.AuditRecord(ctx, before+uint64(i)+1)
		if err != nil {
			t.Fatal(err)
		}
		if r.Actor != w.actor || r.Action != w.action || r.Details["amount_fen"] != w.amount || r.Outcome != store.OutcomeOK {
			t.Fatalf("record %d: %+v, want %+v", i, r, w)
		}
	}
	for action, n := range map[string]float64{"request": 2, "reject": 1, "issue": 1} {
		if got := testutil.ToFloat64(s.m.changes.WithLabelValues(action)); got != n {
			t.Fatalf("%s counted %v, want %v", action, got, n)
		}
	}
	if got := testutil.ToFloat64(s.m.issuedFen); got != 36000 {
		t.Fatalf("issued fen %v", got)
	}
	if _, err := reg.Gather(); err != nil {
		t.Fatal(err)
	}
}

func TestOrderInvoiceIn(t *testing.T) {
	s, st, _ := newFixture(t)
	ctx := context.Background()
	inv, err := s.Request(ctx, caller, request("held-0001", certOrder))
	if err != nil {
		t.Fatal(err)
	}
	for order, want := range map[string]string{certOrder: inv.Id, certTwo: "", "bogus": ""} {
		var got string
		err := st.Update(ctx, func(tx *store.Tx) error {
			var err error
			got, err = OrderInvoiceIn(tx, order)
			return err
		})
		if err != nil || got != want {
			t.Fatalf("OrderInvoiceIn(%s) = %q, %v; want %q", order, got, err, want)
		}
	}
}
