package keys

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"strings"

	"github.com/hufu-hsm/hufu/store"
	"github.com/hufu-hsm/hufu/store/storepb"
)

// KEK rotation support. The HSM side (a new KEK, rewrapping one blob, destroying the old
// KEK) is package hsm; the orchestration is the admin surface's. This file walks every
// wrapped blob this package stores — SplitKey.share_wrapped, during a share refresh
// PendingRefresh.share_wrapped and offer_wrapped, and each delegated pair's
// DelegatedShare.share_wrapped and, during a refresh of the pair, its pending share and
// offer (found through SplitKey.delegates) — and rewraps each with
// its own associated data, one locked store transaction per batch of keys, while signing
// goes on.

// rewrapBatch keys are rewrapped per transaction: few enough that the key locks are held
// for milliseconds (one HSM call per blob), many enough that the audit log gets one record
// per batch rather than per key.
const rewrapBatch = 32

// keyIDs lists every split key id, from the keys only (usage records under k/<id>/usage/
// are skipped without being decoded).
func (s *Service) keyIDs(ctx context.Context) ([]string, error) {
	var ids []string
	opts := store.ListOptions{Prefix: string(store.KindKey) + "/", Limit: store.MaxListLimit}
	for {
		keys, next, err := s.deps.Store.ListKeys(ctx, opts, func(key string) bool { return strings.Count(key, "/") == 1 })
		if err != nil {
			return nil, fmt.Errorf("keys: list keys: %w", err)
		}
		for _, k := range keys {
			ids = append(ids, splitKeys.ID(k))
		}
		if next == "" {
			return ids, nil
		}
		opts.Cursor = next
	}
}

// CountStaleBlobs returns how many wrapped blobs of split keys stale reports (wrapped
// under a KEK other than the current one), reading the latest committed state.
func (s *Service) CountStaleBlobs(ctx context.Context, stale func(blob []byte) bool) (int, error) {
	ids, err := s.keyIDs(ctx)
	if err != nil {
		return 0, err
	}
	n := 0
	for _, id := range ids {
		rec, err := splitKeys.Read(ctx, s.deps.Store, id)
		if errors.Is(err, store.ErrNotFound) {
			continue
		}
		if err != nil {
			return 0, fmt.Errorf("keys: read key: %w", err)
		}
		for _, b := range wrappedBlobs(rec) {
			if stale(b.blob) {
				n++
			}
		}
		for _, ref := range rec.Delegates {
			user, device, _ := strings.Cut(ref, "/")
			del, err := delegates.Read(ctx, s.deps.Store, delegateID(id, user, device))
			if errors.Is(err, store.ErrNotFound) {
				continue
			}
			if err != nil {
				return 0, fmt.Errorf("keys: read delegated pair: %w", err)
			}
			for _, b := range pairBlobs(del) {
				if stale(b.blob) {
					n++
				}
			}
		}
	}
	return n, nil
}

// rewrapPairs rewraps the stale shares of a key's delegated pairs inside tx and reports how
// many it rewrapped.
func (s *Service) rewrapPairs(ctx context.Context, tx *store.Tx, rec *storepb.SplitKey, stale func(blob []byte) bool, rewrap func(ctx context.Context, blob, ad []byte) ([]byte, error)) (int, error) {
	n := 0
	for _, ref := range rec.Delegates {
		user, device, _ := strings.Cut(ref, "/")
		id := delegateID(rec.Id, user, device)
		del, err := delegates.Get(tx, id)
		if errors.Is(err, store.ErrNotFound) {
			continue
		}
		if err != nil {
			return 0, err
		}
		dirty := false
		for _, b := range pairBlobs(del) {
			if !stale(b.blob) {
				continue
			}
			nb, err := rewrap(ctx, b.blob, b.ad)
			if err != nil {
				return 0, fmt.Errorf("key %s, delegated pair: %w", rec.Id, err)
			}
			b.set(del, nb)
			dirty = true
			n++
		}
		if dirty {
			if err := delegates.Put(tx, id, del); err != nil {
				return 0, err
			}
		}
	}
	return n, nil
}

type pairBlob struct {
	blob []byte
	ad   []byte
	set  func(d *storepb.DelegatedShare, blob []byte)
}

