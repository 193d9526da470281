package ledger_test

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"sync"
	"testing"
	"time"

	"github.com/hufu-hsm/hufu/daemon/apierr"
	"github.com/hufu-hsm/hufu/daemon/commerce/ledger"
	"github.com/hufu-hsm/hufu/store"
	"github.com/hufu-hsm/hufu/store/storepb"
)

type clock struct{ now time.Time }

func (c *clock) Now() time.Time { return c.now }

type signer struct{ k *ecdsa.PrivateKey }

func (s signer) SignDigest(_ context.Context, d []byte) ([]byte, error) {
	return ecdsa.SignASN1(rand.Reader, s.k, d)
}
func (s signer) PublicKey() *ecdsa.PublicKey { return &s.k.PublicKey }

var bg = context.Background()

// openStore opens a real Pebble store in a temporary directory.
func openStore(t *testing.T) *store.Store {
	t.Helper()
	k, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	st, err := store.Open(bg, store.Options{Dir: t.TempDir(), Clock: &clock{now: time.Date(2026, 12, 1, 8, 0, 0, 0, time.UTC)},
		Signer: signer{k}, Logger: slog.New(slog.NewTextHandler(io.Discard, nil))})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		mustBalance(t, st)
		_ = st.Close(bg)
	})
	return st
}

func mustBalance(t *testing.T, st *store.Store) ledger.Report {
	t.Helper()
	r, err := ledger.Check(bg, st)
	if err != nil || !r.OK() {
		t.Fatalf("ledger check: %+v %v", r, err)
	}
	return r
}

func post(st *store.Store, e ledger.Entry) (*storepb.LedgerEntry, bool, error) {
	var out *storepb.LedgerEntry
	var created bool
	err := st.Update(bg, func(tx *store.Tx) error {
		var err error
		out, created, err = ledger.Post(tx, e)
		return err
	})
	return out, created, err
}

func payment(idem string) ledger.Entry {
	return ledger.Entry{Debit: "clearing:dev", Credit: "revenue:certificates", AmountFen: 20000, OrderID: "0123456789abcdef012345",
		IdempotencyKey: idem, Kind: "payment", Memo: "certificate order", Actor: "user:u1"}
}

func TestPostIsIdempotentAndBalances(t *testing.T) {
	st := openStore(t)
	first, created, err := post(st, payment("pay-1"))
	if err != nil || !created {
		t.Fatalf("first post: %v %v", created, err)
	}
	again, created, err := post(st, payment("pay-1"))
	if err != nil || created || again.Id != first.Id {
		t.Fatalf("repeat: created %v id %s want %s err %v", created, again.GetId(), first.Id, err)
	}
	changed := payment("pay-1")
	changed.AmountFen = 1
	_, _, err = post(st, changed)
	var ae *apierr.Error
	if !errors.As(err, &ae) || ae.Kind != apierr.AlreadyExists || !errors.Is(err, ledger.ErrConflict) {
		t.Fatalf("same key, other amount: %v", err)
	}
	r := mustBalance(t, st)
	if r.Entries != 1 || r.DebitsFen != 20000 || r.Accounts != 2 {
		t.Fatalf("report %+v", r)
	}
	b, err := ledger.Balance(bg, st, "clearing:dev")
	if err != nil || b.DebitsFen-b.CreditsFen != 20000 || b.Entries != 1 {
		t.Fatalf("clearing balance %+v %v", b, err)
	}
}

