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

// Share refresh (cosign ServerKey) of the caller's pair: the key's primary pair for its
// holder, or a member's own delegated pair, each refreshed on its own. For a member the
// pending share d2″ = ρ′⁻¹·d2′ and the offer are kept in the pair's record
// (DelegatedShare.pending, wrapped with the pair's associated data and the pending version),
// the pending pair answers only the offer's challenge (routed by cosign's ShareFor, as for
// the holder), the member's PIN, tickets and lockout stay, and the usage and audit records
// name the member and its device. The holder and every other pair are untouched: they keep
// signing under P throughout, and after the commit too (d1″·d2″ = d1′·d2′ = d1·d2).

var errKeyChanged = apierr.New(apierr.Aborted, "the key changed meanwhile; retry")

// refreshAD returns the associated data of the pending share and of the offer of a refresh
// of the pair in k to version.
func (k *loadedKey) refreshAD(version uint32) (share, offer []byte) {
	if d := k.del; d != nil {
		return delegateAD(d.KeyId, d.MemberUserId, d.MemberDeviceId, version), delegateOfferAD(d.KeyId, d.MemberUserId, d.MemberDeviceId, version)
	}
	return shareAD(k.rec.Id, version), offerAD(k.rec.Id, version)
}

// invalidatePair drops the cached snapshot of the pair in k after a write to its record: all
// of the key's entries for the primary pair (the pairs' entries carry the key's record), only
// the pair's own entry for a member.
func (s *Service) invalidatePair(k *loadedKey) {
	if d := k.del; d != nil {
		s.cache.invalidateEntry(pairCacheID(d.KeyId, d.MemberUserId, d.MemberDeviceId))
		return
	}
	s.cache.invalidate(k.rec.Id)
}

func (h holding) shareVersion() uint32 {
	if h.del != nil {
		return h.del.ShareVersion
	}
	return h.key.ShareVersion
}

// refresh is the pair's pending refresh record, nil if none.
func (h holding) refresh() *storepb.PendingRefresh {
	if h.del != nil {
		return h.del.Pending
	}
	return h.key.Pending
}

func (h holding) setRefresh(p *storepb.PendingRefresh) {
	if h.del != nil {
		h.del.Pending = p
	} else {
		h.key.Pending = p
	}
}

// commitRefresh makes the pending share the pair's share; the old blob is overwritten.
func (h holding) commitRefresh() {
	if d := h.del; d != nil {
		clear(d.ShareWrapped)
		d.ShareWrapped, d.ShareVersion, d.Pending = d.Pending.ShareWrapped, d.Pending.Version, nil
		return
	}
	k := h.key
	clear(k.ShareWrapped)
	k.ShareWrapped, k.ShareVersion, k.Pending = k.Pending.ShareWrapped, k.Pending.Version, nil
}

// refreshDetails are the audit details of a refresh step of the pair.
func (h holding) refreshDetails(version uint32) map[string]string {
	if d := h.del; d != nil {
		return map[string]string{"member_user": d.MemberUserId, "member_device": d.MemberDeviceId, "version": fmtVersion(version)}
	}
	return map[string]string{"version": fmtVersion(version)}
}

// view is the key as the pair's user sees it (GetKey).
func (h holding) view() *storepb.SplitKey {
	if h.del == nil {
		return h.key
	}
	return pairView(h.key, h.del)
}

// BeginRefresh starts a share refresh of the caller's pair (the holder's primary pair, or a
// member's active delegated pair): the pending share d2′ = ρ⁻¹·d2 and the offer are stored
// wrapped beside the active share, which keeps answering every ordinary request. If a
// refresh is pending already, its offer is returned again. A crash at any point leaves
// either no pending refresh or a complete one, and the active pair works in both. A pending
// (not yet accepted) delegated pair is refused (FailedPrecondition).
func (s *Service) BeginRefresh(ctx context.Context, caller authn.Caller, keyID string, cred Credential) ([]byte, error) {
	e, err := s.use(ctx, caller, keyID)
	if err != nil {
		return nil, err
	}
	defer s.cache.release(e)
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
	sAD, oAD := e.key.refreshAD(offer.Version)
	rawShare, _ := next.Pending.Share.MarshalBinary()
	shareBlob, err := s.deps.Keyring.Wrap(ctx, rawShare, sAD)
	clear(rawShare)
	if err != nil {
		return nil, hsmError(err)
	}
	rawOffer, _ := offer.MarshalBinary()
	defer clear(rawOffer)
	offerBlob, err := s.deps.Keyring.Wrap(ctx, rawOffer, oAD)
	if err != nil {
		return nil, hsmError(err)
	}
	err = s.deps.Store.Update(ctx, func(tx *store.Tx) error {
		h, err := s.holdingIn(tx, caller, keyID, false)
		if err != nil {
			return err
		}
		if err := s.checkHolding(caller, h); err != nil {
			return err
		}
		if (h.del == nil) != (e.key.del == nil) || h.pending() || h.shareVersion() != e.key.state.Version || h.refresh() != nil {
			return errKeyChanged
		}
		// Wrapped before the transaction: a KEK rotation may have begun since.
		if shareBlob, err = s.deps.Keyring.EnsureCurrent(ctx, shareBlob, sAD); err != nil {
			return hsmError(err)
		}
		if offerBlob, err = s.deps.Keyring.EnsureCurrent(ctx, offerBlob, oAD); err != nil {
			return hsmError(err)
		}
		h.setRefresh(&storepb.PendingRefresh{Version: offer.Version, ShareWrapped: shareBlob, OfferWrapped: offerBlob})
		if err := h.put(tx); err != nil {
			return err
		}
		return s.recordTx(tx, caller, keyID, "refresh.begin", "", "ok", h.refreshDetails(offer.Version))
	})
	s.invalidatePair(e.key)
	if err != nil {
		return nil, err
	}
	return append([]byte(nil), rawOffer...), nil
}

// CommitRefresh checks the phone's confirmation, a signature under the unchanged public key
// on the pending offer's challenge (which only the new share pair can produce), and makes
// the pending share of the caller's pair active. The old share's blob is overwritten in the
// same batch and its unwrapped copy is zeroed when the cache lets go of it. It returns the
// key as the caller sees it (GetKey): for a member, its pair's versions.
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
	pending := e.key.state.Pending
	if pending == nil {
		return nil, apierr.New(apierr.FailedPrecondition, "no refresh is pending for this key (it may have been committed already: see GetKey)")
	}
	if _, err := e.key.state.CommitRefresh([]byte(keyID), &sig); err != nil {
		return nil, apierr.Invalidf("confirmation", "does not verify as a signature on the refresh challenge")
	}
	var out *storepb.SplitKey
	err = s.deps.Store.Update(ctx, func(tx *store.Tx) error {
		h, err := s.holdingIn(tx, caller, keyID, false)
		if err != nil {
			return err
		}
		if p := h.refresh(); (h.del == nil) != (e.key.del == nil) || p == nil || p.Version != pending.Offer.Version {
			return apierr.New(apierr.Aborted, "the key changed meanwhile; check it with GetKey")
		}
		h.commitRefresh()
		if err := h.put(tx); err != nil {
			return err
		}
		out = h.view()
		return s.recordTx(tx, caller, keyID, "refresh.commit", "", "ok", h.refreshDetails(h.shareVersion()))
	})
	s.invalidatePair(e.key)
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
