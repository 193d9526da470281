package keys

import (
	"bytes"
	"context"
	"crypto/rand"
	"fmt"
	"time"

	"github.com/hufu-hsm/hufu/daemon/accounts"
	"github.com/hufu-hsm/hufu/daemon/apierr"
	"github.com/hufu-hsm/hufu/daemon/authn"
	"github.com/hufu-hsm/hufu/store"
)

// Credential authorises one cosign call: a ticket, or the PIN itself.
type Credential struct {
	Ticket, PIN string
}

// authorize checks the credential of an operation of n items on the key in e. A pending
// delegated pair has no PIN yet and is refused here: it answers only its challenge (Sign).
func (s *Service) authorize(ctx context.Context, caller authn.Caller, e *cacheEntry, cred Credential, n int) error {
	if e.key.pendingPair() {
		return errAcceptFirst
	}
	switch {
	case cred.Ticket != "":
		return s.tickets.use(cred.Ticket, e.key.rec.Id, caller.UserID, caller.DeviceID, n)
	case cred.PIN != "":
		return s.verifyPIN(ctx, caller, e.key.rec.Id, cred.PIN, "credential.pin")
	}
	return apierr.Invalidf("credential", "a cosign ticket or the certificate PIN is required")
}

// verifyPIN checks the caller's certificate PIN for the key through the HSM verifier: the
// holder's PIN, or a member's own PIN of its delegated pair. Wrong PINs count; at the
// configured maximum the caller's pair locks (the holder's or that member's alone), its
// tickets are revoked, and the answer says for how long. The counter and the audit record of
// a wrong PIN are committed with the refusal.
func (s *Service) verifyPIN(ctx context.Context, caller authn.Caller, keyID, pin, field string) error {
	// The key id first: an empty or malformed one is the caller's mistake (InvalidArgument),
	// never a store error logged as internal with the raw id in it.
	if err := firstError(checkKeyID(keyID), checkPIN(field, pin)); err != nil {
		return err
	}
	locked, wrote := false, false
	var h holding
	err := s.deps.Store.Update(ctx, func(tx *store.Tx) error {
		locked, wrote = false, false
		var err error
		if h, err = s.holdingIn(tx, caller, keyID, false); err != nil {
			return err
		}
		if err := s.checkHolding(caller, h); err != nil {
			return err
		}
		if h.pending() {
			return errAcceptFirst
		}
		p := h.pinFields()
		ok, err := s.deps.Keyring.VerifyPIN(ctx, *p.verifier, *p.salt, p.context, []byte(pin))
		if err != nil {
			return hsmError(err)
		}
		if ok {
			if *p.failures == 0 {
				return nil
			}
			wrote = true
			*p.failures = 0
			if err := h.put(tx); err != nil {
				return err
			}
			return s.recordTx(tx, caller, keyID, "pin.verify", "", "ok", nil)
		}
		wrote = true
		*p.failures++
		// PermissionDenied, not Unauthenticated: the session is fine, the PIN is not, and a
		// client must not mistake this for an expired ticket and retry.
		denial := apierr.New(apierr.PermissionDenied, "wrong certificate PIN: %d attempts left", s.opts.PINMaxAttempts-int(*p.failures))
		outcome := "wrong PIN"
		if int(*p.failures) >= s.opts.PINMaxAttempts {
			locked = true
			*p.failures = 0
			*p.lockedUntil = tx.Now().Add(s.opts.PINLockout).UnixNano()
			denial = apierr.Exhausted(s.opts.PINLockout, "too many wrong certificate PINs: the key is locked for %v; reset the PIN with an SMS code to unlock it now", s.opts.PINLockout)
			outcome = "locked"
		}
		if err := h.put(tx); err != nil {
			return err
		}
		if err := s.recordTx(tx, caller, keyID, "pin.verify", "", outcome, nil); err != nil {
			return err
		}
		return store.Refuse(denial)
	})
	if wrote {
		s.cache.invalidateEntry(h.cacheID()) // the cached record holds the old counter or lock
	}
	if locked {
		s.tickets.revokeHolder(keyID, h.userID(), h.deviceID())
		s.metrics.lockouts.Inc()
	}
	return err
}

