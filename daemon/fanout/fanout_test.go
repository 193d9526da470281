package fanout

import (
	"fmt"
	"runtime"
	"sync/atomic"
	"testing"
	"time"
)

// TestRun: every item runs exactly once, and never on more goroutines at once than allowed,
// whatever the number of items and workers.
func TestRun(t *testing.T) {
	for _, tt := range []struct{ n, workers int }{
		{0, 4}, {1, 4}, {5, 1}, {5, 0}, {100, 3}, {3, 100},
	} {
		t.Run(fmt.Sprintf("n=%d,workers=%d", tt.n, tt.workers), func(t *testing.T) {
			limit := int32(min(max(tt.workers, 1), tt.n))
			calls := make([]atomic.Int32, tt.n)
			var arrived atomic.Int32
			release := make(chan struct{})
			done := make(chan struct{})
			go func() {
				defer close(done)
				Run(tt.n, tt.workers, func(i int) {
					calls[i].Add(1)
					// The first arrivals wait here, one per goroutine Run uses: one goroutine
					// beyond the limit would arrive as well.
					if arrived.Add(1) <= limit+1 {
						<-release
					}
				})
			}()
			for arrived.Load() < limit {
				runtime.Gosched()
			}
			time.Sleep(20 * time.Millisecond) // room for a goroutine beyond the limit to arrive
			if got := arrived.Load(); got != limit {
				t.Fatalf("%d items ran at once, limit %d", got, limit)
			}
			close(release)
			<-done
			for i := range calls {
				if c := calls[i].Load(); c != 1 {
					t.Fatalf("item %d ran %d times", i, c)
				}
			}
		})
	}
}