func TestPostRefusesBadEntriesNamingTheField(t *testing.T) {
	st := openStore(t)
	for _, tc := range []struct {
		name, field string
		edit        func(*ledger.Entry)
	}{
		{"unknown account class", "debit", func(e *ledger.Entry) { e.Debit = "bank:x" }},
		{"personal data in account", "credit", func(e *ledger.Entry) { e.Credit = "user:张三" }},
		{"same accounts", "credit", func(e *ledger.Entry) { e.Credit = e.Debit }},
		{"zero", "amount_fen", func(e *ledger.Entry) { e.AmountFen = 0 }},
		{"negative", "amount_fen", func(e *ledger.Entry) { e.AmountFen = -5 }},
		{"too large", "amount_fen", func(e *ledger.Entry) { e.AmountFen = ledger.MaxAmountFen + 1 }},
		{"order and session", "session_id", func(e *ledger.Entry) { e.SessionID = "s1" }},
		{"no key", "idempotency_key", func(e *ledger.Entry) { e.IdempotencyKey = "" }},
		{"bad kind", "kind", func(e *ledger.Entry) { e.Kind = "Pay Ment" }},
		{"long memo", "memo", func(e *ledger.Entry) {
			for range 201 {
				e.Memo += "字"
			}
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			e := payment("k-" + tc.name)
			tc.edit(&e)
			_, _, err := post(st, e)
			if !isInvalid(err, tc.field) {
				t.Fatalf("got %v, want InvalidArgument on %s", err, tc.field)
			}
		})
	}
	if r := mustBalance(t, st); r.Entries != 0 {
		t.Fatalf("a refused entry was written: %+v", r)
	}
}

func isInvalid(err error, field string) bool {
	var ae *apierr.Error
	return errors.As(err, &ae) && ae.Kind == apierr.InvalidArgument && ae.Field == field
}

func TestReverseOnceAndTheEntriesOfAnOrder(t *testing.T) {
	st := openStore(t)
	orig, _, err := post(st, payment("pay-1"))
	if err != nil {
		t.Fatal(err)
	}
	reverse := func(idem string) (*storepb.LedgerEntry, bool, error) {
		var out *storepb.LedgerEntry
		var created bool
		err := st.Update(bg, func(tx *store.Tx) error {
			var err error
			out, created, err = ledger.Reverse(tx, orig.Id, "", idem, "refund", "system:desk")
			return err
		})
		return out, created, err
	}
	rev, created, err := reverse("refund-1")
	if err != nil || !created || rev.Debit != orig.Credit || rev.Credit != orig.Debit || rev.Reverses != orig.Id || rev.Kind != "refund" {
		t.Fatalf("reversal %+v %v %v", rev, created, err)
	}
	if again, created, err := reverse("refund-1"); err != nil || created || again.Id != rev.Id {
		t.Fatalf("repeated reversal: %v %v", created, err)
	}
	if _, _, err := reverse("refund-2"); !errors.Is(err, ledger.ErrReversed) {
		t.Fatalf("second reversal with another key: %v", err)
	}
	es, err := ledger.Entries(bg, st, orig.OrderId)
	if err != nil || len(es) != 2 || es[0].Id != rev.Id {
		t.Fatalf("entries of the order: %v %v", es, err)
	}
	b, _ := ledger.Balance(bg, st, "clearing:dev")
	if b.DebitsFen != b.CreditsFen || b.Entries != 2 {
		t.Fatalf("after the refund the provider holds nothing: %+v", b)
	}
}

// TestReverseViaAPayableAndThePayout: an offline payment's refund is owed (payable) until the
// payout moves it out of the clearing account; it is the entry's one reversal.
func TestReverseViaAPayableAndThePayout(t *testing.T) {
	st := openStore(t)
	pay := payment("pay-offline-1")
	pay.Debit = "clearing:offline"
	orig, _, err := post(st, pay)
	if err != nil {
		t.Fatal(err)
	}
	via := func(account, idem string) (*storepb.LedgerEntry, error) {
		var out *storepb.LedgerEntry
		err := st.Update(bg, func(tx *store.Tx) error {
			var err error
			out, _, err = ledger.ReverseVia(tx, orig.Id, account, "refund", idem, "refund owed", "system:desk")
			return err
		})
		return out, err
	}
	if _, err := via("clearing:dev", "refund-x"); !isInvalid(err, "credit") {
		t.Fatalf("a reversal via a clearing account: %v", err)
	}
	due, err := via("payable:offline-refunds", "refund-1")
	if err != nil || due.Debit != orig.Credit || due.Credit != "payable:offline-refunds" || due.Reverses != orig.Id {
		t.Fatalf("refund owed: %+v %v", due, err)
	}
	if again, err := via("payable:offline-refunds", "refund-1"); err != nil || again.Id != due.Id {
		t.Fatalf("repeated: %v %v", again, err)
	}
	if _, err := via("payable:offline-refunds", "refund-2"); !errors.Is(err, ledger.ErrReversed) {
		t.Fatalf("a second reversal: %v", err)
	}
	held, _ := ledger.Balance(bg, st, "clearing:offline")
	if held.DebitsFen-held.CreditsFen != orig.AmountFen {
		t.Fatalf("before the payout the counter still holds the money: %+v", held)
	}
	if _, _, err := post(st, ledger.Entry{Debit: "payable:offline-refunds", Credit: "clearing:offline", AmountFen: orig.AmountFen,
		OrderID: orig.OrderId, IdempotencyKey: "payout-1", Kind: "payout", Actor: "system:desk"}); err != nil {
		t.Fatal(err)
	}
	for _, account := range []string{"clearing:offline", "payable:offline-refunds", "revenue:certificates"} {
		if b, _ := ledger.Balance(bg, st, account); b.DebitsFen != b.CreditsFen {
			t.Errorf("%s after the payout: %+v", account, b)
		}
	}
}

