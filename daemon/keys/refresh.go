package keys

import (
	"context"
	"errors"

	"github.com/hufu-hsm/hufu/cosign"
	"github.com/hufu-hsm/hufu/daemon/apierr"
	"github.com/hufu-hsm/hufu/daemon/authn"
	"github.com/hufu-hsm/hufu/store"
	"github.com/hufu-hsm/hufu/store/storepb"
)

// errPairRefresh: share refresh covers the key's primary pair only.
var errPairRefresh = apierr.New(apierr.FailedPrecondition, "a delegated pair cannot be refreshed; ask the key's holder for a new delegation")

// BeginRefresh starts a share refresh of the key's primary pair (its holder only): the pending share d2′ = ρ⁻¹·d2 and the offer are
// stored wrapped beside the active share, which keeps answering every ordinary request. If a
// refresh is pending already, its offer is returned again. A crash at any point leaves either
// no pending refresh or a complete one, and the active pair works in both.
func (s *Service) BeginRefresh(ctx context.Context, caller authn.Caller, keyID string, cred Credential) ([]byte, error) {
	e, err := s.use(ctx, caller, keyID)
	if err != nil {
		return nil, err
	}
	defer s.cache.release(e)
	if e.key.del != nil {
		return nil, errPairRefresh
	}
	if err := s.authorize(ctx, caller, e, cred, 1); err != nil {
		return nil, err
	}
	if p := e.key.state.Pending; p != nil {
		return p.Offer.MarshalBinary()
	}
	next, offer, err := e.key.state.BeginRefresh(s.deps.Rand)
	if err != nil {
		return nil, err
	}
	defer next.Pending.Share.Destroy() // the cache unwraps it again when needed
	rawShare, _ := next.Pending.Share.MarshalBinary()
	shareBlob, err := s.deps.Keyring.Wrap(ctx, rawShare, shareAD(keyID, offer.Version))
	clear(rawShare)
	if err != nil {
		return nil, hsmError(err)
	}
	rawOffer, _ := offer.MarshalBinary()
	defer clear(rawOffer)
	offerBlob, err := s.deps.Keyring.Wrap(ctx, rawOffer, offerAD(keyID, offer.Version))
	if err != nil {
		return nil, hsmError(err)
	}
	err = s.deps.Store.Update(ctx, func(tx *store.Tx) error {
		rec, err := splitKeys.Get(tx, keyID)
		if err != nil {
			return err
		}
		if rec.ShareVersion != e.key.state.Version || rec.Pending != nil {
			return apierr.New(apierr.Aborted, "the key changed meanwhile; retry")
		}
		// Wrapped before the transaction: a KEK rotation may have begun since.
		if shareBlob, err = s.deps.Keyring.EnsureCurrent(ctx, shareBlob, shareAD(keyID, offer.Version)); err != nil {
			return hsmError(err)
		}
		if offerBlob, err = s.deps.Keyring.EnsureCurrent(ctx, offerBlob, offerAD(keyID, offer.Version)); err != nil {
			return hsmError(err)
		}
		rec.Pending = &storepb.PendingRefresh{Version: offer.Version, ShareWrapped: shareBlob, OfferWrapped: offerBlob}
		if err := splitKeys.Put(tx, keyID, rec); err != nil {
			return err
		}
		return s.recordTx(tx, caller, keyID, "refresh.begin", nil, 1, "ok", map[string]string{"version": fmtVersion(offer.Version)})
	})
	s.cache.invalidate(keyID)
	if err != nil {
		return nil, err
	}
	return append([]byte(nil), rawOffer...), nil
}

// CommitRefresh checks the phone's confirmation, a signature under the unchanged public key
// on the pending offer's challenge (which only the new share pair can produce), and makes
// the pending share active. The old share's blob is overwritten in the same batch and its
// unwrapped copy is zeroed when the cache lets go of it.
func (s *Service) CommitRefresh(ctx context.Context, caller authn.Caller, keyID string, rawSig []byte) (*storepb.SplitKey, error) {
	var sig cosign.Signature
	if err := sig.UnmarshalBinary(rawSig); err != nil {
		return nil, apierr.Invalid("confirmation", err)
	}
	e, err := s.use(ctx, caller, keyID)
	if err != nil {
		return nil, err
	}
	defer s.cache.release(e)
	if e.key.del != nil {
		return nil, errPairRefresh
	}
	pending := e.key.state.Pending
	if pending == nil {
		return nil, apierr.New(apierr.FailedPrecondition, "no refresh is pending for this key (it may have been committed already: see GetKey)")
	}
	if _, err := e.key.state.CommitRefresh([]byte(keyID), &sig); err != nil {
		return nil, apierr.Invalidf("confirmation", "does not verify as a signature on the refresh challenge")
	}
	var out *storepb.SplitKey
	err = s.deps.Store.Update(ctx, func(tx *store.Tx) error {
		rec, err := splitKeys.Get(tx, keyID)
		if err != nil {
			return err
		}
		if rec.Pending == nil || rec.Pending.Version != pending.Offer.Version {
			return apierr.New(apierr.Aborted, "the key changed meanwhile; check it with GetKey")
		}
		rec.ShareWrapped, rec.ShareVersion, rec.Pending = rec.Pending.ShareWrapped, rec.Pending.Version, nil
		if err := splitKeys.Put(tx, keyID, rec); err != nil {
			return err
		}
		out = rec
		return s.recordTx(tx, caller, keyID, "refresh.commit", nil, 1, "ok", map[string]string{"version": fmtVersion(rec.ShareVersion)})
	})
	s.cache.invalidate(keyID)
	return out, err
}

// ListUsage lists a key's usage records, newest first.
func (s *Service) ListUsage(ctx context.Context, caller authn.Caller, keyID string, pageSize int, cursor string) ([]*storepb.UsageRecord, string, error) {
	if _, err := s.owned(ctx, caller, keyID); err != nil {
		return nil, "", err
	}
	if pageSize <= 0 {
		pageSize = 50
	}
	if pageSize > store.MaxListLimit {
		return nil, "", apierr.Invalidf("page_size", "at most %d", store.MaxListLimit)
	}
	page, err := usage.List(ctx, s.deps.Store, keyID+"/usage/", store.ListOptions{Cursor: cursor, Limit: pageSize}, nil)
	if err != nil {
		if errors.Is(err, store.ErrBadCursor) {
			return nil, "", apierr.Invalidf("page_token", "not a page token of this listing")
		}
		return nil, "", err
	}
	out := make([]*storepb.UsageRecord, len(page.Items))
	for i, it := range page.Items {
		out[i] = it.Value
	}
	return out, page.Next, nil
}
