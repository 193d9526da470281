// Package fanout runs the items of a batch on a bounded number of goroutines: a signing or
// decryption batch (daemon/keys) and a bid opening's bulk release (daemon/openings).
package fanout

import (
	"sync"
	"sync/atomic"
)

// Run calls fn(i) for every i in [0, n) on at most workers goroutines and returns when all
// calls have returned. The calling goroutine is one of the workers: in the daemon it is a
// gRPC stream worker whose stack has grown through the curve arithmetic already, where a
// fresh goroutine's stack grows again on every batch (issue 18). workers below 1 counts as 1.
func Run(n, workers int, fn func(i int)) {
	var next atomic.Int64
	work := func() {
		for i := int(next.Add(1) - 1); i < n; i = int(next.Add(1) - 1) {
			fn(i)
		}
	}
	var wg sync.WaitGroup
	for range min(workers, n) - 1 {
		wg.Go(work)
	}
	work()
	wg.Wait()
}
