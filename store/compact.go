package store

import (
	"context"
	"fmt"
	"time"
)

// Erasing deleted values from the files. A deleted or overwritten value (the wrapped share
// of a revoked key, say) stays in Pebble's files until a compaction drops it and the files
// holding it are deleted, and in the write-ahead logs until they are deleted; Pebble even
// keeps a few obsolete logs to recycle, overwriting them from the start, so their old
// tails survive. CompactAll ends all of that at once for the KEK erasure (admin/erasure.go).

// scrubLogRotations is how many times CompactAll starts a new write-ahead log after the
// compaction. Pebble keeps at most MemTableStopWritesThreshold+1 (3 with the store's
// defaults) obsolete logs for recycling, takes the oldest first, and adds the log it leaves
// behind; with recycling refused, each rotation deletes one kept log, so 3 rotations for
// the kept ones and 2 for the logs that were live when CompactAll started leave only logs
// created after it began.
const scrubLogRotations = 5

// compactionPoll is how often CompactAll looks whether Pebble has deleted the files the
// compaction made obsolete (it deletes them in the background).
const compactionPoll = 10 * time.Millisecond

// CompactAll makes every deleted or overwritten value leave the store's files: it flushes
// the memtable, compacts the whole key space (so no table keeps a value a newer write or a
// deletion shadows), starts new write-ahead logs without recycling old ones, and waits
// until Pebble has deleted the obsolete tables. An open iterator or snapshot keeps the
// tables it reads; CompactAll then waits for it until ctx ends and says so. Writes go on
// meanwhile. It takes time in proportion to the store's size.
func (s *Store) CompactAll(ctx context.Context) error {
	if err := s.enter(); err != nil {
		return err
	}
	defer s.leave()
	s.space.noWALReuse.Store(true)
	defer s.space.noWALReuse.Store(false)
	if err := s.db.Flush(); err != nil {
		return fmt.Errorf("store: compact: flush: %w", markNoSpace(err))
	}
	if err := s.db.Compact(ctx, []byte{0x00}, []byte{0xff}, true); err != nil {
		return fmt.Errorf("store: compact: %w", markNoSpace(err))
	}
	for range scrubLogRotations {
		if err := s.db.Flush(); err != nil {
			return fmt.Errorf("store: compact: new log: %w", markNoSpace(err))
		}
	}
	tick := time.NewTicker(compactionPoll)
	defer tick.Stop()
	for {
		m := s.db.Metrics()
		if m.Table.ObsoleteCount == 0 && m.Table.ZombieCount == 0 {
			return nil
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("store: compact: %d obsolete and %d still-read tables not deleted yet: %w",
				m.Table.ObsoleteCount, m.Table.ZombieCount, ctx.Err())
		case <-tick.C:
		}
	}
}
