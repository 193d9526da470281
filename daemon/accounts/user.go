package accounts

import (
	"context"
	"crypto/subtle"
	"errors"
	"strings"

	"github.com/hufu-hsm/hufu/daemon/apierr"
	"github.com/hufu-hsm/hufu/daemon/authn"
	"github.com/hufu-hsm/hufu/daemon/identity"
	"github.com/hufu-hsm/hufu/store"
	"github.com/hufu-hsm/hufu/store/storepb"
)

// Account returns the caller's account.
func (s *Service) Account(ctx context.Context, caller authn.Caller) (*storepb.User, error) {
	u, err := users.Read(ctx, s.Store, caller.UserID)
	if errors.Is(err, store.ErrNotFound) {
		return nil, apierr.New(apierr.Unauthenticated, "the account no longer exists")
	}
	return u, err
}

// VerifiedUser returns the caller's account if its real name is verified, for the features
// that require it (key generation, certificate applications).
func (s *Service) VerifiedUser(ctx context.Context, userID string) (*storepb.User, error) {
	u, err := users.Read(ctx, s.Store, userID)
	if err != nil {
		return nil, err
	}
	if u.Identity == nil {
		return nil, apierr.New(apierr.FailedPrecondition, "verify your real name first (实名认证)")
	}
	return u, nil
}

// SetPassword sets the first password, or changes it given the current one.
func (s *Service) SetPassword(ctx context.Context, caller authn.Caller, current, next string) error {
	if err := checkPasswordStrength("new_password", next); err != nil {
		return err
	}
	hash := hashPassword(next, s.opts.Password)
	return s.Store.Update(ctx, func(tx *store.Tx) error {
		u, err := users.Get(tx, caller.UserID)
		if err != nil {
			return err
		}
		if until := fromNanos(u.PasswordLockedUntilUnixNano); u.PasswordHash != "" && tx.Now().Before(until) {
			return apierr.Exhausted(until.Sub(tx.Now()), "password use is locked after too many wrong passwords; reset it with an SMS code")
		}
		if u.PasswordHash != "" {
			if current == "" {
				return apierr.Invalidf("current_password", "required to change an existing password")
			}
			ok, err := verifyPassword(current, u.PasswordHash)
			if err != nil {
				return err
			}
			if !ok {
				// Wrong current passwords count like wrong sign-in passwords, or a session
				// would be an unlimited password-guessing oracle.
				return s.passwordFailure(tx, u, caller.Actor(), "account.password.change",
					apierr.New(apierr.PermissionDenied, "the current password is wrong"))
			}
		}
		u.PasswordHash, u.PasswordFailures, u.PasswordLockedUntilUnixNano = hash, 0, 0
		if err := users.Put(tx, u.Id, u); err != nil {
			return err
		}
		return tx.Audit(store.Event{Actor: caller.Actor(), Action: "account.password.set", Subject: userKey(u.Id), Outcome: store.OutcomeOK})
	})
}

// ResetPassword sets a new password after an SMS code to the account's number, and revokes
// every session of the account.
func (s *Service) ResetPassword(ctx context.Context, phone, code, next string) error {
	if err := firstError(checkPhone("phone", phone), checkCode(code), checkPasswordStrength("new_password", next)); err != nil {
		return err
	}
	ref, err := s.phoneKey(ctx, phone)
	if err != nil {
		return err
	}
	hash := hashPassword(next, s.opts.Password)
	var userID string
	defer func() {
		if userID != "" {
			s.resolved.forgetUser(userID)
		}
	}()
	return s.Store.Update(ctx, func(tx *store.Tx) error {
		if err := s.consumeCode(ctx, tx, ref, PurposeResetPassword, code); err != nil {
			return err
		}
		u, err := s.userByPhone(tx, ref)
		if errors.Is(err, store.ErrNotFound) {
			return apierr.New(apierr.NotFound, "no account uses this number")
		}
		if err != nil {
			return err
		}
		u.PasswordHash, u.PasswordFailures, u.PasswordLockedUntilUnixNano = hash, 0, 0
		if err := users.Put(tx, u.Id, u); err != nil {
			return err
		}
		if err := s.revokeAll(ctx, tx, u.Id); err != nil {
			return err
		}
		userID = u.Id
		return tx.Audit(store.Event{Actor: "user:" + u.Id, Action: "account.password.reset", Subject: userKey(u.Id), Outcome: store.OutcomeOK})
	})
}

