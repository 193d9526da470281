package store

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/hufu-hsm/hufu/store/storepb"
)

// TestDeleteDropsTheExpiryEntry: deleting an expiring record also deletes its entry in the
// expiry index, whose key names the record's key (an account deletion must leave no key
// naming the deleted phone number).
func TestDeleteDropsTheExpiryEntry(t *testing.T) {
	ts := openTest(t)
	ctx := context.Background()
	exp := ts.clock.Now().Add(time.Hour)
	update := func(fn func(tx *Tx) error) {
		t.Helper()
		if err := ts.Update(ctx, func(tx *Tx) error {
			if err := fn(tx); err != nil {
				return err
			}
			return tx.Audit(Event{Actor: "test", Action: "test", Outcome: OutcomeOK})
		}); err != nil {
			t.Fatal(err)
		}
	}
	update(func(tx *Tx) error {
		return examples.Put(tx, "13800138000", &storepb.Example{Name: "x"}, ExpiresAt(exp))
	})
	ttlEntries := func() int {
		n := 0
		it, err := ts.db.NewIter(nil)
		if err != nil {
			t.Fatal(err)
		}
		defer it.Close()
		for it.First(); it.Valid(); it.Next() {
			if strings.HasPrefix(string(it.Key()), "t/") && strings.Contains(string(it.Key()), "13800138000") {
				n++
			}
		}
		return n
	}
	if n := ttlEntries(); n != 1 {
		t.Fatalf("expiry entries before delete: %d", n)
	}
	update(func(tx *Tx) error { return examples.Delete(tx, "13800138000") })
	if n := ttlEntries(); n != 0 {
		t.Fatalf("expiry entries after delete: %d", n)
	}
}