// OpenTicket verifies the PIN and opens a cosign ticket for the key on the calling device
// (for the holder's pair, or the caller's delegated pair).
func (s *Service) OpenTicket(ctx context.Context, caller authn.Caller, keyID, pin string) (string, time.Time, int, error) {
	e, err := s.use(ctx, caller, keyID)
	if err != nil {
		return "", time.Time{}, 0, err
	}
	s.cache.release(e)
	if err := s.verifyPIN(ctx, caller, keyID, pin, "pin"); err != nil {
		return "", time.Time{}, 0, err
	}
	token, expires := s.tickets.open(keyID, caller.UserID, caller.DeviceID, s.opts.TicketTTL, s.opts.TicketUses)
	err = s.deps.Store.Update(ctx, func(tx *store.Tx) error {
		return s.recordTx(tx, caller, keyID, "ticket", "", "ok", map[string]string{"uses": fmt.Sprint(s.opts.TicketUses)})
	})
	if err != nil {
		s.tickets.revokeHolder(keyID, caller.UserID, caller.DeviceID)
		return "", time.Time{}, 0, err
	}
	return token, expires, s.opts.TicketUses, nil
}

// ChangePin replaces the PIN given the current one.
func (s *Service) ChangePin(ctx context.Context, caller authn.Caller, keyID, current, next string) error {
	if err := firstError(checkKeyID(keyID), checkPIN("new_pin", next)); err != nil {
		return err
	}
	if err := s.verifyPIN(ctx, caller, keyID, current, "current_pin"); err != nil {
		return err
	}
	return s.setPIN(ctx, caller, keyID, next, "pin.change", nil)
}

// ResetPin sets a new PIN after an SMS code to the account's number and unlocks the key
// (forgot certificate PIN, seed manual §1.9.3).
func (s *Service) ResetPin(ctx context.Context, caller authn.Caller, keyID, code, next string) error {
	if err := checkPIN("new_pin", next); err != nil {
		return err
	}
	user, err := s.deps.Accounts.VerifiedUser(ctx, caller.UserID)
	if err != nil {
		return err
	}
	return s.setPIN(ctx, caller, keyID, next, "pin.reset", func(tx *store.Tx) error {
		return s.deps.Accounts.ConsumeCode(ctx, tx, user.Phone, accounts.PurposeResetCertificate, code)
	})
}

// setPIN sets the PIN of the caller's pair: a member's delegated pair from its device, or
// else the key's own PIN for its holder (from any device of the holder's account).
func (s *Service) setPIN(ctx context.Context, caller authn.Caller, keyID, pin, op string, check func(tx *store.Tx) error) error {
	if err := checkKeyID(keyID); err != nil {
		return err
	}
	target, err := s.holdingAt(ctx, caller, keyID)
	if err != nil {
		return err
	}
	pinCtx := target.newPINContext()
	salt := make([]byte, 16)
	rand.Read(salt)
	verifier, err := s.deps.Keyring.PINVerifier(ctx, salt, pinCtx, []byte(pin))
	if err != nil {
		return hsmError(err)
	}
	var h holding
	err = s.deps.Store.Update(ctx, func(tx *store.Tx) error {
		if check != nil {
			if err := check(tx); err != nil {
				return err
			}
		}
		var err error
		if h, err = s.holdingIn(tx, caller, keyID, true); err != nil {
			return err
		}
		if !bytes.Equal(h.newPINContext(), pinCtx) {
			return apierr.New(apierr.Aborted, "the key changed meanwhile; retry")
		}
		if h.key.Status == statusRevoked {
			return apierr.New(apierr.FailedPrecondition, "the key is revoked")
		}
		if h.del != nil {
			if err := checkPairStatus(h.del); err != nil {
				return err
			}
			if h.pending() {
				return errAcceptFirst
			}
		}
		p := h.pinFields()
		*p.verifier, *p.salt, *p.failures, *p.lockedUntil = verifier, salt, 0, 0
		if h.del == nil {
			h.key.PinContext = nil // made with the key's default context
		}
		if err := h.put(tx); err != nil {
			return err
		}
		return s.recordTx(tx, caller, keyID, op, "", "ok", nil)
	})
	if h.key != nil {
		s.cache.invalidateEntry(h.cacheID())
		s.tickets.revokeHolder(keyID, h.userID(), h.deviceID())
	}
	return err
}
