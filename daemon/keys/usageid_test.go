package keys

import (
	"regexp"
	"testing"
	"time"
)

// TestUsageIDOrder: usage ids have the documented shape and list newest first, also within
// one nanosecond.
func TestUsageIDOrder(t *testing.T) {
	shape := regexp.MustCompile(`^key-1/usage/[0-9a-f]{16}-[0-9a-f]{16}-[0-9a-f]{4}$`)
	t0 := time.Unix(1_800_000_000, 5)
	ids := []string{usageID("key-1", t0.Add(time.Second)), usageID("key-1", t0), usageID("key-1", t0)}
	for _, id := range ids {
		if !shape.MatchString(id) {
			t.Fatalf("usage id %q has the wrong shape", id)
		}
	}
	// Newest first: the later time, then the later of two in the same nanosecond.
	if !(ids[0] < ids[2] && ids[2] < ids[1]) {
		t.Fatalf("usage ids out of order: %q", ids)
	}
}
