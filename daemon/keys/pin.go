package keys

import (
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

// authorize checks the credential of an operation of n items on the key in e.
func (s *Service) authorize(ctx context.Context, caller authn.Caller, e *cacheEntry, cred Credential, n int) error {
	switch {
	case cred.Ticket != "":
		return s.tickets.use(cred.Ticket, e.key.rec.Id, caller.DeviceID, n)
	case cred.PIN != "":
		return s.verifyPIN(ctx, caller, e.key.rec.Id, cred.PIN, "credential.pin")
	}
	return apierr.Invalidf("credential", "a cosign ticket or the certificate PIN is required")
}

// verifyPIN checks the certificate PIN through the HSM verifier. Wrong PINs count; at the
// configured maximum the key locks, its tickets are revoked, and the answer says for how
// long. The counter and the audit record of a wrong PIN are committed with the refusal.
func (s *Service) verifyPIN(ctx context.Context, caller authn.Caller, keyID, pin, field string) error {
	if err := checkPIN(field, pin); err != nil {
		return err
	}
	locked, wrote := false, false
	err := s.deps.Store.Update(ctx, func(tx *store.Tx) error {
		locked, wrote = false, false
		rec, err := splitKeys.Get(tx, keyID)
		if err != nil {
			return err
		}
		if err := s.checkUsable(caller, rec); err != nil {
			return err
		}
		ok, err := s.deps.Keyring.VerifyPIN(ctx, rec.PinVerifier, rec.PinSalt, pinContext(keyID), []byte(pin))
		if err != nil {
			return hsmError(err)
		}
		if ok {
			if rec.PinFailures == 0 {
				return nil
			}
			wrote = true
			rec.PinFailures = 0
			if err := splitKeys.Put(tx, keyID, rec); err != nil {
				return err
			}
			return s.recordTx(tx, caller, keyID, "pin.verify", nil, 1, "ok", nil)
		}
		wrote = true
		rec.PinFailures++
		// PermissionDenied, not Unauthenticated: the session is fine, the PIN is not, and a
		// client must not mistake this for an expired ticket and retry.
		denial := apierr.New(apierr.PermissionDenied, "wrong certificate PIN: %d attempts left", s.opts.PINMaxAttempts-int(rec.PinFailures))
		outcome := "wrong PIN"
		if int(rec.PinFailures) >= s.opts.PINMaxAttempts {
			locked = true
			rec.PinFailures = 0
			rec.LockedUntilUnixNano = tx.Now().Add(s.opts.PINLockout).UnixNano()
			denial = apierr.Exhausted(s.opts.PINLockout, "too many wrong certificate PINs: the key is locked for %v; reset the PIN with an SMS code to unlock it now", s.opts.PINLockout)
			outcome = "locked"
		}
		if err := splitKeys.Put(tx, keyID, rec); err != nil {
			return err
		}
		if err := s.recordTx(tx, caller, keyID, "pin.verify", nil, 1, outcome, nil); err != nil {
			return err
		}
		return store.Refuse(denial)
	})
	if wrote {
		s.cache.invalidate(keyID) // the cached record holds the old counter or lock
	}
	if locked {
		s.tickets.revokeKey(keyID)
		s.metrics.lockouts.Inc()
	}
	return err
}

// OpenTicket verifies the PIN and opens a cosign ticket for the key on the calling device.
func (s *Service) OpenTicket(ctx context.Context, caller authn.Caller, keyID, pin string) (string, time.Time, int, error) {
	e, err := s.use(ctx, caller, keyID)
	if err != nil {
		return "", time.Time{}, 0, err
	}
	s.cache.release(e)
	if err := s.verifyPIN(ctx, caller, keyID, pin, "pin"); err != nil {
		return "", time.Time{}, 0, err
	}
	token, expires := s.tickets.open(keyID, caller.DeviceID, s.opts.TicketTTL, s.opts.TicketUses)
	err = s.deps.Store.Update(ctx, func(tx *store.Tx) error {
		return s.recordTx(tx, caller, keyID, "ticket", nil, 1, "ok", map[string]string{"uses": fmt.Sprint(s.opts.TicketUses)})
	})
	if err != nil {
		s.tickets.revokeKey(keyID)
		return "", time.Time{}, 0, err
	}
	return token, expires, s.opts.TicketUses, nil
}

// ChangePin replaces the PIN given the current one.
func (s *Service) ChangePin(ctx context.Context, caller authn.Caller, keyID, current, next string) error {
	if err := checkPIN("new_pin", next); err != nil {
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

func (s *Service) setPIN(ctx context.Context, caller authn.Caller, keyID, pin, op string, check func(tx *store.Tx) error) error {
	if _, err := s.owned(ctx, caller, keyID); err != nil {
		return err
	}
	salt := make([]byte, 16)
	rand.Read(salt)
	verifier, err := s.deps.Keyring.PINVerifier(ctx, salt, pinContext(keyID), []byte(pin))
	if err != nil {
		return hsmError(err)
	}
	err = s.deps.Store.Update(ctx, func(tx *store.Tx) error {
		if check != nil {
			if err := check(tx); err != nil {
				return err
			}
		}
		rec, err := splitKeys.Get(tx, keyID)
		if err != nil {
			return err
		}
		if rec.Status == statusRevoked {
			return apierr.New(apierr.FailedPrecondition, "the key is revoked")
		}
		rec.PinVerifier, rec.PinSalt, rec.PinFailures, rec.LockedUntilUnixNano = verifier, salt, 0, 0
		if err := splitKeys.Put(tx, keyID, rec); err != nil {
			return err
		}
		return s.recordTx(tx, caller, keyID, op, nil, 1, "ok", nil)
	})
	s.cache.invalidate(keyID)
	s.tickets.revokeKey(keyID)
	return err
}
