package openings

import (
	"context"
	"testing"
)

// TestEnvelopeKeysOverflow: past its limit the set keeps no keys and sends every key to the
// store, rather than growing without bound or answering for keys it could not keep.
func TestEnvelopeKeysOverflow(t *testing.T) {
	ctx := context.Background()
	k := newEnvelopeKeys(2)
	k.loaded = true // as after loading an empty index; a loaded set reads no store
	k.add("key-a", "key-b")
	for id, want := range map[string]bool{"key-a": true, "key-b": true, "key-c": false} {
		if got := k.mayHave(ctx, nil, id); got != want {
			t.Fatalf("within the limit, mayHave(%s) = %v, want %v", id, got, want)
		}
	}
	k.add("key-c", "key-d", "key-e") // past the limit in the middle of one registration
	if !k.overflow || k.keys != nil {
		t.Fatalf("past the limit: overflow %v with %d keys kept", k.overflow, len(k.keys))
	}
	k.add("key-f")
	for _, id := range []string{"key-a", "key-f", "key-z"} {
		if !k.mayHave(ctx, nil, id) {
			t.Fatalf("after overflowing, mayHave(%s) = false: a key would skip the store", id)
		}
	}
}
