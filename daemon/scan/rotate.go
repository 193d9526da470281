package scan

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"time"

	"github.com/hufu-hsm/hufu/store"
	"github.com/hufu-hsm/hufu/store/storepb"
)

// KEK rotation: a BIND session keeps the person's ID number wrapped until the match. The
// admin surface drives the rotation (admin.Rewrapper); these find and rewrap those blobs.

const rewrapBatch = 32

// staleSessions lists the ids of sessions whose wrapped ID number stale reports.
func (s *Service) staleSessions(ctx context.Context, stale func(blob []byte) bool) ([]string, error) {
	var ids []string
	opts := store.ListOptions{Limit: store.MaxListLimit}
	for {
		page, err := sessions.List(ctx, s.deps.Store, "session/", opts, func(_ string, ss *storepb.ScanSession) bool {
			return len(ss.SubjectIdWrapped) > 0 && stale(ss.SubjectIdWrapped)
		})
		if err != nil {
			return nil, err
		}
		for _, it := range page.Items {
			ids = append(ids, it.Value.Id)
		}
		if page.Next == "" {
			return ids, nil
		}
		opts.Cursor = page.Next
	}
}

// CountStaleBlobs returns how many sessions hold a wrapped ID number that stale reports.
func (s *Service) CountStaleBlobs(ctx context.Context, stale func(blob []byte) bool) (int, error) {
	ids, err := s.staleSessions(ctx, stale)
	return len(ids), err
}

// RewrapAll rewraps the wrapped ID numbers that stale reports, in locked transactions
// audited as "scan.rewrap" by actor, and returns how many it rewrapped.
func (s *Service) RewrapAll(ctx context.Context, actor string, stale func(blob []byte) bool, rewrap func(ctx context.Context, blob, ad []byte) ([]byte, error), progress func(done, total int)) (int, error) {
	ids, err := s.staleSessions(ctx, stale)
	if err != nil {
		return 0, err
	}
	moved, err := s.deps.Store.UpdateInBatches(ctx, ids, rewrapBatch, func(tx *store.Tx, batch []string) (int, error) {
		n := 0
		for _, id := range batch {
			ss, err := sessions.Get(tx, sessionID(id))
			if errors.Is(err, store.ErrNotFound) {
				continue
			}
			if err != nil {
				return 0, err
			}
			if len(ss.SubjectIdWrapped) == 0 || !stale(ss.SubjectIdWrapped) {
				continue // matched, declined or rewrapped since the listing
			}
			if ss.SubjectIdWrapped, err = rewrap(ctx, ss.SubjectIdWrapped, subjectAD(id)); err != nil {
				return 0, fmt.Errorf("session %s: %w", id, err)
			}
			if err := sessions.Put(tx, sessionID(id), ss, store.ExpiresAt(time.Unix(0, ss.ExpiresUnixNano).Add(keep))); err != nil {
				return 0, err
			}
			n++
		}
		if n == 0 {
			return 0, nil
		}
		return n, tx.Audit(store.Event{Actor: actor, Action: "scan.rewrap", Subject: "s/", Outcome: store.OutcomeOK,
			Details: map[string]string{"sessions": strconv.Itoa(n)}})
	}, progress)
	if err != nil {
		return moved, fmt.Errorf("scan: rewrap: %w", err)
	}
	return moved, nil
}
