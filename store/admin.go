package store

import (
	"context"
	"encoding/base64"
	"fmt"

	"github.com/cockroachdb/pebble/v2"
)

// This file holds the read-only views the admin surface needs beyond domain listings: the
// signed checkpoints, and the keys (not values) under a prefix, for maintenance jobs that
// walk one record type in a kind that holds several (KEK rotation walks k/<key id> but not
// k/<key id>/usage/...).

// Checkpoints returns up to limit signed checkpoints with Size > after, oldest first, from
// one snapshot. limit is 1..MaxListLimit.
func (s *Store) Checkpoints(ctx context.Context, after uint64, limit int) ([]*Checkpoint, error) {
	if limit < 1 || limit > MaxListLimit {
		return nil, fmt.Errorf("%w: limit %d outside 1..%d", ErrInvalidOptions, limit, MaxListLimit)
	}
	if err := s.enter(); err != nil {
		return nil, err
	}
	defer s.leave()
	it, err := s.db.NewIterWithContext(ctx, &pebble.IterOptions{
		LowerBound: []byte(auditCheckpointKey(after + 1)), UpperBound: prefixEnd(auditCheckpointP),
	})
	if err != nil {
		return nil, fmt.Errorf("store: checkpoints: %w", err)
	}
	defer it.Close()
	var out []*Checkpoint
	for ok := it.First(); ok && len(out) < limit; ok = it.Next() {
		c, err := decodeCheckpoint(it.Value())
		if err != nil {
			return nil, fmt.Errorf("store: checkpoints: at %q: %w", it.Key(), err)
		}
		out = append(out, c)
	}
	if err := it.Error(); err != nil {
		return nil, fmt.Errorf("store: checkpoints: %w", err)
	}
	return out, nil
}

// ListKeys returns one page of the keys of live records under opts.Prefix, in key order,
// without decoding their messages, so a caller can pick the records of one type out of a
// kind that holds several and read them with Get or Tx.Get. Paging works as in List.
func (s *Store) ListKeys(ctx context.Context, opts ListOptions, keep func(key string) bool) (keys []string, next string, err error) {
	start, err := opts.normalise()
	if err != nil {
		return nil, "", err
	}
	if err := s.enter(); err != nil {
		return nil, "", err
	}
	defer s.leave()
	it, err := s.db.NewIterWithContext(ctx, &pebble.IterOptions{LowerBound: start, UpperBound: prefixEnd(opts.Prefix)})
	if err != nil {
		return nil, "", fmt.Errorf("store: list keys %q: %w", opts.Prefix, err)
	}
	defer it.Close()
	now := s.clock.Now().UnixNano()
	for ok := it.First(); ok; ok = it.Next() {
		if err := ctx.Err(); err != nil {
			return nil, "", err
		}
		key := string(it.Key())
		if keep != nil && !keep(key) {
			continue
		}
		env, err := decodeEnvelope(it.Value())
		if err != nil {
			return nil, "", fmt.Errorf("%s: %w", key, err)
		}
		if !env.live(now) {
			continue
		}
		if len(keys) == opts.Limit {
			return keys, base64.RawURLEncoding.EncodeToString([]byte(keys[len(keys)-1])), nil
		}
		keys = append(keys, key)
	}
	if err := it.Error(); err != nil {
		return nil, "", fmt.Errorf("store: list keys %q: %w", opts.Prefix, err)
	}
	return keys, "", nil
}
