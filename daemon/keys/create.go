package keys

import (
	"bytes"
	"context"
	"crypto/rand"
	"errors"
	"regexp"

	"github.com/hufu-hsm/hufu/cosign"
	"github.com/hufu-hsm/hufu/daemon/apierr"
	"github.com/hufu-hsm/hufu/daemon/authn"
	"github.com/hufu-hsm/hufu/store"
	"github.com/hufu-hsm/hufu/store/storepb"
)

var pinRE = regexp.MustCompile(`^[0-9]{6}$`)

func checkPIN(field, pin string) error {
	if !pinRE.MatchString(pin) {
		return apierr.Invalidf(field, "the certificate PIN is 6 digits")
	}
	return nil
}

// CreateKey is the server step of key generation for a verified user on the calling device.
// The key id is the idempotency key: the same request again gets the same answer.
func (s *Service) CreateKey(ctx context.Context, caller authn.Caller, keyID string, rawReq []byte, pin, label string) (*storepb.SplitKey, error) {
	if err := firstError(checkKeyID(keyID), checkPIN("pin", pin)); err != nil {
		return nil, err
	}
	if len([]rune(label)) > 64 {
		return nil, apierr.Invalidf("label", "at most 64 characters")
	}
	var req cosign.KeygenRequest
	if err := req.UnmarshalBinary(rawReq); err != nil {
		return nil, err
	}
	if _, err := s.deps.Accounts.VerifiedUser(ctx, caller.UserID); err != nil {
		return nil, err
	}
	if rec, err := splitKeys.Read(ctx, s.deps.Store, keyID); err == nil {
		return s.replayCreate(ctx, caller, rec, rawReq, pin)
	} else if !errors.Is(err, store.ErrNotFound) {
		return nil, err
	}
	// Before any HSM work; checked again under the account's lock in the transaction.
	if err := s.checkQuota(ctx, nil, caller.UserID); err != nil {
		s.countQuota(err)
		return nil, err
	}

	share, resp, err := cosign.ServerKeygen(s.deps.Rand, cosign.KeygenContext(caller.UserID, keyID), &req)
	if errors.Is(err, cosign.ErrProof) {
		return nil, apierr.Invalidf("keygen_request.proof", "the proof of knowledge does not verify for this account and key id")
	}
	if err != nil {
		return nil, err
	}
	defer share.Destroy()
	rawShare, _ := share.MarshalBinary()
	wrapped, err := s.deps.Keyring.Wrap(ctx, rawShare, shareAD(keyID, 1))
	clear(rawShare)
	if err != nil {
		return nil, hsmError(err)
	}
	salt := make([]byte, 16)
	rand.Read(salt)
	verifier, err := s.deps.Keyring.PINVerifier(ctx, salt, pinContext(keyID), []byte(pin))
	if err != nil {
		return nil, hsmError(err)
	}
	rawResp, _ := resp.MarshalBinary()
	now := s.deps.Clock.Now()
	rec := &storepb.SplitKey{
		Id: keyID, UserId: caller.UserID, DeviceId: caller.DeviceID, Label: label, PublicKey: resp.Public[:],
		Status: statusActive, ShareVersion: 1, ShareWrapped: wrapped, KeygenRequest: rawReq, KeygenResponse: rawResp,
		PinVerifier: verifier, PinSalt: salt, CreatedUnixNano: now.UnixNano(),
	}
	var out *storepb.SplitKey
	err = s.deps.Store.Update(ctx, func(tx *store.Tx) error {
		existing, err := splitKeys.Get(tx, keyID)
		if err == nil { // a concurrent retry won: let the caller retry through the replay path
			return apierr.New(apierr.Aborted, "a concurrent request created key %q; retry", existing.Id)
		}
		if !errors.Is(err, store.ErrNotFound) {
			return err
		}
		if err := s.checkQuota(ctx, tx, caller.UserID); err != nil {
			return err
		}
		// Wrapped before the transaction: a KEK rotation may have begun since.
		if rec.ShareWrapped, err = s.deps.Keyring.EnsureCurrent(ctx, rec.ShareWrapped, shareAD(keyID, 1)); err != nil {
			return hsmError(err)
		}
		if err := splitKeys.Put(tx, keyID, rec); err != nil {
			return err
		}
		key, _ := splitKeys.Key(keyID)
		if err := tx.AddIndex(indexUserKeys, caller.UserID, key); err != nil {
			return err
		}
		out = rec
		return s.recordTx(tx, caller, keyID, "keygen", "", "ok", map[string]string{"public_key_sha256": sha256Hex(rec.PublicKey)})
	})
	s.countQuota(err)
	return out, err
}

// countQuota counts a refusal by the key quota.
func (s *Service) countQuota(err error) {
	if errors.Is(err, errQuota) {
		s.metrics.quotaRefusals.Inc()
	}
}

// replayCreate answers a repeated CreateKey: the same account, device, request and PIN get
// the stored answer; anything else means the id is taken. The PIN goes through the counted
// check (wrong PINs lock the key), so a replay is no way to guess it.
func (s *Service) replayCreate(ctx context.Context, caller authn.Caller, rec *storepb.SplitKey, rawReq []byte, pin string) (*storepb.SplitKey, error) {
	if rec.UserId != caller.UserID || rec.DeviceId != caller.DeviceID || !bytes.Equal(rec.KeygenRequest, rawReq) {
		return nil, apierr.New(apierr.AlreadyExists, "key id %q is already in use; choose another", rec.Id)
	}
	if err := s.verifyPIN(ctx, caller, rec.Id, pin, "pin"); err != nil {
		return nil, err
	}
	return splitKeys.Read(ctx, s.deps.Store, rec.Id)
}

// GetKey returns one of the caller's keys: the key's record for its holder (from any device
// of the holder's account), or, on a member's delegated device, the key as seen through the
// member's pair (pairView: the pair's share versions and PIN state), which is what the
// phone's refresh settles against; PermissionDenied once the pair ended.
func (s *Service) GetKey(ctx context.Context, caller authn.Caller, keyID string) (*storepb.SplitKey, error) {
	if err := checkKeyID(keyID); err != nil {
		return nil, err
	}
	h, err := s.holdingAt(ctx, caller, keyID)
	if err != nil {
		return nil, err
	}
	if h.del != nil {
		if err := checkPairStatus(h.del); err != nil {
			return nil, err
		}
	}
	return h.view(), nil
}

// ListKeys returns the caller's keys.
func (s *Service) ListKeys(ctx context.Context, caller authn.Caller) ([]*storepb.SplitKey, error) {
	var out []*storepb.SplitKey
	var cursor string
	for {
		keys, next, err := s.deps.Store.ListIndex(ctx, indexUserKeys, caller.UserID, store.ListOptions{Cursor: cursor, Limit: store.MaxListLimit})
		if err != nil {
			return nil, err
		}
		for _, k := range keys {
			rec, err := splitKeys.Read(ctx, s.deps.Store, splitKeys.ID(k))
			if errors.Is(err, store.ErrNotFound) {
				continue
			}
			if err != nil {
				return nil, err
			}
			out = append(out, rec)
		}
		if next == "" {
			return out, nil
		}
		cursor = next
	}
}

func firstError(errs ...error) error {
	for _, err := range errs {
		if err != nil {
			return err
		}
	}
	return nil
}
