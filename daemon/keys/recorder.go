package keys

import (
	"context"
	"errors"
	"sync"

	"github.com/hufu-hsm/hufu/daemon/apierr"
	"github.com/hufu-hsm/hufu/store"
)

// recorder commits the usage and audit records of concurrent operations together: the
// records queued while one commit syncs go into the next commit, in one store transaction,
// so a busy appliance pays one fsync (and one pass through the store's commit path) per group
// rather than per signature. An operation answers only after its records are durable.
//
// The commit runs on a caller's own goroutine, not a dedicated one: the first caller to find
// no commit running leads — it commits the queue, its own record first — and, if records
// were queued meanwhile, hands the lead to the oldest of their callers, which commits the
// next group with its own record in it. A lone call (concurrency 1) so pays no goroutine
// hand-off at all, where a dedicated committer cost two wake-ups per call (issue 18).
type recorder struct {
	store *store.Store

	mu      sync.Mutex
	pending []*pendingRecord
	leading bool // a caller is committing or has been handed the lead
	closed  bool // Run's context ended: the daemon is stopping
}

type pendingRecord struct {
	write func(tx *store.Tx) error
	done  chan recordResult // one value at a time: the lead, then the result; or the result
}

type recordResult struct {
	err  error
	lead bool // not a result: commit the next group, which holds this record
}

// maxGroup bounds one commit, so a flood cannot build an unbounded batch.
const maxGroup = 1024

func newRecorder(s *store.Store) *recorder {
	return &recorder{store: s}
}

// record queues write and waits until it is committed (or ctx ends: the record may still be
// committed, which errs on the side of an audit record for an unanswered call).
func (r *recorder) record(ctx context.Context, write func(tx *store.Tx) error) error {
	p := &pendingRecord{write: write, done: make(chan recordResult, 1)}
	r.mu.Lock()
	if r.closed {
		r.mu.Unlock()
		return apierr.New(apierr.Unavailable, "the appliance is stopping; retry on another")
	}
	r.pending = append(r.pending, p)
	lead := !r.leading
	r.leading = true
	r.mu.Unlock()
	if lead {
		r.commitNext()
	}
	for {
		select {
		case res := <-p.done:
			if !res.lead {
				return res.err
			}
			r.commitNext()
		case <-ctx.Done():
			// The record stays queued: if the lead comes to it, someone must take it.
			go r.follow(p)
			return ctx.Err()
		}
	}
}

// follow stands in for a caller that stopped waiting: it leads when handed the lead.
func (r *recorder) follow(p *pendingRecord) {
	for res := range p.done {
		if !res.lead {
			return
		}
		r.commitNext()
	}
}

// commitNext commits the oldest queued records, at most maxGroup, in one transaction; then
// answers their callers and hands the lead to the oldest record still queued, or gives it up.
// Only the leader calls it. The commit does not end with the leader's context (the group
// holds other callers' records), so a leader may answer up to one commit after its deadline.
func (r *recorder) commitNext() {
	r.mu.Lock()
	n := min(len(r.pending), maxGroup)
	group := r.pending[:n:n]
	r.pending = append([]*pendingRecord(nil), r.pending[n:]...)
	r.mu.Unlock()

	err := errors.New("keys: the record's commit panicked")
	// Whatever happens in the commit, the group is answered and the lead passed on: a panic
	// (the gRPC recovery interceptor catches it on a caller's goroutine) must not leave every
	// later call queued behind a leader that is gone.
	defer r.finish(group, &err)
	err = r.store.Update(context.Background(), func(tx *store.Tx) error {
		for _, p := range group {
			if err := p.write(tx); err != nil {
				return err
			}
		}
		return nil
	})
}

// finish answers a committed (or failed) group and hands the lead to the oldest record still
// queued, or gives it up.
func (r *recorder) finish(group []*pendingRecord, err *error) {
	r.mu.Lock()
	var next *pendingRecord
	if len(r.pending) > 0 {
		next = r.pending[0]
	} else {
		r.leading = false
	}
	r.mu.Unlock()
	for _, p := range group {
		p.done <- recordResult{err: *err}
	}
	if next != nil {
		next.done <- recordResult{lead: true}
	}
}

// run refuses new records once ctx ends (the daemon is stopping); records already queued
// are still committed by their callers.
func (r *recorder) run(ctx context.Context) {
	<-ctx.Done()
	r.mu.Lock()
	r.closed = true
	r.mu.Unlock()
}
