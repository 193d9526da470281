package payments

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"errors"
	"io"
	"log/slog"
	"strings"
	"testing"
	"time"

	hufuv1 "github.com/hufu-hsm/hufu/api/hufu/v1"
	"github.com/hufu-hsm/hufu/daemon/apierr"
	"github.com/hufu-hsm/hufu/daemon/certs"
	"github.com/hufu-hsm/hufu/daemon/commerce/ledger"
	"github.com/hufu-hsm/hufu/store"
	"github.com/hufu-hsm/hufu/store/storepb"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
)

type clock struct{ now time.Time }

func (c *clock) Now() time.Time { return c.now }

type signer struct{ k *ecdsa.PrivateKey }

func (s signer) SignDigest(_ context.Context, d []byte) ([]byte, error) {
	return ecdsa.SignASN1(rand.Reader, s.k, d)
}
func (s signer) PublicKey() *ecdsa.PublicKey { return &s.k.PublicKey }

var bg = context.Background()

// gateway stands in for the webhook gateway (its own tests run it against a real HTTP
// gateway): it records charges and refunds.
type gateway struct{ charges, refunds []string }

func (g *gateway) Charge(_ context.Context, c certs.Charge) (string, error) {
	g.charges = append(g.charges, c.Method)
	return "gw-" + c.IdempotencyKey, nil
}
func (g *gateway) Refund(_ context.Context, ref string, _ int64) error {
	g.refunds = append(g.refunds, ref)
	return nil
}

type fixture struct {
	s   *Service
	st  *store.Store
	gw  *gateway
	reg *prometheus.Registry
}

func newFixture(t *testing.T, opts Options, withGateway bool) *fixture {
	t.Helper()
	k, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	c := &clock{now: time.Date(2026, 12, 1, 8, 0, 0, 0, time.UTC)}
	st, err := store.Open(bg, store.Options{Dir: t.TempDir(), Clock: c, Signer: signer{k}, Logger: slog.New(slog.NewTextHandler(io.Discard, nil))})
	if err != nil {
		t.Fatal(err)
	}
	f := &fixture{st: st, gw: &gateway{}, reg: prometheus.NewRegistry()}
	t.Cleanup(func() {
		if r, err := ledger.Check(bg, st); err != nil || !r.OK() {
			t.Errorf("ledger check: %+v %v", r, err)
		}
		_ = st.Close(bg)
	})
	deps := Deps{Store: st, Clock: c, Registry: f.reg, Platform: func(id string) bool { return id == "demo" || id == "gz" }}
	if withGateway {
		deps.Gateway = f.gw
	}
	if f.s, err = New(opts, deps); err != nil {
		t.Fatal(err)
	}
	return f
}

func wantInvalid(t *testing.T, err error, field string) {
	t.Helper()
	var ae *apierr.Error
	if !errors.As(err, &ae) || ae.Kind != apierr.InvalidArgument || ae.Field != field {
		t.Fatalf("got %v, want InvalidArgument on %s", err, field)
	}
}

