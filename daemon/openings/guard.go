package openings

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"

	"github.com/hufu-hsm/hufu/cosign"
	"github.com/hufu-hsm/hufu/daemon/authn"
	"github.com/hufu-hsm/hufu/daemon/keys"
	"github.com/hufu-hsm/hufu/store"
	"github.com/hufu-hsm/hufu/store/storepb"
)

var _ keys.DecryptGuard = (*Service)(nil)

// CheckDecrypt binds the plain two-party decryption to bid openings: a C1 no opening
// registered passes; a registered one passes only for its own key inside its opening's
// window (the bidder's own copy, recorded as a release via the phone). Anything else is
// refused with FailedPrecondition naming the opening time, recorded and counted.
func (s *Service) CheckDecrypt(ctx context.Context, caller authn.Caller, keyID string, c1 *cosign.Point) error {
	h := sha256.Sum256(c1[:])
	k, err := s.deps.Store.Lookup(ctx, indexC1, hex.EncodeToString(h[:]))
	if errors.Is(err, store.ErrNotFound) {
		return nil
	}
	if err != nil {
		return err
	}
	e, err := envelopes.Read(ctx, s.deps.Store, envelopes.ID(k))
	if err != nil {
		return err
	}
	o, err := s.Opening(ctx, e.OpeningId)
	if err != nil {
		return err
	}
	if e.KeyId != keyID {
		if err := s.recordAttempt(ctx, caller, o.Id, "decrypt", e.Id, "other_key"); err != nil {
			return err
		}
		return errEarly(o)
	}
	if err := s.inWindowNow(ctx, caller, o, "decrypt", e.Id); err != nil {
		return err
	}
	return s.deps.Store.Update(ctx, func(tx *store.Tx) error {
		ev := &storepb.OpeningEvent{Type: "release", AtUnixNano: tx.Now().UnixNano(), EnvelopeId: e.Id, Outcome: "ok", Via: "phone"}
		if err := events.Put(tx, eventID(o.Id, tx.Now()), ev); err != nil {
			return err
		}
		return tx.Audit(store.Event{Actor: caller.Actor(), Action: "opening.release.phone", Subject: envelopeKey(o.Id, e.Id), Outcome: store.OutcomeOK,
			Details: map[string]string{"device": caller.DeviceID, "ciphertext_sha256": hex.EncodeToString(e.CiphertextSha256)}})
	})
}