// TestAFailedTransactionWritesNoEntry: the entry commits with the caller's state change or
// not at all.
func TestAFailedTransactionWritesNoEntry(t *testing.T) {
	st := openStore(t)
	boom := errors.New("state change refused")
	err := st.Update(bg, func(tx *store.Tx) error {
		if _, _, err := ledger.Post(tx, payment("pay-1")); err != nil {
			return err
		}
		return boom
	})
	if !errors.Is(err, boom) {
		t.Fatal(err)
	}
	if r := mustBalance(t, st); r.Entries != 0 || r.Accounts != 0 {
		t.Fatalf("rolled back entry is in the books: %+v", r)
	}
	if _, created, err := post(st, payment("pay-1")); err != nil || !created {
		t.Fatalf("the key is free after a rollback: %v %v", created, err)
	}
}

func TestConcurrentPostsOfOneKeyWriteOneEntry(t *testing.T) {
	st := openStore(t)
	var wg sync.WaitGroup
	var mu sync.Mutex
	n := 0
	for range 16 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			_, created, err := post(st, payment("pay-race"))
			if err != nil {
				t.Error(err)
			}
			if created {
				mu.Lock()
				n++
				mu.Unlock()
			}
		}()
	}
	wg.Wait()
	if r := mustBalance(t, st); n != 1 || r.Entries != 1 {
		t.Fatalf("created %d, entries %d", n, r.Entries)
	}
}

// TestCheckFindsTamperedBalances edits a balance behind the ledger's back.
func TestCheckFindsTamperedBalances(t *testing.T) {
	k, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	st, err := store.Open(bg, store.Options{Dir: t.TempDir(), Signer: signer{k}, Logger: slog.New(slog.NewTextHandler(io.Discard, nil))})
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close(bg)
	for i := range 3 {
		if _, _, err := post(st, payment(fmt.Sprint("p", i))); err != nil {
			t.Fatal(err)
		}
	}
	err = st.Update(bg, func(tx *store.Tx) error {
		b := new(storepb.LedgerBalance)
		if err := tx.Get("l/balance/clearing:dev", b); err != nil {
			return err
		}
		b.DebitsFen++
		if err := tx.Put("l/balance/clearing:dev", b); err != nil {
			return err
		}
		return tx.Audit(store.Event{Actor: "test", Action: "tamper", Subject: "l/balance/clearing:dev", Outcome: store.OutcomeOK})
	})
	if err != nil {
		t.Fatal(err)
	}
	r, err := ledger.Check(bg, st)
	if err != nil || r.OK() || len(r.Problems) != 2 {
		t.Fatalf("want the account and the totals reported: %+v %v", r, err)
	}
}

func TestKindCounts(t *testing.T) {
	st := openStore(t)
	for i := range 3 {
		if _, _, err := post(st, payment(fmt.Sprint("p", i))); err != nil {
			t.Fatal(err)
		}
	}
	got, err := ledger.KindCounts(bg, st)
	if err != nil || got["payment"] != 3 || len(got) != 1 {
		t.Fatalf("%v %v", got, err)
	}
}
