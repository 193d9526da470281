package store

import (
	"context"
	"fmt"

	"github.com/cockroachdb/pebble/v2"
)

// Backup writes a consistent copy of the store to dir, which must not exist: a Pebble
// checkpoint (hard links where possible, WAL flushed first). The backup is itself audited
// (action "store.backup" by actor, outcome "started", recorded before the copy so the
// backup contains its own record; a failure is recorded after it) and, with a signer, a checkpoint over the whole log is written first, so
// opening the backup gives the same data and an audit log that verifies to its end. On
// error Pebble removes dir: there is never a partial backup.
func (s *Store) Backup(ctx context.Context, dir, actor string) error {
	if err := s.Append(ctx, Event{Actor: actor, Action: "store.backup", Subject: dir, Outcome: "started"}); err != nil {
		return fmt.Errorf("store: backup: %w", err)
	}
	err := s.backup(ctx, dir)
	if err != nil {
		// Best effort: the failure is reported to the caller in any case.
		_ = s.Append(ctx, Event{Actor: actor, Action: "store.backup", Subject: dir, Outcome: OutcomeFailed,
			Details: map[string]string{"error": err.Error()}})
	}
	return err
}

func (s *Store) backup(ctx context.Context, dir string) error {
	if err := s.enter(); err != nil {
		return err
	}
	defer s.leave()
	if s.opts.Signer != nil {
		if _, err := s.checkpoint(ctx); err != nil {
			return fmt.Errorf("store: backup: %w", err)
		}
	}
	if err := s.db.Checkpoint(dir, pebble.WithFlushedWAL()); err != nil {
		return fmt.Errorf("store: backup to %s: %w", dir, err)
	}
	return nil
}
