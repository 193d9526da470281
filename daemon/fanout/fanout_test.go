package fanout

import (
	"fmt"
	"sync"
	"sync/atomic"
	"testing"
)

// TestRun: every item runs exactly once, never on more goroutines than allowed, whatever
// the number of items and workers.
func TestRun(t *testing.T) {
	for _, tt := range []struct{ n, workers int }{
		{0, 4}, {1, 4}, {5, 1}, {5, 0}, {100, 3}, {3, 100},
	} {
		t.Run(fmt.Sprintf("n=%d,workers=%d", tt.n, tt.workers), func(t *testing.T) {
			calls := make([]atomic.Int32, tt.n)
			var running, most atomic.Int32
			var gate sync.Mutex // widens the window in which workers overlap
			Run(tt.n, tt.workers, func(i int) {
				now := running.Add(1)
				for m := most.Load(); now > m && !most.CompareAndSwap(m, now); m = most.Load() {
				}
				gate.Lock()
				calls[i].Add(1)
				gate.Unlock()
				running.Add(-1)
			})
			for i := range calls {
				if c := calls[i].Load(); c != 1 {
					t.Fatalf("item %d ran %d times", i, c)
				}
			}
			if limit := int32(max(tt.workers, 1)); most.Load() > limit {
				t.Fatalf("%d items ran at once, limit %d", most.Load(), limit)
			}
		})
	}
}