func TestMethodsAndRouting(t *testing.T) {
	f := newFixture(t, Options{Methods: map[string][]string{"gz": {"gateway", "offline"}, "*": {"wechat"}},
		Account: ReceivingAccount{AccountNumber: "62220200000000"}}, true)
	ms, err := f.s.Methods("gz")
	if err != nil || len(ms) != 2 || ms[0].ID != "gateway" || !ms[1].Offline {
		t.Fatalf("gz: %v %v", ms, err)
	}
	if ms, _ := f.s.Methods("demo"); len(ms) != 1 || ms[0].ID != "wechat" {
		t.Fatalf("demo falls back to *: %v", ms)
	}
	_, err = f.s.Methods("elsewhere")
	wantInvalid(t, err, "platform")

	for _, tc := range []struct {
		name, method string
		platforms    []string
		field        string // "" ok, "-" FailedPrecondition
	}{
		{"gateway on gz", "gateway", []string{"gz"}, ""},
		{"wechat on demo", "wechat", []string{"demo"}, ""},
		{"wechat not on gz", "wechat", []string{"gz"}, "method"},
		{"one of the platforms offers it", "wechat", []string{"gz", "demo"}, ""},
		{"dev outside development", "dev", []string{"demo"}, "method"},
		{"malformed", "WeChat Pay", []string{"demo"}, "method"},
		{"offline is not charged", "offline", []string{"gz"}, "-"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := f.s.Charge(bg, certs.Charge{OrderID: "o1", UserID: "u1", Method: tc.method, IdempotencyKey: "pay-00000001", AmountFen: 100, Platforms: tc.platforms})
			switch tc.field {
			case "":
				if err != nil {
					t.Fatal(err)
				}
			case "-":
				var ae *apierr.Error
				if !errors.As(err, &ae) || ae.Kind != apierr.FailedPrecondition || !strings.Contains(ae.Message, "PayOffline") {
					t.Fatalf("got %v", err)
				}
			default:
				wantInvalid(t, err, tc.field)
			}
		})
	}
	for ref, want := range map[string]int{"dev-0011": 0, "gw-pay-1": 1} {
		before := len(f.gw.refunds)
		if err := f.s.Refund(bg, ref, 100); err != nil || len(f.gw.refunds)-before != want {
			t.Fatalf("refund %s: %v, gateway refunds %d", ref, err, len(f.gw.refunds)-before)
		}
	}
	// An offline payment goes back by hand: the desk confirms the payout (RefundOrder,
	// ConfirmPayout), no provider refunds it.
	var ae *apierr.Error
	if err := f.s.Refund(bg, "offline:BANK-1", 100); !errors.As(err, &ae) || ae.Kind != apierr.FailedPrecondition || !strings.Contains(ae.Message, "payout") {
		t.Fatalf("an offline refund through the provider: %v", err)
	}
}

// Without a methods list, every method a provider takes is offered, as before methods were
// configuration: dev in development, any gateway method with a gateway.
func TestNoMethodsConfiguredKeepsTodaysBehaviour(t *testing.T) {
	f := newFixture(t, Options{Development: true}, false)
	if _, err := f.s.Charge(bg, certs.Charge{OrderID: "o1", Method: "dev", IdempotencyKey: "pay-00000001", AmountFen: 1}); err != nil {
		t.Fatal(err)
	}
	_, err := f.s.Charge(bg, certs.Charge{OrderID: "o1", Method: "wechat", IdempotencyKey: "pay-00000001", AmountFen: 1})
	wantInvalid(t, err, "method")
	g := newFixture(t, Options{}, true)
	for _, m := range []string{"wechat", "dev"} {
		if _, err := g.s.Charge(bg, certs.Charge{OrderID: "o1", Method: m, IdempotencyKey: "pay-00000001", AmountFen: 1}); err != nil {
			t.Fatal(err)
		}
	}
	if len(g.gw.charges) != 2 {
		t.Fatalf("production without methods: %v at the gateway", g.gw.charges)
	}
	if ms := g.s.methodsOf("demo"); len(ms) != 1 || ms[0] != Gateway {
		t.Fatalf("production offers %v", ms)
	}
}

func order(id string, price int64) *storepb.Order {
	return &storepb.Order{Id: id, UserId: "u1", PriceFen: price, Kind: int32(hufuv1.OrderKind_ORDER_KIND_NEW)}
}

func (f *fixture) update(t *testing.T, fn func(tx *store.Tx) error) {
	t.Helper()
	if err := f.st.Update(bg, func(tx *store.Tx) error {
		if err := fn(tx); err != nil {
			return err
		}
		return tx.Audit(store.Event{Actor: "test", Action: "test", Outcome: store.OutcomeOK})
	}); err != nil {
		t.Fatal(err)
	}
}

