package accounts

import (
	"context"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"errors"
	"regexp"
	"strings"
	"time"

	hufuv1 "github.com/hufu-hsm/hufu/api/hufu/v1"
	"github.com/hufu-hsm/hufu/daemon/apierr"
	"github.com/hufu-hsm/hufu/daemon/authn"
	"github.com/hufu-hsm/hufu/daemon/text"
	"github.com/hufu-hsm/hufu/store"
	"github.com/hufu-hsm/hufu/store/storepb"
)

// Tokens are 32 random bytes, base64url, behind a prefix that says what they are (so a
// leaked one is recognisable in a paste or a log scanner). Only their SHA-256 is stored: the
// tokens have 256 bits of entropy, so a plain hash is as good as a slow one here.
const (
	accessPrefix  = "hat_"
	refreshPrefix = "hrt_"
)

// Device is the phone a session is bound to.
type Device struct{ ID, Name string }

var deviceIDRE = regexp.MustCompile(`^[A-Za-z0-9._-]{8,64}$`)

func checkDevice(d Device) error {
	if !deviceIDRE.MatchString(d.ID) {
		return apierr.Invalidf("device.id", "must be 8 to 64 characters of A-Z, a-z, 0-9, '.', '_' or '-'")
	}
	_, err := text.Line("device.name", d.Name, 64, false)
	return err
}

// Session is a token pair as handed to the client.
type Session struct {
	AccessToken    string
	AccessExpires  time.Time
	RefreshToken   string
	RefreshExpires time.Time
	ID             string
}

var _ authn.Sessions = (*Service)(nil)

func newToken(prefix string) (token string, hash []byte) {
	var b [32]byte
	rand.Read(b[:])
	token = prefix + base64.RawURLEncoding.EncodeToString(b[:])
	h := sha256.Sum256([]byte(token))
	return token, h[:]
}

func tokenIndexValue(token string) string {
	h := sha256.Sum256([]byte(token))
	return hex.EncodeToString(h[:])
}

// openSession writes a new session for user on device inside tx: a sign-in, which starts a
// refresh family of its own (refresh.go).
func (s *Service) openSession(tx *store.Tx, userID string, d Device, method string) (Session, error) {
	return s.openSessionIn(tx, userID, d, method, "")
}

// openSessionIn writes a new session of the refresh family familyID ("": a new family, whose
// id is the session's) inside tx.
func (s *Service) openSessionIn(tx *store.Tx, userID string, d Device, method, familyID string) (Session, error) {
	now := tx.Now()
	out := Session{ID: store.RandomID(16), AccessExpires: now.Add(s.opts.AccessTokenTTL), RefreshExpires: now.Add(s.opts.RefreshTokenTTL)}
	if familyID == "" {
		familyID = out.ID
	}
	var accessHash, refreshHash []byte
	out.AccessToken, accessHash = newToken(accessPrefix)
	out.RefreshToken, refreshHash = newToken(refreshPrefix)
	rec := &storepb.AuthSession{
		Id: out.ID, UserId: userID, DeviceId: d.ID, DeviceName: d.Name,
		AccessTokenHash: accessHash, AccessExpiresUnixNano: nanos(out.AccessExpires),
		RefreshTokenHash: refreshHash, RefreshExpiresUnixNano: nanos(out.RefreshExpires),
		CreatedUnixNano: nanos(now), Method: method, FamilyId: familyID,
	}
	id := "session/" + out.ID
	key, err := sessions.Key(id)
	if err != nil {
		return out, err
	}
	if err := sessions.Put(tx, id, rec, store.ExpiresAt(out.RefreshExpires)); err != nil {
		return out, err
	}
	if err := tx.Claim(indexAccessToken, hex.EncodeToString(accessHash), key, store.ExpiresAt(out.AccessExpires)); err != nil {
		return out, err
	}
	if err := tx.Claim(indexRefreshToken, hex.EncodeToString(refreshHash), key, store.ExpiresAt(out.RefreshExpires)); err != nil {
		return out, err
	}
	if err := tx.AddIndex(indexUserSessions, userID, key); err != nil {
		return out, err
	}
	return out, tx.Audit(store.Event{
		Actor: "user:" + userID, Action: "account.session.open", Subject: key, Outcome: store.OutcomeOK,
		Details: map[string]string{"method": method, "device": d.ID},
	})
}

