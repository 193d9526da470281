package store

import (
	"context"
	"errors"
	"fmt"
	"testing"
	"time"

	"github.com/hufu-hsm/hufu/store/storepb"
)

// TestLockedReadsFollowCommits: a record read inside a transaction (and so cached) is read
// afresh after any later commit that changed it, whichever way the commit changed it.
func TestLockedReadsFollowCommits(t *testing.T) {
	ctx := context.Background()
	audit := func(tx *Tx) error {
		return tx.Audit(Event{Actor: "t", Action: "example.change", Subject: "a", Outcome: OutcomeOK})
	}
	tests := []struct {
		name    string
		change  func(tx *Tx) error
		advance time.Duration
		want    int64 // -1: not found
	}{
		{"put", func(tx *Tx) error {
			if err := examples.Put(tx, "a", &storepb.Example{Count: 2}); err != nil {
				return err
			}
			return audit(tx)
		}, 0, 2},
		{"delete", func(tx *Tx) error {
			if err := examples.Delete(tx, "a"); err != nil {
				return err
			}
			return audit(tx)
		}, 0, -1},
		{"put in a refused transaction", func(tx *Tx) error {
			if err := examples.Put(tx, "a", &storepb.Example{Count: 3}); err != nil {
				return err
			}
			if err := audit(tx); err != nil {
				return err
			}
			return Refuse(errBoom)
		}, 0, 3},
		{"failed transaction changes nothing", func(tx *Tx) error {
			if err := examples.Put(tx, "a", &storepb.Example{Count: 4}); err != nil {
				return err
			}
			return errBoom
		}, 0, 1},
		{"put with an expiry that passes", func(tx *Tx) error {
			if err := examples.Put(tx, "a", &storepb.Example{Count: 5}, ExpiresAt(tx.Now().Add(time.Minute))); err != nil {
				return err
			}
			return audit(tx)
		}, 2 * time.Minute, -1},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			ts := openTest(t)
			putExample(t, ts.Store, "a", &storepb.Example{Count: 1})
			read := func() int64 {
				t.Helper()
				var got int64 = -1
				err := ts.Update(ctx, func(tx *Tx) error {
					ex, err := examples.Get(tx, "a")
					if errors.Is(err, ErrNotFound) {
						return nil
					}
					got = ex.Count
					return err
				})
				if err != nil {
					t.Fatal(err)
				}
				return got
			}
			if got := read(); got != 1 {
				t.Fatalf("first read: count %d, want 1", got)
			}
			if _, ok := ts.reads.get(mustKey(t, "a")); !ok {
				t.Fatal("a record read in a transaction is not cached")
			}
			err := ts.Update(ctx, tt.change)
			if err != nil && !errors.Is(err, errBoom) {
				t.Fatal(err)
			}
			ts.clock.Advance(tt.advance)
			if got := read(); got != tt.want {
				t.Fatalf("read after the change: count %d, want %d", got, tt.want)
			}
			if got, err := examples.Read(ctx, ts.Store, "a"); tt.want >= 0 && (err != nil || got.Count != tt.want) {
				t.Fatalf("Store.Get after the change: %v, %v; want count %d", got, err, tt.want)
			}
		})
	}
}

// TestLockedReadsBounded: the cache keeps within its byte budget, dropping entries for new
// ones, and keeps no record larger than maxLockedRead.
func TestLockedReadsBounded(t *testing.T) {
	c := newLockedReads(30) // three entries of a 1-byte key and a 9-byte value
	for i := range 10 {
		c.put(fmt.Sprint(i), make([]byte, 9))
		if c.bytes > 30 || len(c.entries) > 3 {
			t.Fatalf("after %d puts the cache holds %d entries, %d bytes; budget 30", i+1, len(c.entries), c.bytes)
		}
	}
	if _, ok := c.get("9"); !ok {
		t.Fatal("the newest entry is missing")
	}
	c.put("9", make([]byte, 4)) // replacing an entry counts it once
	if want := 2*10 + 5; c.bytes != want {
		t.Fatalf("after replacing an entry the cache counts %d bytes, want %d", c.bytes, want)
	}
	c.drop([]string{"9"})
	if _, ok := c.get("9"); ok || c.bytes != 20 {
		t.Fatalf("a dropped entry is still there, or still counted (%d bytes)", c.bytes)
	}
	big := newLockedReads(1 << 30)
	big.put("big", make([]byte, maxLockedRead+1))
	if _, ok := big.get("big"); ok {
		t.Fatal("a record larger than maxLockedRead was cached")
	}
	c.clear()
	if len(c.entries) != 0 || c.bytes != 0 {
		t.Fatal("clear left entries")
	}
}

func mustKey(t *testing.T, id string) string {
	t.Helper()
	k, err := examples.Key(id)
	if err != nil {
		t.Fatal(err)
	}
	return k
}
