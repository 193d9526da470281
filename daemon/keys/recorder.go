package keys

import (
	"context"

	"github.com/hufu-hsm/hufu/store"
)

// recorder commits the usage and audit records of concurrent operations together: one
// goroutine takes every record queued while the previous commit was syncing and writes them
// in one store transaction, so a busy appliance pays one fsync (and one pass through the
// store's commit path) per group rather than per signature. An operation answers only after
// its records are durable, as before; what changes is how many share a sync.
type recorder struct {
	store *store.Store
	queue chan *pendingRecord
}

type pendingRecord struct {
	write func(tx *store.Tx) error
	done  chan error
}

// maxGroup bounds one commit, so a flood cannot build an unbounded batch.
const maxGroup = 1024

func newRecorder(s *store.Store) *recorder {
	return &recorder{store: s, queue: make(chan *pendingRecord, maxGroup)}
}

// record queues write and waits until it is committed (or ctx ends: the record may still be
// committed, which errs on the side of an audit record for an unanswered call).
func (r *recorder) record(ctx context.Context, write func(tx *store.Tx) error) error {
	p := &pendingRecord{write: write, done: make(chan error, 1)}
	select {
	case r.queue <- p:
	case <-ctx.Done():
		return ctx.Err()
	}
	select {
	case err := <-p.done:
		return err
	case <-ctx.Done():
		return ctx.Err()
	}
}

// run commits queued records until ctx ends.
func (r *recorder) run(ctx context.Context) {
	group := make([]*pendingRecord, 0, maxGroup)
	for {
		select {
		case <-ctx.Done():
			return
		case p := <-r.queue:
			group = append(group[:0], p)
		}
	drain:
		for len(group) < maxGroup {
			select {
			case p := <-r.queue:
				group = append(group, p)
			default:
				break drain
			}
		}
		err := r.store.Update(context.WithoutCancel(ctx), func(tx *store.Tx) error {
			for _, p := range group {
				if err := p.write(tx); err != nil {
					return err
				}
			}
			return nil
		})
		for _, p := range group {
			p.done <- err
		}
	}
}