// closeSession deletes a session and its token index entries inside tx.
func closeSession(tx *store.Tx, rec *storepb.AuthSession) error {
	if err := sessions.Delete(tx, "session/"+rec.Id); err != nil {
		return err
	}
	key, _ := sessions.Key("session/" + rec.Id)
	if err := tx.Unclaim(indexAccessToken, hex.EncodeToString(rec.AccessTokenHash), key); err != nil {
		return err
	}
	if err := tx.Unclaim(indexRefreshToken, hex.EncodeToString(rec.RefreshTokenHash), key); err != nil {
		return err
	}
	return tx.RemoveIndex(indexUserSessions, rec.UserId, key)
}

var errBadToken = &apierr.Error{Kind: apierr.Unauthenticated, Reason: hufuv1.ReasonAccessTokenRejected,
	Message: "access token is invalid, expired or revoked; sign in again"}

// Authenticate resolves an access token presented from a device (authn.Sessions). It reads
// without locking: a session revoked a moment ago may serve a call already in flight.
func (s *Service) Authenticate(ctx context.Context, token, deviceID string) (authn.Caller, error) {
	if !strings.HasPrefix(token, accessPrefix) || len(token) > 128 {
		return authn.Caller{}, errBadToken
	}
	now := s.now()
	key := tokenKey(token)
	cached, gen, ok := s.resolved.get(key, now)
	if !ok {
		owner, err := s.Store.Lookup(ctx, indexAccessToken, tokenIndexValue(token))
		if errors.Is(err, store.ErrNotFound) {
			return authn.Caller{}, errBadToken
		}
		if err != nil {
			return authn.Caller{}, err
		}
		rec, err := sessions.Read(ctx, s.Store, sessions.ID(owner))
		if errors.Is(err, store.ErrNotFound) {
			return authn.Caller{}, errBadToken
		}
		if err != nil {
			return authn.Caller{}, err
		}
		cached = cachedSession{
			caller:        authn.Caller{UserID: rec.UserId, SessionID: rec.Id, DeviceID: rec.DeviceId},
			accessExpires: fromNanos(rec.AccessExpiresUnixNano), cachedAt: now,
		}
		s.resolved.put(key, cached, gen)
	}
	if !now.Before(cached.accessExpires) {
		return authn.Caller{}, errBadToken
	}
	if cached.caller.DeviceID != deviceID {
		return authn.Caller{}, apierr.New(apierr.Unauthenticated, "this token was issued to another device")
	}
	return cached.caller, nil
}

// SignOut revokes the caller's session.
func (s *Service) SignOut(ctx context.Context, caller authn.Caller) error {
	defer s.resolved.forgetUser(caller.UserID)
	return s.Store.Update(ctx, func(tx *store.Tx) error {
		rec, err := sessions.Get(tx, "session/"+caller.SessionID)
		if errors.Is(err, store.ErrNotFound) {
			return nil // already gone: signing out twice is not an error
		}
		if err != nil {
			return err
		}
		if err := closeSession(tx, rec); err != nil {
			return err
		}
		return tx.Audit(store.Event{Actor: caller.Actor(), Action: "account.session.close", Subject: "session:" + rec.Id, Outcome: store.OutcomeOK})
	})
}

// revokeAll closes every session of a user inside tx.
func (s *Service) revokeAll(ctx context.Context, tx *store.Tx, userID string) error {
	return s.revokeOthers(ctx, tx, userID, "")
}

// revokeOthers closes every session of a user but keep (a session id, or "") inside tx.
func (s *Service) revokeOthers(ctx context.Context, tx *store.Tx, userID, keep string) error {
	var cursor string
	for {
		keys, next, err := s.Store.ListIndex(ctx, indexUserSessions, userID, store.ListOptions{Cursor: cursor, Limit: store.MaxListLimit})
		if err != nil {
			return err
		}
		for _, key := range keys {
			if keep != "" && sessions.ID(key) == "session/"+keep {
				continue
			}
			rec, err := sessions.Get(tx, sessions.ID(key))
			switch {
			case errors.Is(err, store.ErrNotFound): // expired: drop its index entry
				err = tx.RemoveIndex(indexUserSessions, userID, key)
			case err == nil:
				err = closeSession(tx, rec)
			}
			if err != nil {
				return err
			}
		}
		if next == "" {
			return nil
		}
		cursor = next
	}
}
