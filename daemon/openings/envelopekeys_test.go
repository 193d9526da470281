package openings

import (
	"context"
	"testing"
	"time"

	"github.com/hufu-hsm/hufu/store"
)

// TestEnvelopeKeysOverflow: past its limit the set keeps no keys and sends every key to the
// store, rather than growing without bound or answering for keys it could not keep.
func TestEnvelopeKeysOverflow(t *testing.T) {
	ctx := context.Background()
	k := newEnvelopeKeys(2)
	k.loaded = true // as after loading an empty index; a loaded set reads no store
	k.add("key-a", "key-b")
	for id, want := range map[string]bool{"key-a": true, "key-b": true, "key-c": false} {
		if got := k.mayHave(ctx, nil, time.Time{}, id); got != want {
			t.Fatalf("within the limit, mayHave(%s) = %v, want %v", id, got, want)
		}
	}
	k.add("key-c", "key-d", "key-e") // past the limit in the middle of one registration
	if !k.overflow || k.keys != nil || k.size() != -1 {
		t.Fatalf("past the limit: overflow %v with %d keys kept, gauge %v", k.overflow, len(k.keys), k.size())
	}
	k.add("key-f")
	for _, id := range []string{"key-a", "key-f", "key-z"} {
		if !k.mayHave(ctx, nil, time.Time{}, id) {
			t.Fatalf("after overflowing, mayHave(%s) = false: a key would skip the store", id)
		}
	}
}

// TestEnvelopeKeysLoad: a load reads the index and keeps the keys added meanwhile; a load
// that fails leaves the set unloaded (every key is looked up) and is not tried again before
// envelopeKeysRetry.
func TestEnvelopeKeysLoad(t *testing.T) {
	ctx := context.Background()
	st, err := store.Open(ctx, store.Options{Dir: t.TempDir()})
	if err != nil {
		t.Fatal(err)
	}
	err = st.Update(ctx, func(tx *store.Tx) error {
		if err := tx.AddIndex(indexKey, "key-filed", openingKey("o1")); err != nil {
			return err
		}
		return tx.Audit(store.Event{Action: "test.register", Outcome: store.OutcomeOK})
	})
	if err != nil {
		t.Fatal(err)
	}
	t0 := time.Unix(1_800_000_000, 0)

	k := newEnvelopeKeys(maxEnvelopeKeys)
	k.add("key-adding") // a registration under way while the set loads
	if k.size() != -1 {
		t.Fatalf("before the set is loaded, its gauge reads %v, want -1", k.size())
	}
	if !k.mayHave(ctx, st, t0, "key-free") {
		t.Fatal("before the set is loaded, a key is answered free")
	}
	if k.size() != 2 {
		t.Fatalf("loaded with one key filed and one being added, the gauge reads %v", k.size())
	}
	for id, want := range map[string]bool{"key-filed": true, "key-adding": true, "key-free": false} {
		if got := k.mayHave(ctx, st, t0, id); got != want {
			t.Fatalf("loaded: mayHave(%s) = %v, want %v", id, got, want)
		}
	}

	failing := newEnvelopeKeys(maxEnvelopeKeys)
	if err := st.Close(ctx); err != nil {
		t.Fatal(err)
	}
	failing.mayHave(ctx, st, t0, "key-free") // the load fails on the closed store
	if failing.loaded || !failing.retryAt.Equal(t0.Add(envelopeKeysRetry)) {
		t.Fatalf("after a failed load: loaded %v, retry at %v", failing.loaded, failing.retryAt)
	}
	if !failing.mayHave(ctx, st, t0.Add(time.Second), "key-free") {
		t.Fatal("an unloaded set answers a key free")
	}
	if !failing.retryAt.Equal(t0.Add(envelopeKeysRetry)) {
		t.Fatal("a load was tried again before envelopeKeysRetry")
	}
	failing.mayHave(ctx, st, t0.Add(envelopeKeysRetry), "key-free")
	if !failing.retryAt.Equal(t0.Add(2 * envelopeKeysRetry)) {
		t.Fatalf("no load tried again after envelopeKeysRetry: retry at %v", failing.retryAt)
	}
}