// ChangePhone moves the caller's account to a new number, proven by codes sent to both the
// current and the new number: a stolen session alone must not be able to redirect the
// account's SMS codes, which reset passwords and certificate PINs. Every other session of
// the account is closed.
func (s *Service) ChangePhone(ctx context.Context, caller authn.Caller, newPhone, code, currentCode string) (*storepb.User, error) {
	if err := firstError(checkPhone("new_phone", newPhone), checkCode(code)); err != nil {
		return nil, err
	}
	if !codeRE.MatchString(currentCode) {
		return nil, apierr.Invalidf("current_code", "must be the 6 digits of the SMS sent to the current number")
	}
	newRef, err := s.phoneKey(ctx, newPhone)
	if err != nil {
		return nil, err
	}
	var out *storepb.User
	defer s.resolved.forgetUser(caller.UserID)
	err = s.Store.Update(ctx, func(tx *store.Tx) error {
		u, err := users.Get(tx, caller.UserID)
		if err != nil {
			return err
		}
		if u.Phone == newPhone {
			return apierr.Invalidf("new_phone", "is already this account's number")
		}
		oldRef, err := s.phoneKey(ctx, u.Phone)
		if err != nil {
			return err
		}
		if err := s.consumeCode(ctx, tx, oldRef, PurposeChangePhone, currentCode); err != nil {
			return err
		}
		if err := s.consumeCode(ctx, tx, newRef, PurposeChangePhone, code); err != nil {
			return err
		}
		if err := tx.Claim(indexPhone, newRef.fp, userKey(u.Id)); err != nil {
			if errors.Is(err, store.ErrTaken) {
				return apierr.New(apierr.AlreadyExists, "this number belongs to another account")
			}
			return err
		}
		if err := tx.Unclaim(indexPhone, oldRef.fp, userKey(u.Id)); err != nil {
			return err
		}
		old := u.Phone
		u.Phone = newPhone
		if err := users.Put(tx, u.Id, u); err != nil {
			return err
		}
		if err := s.revokeOthers(ctx, tx, u.Id, caller.SessionID); err != nil {
			return err
		}
		out = u
		return tx.Audit(store.Event{Actor: caller.Actor(), Action: "account.phone.change", Subject: userKey(u.Id), Outcome: store.OutcomeOK,
			Details: map[string]string{"from": identity.MaskPhone(old), "to": identity.MaskPhone(newPhone)}})
	})
	return out, err
}

// Platforms lists the configured trading platforms in configuration order.
func (s *Service) Platforms() []Platform { return s.opts.Platforms }

// Platform returns a configured platform by id.
func (s *Service) Platform(id string) (Platform, bool) {
	p, ok := s.platforms[id]
	return p, ok
}

// SelectPlatform makes a configured platform the caller's current one.
func (s *Service) SelectPlatform(ctx context.Context, caller authn.Caller, id string) (Platform, error) {
	p, ok := s.platforms[id]
	if !ok {
		return p, apierr.Invalidf("platform_id", "no platform %q is configured", id)
	}
	return p, s.Store.Update(ctx, func(tx *store.Tx) error {
		u, err := users.Get(tx, caller.UserID)
		if err != nil {
			return err
		}
		u.CurrentPlatformId = id
		if err := users.Put(tx, u.Id, u); err != nil {
			return err
		}
		return tx.Audit(store.Event{Actor: caller.Actor(), Action: "account.platform.select", Subject: userKey(u.Id),
			Outcome: store.OutcomeOK, Details: map[string]string{"platform": id}})
	})
}

// IdentityMatches reports whether a user's verified identity is exactly name and ID number
// (a business system binding its user to this person's certificate, seed §2.1). The sealed
// ID number is opened in the HSM only for the comparison.
func (s *Service) IdentityMatches(ctx context.Context, userID, name, idNumber string) (bool, error) {
	u, err := s.VerifiedUser(ctx, userID)
	if err != nil {
		return false, err
	}
	if u.Identity.GetName() != name {
		return false, nil
	}
	id, err := s.Keyring.Unwrap(ctx, u.Identity.GetIdNumberSealed(), idNumberAD(userID))
	if err != nil {
		return false, &apierr.Error{Kind: apierr.Unavailable, Message: "HSM unavailable", Cause: err}
	}
	defer clear(id)
	return subtle.ConstantTimeCompare(id, []byte(strings.ToUpper(idNumber))) == 1, nil
}
