package keys

import (
	"context"
	"errors"
	"fmt"

	"github.com/hufu-hsm/hufu/daemon/apierr"
	"github.com/hufu-hsm/hufu/store"
)

// The per-account key quota (Options.MaxKeysPerAccount): an account may hold that many keys
// that are not revoked. A revoked key has no share left and does not count, so a person who
// revoked a certificate can apply again.

// lockKeyCreation is an index that is never claimed: CreateKey looks its account's entry up
// only for the entry's lock, which orders one account's key creations, so that two
// concurrent ones cannot both pass the quota on the same count.
const lockKeyCreation = "key-creation"

// errQuota marks a refusal by the quota, for the metric.
var errQuota = errors.New("keys: key quota reached")

// checkQuota refuses a new key for userID if the account holds the quota already. Inside a
// transaction (tx not nil) it first takes the account's creation lock.
func (s *Service) checkQuota(ctx context.Context, tx *store.Tx, userID string) error {
	if tx != nil {
		if _, err := tx.Lookup(lockKeyCreation, userID); err != nil && !errors.Is(err, store.ErrNotFound) {
			return err
		}
	}
	held, err := s.heldKeys(ctx, userID)
	if err != nil {
		return err
	}
	if held >= s.opts.MaxKeysPerAccount {
		return &apierr.Error{Kind: apierr.ResourceExhausted, Cause: errQuota, Message: fmt.Sprintf(
			"this account holds %d keys, the most this appliance allows (keys.max_keys_per_account = %d); revoke the key of a certificate you no longer use first",
			held, s.opts.MaxKeysPerAccount)}
	}
	return nil
}

// heldKeys counts the account's keys that are not revoked, as committed.
func (s *Service) heldKeys(ctx context.Context, userID string) (int, error) {
	held := 0
	opts := store.ListOptions{Limit: store.MaxListLimit}
	for {
		keys, next, err := s.deps.Store.ListIndex(ctx, indexUserKeys, userID, opts)
		if err != nil {
			return 0, err
		}
		for _, k := range keys {
			rec, err := splitKeys.Read(ctx, s.deps.Store, splitKeys.ID(k))
			if errors.Is(err, store.ErrNotFound) {
				continue
			}
			if err != nil {
				return 0, err
			}
			if rec.Status != statusRevoked {
				held++
			}
		}
		if next == "" {
			return held, nil
		}
		opts.Cursor = next
	}
}
