package accounts

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"regexp"
	"time"

	"github.com/hufu-hsm/hufu/daemon/apierr"
	"github.com/hufu-hsm/hufu/daemon/identity"
	"github.com/hufu-hsm/hufu/store"
	"github.com/hufu-hsm/hufu/store/storepb"
)

// SignIn is the outcome of a successful sign-in.
type SignIn struct {
	Session    Session
	User       *storepb.User
	Registered bool // the sign-in created the account
}

var codeRE = regexp.MustCompile(`^[0-9]{6}$`)

func checkCode(code string) error {
	if !codeRE.MatchString(code) {
		return apierr.Invalidf("code", "must be the 6 digits of the SMS")
	}
	return nil
}

func checkPhone(field, phone string) error {
	if err := identity.CheckMobile(phone); err != nil {
		return apierr.Invalid(field, err)
	}
	return nil
}

// maxPasswordTriesPerSourceHour bounds password sign-ins from one address, so that guessing
// across many accounts (credential stuffing) is slow even below each account's lockout.
const maxPasswordTriesPerSourceHour = 100

// bindingTTL bounds how long a WeChat account may wait to be bound to a phone.
const bindingTTL = 10 * time.Minute

// SignInWithCode signs in with an SMS code, registering the number on first use.
func (s *Service) SignInWithCode(ctx context.Context, phone, code string, d Device) (SignIn, error) {
	var out SignIn
	if err := firstError(checkPhone("phone", phone), checkCode(code), checkDevice(d)); err != nil {
		return out, err
	}
	ref, err := s.phoneKey(ctx, phone)
	if err != nil {
		return out, err
	}
	err = s.Store.Update(ctx, func(tx *store.Tx) error {
		out = SignIn{}
		if err := s.consumeCode(ctx, tx, ref, PurposeSignIn, code); err != nil {
			return err
		}
		var err error
		if out.User, out.Registered, err = s.findOrRegister(tx, ref, "sms"); err != nil {
			return err
		}
		out.Session, err = s.openSession(tx, out.User.Id, d, "sms")
		return err
	})
	return out, err
}

// SignInWithPassword signs in with a phone number and password. Wrong passwords count
// against the account and lock password sign-in at the configured maximum; an unknown
// number gets the same answer as a wrong password.
func (s *Service) SignInWithPassword(ctx context.Context, phone, password string, d Device, source string) (SignIn, error) {
	var out SignIn
	if err := firstError(checkPhone("phone", phone), checkDevice(d)); err != nil {
		return out, err
	}
	if password == "" || len(password) > 256 {
		return out, apierr.Invalidf("password", "must be 1 to 256 bytes")
	}
	wrong := apierr.New(apierr.Unauthenticated, "wrong phone number or password")
	// Fingerprinted whether or not the number has an account: the HSM call costs the same.
	ref, err := s.phoneKey(ctx, phone)
	if err != nil {
		return out, err
	}
	// Argon2id takes 19 MiB a check: bound how many run at once, whoever asks.
	select {
	case s.argon <- struct{}{}:
		defer func() { <-s.argon }()
	case <-ctx.Done():
		return out, ctx.Err()
	}
	err = s.Store.Update(ctx, func(tx *store.Tx) error {
		out = SignIn{}
		if err := bump(tx, "password-source", sourceHost(source), maxPasswordTriesPerSourceHour, time.Hour, "too many password sign-ins from this address"); err != nil {
			return err
		}
		user, err := s.userByPhone(tx, ref)
		if errors.Is(err, store.ErrNotFound) {
			// Spend the same work as a real check, so timing does not tell which numbers
			// have accounts; the attempt counts against the source like any other.
			verifyPassword(password, dummyPasswordHash)
			if err := tx.Audit(store.Event{Actor: "anonymous", Action: "account.password.verify", Subject: "phone:" + identity.MaskPhone(phone),
				Outcome: "denied", Details: map[string]string{"source": sourceHost(source)}}); err != nil {
				return err
			}
			return store.Refuse(wrong)
		}
		if err != nil {
			return err
		}
		now := tx.Now()
		if until := fromNanos(user.PasswordLockedUntilUnixNano); now.Before(until) {
			return apierr.Exhausted(until.Sub(now), "password sign-in is locked after too many wrong passwords; retry in %v or sign in with an SMS code", until.Sub(now).Round(time.Second))
		}
		if user.PasswordHash == "" {
			verifyPassword(password, dummyPasswordHash)
			return wrong // the same answer as an unknown number
		}
		ok, err := verifyPassword(password, user.PasswordHash)
		if err != nil {
			return err
		}
		if !ok {
			return s.passwordFailure(tx, user, "anonymous", "account.password.verify", wrong)
		}
		if user.PasswordFailures != 0 {
			user.PasswordFailures = 0
			if err := users.Put(tx, user.Id, user); err != nil {
				return err
			}
		}
		out.User = user
		out.Session, err = s.openSession(tx, user.Id, d, "password")
		return err
	})
	return out, err
}