func TestPaidRefundedAndReturnedAreBalancedEntries(t *testing.T) {
	f := newFixture(t, Options{Development: true}, true)
	o := order("0000000000000000000001", 36000)
	o.PaymentRef = "gw-pay-1"
	// Paid (twice reported: one entry), then refunded after sales: the reversing entry.
	for range 2 {
		f.update(t, func(tx *store.Tx) error { return f.s.Paid(tx, o, "wechat", o.PaymentRef, "user:u1") })
	}
	var audited bool
	for range 2 {
		rev, err := f.s.RefundOrder(bg, o, "system:desk", func(tx *store.Tx) error {
			audited = true
			return tx.Audit(store.Event{Actor: "system:desk", Action: "aftersales.refund", Outcome: store.OutcomeOK})
		})
		if err != nil || rev == nil || rev.Debit != "revenue:certificates" || rev.Credit != "clearing:gateway" || rev.AmountFen != 36000 {
			t.Fatalf("refund: %+v %v", rev, err)
		}
	}
	if !audited || len(f.gw.refunds) != 2 {
		t.Fatalf("the gateway refunds idempotently by reference; asked %d times", len(f.gw.refunds))
	}
	// A charge that completed no order: the charge and its reversal.
	lost := order("0000000000000000000002", 20000)
	f.update(t, func(tx *store.Tx) error { return f.s.Returned(tx, lost, "dev", "dev-abc", "user:u1") })

	es, err := ledger.Entries(bg, f.st, o.Id)
	if err != nil || len(es) != 2 || es[0].Reverses != es[1].Id {
		t.Fatalf("entries of the refunded order: %v %v", es, err)
	}
	for acct, want := range map[string]int64{"clearing:gateway": 0, "clearing:dev": 0, "revenue:certificates": 0} {
		b, err := ledger.Balance(bg, f.st, acct)
		if err != nil || b.DebitsFen-b.CreditsFen != want {
			t.Fatalf("%s: %+v %v", acct, b, err)
		}
	}
	if n := testutil.CollectAndCount(f.reg, "hufu_ledger_entries_total"); n != 2 {
		t.Fatalf("%d kinds exported", n)
	}
	want := `
# HELP hufu_ledger_entries_total Ledger entries written, by kind (payment, refund, ...).
# TYPE hufu_ledger_entries_total counter
hufu_ledger_entries_total{kind="payment"} 2
hufu_ledger_entries_total{kind="refund"} 2
`
	if err := testutil.GatherAndCompare(f.reg, strings.NewReader(want), "hufu_ledger_entries_total"); err != nil {
		t.Fatal(err)
	}
}

func TestPendingGauge(t *testing.T) {
	f := newFixture(t, Options{}, false)
	f.update(t, func(tx *store.Tx) error {
		for i, st := range []int32{statePending, statePending, stateConfirmed, stateRejected} {
			id := strings.Repeat("0", 21) + string(rune('a'+i))
			if err := offline.Put(tx, "offline/"+id, &storepb.OfflinePayment{OrderId: id, State: st}); err != nil {
				return err
			}
		}
		return nil
	})
	if err := testutil.GatherAndCompare(f.reg, strings.NewReader(`
# HELP hufu_payments_offline_pending Offline payments awaiting the payment desk.
# TYPE hufu_payments_offline_pending gauge
hufu_payments_offline_pending 2
`), "hufu_payments_offline_pending"); err != nil {
		t.Fatal(err)
	}
}

func TestVerificationOrdersAreBookedAsVerification(t *testing.T) {
	f := newFixture(t, Options{Development: true}, false)
	o := order("0000000000000000000003", 100)
	o.Kind = int32(hufuv1.OrderKind_ORDER_KIND_ENTERPRISE_VERIFICATION)
	f.update(t, func(tx *store.Tx) error { return f.s.Paid(tx, o, "dev", "dev-1", "user:u1") })
	b, err := ledger.Balance(bg, f.st, "revenue:verification")
	if err != nil || b.CreditsFen != 100 || b.Entries != 1 {
		t.Fatalf("%+v %v", b, err)
	}
}
