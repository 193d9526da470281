package keys

import (
	"context"
	"errors"
	"strconv"
	"strings"

	"github.com/hufu-hsm/hufu/daemon/apierr"
	"github.com/hufu-hsm/hufu/daemon/authn"
	"github.com/hufu-hsm/hufu/store"
	"github.com/hufu-hsm/hufu/store/storepb"
)

// The certificate domain's view of keys: revocation with the certificate, the PIN check
// that confirms it, and the key record an application is checked against.

// Revoke revokes a key for good: its status becomes revoked and its server share is deleted
// from the live store, with any pending refresh share and every member's delegated share
// (those pairs become recalled), so hufu makes no signature and decrypts nothing with it
// again. The deleted wrapped share stays in the store's old files and in backups until the
// next KEK erasure (admin/erasure.go) destroys its KEK; only then is it unrecoverable, and
// nothing ever encrypted to the public key decryptable by anyone. with, if not nil, runs in the same transaction
// (the certificate's own records), so the key and its certificate change together or not at
// all. Revoking a revoked key only runs with. Tickets and cached shares of the key are
// dropped whatever the outcome.
func (s *Service) Revoke(ctx context.Context, caller authn.Caller, keyID, reason string, with func(tx *store.Tx) error) error {
	return s.RevokeKeys(ctx, caller, []string{keyID}, reason, with)
}

// RevokeKeys is Revoke for several keys of one holder in one transaction: the two keys of a
// certificate pair, which are revoked together or not at all. A user revokes their own keys;
// a desk (caller.AtDesk: a system client, or an operator at the console refunding an order)
// any key.
func (s *Service) RevokeKeys(ctx context.Context, caller authn.Caller, keyIDs []string, reason string, with func(tx *store.Tx) error) error {
	for _, keyID := range keyIDs {
		if err := checkKeyID(keyID); err != nil {
			return err
		}
	}
	err := s.deps.Store.Update(ctx, func(tx *store.Tx) error {
		for _, keyID := range keyIDs {
			rec, err := splitKeys.Get(tx, keyID)
			if errors.Is(err, store.ErrNotFound) || (err == nil && rec.UserId != caller.UserID && !caller.AtDesk()) {
				return apierr.New(apierr.NotFound, "no key %q", keyID)
			}
			if err != nil {
				return err
			}
			if err := s.revokeIn(tx, caller, rec, reason); err != nil {
				return err
			}
		}
		if with != nil {
			return with(tx)
		}
		return nil
	})
	for _, keyID := range keyIDs {
		s.cache.invalidate(keyID)
		s.tickets.revokeKey(keyID)
	}
	return err
}

// revokeIn revokes the key of rec inside tx (see Revoke); a revoked key is left as is.
func (s *Service) revokeIn(tx *store.Tx, caller authn.Caller, rec *storepb.SplitKey, reason string) error {
	if rec.Status != statusRevoked {
		rec.Status = statusRevoked
		clear(rec.ShareWrapped)
		rec.ShareWrapped, rec.Pending = nil, nil
		// Every member's pair goes with the key.
		for _, ref := range rec.Delegates {
			user, device, _ := strings.Cut(ref, "/")
			id := delegateID(rec.Id, user, device)
			del, err := delegates.Get(tx, id)
			if errors.Is(err, store.ErrNotFound) {
				continue
			}
			if err != nil {
				return err
			}
			endPair(del, pairRecalled, tx.Now())
			if err := delegates.Put(tx, id, del); err != nil {
				return err
			}
		}
		pairs := len(rec.Delegates)
		rec.Delegates = nil
		if err := splitKeys.Put(tx, rec.Id, rec); err != nil {
			return err
		}
		if len(reason) > 200 {
			reason = reason[:200]
		}
		details := map[string]string{"reason": reason, "delegated_pairs": strconv.Itoa(pairs)}
		if err := s.recordTx(tx, caller, rec.Id, "revoke", "", "ok", details); err != nil {
			return err
		}
	}
	return nil
}

// VerifyKeyPIN checks the certificate PIN of a key used from the caller's device, with the
// same failure counting and lockout as every other PIN check. field names the request field
// in errors.
func (s *Service) VerifyKeyPIN(ctx context.Context, caller authn.Caller, keyID, pin, field string) error {
	if err := checkKeyID(keyID); err != nil {
		return err
	}
	if _, err := s.owned(ctx, caller, keyID); err != nil {
		return err
	}
	return s.verifyPIN(ctx, caller, keyID, pin, field)
}

// OwnedKey returns the caller's key record (from any of the caller's devices), NotFound for
// anybody else's.
func (s *Service) OwnedKey(ctx context.Context, caller authn.Caller, keyID string) (*storepb.SplitKey, error) {
	return s.owned(ctx, caller, keyID)
}

// KeyRevokedIn reads the key's status inside tx, taking the key's lock, so that a caller's
// transaction and a revocation are ordered.
func (s *Service) KeyRevokedIn(tx *store.Tx, keyID string) (bool, error) {
	rec, err := splitKeys.Get(tx, keyID)
	if err != nil {
		return false, err
	}
	return KeyRevoked(rec), nil
}

// KeyRevoked reports whether the key's status is revoked.
func KeyRevoked(rec *storepb.SplitKey) bool { return rec.GetStatus() == statusRevoked }

// CertificateGate tells whether a key may cosign as far as its certificates are concerned:
// a key whose certificates are all expired or disabled refuses to sign and decrypt (a
// revoked certificate's key is revoked itself). The certificate service implements it.
type CertificateGate interface {
	KeyUsable(ctx context.Context, keyID string) error
}

// DecryptionGate is the certificate domain's refusal of decryption by a key certified to
// sign only (the signing key of a certificate pair). The certificate service implements it
// with CertificateGate; Decrypt, DecryptBatch and ReleaseShare ask it.
type DecryptionGate interface {
	KeyDecrypts(ctx context.Context, keyID string) error
}

// certificateDecrypts runs the installed gate's decryption check; nil without one.
func (s *Service) certificateDecrypts(ctx context.Context, keyID string) error {
	if g, ok := s.certGate.(DecryptionGate); ok {
		return g.KeyDecrypts(ctx, keyID)
	}
	return nil
}

// SetCertificateGate installs the certificate check for the service's keys. Call it while
// wiring, before the service serves.
func (s *Service) SetCertificateGate(g CertificateGate) { s.certGate = g }

// CertificateUsable runs the installed certificate check; nil without one.
func (s *Service) CertificateUsable(ctx context.Context, keyID string) error {
	if s.certGate == nil {
		return nil
	}
	return s.certGate.KeyUsable(ctx, keyID)
}