// passwordFailure counts a wrong password against the account inside tx, locking password
// use at the configured maximum, and returns the denial to commit with its audit record.
func (s *Service) passwordFailure(tx *store.Tx, user *storepb.User, actor, action string, wrong error) error {
	user.PasswordFailures++
	event := store.Event{Actor: actor, Action: action, Subject: userKey(user.Id), Outcome: "denied",
		Details: map[string]string{"failures": fmt.Sprint(user.PasswordFailures)}}
	denial := wrong
	if int(user.PasswordFailures) >= s.opts.PasswordMaxAttempts {
		user.PasswordFailures = 0
		user.PasswordLockedUntilUnixNano = nanos(tx.Now().Add(s.opts.PasswordLockout))
		event.Details["locked_for"] = s.opts.PasswordLockout.String()
		denial = apierr.Exhausted(s.opts.PasswordLockout, "too many wrong passwords: password use is locked for %v", s.opts.PasswordLockout)
	}
	if err := users.Put(tx, user.Id, user); err != nil {
		return err
	}
	if err := tx.Audit(event); err != nil {
		return err
	}
	return store.Refuse(denial)
}

// SignInWithWeChat signs in with a WeChat authorisation code. An unbound WeChat account gets
// a binding ticket instead of a session.
func (s *Service) SignInWithWeChat(ctx context.Context, authCode string, d Device) (out SignIn, ticket string, err error) {
	if authCode == "" || len(authCode) > 512 {
		return out, "", apierr.Invalidf("auth_code", "must be 1 to 512 bytes")
	}
	if err := checkDevice(d); err != nil {
		return out, "", err
	}
	openID, err := s.WeChat.OpenID(ctx, authCode)
	if err != nil {
		return out, "", providerError("WeChat", err)
	}
	err = s.Store.Update(ctx, func(tx *store.Tx) error {
		out, ticket = SignIn{}, ""
		owner, err := tx.Lookup(indexWeChat, openID)
		if errors.Is(err, store.ErrNotFound) {
			var hash []byte
			ticket, hash = newToken("hwb_")
			if err := bindings.Put(tx, "wechat-binding/"+hex.EncodeToString(hash), &storepb.PendingBinding{WechatOpenId: openID},
				store.ExpiresAt(tx.Now().Add(bindingTTL))); err != nil {
				return err
			}
			return tx.Audit(store.Event{Actor: "anonymous", Action: "account.wechat.pending", Subject: "wechat:" + maskOpenID(openID), Outcome: store.OutcomeOK})
		}
		if err != nil {
			return err
		}
		if out.User, err = users.Get(tx, users.ID(owner)); err != nil {
			return err
		}
		out.Session, err = s.openSession(tx, out.User.Id, d, "wechat")
		return err
	})
	return out, ticket, err
}

// BindWeChatPhone binds the WeChat account of a binding ticket to a phone number proven by
// an SMS code, registering the number if needed, and signs in.
func (s *Service) BindWeChatPhone(ctx context.Context, ticket, phone, code string, d Device) (SignIn, error) {
	var out SignIn
	if err := firstError(checkPhone("phone", phone), checkCode(code), checkDevice(d)); err != nil {
		return out, err
	}
	if len(ticket) > 128 {
		return out, apierr.Invalidf("binding_ticket", "not a binding ticket")
	}
	h := sha256.Sum256([]byte(ticket))
	bindingID := "wechat-binding/" + hex.EncodeToString(h[:])
	ref, err := s.phoneKey(ctx, phone)
	if err != nil {
		return out, err
	}
	err = s.Store.Update(ctx, func(tx *store.Tx) error {
		out = SignIn{}
		binding, err := bindings.Get(tx, bindingID)
		if errors.Is(err, store.ErrNotFound) {
			return apierr.New(apierr.FailedPrecondition, "the binding ticket expired or was used; sign in with WeChat again")
		}
		if err != nil {
			return err
		}
		if err := s.consumeCode(ctx, tx, ref, PurposeBindWeChat, code); err != nil {
			return err
		}
		if out.User, out.Registered, err = s.findOrRegister(tx, ref, "wechat"); err != nil {
			return err
		}
		if out.User.WechatOpenId != "" && out.User.WechatOpenId != binding.WechatOpenId {
			return apierr.New(apierr.FailedPrecondition, "this number's account is already bound to another WeChat account")
		}
		if err := tx.Claim(indexWeChat, binding.WechatOpenId, userKey(out.User.Id)); err != nil {
			if errors.Is(err, store.ErrTaken) {
				return apierr.New(apierr.AlreadyExists, "this WeChat account is already bound to another number")
			}
			return err
		}
		out.User.WechatOpenId = binding.WechatOpenId
		if err := users.Put(tx, out.User.Id, out.User); err != nil {
			return err
		}
		if err := bindings.Delete(tx, bindingID); err != nil {
			return err
		}
		if err := tx.Audit(store.Event{Actor: "user:" + out.User.Id, Action: "account.wechat.bind", Subject: userKey(out.User.Id),
			Outcome: store.OutcomeOK, Details: map[string]string{"wechat": maskOpenID(binding.WechatOpenId)}}); err != nil {
			return err
		}
		out.Session, err = s.openSession(tx, out.User.Id, d, "wechat")
		return err
	})
	return out, err
}

