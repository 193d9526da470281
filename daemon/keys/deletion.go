package keys

import (
	"context"
	"errors"

	"github.com/hufu-hsm/hufu/daemon/accounts"
	"github.com/hufu-hsm/hufu/daemon/authn"
	"github.com/hufu-hsm/hufu/store"
)

var _ accounts.Eraser = (*Service)(nil)

// PrepareErasure (accounts.Eraser) revokes every key a deleted account holds, in the
// deletion's transaction: the server shares of keys never certified (or whose certificates
// expired) are destroyed like those of revoked certificates, so no share of a deleted person
// outlives the account. Cached shares and tickets of those keys are dropped when the
// transaction runs; the account's sessions end in the same transaction, so nothing can
// load them again.
func (s *Service) PrepareErasure(ctx context.Context, userID string) (func(tx *store.Tx) error, error) {
	var owned []string
	cursor := ""
	for {
		ks, next, err := s.deps.Store.ListIndex(ctx, indexUserKeys, userID, store.ListOptions{Cursor: cursor, Limit: store.MaxListLimit})
		if err != nil {
			return nil, err
		}
		owned = append(owned, ks...)
		if next == "" {
			break
		}
		cursor = next
	}
	caller := authn.Caller{UserID: userID}
	return func(tx *store.Tx) error {
		for _, k := range owned {
			rec, err := splitKeys.Get(tx, splitKeys.ID(k))
			if errors.Is(err, store.ErrNotFound) {
				continue
			}
			if err != nil {
				return err
			}
			if rec.UserId != userID {
				continue
			}
			if err := s.revokeIn(tx, caller, rec, "account deleted"); err != nil {
				return err
			}
			s.cache.invalidate(rec.Id)
			s.tickets.revokeKey(rec.Id)
		}
		return nil
	}, nil
}
