package accounts

import (
	"context"
	"errors"
	"strings"

	"github.com/hufu-hsm/hufu/daemon/apierr"
	"github.com/hufu-hsm/hufu/store"
	"github.com/hufu-hsm/hufu/store/storepb"
)

// Refresh-token rotation with reuse detection (OAuth 2.0 Security BCP §4.14). A sign-in
// starts a family; each refresh spends the presented refresh token, closes the family's
// session and opens the next one with a new pair. A spent token is remembered (its hash in
// the used-refresh-token index) until the refresh token that replaced it expires: presented
// again, it means two parties hold tokens of the family — a thief and the phone — and
// nobody can tell which is which, so the whole family is revoked (its live session, access
// and refresh token) and the event audited; the phone signs in again. A refresh token also
// works only from the device it was issued to (the hufu-device-id header).

func familyKey(id string) string {
	k, err := families.Key("refresh-family/" + id)
	if err != nil {
		panic("accounts: generated family id is not a key part")
	}
	return k
}

var (
	errRefreshRejected = apierr.New(apierr.Unauthenticated, "refresh token is invalid, expired or revoked; sign in again")
	errRefreshReused   = apierr.New(apierr.Unauthenticated,
		"this refresh token was already used: every session of its sign-in is revoked as a precaution; sign in again")
	errRefreshDevice = apierr.New(apierr.Unauthenticated, "this refresh token was issued to another device")
)

// Refresh exchanges a refresh token presented from deviceID for a new pair on the same
// device, revoking the old pair. A refresh token used before revokes its family.
func (s *Service) Refresh(ctx context.Context, refreshToken, deviceID string) (Session, error) {
	var out Session
	if !strings.HasPrefix(refreshToken, refreshPrefix) || len(refreshToken) > 128 {
		return out, apierr.Invalidf("refresh_token", "not a hufu refresh token")
	}
	if deviceID == "" {
		return out, apierr.New(apierr.Unauthenticated, "the hufu-device-id header is missing")
	}
	hash := tokenIndexValue(refreshToken)
	var userID string
	err := s.Store.Update(ctx, func(tx *store.Tx) error {
		out, userID = Session{}, ""
		owner, err := tx.Lookup(indexRefreshToken, hash)
		if errors.Is(err, store.ErrNotFound) {
			userID, err = s.refreshReused(tx, hash, deviceID)
			return err
		}
		if err != nil {
			return err
		}
		rec, err := sessions.Get(tx, sessions.ID(owner))
		if errors.Is(err, store.ErrNotFound) {
			return errRefreshRejected
		}
		if err != nil {
			return err
		}
		if rec.DeviceId != deviceID {
			if err := tx.Audit(store.Event{Actor: "user:" + rec.UserId, Action: "account.session.refresh", Subject: owner,
				Outcome: "denied", Details: map[string]string{"reason": "another device", "device": deviceID}}); err != nil {
				return err
			}
			return store.Refuse(errRefreshDevice)
		}
		familyID := rec.FamilyId
		if familyID == "" { // a session written before families: it starts one
			familyID = rec.Id
		}
		family, err := families.Get(tx, "refresh-family/"+familyID)
		if errors.Is(err, store.ErrNotFound) {
			family = &storepb.RefreshFamily{Id: familyID, UserId: rec.UserId, DeviceId: rec.DeviceId, CreatedUnixNano: rec.CreatedUnixNano}
		} else if err != nil {
			return err
		}
		if err := closeSession(tx, rec); err != nil {
			return err
		}
		userID = rec.UserId
		if out, err = s.openSessionIn(tx, rec.UserId, Device{ID: rec.DeviceId, Name: rec.DeviceName}, "refresh", familyID); err != nil {
			return err
		}
		// The spent token is remembered as long as the family can be alive through the
		// token that replaced it.
		if err := tx.Claim(indexUsedRefreshToken, hash, familyKey(familyID), store.ExpiresAt(out.RefreshExpires)); err != nil {
			return err
		}
		family.CurrentSessionId = out.ID
		return families.Put(tx, "refresh-family/"+familyID, family, store.ExpiresAt(out.RefreshExpires))
	})
	if userID != "" {
		s.resolved.forgetUser(userID)
	}
	return out, err
}

// refreshReused handles a refresh token that opens no session inside tx: unknown or
// expired, or spent, which revokes its family. It returns the family's user if a session was
// closed, and the refusal.
func (s *Service) refreshReused(tx *store.Tx, hash, deviceID string) (string, error) {
	owner, err := tx.Lookup(indexUsedRefreshToken, hash)
	if errors.Is(err, store.ErrNotFound) {
		return "", errRefreshRejected
	}
	if err != nil {
		return "", err
	}
	family, err := families.Get(tx, families.ID(owner))
	if errors.Is(err, store.ErrNotFound) {
		return "", errRefreshRejected
	}
	if err != nil {
		return "", err
	}
	details := map[string]string{"family": family.Id, "device": deviceID}
	closed := ""
	if family.RevokedUnixNano == 0 {
		family.RevokedUnixNano = nanos(tx.Now())
		rec, err := sessions.Get(tx, "session/"+family.CurrentSessionId)
		switch {
		case err == nil:
			if err := closeSession(tx, rec); err != nil {
				return "", err
			}
			details["revoked_session"] = rec.Id
			closed = family.UserId
		case !errors.Is(err, store.ErrNotFound):
			return "", err
		}
		if err := families.Put(tx, families.ID(owner), family, store.ExpiresAt(tx.Now().Add(s.opts.RefreshTokenTTL))); err != nil {
			return "", err
		}
	} else {
		details["already_revoked"] = "true"
	}
	if err := tx.Audit(store.Event{Actor: "anonymous", Action: "account.session.reuse", Subject: owner,
		Outcome: "denied", Details: details}); err != nil {
		return "", err
	}
	return closed, store.Refuse(errRefreshReused)
}