// SignInWithCarrier signs in with a carrier one-click login token, registering the number
// on first use.
func (s *Service) SignInWithCarrier(ctx context.Context, token string, d Device) (SignIn, error) {
	var out SignIn
	if token == "" || len(token) > 2048 {
		return out, apierr.Invalidf("carrier_token", "must be 1 to 2048 bytes")
	}
	if err := checkDevice(d); err != nil {
		return out, err
	}
	phone, err := s.Carrier.PhoneNumber(ctx, token)
	if err != nil {
		return out, providerError("carrier", err)
	}
	ref, err := s.phoneKey(ctx, phone)
	if err != nil {
		return out, err
	}
	err = s.Store.Update(ctx, func(tx *store.Tx) error {
		out = SignIn{}
		var err error
		if out.User, out.Registered, err = s.findOrRegister(tx, ref, "carrier"); err != nil {
			return err
		}
		out.Session, err = s.openSession(tx, out.User.Id, d, "carrier")
		return err
	})
	return out, err
}

func (s *Service) userByPhone(tx *store.Tx, phone phoneRef) (*storepb.User, error) {
	owner, err := tx.Lookup(indexPhone, phone.fp)
	if err != nil {
		return nil, err
	}
	return users.Get(tx, users.ID(owner))
}

// findOrRegister returns the account of phone, creating it if there is none. The phone index
// is read under its key lock, so two first sign-ins of one number make one account.
func (s *Service) findOrRegister(tx *store.Tx, phone phoneRef, method string) (*storepb.User, bool, error) {
	user, err := s.userByPhone(tx, phone)
	if err == nil || !errors.Is(err, store.ErrNotFound) {
		return user, false, err
	}
	// A new account starts on the default platform (seed §1.3: shown at once, changed by
	// choosing another).
	user = &storepb.User{Id: store.RandomID(16), Phone: phone.number, CreatedUnixNano: nanos(tx.Now()), CurrentPlatformId: s.opts.DefaultPlatform}
	if err := tx.Claim(indexPhone, phone.fp, userKey(user.Id)); err != nil {
		return nil, false, err
	}
	if err := users.Put(tx, user.Id, user); err != nil {
		return nil, false, err
	}
	return user, true, tx.Audit(store.Event{Actor: "user:" + user.Id, Action: "account.register", Subject: userKey(user.Id),
		Outcome: store.OutcomeOK, Details: map[string]string{"phone": identity.MaskPhone(phone.number), "method": method, "platform": user.CurrentPlatformId}})
}

func providerError(name string, err error) error {
	if errors.Is(err, ErrLoginNotOffered) {
		return apierr.New(apierr.FailedPrecondition, "%s login is not offered by this appliance; sign in with an SMS code", name)
	}
	if errors.Is(err, ErrProviderRejected) {
		return apierr.New(apierr.Unauthenticated, "%s did not accept the login credential; try again", name)
	}
	return &apierr.Error{Kind: apierr.Unavailable, Message: name + " login is unavailable; retry later", Cause: err}
}

func maskOpenID(id string) string {
	if len(id) <= 6 {
		return "***"
	}
	return id[:3] + "***" + id[len(id)-3:]
}

func firstError(errs ...error) error {
	for _, err := range errs {
		if err != nil {
			return err
		}
	}
	return nil
}
