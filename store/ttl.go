package store

import (
	"context"
	"fmt"
	"strconv"
	"strings"
	"time"

	"github.com/cockroachdb/pebble/v2"
)

// SweepBatch is how many due expiry entries one sweep transaction handles.
const SweepBatch = 500

type dueEntry struct {
	ttlKey string
	key    string
	exp    int64
}

// Sweep deletes records whose expiry has passed (by the store's clock) and returns how
// many it deleted. Expired records are already invisible to every read; sweeping only
// reclaims space. Each batch of deletions is one audited transaction (action
// "store.sweep"), so the log accounts for every removal.
func (s *Store) Sweep(ctx context.Context) (int, error) {
	total := 0
	for {
		due, err := s.dueEntries(ctx)
		if err != nil || len(due) == 0 {
			return total, err
		}
		deleted := 0
		err = s.Update(ctx, func(tx *Tx) error {
			deleted = 0
			for _, d := range due {
				v, ok, err := tx.read(d.key)
				if err != nil {
					return err
				}
				if ok {
					env, err := decodeEnvelope(v)
					// Only delete the record this entry was written for: a rewrite with
					// another expiry (or none) has its own fate.
					if err == nil && env.hasExp && env.expires == d.exp && !env.live(tx.now.UnixNano()) {
						tx.write(d.key, nil)
						deleted++
					}
				}
				tx.write(d.ttlKey, nil)
			}
			return tx.Audit(Event{
				Actor: "store", Action: "store.sweep", Outcome: OutcomeOK,
				Details: map[string]string{
					"deleted": strconv.Itoa(deleted),
					"entries": strconv.Itoa(len(due)),
				},
			})
		})
		if err != nil {
			return total, fmt.Errorf("store: sweep: %w", err)
		}
		total += deleted
		if len(due) < SweepBatch {
			return total, nil
		}
	}
}

func (s *Store) dueEntries(ctx context.Context) ([]dueEntry, error) {
	if err := s.enter(); err != nil {
		return nil, err
	}
	defer s.leave()
	now := s.clock.Now().UnixNano()
	// Expiry is exclusive: an entry with expiry <= now is due.
	upper := ttlPfx + hex16(uint64(max(now, 0))+1)
	it, err := s.db.NewIterWithContext(ctx, &pebble.IterOptions{LowerBound: []byte(ttlPfx), UpperBound: []byte(upper)})
	if err != nil {
		return nil, fmt.Errorf("store: sweep scan: %w", err)
	}
	defer it.Close()
	var due []dueEntry
	for ok := it.First(); ok && len(due) < SweepBatch; ok = it.Next() {
		k := string(it.Key())
		expHex, key, found := strings.Cut(k[len(ttlPfx):], "/")
		exp, ok := parseHex16(expHex)
		if !found || !ok {
			return nil, fmt.Errorf("%w: expiry index key %q", ErrCorrupt, k)
		}
		due = append(due, dueEntry{ttlKey: k, key: key, exp: int64(exp)})
	}
	return due, it.Error()
}

// RunSweeper sweeps every interval until ctx is done. Errors are logged, not fatal: the
// next round retries.
func (s *Store) RunSweeper(ctx context.Context, interval time.Duration) {
	t := time.NewTicker(interval)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
			if n, err := s.Sweep(ctx); err != nil {
				s.log.Error("store sweep failed", "err", err)
			} else if n > 0 {
				s.log.Debug("store sweep", "deleted", n)
			}
		}
	}
}