// pairBlobs lists the blobs of a delegated pair's record with their associated data: its
// share and, during a refresh of the pair, the pending share and offer.
func pairBlobs(d *storepb.DelegatedShare) []pairBlob {
	var out []pairBlob
	if len(d.ShareWrapped) > 0 {
		out = append(out, pairBlob{d.ShareWrapped, delegateAD(d.KeyId, d.MemberUserId, d.MemberDeviceId, d.ShareVersion),
			func(r *storepb.DelegatedShare, b []byte) { r.ShareWrapped = b }})
	}
	if p := d.Pending; p != nil {
		if len(p.ShareWrapped) > 0 {
			out = append(out, pairBlob{p.ShareWrapped, delegateAD(d.KeyId, d.MemberUserId, d.MemberDeviceId, p.Version),
				func(r *storepb.DelegatedShare, b []byte) { r.Pending.ShareWrapped = b }})
		}
		if len(p.OfferWrapped) > 0 {
			out = append(out, pairBlob{p.OfferWrapped, delegateOfferAD(d.KeyId, d.MemberUserId, d.MemberDeviceId, p.Version),
				func(r *storepb.DelegatedShare, b []byte) { r.Pending.OfferWrapped = b }})
		}
	}
	return out
}

type wrappedBlob struct {
	blob []byte
	ad   []byte
	set  func(rec *storepb.SplitKey, blob []byte)
}

// wrappedBlobs lists the blobs of a key record with their associated data.
func wrappedBlobs(rec *storepb.SplitKey) []wrappedBlob {
	var out []wrappedBlob
	if len(rec.ShareWrapped) > 0 {
		out = append(out, wrappedBlob{rec.ShareWrapped, shareAD(rec.Id, rec.ShareVersion),
			func(r *storepb.SplitKey, b []byte) { r.ShareWrapped = b }})
	}
	if p := rec.Pending; p != nil {
		if len(p.ShareWrapped) > 0 {
			out = append(out, wrappedBlob{p.ShareWrapped, shareAD(rec.Id, p.Version),
				func(r *storepb.SplitKey, b []byte) { r.Pending.ShareWrapped = b }})
		}
		if len(p.OfferWrapped) > 0 {
			out = append(out, wrappedBlob{p.OfferWrapped, offerAD(rec.Id, p.Version),
				func(r *storepb.SplitKey, b []byte) { r.Pending.OfferWrapped = b }})
		}
	}
	return out
}

// RewrapAll rewraps every blob that stale reports, key by key, under locks, so operations
// on a key wait at most for its batch and nothing written concurrently is lost (a refresh
// or key creation that commits meanwhile wraps under the current KEK already). Each batch
// that changed something is audited as action "key.rewrap" by actor, and the share cache
// entry of every changed key is invalidated. progress, if not nil, is called after each
// batch with the keys examined so far and the total. It returns the number of blobs
// rewrapped.
func (s *Service) RewrapAll(ctx context.Context, actor string, stale func(blob []byte) bool, rewrap func(ctx context.Context, blob, ad []byte) ([]byte, error), progress func(done, total int)) (int, error) {
	ids, err := s.keyIDs(ctx)
	if err != nil {
		return 0, err
	}
	moved := 0
	for start := 0; start < len(ids); start += rewrapBatch {
		batch := ids[start:min(start+rewrapBatch, len(ids))]
		var changed []string
		blobs := 0
		err := s.deps.Store.Update(ctx, func(tx *store.Tx) error {
			changed, blobs = changed[:0], 0
			for _, id := range batch {
				rec, err := splitKeys.Get(tx, id)
				if errors.Is(err, store.ErrNotFound) {
					continue // deleted since the listing
				}
				if err != nil {
					return err
				}
				dirty := false
				for _, b := range wrappedBlobs(rec) {
					if !stale(b.blob) {
						continue
					}
					nb, err := rewrap(ctx, b.blob, b.ad)
					if err != nil {
						return fmt.Errorf("key %s: %w", id, err)
					}
					b.set(rec, nb)
					dirty = true
					blobs++
				}
				if dirty {
					if err := splitKeys.Put(tx, id, rec); err != nil {
						return err
					}
				}
				pairs, err := s.rewrapPairs(ctx, tx, rec, stale, rewrap)
				if err != nil {
					return err
				}
				blobs += pairs
				if dirty || pairs > 0 {
					changed = append(changed, id)
				}
			}
			if len(changed) == 0 {
				return nil // nothing written, nothing to audit
			}
			return tx.Audit(store.Event{
				Actor: actor, Action: "key.rewrap", Subject: "k/", Outcome: store.OutcomeOK,
				Details: map[string]string{
					"keys": strconv.Itoa(len(changed)), "blobs": strconv.Itoa(blobs),
					"first": changed[0], "last": changed[len(changed)-1],
				},
			})
		})
		for _, id := range changed {
			s.cache.invalidate(id) // the record changed (or may have, on error)
		}
		if err != nil {
			return moved, fmt.Errorf("keys: rewrap: %w", err)
		}
		moved += blobs
		if progress != nil {
			progress(start+len(batch), len(ids))
		}
	}
	return moved, nil
}
