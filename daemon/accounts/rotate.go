package accounts

import (
	"context"
	"errors"
	"fmt"
	"strconv"

	"github.com/hufu-hsm/hufu/store"
	"github.com/hufu-hsm/hufu/store/storepb"
)

// KEK rotation support: the only wrapped blob this package stores is the sealed ID number
// of a verified identity (VerifiedIdentity.id_number_sealed, associated data idNumberAD).
// The admin surface drives the rotation; this file finds and rewraps those blobs.

// rewrapBatch users are rewrapped per locked transaction and audit record.
const rewrapBatch = 32

func sealedIDNumber(u *storepb.User) []byte {
	if u.Identity == nil {
		return nil
	}
	return u.Identity.IdNumberSealed
}

// staleUsers lists the ids of users whose sealed ID number stale reports.
func (s *Service) staleUsers(ctx context.Context, stale func(blob []byte) bool) (ids []string, total int, err error) {
	opts := store.ListOptions{Limit: store.MaxListLimit}
	for {
		page, err := users.List(ctx, s.Store, "", opts, func(_ string, u *storepb.User) bool {
			total++
			b := sealedIDNumber(u)
			return len(b) > 0 && stale(b)
		})
		if err != nil {
			return nil, 0, fmt.Errorf("accounts: list users: %w", err)
		}
		for _, it := range page.Items {
			ids = append(ids, users.ID(it.Key))
		}
		if page.Next == "" {
			return ids, total, nil
		}
		opts.Cursor = page.Next
	}
}

// CountStaleBlobs returns how many sealed ID numbers stale reports.
func (s *Service) CountStaleBlobs(ctx context.Context, stale func(blob []byte) bool) (int, error) {
	ids, _, err := s.staleUsers(ctx, stale)
	return len(ids), err
}

// RewrapAll rewraps every sealed ID number that stale reports with rewrap (the HSM's
// Rewrap under the current KEK), in locked transactions audited as "identity.rewrap" by
// actor. progress, if not nil, is called after each batch with the users done and the
// number to do. It returns the number of blobs rewrapped.
func (s *Service) RewrapAll(ctx context.Context, actor string, stale func(blob []byte) bool, rewrap func(ctx context.Context, blob, ad []byte) ([]byte, error), progress func(done, total int)) (int, error) {
	ids, _, err := s.staleUsers(ctx, stale)
	if err != nil {
		return 0, err
	}
	moved := 0
	for start := 0; start < len(ids); start += rewrapBatch {
		batch := ids[start:min(start+rewrapBatch, len(ids))]
		n := 0
		err := s.Store.Update(ctx, func(tx *store.Tx) error {
			n = 0
			for _, id := range batch {
				u, err := users.Get(tx, id)
				if errors.Is(err, store.ErrNotFound) {
					continue
				}
				if err != nil {
					return err
				}
				b := sealedIDNumber(u)
				if len(b) == 0 || !stale(b) {
					continue // changed since the listing
				}
				if u.Identity.IdNumberSealed, err = rewrap(ctx, b, idNumberAD(id)); err != nil {
					return fmt.Errorf("user %s: %w", id, err)
				}
				if err := users.Put(tx, id, u); err != nil {
					return err
				}
				n++
			}
			if n == 0 {
				return nil
			}
			return tx.Audit(store.Event{
				Actor: actor, Action: "identity.rewrap", Subject: "u/", Outcome: store.OutcomeOK,
				Details: map[string]string{"users": strconv.Itoa(n)},
			})
		})
		if err != nil {
			return moved, fmt.Errorf("accounts: rewrap: %w", err)
		}
		moved += n
		if progress != nil {
			progress(start+len(batch), len(ids))
		}
	}
	return moved, nil
}
