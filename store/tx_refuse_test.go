package store

import (
	"context"
	"errors"
	"testing"

	"github.com/hufu-hsm/hufu/store/storepb"
)

func TestRefuseCommitsAndReturnsTheDenial(t *testing.T) {
	s := openTest(t).Store
	ctx := context.Background()
	denied := errors.New("wrong PIN")
	examples := NewCollection(KindUser, func() *storepb.Example { return new(storepb.Example) })
	err := s.Update(ctx, func(tx *Tx) error {
		if err := examples.Put(tx, "failures", &storepb.Example{Name: "1"}); err != nil {
			return err
		}
		if err := tx.Audit(Event{Actor: "test", Action: "pin.verify", Outcome: "denied"}); err != nil {
			return err
		}
		return Refuse(denied)
	})
	if !errors.Is(err, denied) {
		t.Fatalf("got %v, want the denial", err)
	}
	if got, err := examples.Read(ctx, s, "failures"); err != nil || got.Name != "1" {
		t.Fatalf("the refused transaction's write is missing: %v", err)
	}
	if seq, _ := s.Head(); seq == 0 {
		t.Fatal("the denial's audit record is missing")
	}
	// A plain error still discards everything.
	err = s.Update(ctx, func(tx *Tx) error {
		if err := examples.Put(tx, "discarded", &storepb.Example{Name: "x"}); err != nil {
			return err
		}
		return denied
	})
	if _, rerr := examples.Read(ctx, s, "discarded"); !errors.Is(err, denied) || !errors.Is(rerr, ErrNotFound) {
		t.Fatalf("plain error: %v, read: %v", err, rerr)
	}
}

func TestRefuseNothingIsSuccess(t *testing.T) {
	if Refuse(nil) != nil {
		t.Fatal("Refuse(nil) must be nil")
	}
}

// TestUpdateSurvivesAPanickingTransaction: a transaction function that panics (a bug, or an
// HSM binding that panics, caught further up by the gRPC recovery interceptor) releases its
// key locks and the store's operation lock: the next transaction on the same key commits,
// and Close does not hang.
func TestUpdateSurvivesAPanickingTransaction(t *testing.T) {
	ts := openTest(t)
	func() {
		defer func() {
			if recover() == nil {
				t.Fatal("the transaction did not panic")
			}
		}()
		_ = ts.Update(t.Context(), func(tx *Tx) error {
			if err := examples.Put(tx, "panicky", &storepb.Example{Name: "never"}); err != nil {
				return err
			}
			panic("injected: a transaction that panics while holding its key")
		})
	}()
	putExample(t, ts.Store, "panicky", &storepb.Example{Name: "after"})
	if err := ts.Store.Close(t.Context()); err != nil {
		t.Fatal(err)
	}
	ts.Store = nil
}
