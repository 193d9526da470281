package keys

import (
	"context"
	"crypto/subtle"
	"errors"
	"fmt"
	"io"
	"slices"
	"strings"
	"time"
	"unicode/utf8"

	"google.golang.org/protobuf/proto"

	"github.com/hufu-hsm/hufu/cosign"
	"github.com/hufu-hsm/hufu/daemon/apierr"
	"github.com/hufu-hsm/hufu/daemon/authn"
	"github.com/hufu-hsm/hufu/store"
	"github.com/hufu-hsm/hufu/store/storepb"
)

// Delegated pairs (cosign delegated pairs; design §3). The key's holder gives a member's
// device a share pair of its own under the key's public key: the holder's phone sends ρ (the
// grant) and the member's d1·ρ sealed to the member device (the envelope, relayed), and the
// appliance stores d2′ = ρ⁻¹·d2 as a DelegatedShare bound to the member and device, wrapped
// with associated data of its own (delegateAD), so it never opens as the key's share nor as
// another member's.
//
//	GrantDelegation   (holder)  → pending: the pair answers only its challenge, no PIN yet
//	DelegationOffer   (member)  ← envelope, P, P2′ and the challenge
//	AcceptDelegation  (member)  → active: a signature on the challenge, and the member's PIN
//	RecallDelegation  (domain)  → recalled: d2′ erased, the member refused at once
//	PromoteDelegation (domain)  → promoted: the member's pair becomes the key's primary pair
//
// An active pair is refreshed like the primary pair, on its own (refresh.go): BeginRefresh and
// CommitRefresh from the member's device keep the pending d2″ = ρ′⁻¹·d2′ and the offer in
// DelegatedShare.pending until the member proves the new pair. A recall or the key's
// revocation erases the pending share with the active one; a pair with a refresh pending is
// not promoted (FailedPrecondition: the member finishes or resumes its refresh first).
//
// A member then uses the key like its holder — Sign, SignBatch, Decrypt, DecryptBatch,
// OpenTicket, ChangePin, ResetPin — with the key id, from the delegated device, with its own
// PIN, tickets and lockout; use picks the pair from the caller. Who may grant, recall or
// promote beyond the holder's own grant is the calling domain's decision (the enterprise
// service), which writes its own records in the same transaction through with.

var delegates = store.NewCollection(store.KindKey, func() *storepb.DelegatedShare { return new(storepb.DelegatedShare) })

const (
	pairPending  = storepb.DelegationStatus_DELEGATION_STATUS_PENDING
	pairActive   = storepb.DelegationStatus_DELEGATION_STATUS_ACTIVE
	pairRecalled = storepb.DelegationStatus_DELEGATION_STATUS_RECALLED
	pairPromoted = storepb.DelegationStatus_DELEGATION_STATUS_PROMOTED
)

// Bounds on what a grant carries.
const (
	maxEnvelope   = 1024
	maxScopeItems = 32
	maxScopeItem  = 128
)

var errAcceptFirst = apierr.New(apierr.FailedPrecondition, "accept the delegation first: a pending delegated pair answers only its challenge")

// delegateID is the id of a member's pair record: k/<key id>/delegate/<user>/<device>.
func delegateID(keyID, userID, deviceID string) string {
	return keyID + "/delegate/" + userID + "/" + deviceID
}

// memberRef names a pair in SplitKey.delegates.
func memberRef(userID, deviceID string) string { return userID + "/" + deviceID }

// delegateAD binds a member's wrapped share to the key, the member, the device and the pair's
// version; it differs from every shareAD, so a delegated blob never opens as a primary share.
func delegateAD(keyID, userID, deviceID string, version uint32) []byte {
	return []byte("hufu/key/v1 delegate " + keyID + "/" + userID + "/" + deviceID + "/" + fmtVersion(version))
}

// delegateOfferAD binds the wrapped offer of a pending refresh of a member's pair; it differs
// from every offerAD.
func delegateOfferAD(keyID, userID, deviceID string, version uint32) []byte {
	return []byte("hufu/key/v1 delegate-refresh-offer " + keyID + "/" + userID + "/" + deviceID + "/" + fmtVersion(version))
}

// delegatePINContext is the context of a member's PIN verifier.
func delegatePINContext(keyID, userID, deviceID string) []byte {
	return []byte("hufu/key/v1 delegate-pin " + keyID + "/" + userID + "/" + deviceID)
}

// keyPINContext is the context of the key's own PIN verifier: the default, or the member's
// context that a promoted pair brought along.
func keyPINContext(rec *storepb.SplitKey) []byte {
	if len(rec.PinContext) > 0 {
		return rec.PinContext
	}
	return pinContext(rec.Id)
}

// holdsShare reports a pair whose share exists (pending or active).
func holdsShare(d *storepb.DelegatedShare) bool {
	return statusHoldsShare(d.Status)
}

func statusHoldsShare(s storepb.DelegationStatus) bool {
	return s == pairPending || s == pairActive
}

// isHolder reports whether caller uses the key's primary pair.
func isHolder(caller authn.Caller, rec *storepb.SplitKey) bool {
	return caller.UserID != "" && rec.UserId == caller.UserID && rec.DeviceId == caller.DeviceID
}

// checkPairStatus refuses a pair that ended.
func checkPairStatus(d *storepb.DelegatedShare) error {
	switch d.Status {
	case pairPending, pairActive:
		return nil
	case pairRecalled:
		return apierr.New(apierr.PermissionDenied, "the delegation was recalled")
	}
	return apierr.New(apierr.PermissionDenied, "the delegation ended: the pair became the key's primary pair")
}

func checkMember(field, userID, deviceID string) error {
	if err := store.ValidPart(userID); err != nil {
		return apierr.Invalidf(field+"_user_id", "not a valid user id")
	}
	if err := store.ValidPart(deviceID); err != nil {
		return apierr.Invalidf(field+"_device_id", "not a valid device id")
	}
	return nil
}

// holding is the record that holds a caller's pair on a key: the key's own (the holder) or
// the caller's delegated pair.
type holding struct {
	key *storepb.SplitKey
	del *storepb.DelegatedShare // nil for the holder
}

func (h holding) pending() bool { return h.del != nil && h.del.Status == pairPending }

func (h holding) userID() string {
	if h.del != nil {
		return h.del.MemberUserId
	}
	return h.key.UserId
}

func (h holding) deviceID() string {
	if h.del != nil {
		return h.del.MemberDeviceId
	}
	return h.key.DeviceId
}

func (h holding) cacheID() string {
	if h.del != nil {
		return pairCacheID(h.key.Id, h.del.MemberUserId, h.del.MemberDeviceId)
	}
	return h.key.Id
}

// pinFields points at the PIN state of the pair.
type pinFields struct {
	verifier, salt *[]byte
	failures       *uint32
	lockedUntil    *int64
	context        []byte
}

func (h holding) pinFields() pinFields {
	if d := h.del; d != nil {
		return pinFields{&d.PinVerifier, &d.PinSalt, &d.PinFailures, &d.LockedUntilUnixNano,
			delegatePINContext(d.KeyId, d.MemberUserId, d.MemberDeviceId)}
	}
	k := h.key
	return pinFields{&k.PinVerifier, &k.PinSalt, &k.PinFailures, &k.LockedUntilUnixNano, keyPINContext(k)}
}

// newPINContext is the context a new PIN verifier of the pair is made with.
func (h holding) newPINContext() []byte {
	if d := h.del; d != nil {
		return delegatePINContext(d.KeyId, d.MemberUserId, d.MemberDeviceId)
	}
	return pinContext(h.key.Id)
}

func (h holding) put(tx *store.Tx) error {
	if d := h.del; d != nil {
		return delegates.Put(tx, delegateID(d.KeyId, d.MemberUserId, d.MemberDeviceId), d)
	}
	return splitKeys.Put(tx, h.key.Id, h.key)
}

// resolveHolding picks the caller's pair of the key rec: the primary pair from the holder's
// device, else the caller's delegated pair (get reads it; store.ErrNotFound if none), else,
// with anyDevice, the key's own record for its holder on another device (PIN reset). Anybody
// else gets the answer checkUsable gives.
func (s *Service) resolveHolding(caller authn.Caller, rec *storepb.SplitKey, anyDevice bool, get func(id string) (*storepb.DelegatedShare, error)) (holding, error) {
	if isHolder(caller, rec) {
		return holding{key: rec}, nil
	}
	if caller.UserID != "" && caller.DeviceID != "" &&
		store.ValidPart(caller.UserID) == nil && store.ValidPart(caller.DeviceID) == nil {
		del, err := get(delegateID(rec.Id, caller.UserID, caller.DeviceID))
		if err == nil {
			return holding{key: rec, del: del}, nil
		}
		if !errors.Is(err, store.ErrNotFound) {
			return holding{}, err
		}
	}
	if anyDevice && caller.UserID != "" && rec.UserId == caller.UserID {
		return holding{key: rec}, nil
	}
	return holding{}, s.checkUsable(caller, rec)
}

// holdingIn resolves the caller's pair inside tx, locking the records.
func (s *Service) holdingIn(tx *store.Tx, caller authn.Caller, keyID string, anyDevice bool) (holding, error) {
	rec, err := splitKeys.Get(tx, keyID)
	if errors.Is(err, store.ErrNotFound) {
		return holding{}, apierr.New(apierr.NotFound, "no key %q", keyID)
	}
	if err != nil {
		return holding{}, err
	}
	return s.resolveHolding(caller, rec, anyDevice, func(id string) (*storepb.DelegatedShare, error) {
		return delegates.Get(tx, id)
	})
}

// holdingAt resolves the caller's pair from the latest committed state (any device of the
// holder's account).
func (s *Service) holdingAt(ctx context.Context, caller authn.Caller, keyID string) (holding, error) {
	rec, err := splitKeys.Read(ctx, s.deps.Store, keyID)
	if errors.Is(err, store.ErrNotFound) {
		return holding{}, apierr.New(apierr.NotFound, "no key %q", keyID)
	}
	if err != nil {
		return holding{}, err
	}
	return s.resolveHolding(caller, rec, true, func(id string) (*storepb.DelegatedShare, error) {
		return delegates.Read(ctx, s.deps.Store, id)
	})
}

// checkHolding is checkUsable for either kind of pair: the key not revoked, the pair not
// ended, the caller's own PIN not locked.
func (s *Service) checkHolding(caller authn.Caller, h holding) error {
	if h.del == nil {
		return s.checkUsable(caller, h.key)
	}
	if h.key.Status == statusRevoked {
		return apierr.New(apierr.FailedPrecondition, "the key is revoked and its server share deleted")
	}
	if err := checkPairStatus(h.del); err != nil {
		return err
	}
	if until := time.Unix(0, h.del.LockedUntilUnixNano); s.deps.Clock.Now().Before(until) {
		wait := until.Sub(s.deps.Clock.Now())
		return apierr.Exhausted(wait, "your delegated pair of this key is locked after too many wrong PINs; retry in %v or reset your PIN", wait.Round(time.Second))
	}
	return nil
}

// errNoPair: the caller has no delegated pair of the key (the cache does not keep it).
var errNoPair = errors.New("keys: no delegated pair")

// usePair acquires the caller's delegated pair of a key, for use after the caller turned out
// not to be its holder. notHolder is the answer for a caller without a pair.
func (s *Service) usePair(ctx context.Context, caller authn.Caller, keyID string, notHolder error) (*cacheEntry, error) {
	if caller.UserID == "" || caller.DeviceID == "" || store.ValidPart(caller.UserID) != nil || store.ValidPart(caller.DeviceID) != nil {
		return nil, notHolder
	}
	e, err := s.cache.acquire(ctx, pairCacheID(keyID, caller.UserID, caller.DeviceID), func(ctx context.Context) (*loadedKey, error) {
		ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), loadTimeout)
		defer cancel()
		return s.loadPair(ctx, keyID, caller.UserID, caller.DeviceID)
	})
	if errors.Is(err, errNoPair) {
		return nil, notHolder
	}
	if err != nil {
		return nil, err
	}
	if err := s.checkHolding(caller, holding{key: e.key.rec, del: e.key.del}); err != nil {
		s.cache.release(e)
		return nil, err
	}
	return e, nil
}

// loadPair reads a member's pair and unwraps its share: the cache's loader for pairs. A pair
// that ended, or of a revoked key, loads without a share (checkHolding refuses it).
func (s *Service) loadPair(ctx context.Context, keyID, userID, deviceID string) (*loadedKey, error) {
	rec, err := splitKeys.Read(ctx, s.deps.Store, keyID)
	if errors.Is(err, store.ErrNotFound) {
		return nil, errNoPair
	}
	if err != nil {
		return nil, err
	}
	del, err := delegates.Read(ctx, s.deps.Store, delegateID(keyID, userID, deviceID))
	if errors.Is(err, store.ErrNotFound) {
		return nil, errNoPair
	}
	if err != nil {
		return nil, err
	}
	public, err := cosign.ParsePoint(rec.PublicKey)
	if err != nil {
		return nil, fmt.Errorf("keys: stored public key of %s: %w", keyID, err)
	}
	k := &loadedKey{rec: rec, del: del, public: public, state: cosign.ServerKey{Public: public, Version: del.ShareVersion}}
	if rec.Status == statusRevoked || !holdsShare(del) {
		return k, nil
	}
	if k.state.Share, err = s.unwrapShareAD(ctx, keyID, del.ShareWrapped, delegateAD(keyID, userID, deviceID, del.ShareVersion)); err != nil {
		return nil, err
	}
	if p := del.Pending; p != nil && del.Status == pairActive {
		pending, err := s.unwrapPending(ctx, keyID, p, delegateAD(keyID, userID, deviceID, p.Version), delegateOfferAD(keyID, userID, deviceID, p.Version))
		if err != nil {
			k.destroy()
			return nil, err
		}
		k.state.Pending = pending
	}
	if del.Status == pairPending {
		nonce, ok := nonceOf(del)
		if !ok {
			k.destroy()
			return nil, fmt.Errorf("keys: stored delegation of %s: challenge nonce of %d bytes", keyID, len(del.ChallengeNonce))
		}
		k.challenge = cosign.DelegationChallenge(cosign.DelegationContext(keyID, userID, deviceID), &nonce)
	}
	return k, nil
}

func nonceOf(del *storepb.DelegatedShare) ([cosign.ScalarSize]byte, bool) {
	var n [cosign.ScalarSize]byte
	if len(del.ChallengeNonce) != len(n) {
		return n, false
	}
	copy(n[:], del.ChallengeNonce)
	return n, true
}

// pairView is the key as a member sees it through its pair (GetKey, CommitRefresh): the
// key's id, label, public key and status with the pair's account, device, share versions and
// PIN state, and no secrets.
func pairView(rec *storepb.SplitKey, del *storepb.DelegatedShare) *storepb.SplitKey {
	out := &storepb.SplitKey{
		Id: rec.Id, Label: rec.Label, PublicKey: rec.PublicKey, Status: rec.Status, CreatedUnixNano: rec.CreatedUnixNano,
		UserId: del.MemberUserId, DeviceId: del.MemberDeviceId, ShareVersion: del.ShareVersion,
		PinFailures: del.PinFailures, LockedUntilUnixNano: del.LockedUntilUnixNano,
	}
	if del.Pending != nil {
		out.Pending = &storepb.PendingRefresh{Version: del.Pending.Version}
	}
	return out
}

// withoutSecrets returns a copy of a pair record without its wrapped share and PIN verifier, for
// callers outside the package.
func withoutSecrets(d *storepb.DelegatedShare) *storepb.DelegatedShare {
	out := proto.Clone(d).(*storepb.DelegatedShare)
	out.ShareWrapped, out.PinVerifier, out.PinSalt = nil, nil, nil
	if out.Pending != nil {
		out.Pending = &storepb.PendingRefresh{Version: out.Pending.Version}
	}
	return out
}

// endPair erases a pair's share, any pending refresh of it, and its secrets and marks it
// ended. A pending refresh's version is kept as the share version, so that a later grant to
// the same member and device wraps under associated data no erased blob had.
func endPair(d *storepb.DelegatedShare, status storepb.DelegationStatus, now time.Time) {
	clear(d.ShareWrapped)
	if p := d.Pending; p != nil {
		clear(p.ShareWrapped)
		clear(p.OfferWrapped)
		d.ShareVersion = max(d.ShareVersion, p.Version)
		d.Pending = nil
	}
	d.Status, d.EndedUnixNano = status, now.UnixNano()
	d.ShareWrapped, d.Envelope, d.ChallengeNonce, d.PinVerifier, d.PinSalt = nil, nil, nil, nil, nil
	d.PinFailures, d.LockedUntilUnixNano = 0, 0
}

func removeRef(refs []string, ref string) []string {
	return slices.DeleteFunc(refs, func(r string) bool { return r == ref })
}

// renameInput names a cosign decoding error after the API field: "delegation_grant.rho"
// becomes "grant.rho".
func renameInput(err error, field string) error {
	var ie *cosign.InputError
	if errors.As(err, &ie) {
		name := field
		if _, sub, ok := strings.Cut(ie.Field, "."); ok {
			name += "." + sub
		}
		return apierr.Invalid(name, ie.Err)
	}
	return err
}

func checkScope(scope []string) error {
	if len(scope) > maxScopeItems {
		return apierr.Invalidf("scope", "at most %d items", maxScopeItems)
	}
	for i, item := range scope {
		if item == "" || len(item) > maxScopeItem || !utf8.ValidString(item) {
			return apierr.Invalidf(fmt.Sprintf("scope[%d]", i), "1 to %d bytes of UTF-8", maxScopeItem)
		}
	}
	return nil
}

// Several keys at once. A domain whose subject holds more than one key (an enterprise's
// signing and encryption keys) delegates, accepts, recalls and promotes the member's pairs of
// all of them together: each operation below takes a slice, checks and prepares every key's
// part outside the store (PINs, HSM wrapping), then commits every key's records, their audit
// records and the domain's own (with) in ONE store transaction, so a member never holds a
// pair of one key and not of the other. Each key keeps its own ρ, envelope, P2′, challenge,
// confirmation, PIN and credential. The single-key forms are the same code with one item.

// KeyGrant is one key's part of a delegation: the holder's credential for the key, the cosign
// DelegationGrant (ρ) for the appliance, and the delegation envelope for the member (opaque
// here, at most 1 KiB). Field prefixes the names of the request fields the part came from in
// errors: "" for the request's own fields, "encryption." for a nested part.
type KeyGrant struct {
	KeyID           string
	Cred            Credential
	Grant, Envelope []byte
	Field           string
}

// preparedGrant is one key's grant, checked and its new share wrapped, ready to commit.
type preparedGrant struct {
	rec          *storepb.DelegatedShare
	wrapped, ad  []byte
	shareVersion uint32 // the holder's share version the grant was made from
}

// prefixField names an InvalidArgument error after a nested request field.
func prefixField(err error, prefix string) error {
	var ae *apierr.Error
	if prefix == "" || !errors.As(err, &ae) || ae.Field == "" {
		return err
	}
	out := *ae
	out.Field = prefix + ae.Field
	return &out
}

// GrantDelegation is GrantDelegations for one key; it returns the pair's record and P2′.
func (s *Service) GrantDelegation(ctx context.Context, caller authn.Caller, keyID string, cred Credential, memberUserID, memberDeviceID string, grant, envelope []byte, scope []string, with func(tx *store.Tx) error) (*storepb.DelegatedShare, []byte, error) {
	recs, err := s.GrantDelegations(ctx, caller, memberUserID, memberDeviceID,
		[]KeyGrant{{KeyID: keyID, Cred: cred, Grant: grant, Envelope: envelope}}, scope, with)
	if err != nil {
		return nil, nil, err
	}
	return recs[0], recs[0].P2, nil
}

// GrantDelegations is the appliance's step of a delegation: the caller, the holder of every
// key in grants on its device with its PIN or a ticket for each, gives the member's device a
// pair of each key. The new pairs are pending until the member accepts; scope is stored as
// given. with, if not nil, runs in the same transaction. It returns the pairs' records
// (without secrets; P2 is P2′, which the member checks its share against), in the order of
// grants.
//
// Refused: a member who already has a pending or active pair of a key on that device
// (FailedPrecondition: recall it first), the holder's own device, a key with a share refresh
// pending, a caller who is not the holder.
func (s *Service) GrantDelegations(ctx context.Context, caller authn.Caller, memberUserID, memberDeviceID string, grants []KeyGrant, scope []string, with func(tx *store.Tx) error) ([]*storepb.DelegatedShare, error) {
	if err := firstError(checkMember("member", memberUserID, memberDeviceID), checkScope(scope), checkDistinct(len(grants), func(i int) (string, string) { return grants[i].KeyID, grants[i].Field })); err != nil {
		return nil, err
	}
	if memberUserID == caller.UserID && memberDeviceID == caller.DeviceID {
		return nil, apierr.Invalidf("member_device_id", "the key's own device already holds its primary pair")
	}
	prepared := make([]*preparedGrant, len(grants))
	for i, g := range grants {
		p, err := s.prepareGrant(ctx, caller, memberUserID, memberDeviceID, g, scope)
		if err != nil {
			return nil, prefixField(err, g.Field)
		}
		prepared[i] = p
	}
	err := s.deps.Store.Update(ctx, func(tx *store.Tx) error {
		for _, p := range prepared {
			if err := s.commitGrant(ctx, tx, caller, p); err != nil {
				return err
			}
		}
		if with != nil {
			return with(tx)
		}
		return nil
	})
	out := make([]*storepb.DelegatedShare, len(prepared))
	for i, p := range prepared {
		s.cache.invalidate(p.rec.KeyId)
		out[i] = withoutSecrets(p.rec)
	}
	if err != nil {
		return nil, err
	}
	return out, nil
}

// checkDistinct refuses a batch that names a key twice.
func checkDistinct(n int, item func(i int) (keyID, field string)) error {
	if n == 0 {
		return apierr.Invalidf("key_id", "name at least one key")
	}
	seen := make(map[string]bool, n)
	for i := range n {
		id, field := item(i)
		if seen[id] {
			return apierr.Invalidf(field+"key_id", "key %q is named twice", id)
		}
		seen[id] = true
	}
	return nil
}

// prepareGrant checks one key's grant outside the store: the caller holds the key and
// authorises its use, ρ makes d2′ = ρ⁻¹·d2, which is wrapped for the member's pair. Errors
// name the fields of the part (the caller prefixes them).
func (s *Service) prepareGrant(ctx context.Context, caller authn.Caller, memberUserID, memberDeviceID string, kg KeyGrant, scope []string) (*preparedGrant, error) {
	if err := checkKeyID(kg.KeyID); err != nil {
		return nil, err
	}
	if len(kg.Envelope) == 0 || len(kg.Envelope) > maxEnvelope {
		return nil, apierr.Invalidf("envelope", "a delegation envelope of 1 to %d bytes is required, not %d", maxEnvelope, len(kg.Envelope))
	}
	var g cosign.DelegationGrant
	if err := g.UnmarshalBinary(kg.Grant); err != nil {
		return nil, renameInput(err, "grant")
	}
	defer clear(g.Rho[:])
	e, err := s.use(ctx, caller, kg.KeyID)
	if err != nil {
		return nil, err
	}
	defer s.cache.release(e)
	if e.key.del != nil {
		return nil, apierr.New(apierr.PermissionDenied, "only the key's holder can delegate it")
	}
	if e.key.state.Pending != nil {
		return nil, apierr.New(apierr.FailedPrecondition, "a share refresh of key %s is pending; finish it first", kg.KeyID)
	}
	if err := s.authorize(ctx, caller, e, kg.Cred, 1); err != nil {
		return nil, err
	}
	share, p2, err := e.key.state.Share.Delegate(&g)
	if err != nil {
		return nil, renameInput(err, "grant")
	}
	defer share.Destroy()
	id := delegateID(kg.KeyID, memberUserID, memberDeviceID)
	version := uint32(1)
	if prev, err := delegates.Read(ctx, s.deps.Store, id); err == nil {
		version = prev.ShareVersion + 1
	} else if !errors.Is(err, store.ErrNotFound) {
		return nil, err
	}
	nonce := make([]byte, cosign.ScalarSize)
	if _, err := io.ReadFull(s.deps.Rand, nonce); err != nil {
		return nil, fmt.Errorf("keys: challenge nonce: %w", err)
	}
	ad := delegateAD(kg.KeyID, memberUserID, memberDeviceID, version)
	raw, _ := share.MarshalBinary()
	wrapped, err := s.deps.Keyring.Wrap(ctx, raw, ad)
	clear(raw)
	if err != nil {
		return nil, hsmError(err)
	}
	return &preparedGrant{
		rec: &storepb.DelegatedShare{
			KeyId: kg.KeyID, MemberUserId: memberUserID, MemberDeviceId: memberDeviceID, Status: pairPending,
			ShareVersion: version, P2: p2[:], Envelope: kg.Envelope, ChallengeNonce: nonce,
			GrantedBy: caller.UserID, Scope: scope,
		},
		wrapped: wrapped, ad: ad, shareVersion: e.key.state.Version,
	}, nil
}

// commitGrant stores one prepared grant inside tx, with its audit record, if the key and the
// member's pair are as they were when it was prepared.
func (s *Service) commitGrant(ctx context.Context, tx *store.Tx, caller authn.Caller, p *preparedGrant) error {
	rec := p.rec
	keyID, id := rec.KeyId, delegateID(rec.KeyId, rec.MemberUserId, rec.MemberDeviceId)
	key, err := splitKeys.Get(tx, keyID)
	if err != nil {
		return err
	}
	if key.Status == statusRevoked {
		return apierr.New(apierr.FailedPrecondition, "key %s is revoked", keyID)
	}
	// Aborted only for what a retry prepares anew (the holder's share version moved): a caller
	// who lost the key (an administrator's transfer) or a refresh begun meanwhile is answered
	// as prepareGrant would answer the retry.
	if !isHolder(caller, key) {
		return apierr.New(apierr.PermissionDenied, "only the key's holder can delegate it: key %s changed hands meanwhile", keyID)
	}
	if key.Pending != nil {
		return apierr.New(apierr.FailedPrecondition, "a share refresh of key %s is pending; finish it first", keyID)
	}
	if key.ShareVersion != p.shareVersion {
		return apierr.New(apierr.Aborted, "key %s changed meanwhile; retry", keyID)
	}
	old, err := delegates.Get(tx, id)
	switch {
	case err == nil && holdsShare(old):
		return apierr.New(apierr.FailedPrecondition, "the member already has a %s delegated pair of key %s on that device; recall it first",
			map[storepb.DelegationStatus]string{pairPending: "pending", pairActive: "active"}[old.Status], keyID)
	case err == nil && old.ShareVersion >= rec.ShareVersion:
		return apierr.New(apierr.Aborted, "the delegation changed meanwhile; retry")
	case err != nil && !errors.Is(err, store.ErrNotFound):
		return err
	}
	// Wrapped before the transaction: a KEK rotation may have begun since.
	if rec.ShareWrapped, err = s.deps.Keyring.EnsureCurrent(ctx, p.wrapped, p.ad); err != nil {
		return hsmError(err)
	}
	rec.GrantedUnixNano = tx.Now().UnixNano()
	if err := delegates.Put(tx, id, rec); err != nil {
		return err
	}
	ref := memberRef(rec.MemberUserId, rec.MemberDeviceId)
	key.Delegates = append(removeRef(key.Delegates, ref), ref)
	if err := splitKeys.Put(tx, keyID, key); err != nil {
		return err
	}
	return s.recordTx(tx, caller, keyID, "delegate.grant", "", "ok", pairDetails(rec))
}

func pairDetails(d *storepb.DelegatedShare) map[string]string {
	return map[string]string{"member_user": d.MemberUserId, "member_device": d.MemberDeviceId, "version": fmtVersion(d.ShareVersion)}
}

// DelegationOffer returns the caller's pending delegated pair of a key, for the member's
// device to accept: the record (with the envelope), the key's public key P, P2′ and the
// challenge to sign with the new pair (cosign.DelegationChallenge). NotFound if the caller
// (account and device) has no pair of the key.
func (s *Service) DelegationOffer(ctx context.Context, caller authn.Caller, keyID string) (*storepb.DelegatedShare, []byte, []byte, []byte, error) {
	if err := checkKeyID(keyID); err != nil {
		return nil, nil, nil, nil, err
	}
	notFound := apierr.New(apierr.NotFound, "no delegation of key %q for this device", keyID)
	if caller.UserID == "" || caller.DeviceID == "" || store.ValidPart(caller.UserID) != nil || store.ValidPart(caller.DeviceID) != nil {
		return nil, nil, nil, nil, notFound
	}
	rec, err := splitKeys.Read(ctx, s.deps.Store, keyID)
	if errors.Is(err, store.ErrNotFound) {
		return nil, nil, nil, nil, notFound
	}
	if err != nil {
		return nil, nil, nil, nil, err
	}
	del, err := delegates.Read(ctx, s.deps.Store, delegateID(keyID, caller.UserID, caller.DeviceID))
	if errors.Is(err, store.ErrNotFound) {
		return nil, nil, nil, nil, notFound
	}
	if err != nil {
		return nil, nil, nil, nil, err
	}
	if rec.Status == statusRevoked {
		return nil, nil, nil, nil, apierr.New(apierr.FailedPrecondition, "the key is revoked")
	}
	if err := checkPairStatus(del); err != nil {
		return nil, nil, nil, nil, err
	}
	if del.Status != pairPending {
		return nil, nil, nil, nil, apierr.New(apierr.FailedPrecondition, "the delegation was accepted already")
	}
	nonce, ok := nonceOf(del)
	if !ok {
		return nil, nil, nil, nil, fmt.Errorf("keys: stored delegation of %s: bad challenge nonce", keyID)
	}
	challenge := cosign.DelegationChallenge(cosign.DelegationContext(keyID, caller.UserID, caller.DeviceID), &nonce)
	return withoutSecrets(del), rec.PublicKey, del.P2, challenge[:], nil
}

// KeyAcceptance is one key's part of an acceptance: the member's new certificate PIN for its
// pair of the key, and the confirmation, a signature (cosign.Signature, 64 bytes r ‖ s) under
// the key's public key on the pair's challenge made with the new pair. Field prefixes the
// part's field names in errors, as KeyGrant.Field.
type KeyAcceptance struct {
	KeyID, PIN   string
	Confirmation []byte
	Field        string
}

// preparedAcceptance is one key's acceptance with its PIN verifier made.
type preparedAcceptance struct {
	keyID, field   string
	sig            cosign.Signature
	verifier, salt []byte
}

// AcceptDelegation is AcceptDelegations for one key.
func (s *Service) AcceptDelegation(ctx context.Context, caller authn.Caller, keyID, pin string, confirmation []byte, with func(tx *store.Tx) error) error {
	return s.AcceptDelegations(ctx, caller, []KeyAcceptance{{KeyID: keyID, PIN: pin, Confirmation: confirmation}}, with)
}

// AcceptDelegations activates the caller's pending pairs of the keys in accepts, in one
// transaction: each confirmation must be a signature under its key's public key on its pair's
// challenge, which only the new pair can have made (the pending pair answers nothing else),
// and each PIN becomes the member's own certificate PIN for that pair. The envelopes are
// dropped. with, if not nil, runs in the same transaction.
func (s *Service) AcceptDelegations(ctx context.Context, caller authn.Caller, accepts []KeyAcceptance, with func(tx *store.Tx) error) error {
	if err := checkDistinct(len(accepts), func(i int) (string, string) { return accepts[i].KeyID, accepts[i].Field }); err != nil {
		return err
	}
	prepared := make([]*preparedAcceptance, len(accepts))
	for i, a := range accepts {
		p, err := s.prepareAcceptance(ctx, caller, a)
		if err != nil {
			return prefixField(err, a.Field)
		}
		prepared[i] = p
	}
	err := s.deps.Store.Update(ctx, func(tx *store.Tx) error {
		for _, p := range prepared {
			if err := s.commitAcceptance(tx, caller, p); err != nil {
				return prefixField(err, p.field)
			}
		}
		if with != nil {
			return with(tx)
		}
		return nil
	})
	for _, p := range prepared {
		s.cache.invalidateEntry(pairCacheID(p.keyID, caller.UserID, caller.DeviceID))
	}
	return err
}

func (s *Service) prepareAcceptance(ctx context.Context, caller authn.Caller, a KeyAcceptance) (*preparedAcceptance, error) {
	if err := firstError(checkKeyID(a.KeyID), checkPIN("pin", a.PIN)); err != nil {
		return nil, err
	}
	p := &preparedAcceptance{keyID: a.KeyID, field: a.Field}
	if err := p.sig.UnmarshalBinary(a.Confirmation); err != nil {
		return nil, renameInput(err, "confirmation")
	}
	if caller.UserID == "" || caller.DeviceID == "" || store.ValidPart(caller.UserID) != nil || store.ValidPart(caller.DeviceID) != nil {
		return nil, apierr.New(apierr.NotFound, "no delegation of key %q for this device", a.KeyID)
	}
	p.salt = make([]byte, 16)
	if _, err := io.ReadFull(s.deps.Rand, p.salt); err != nil {
		return nil, fmt.Errorf("keys: PIN salt: %w", err)
	}
	var err error
	if p.verifier, err = s.deps.Keyring.PINVerifier(ctx, p.salt, delegatePINContext(a.KeyID, caller.UserID, caller.DeviceID), []byte(a.PIN)); err != nil {
		return nil, hsmError(err)
	}
	return p, nil
}

// commitAcceptance activates one pair inside tx, with its audit record.
func (s *Service) commitAcceptance(tx *store.Tx, caller authn.Caller, p *preparedAcceptance) error {
	keyID := p.keyID
	id := delegateID(keyID, caller.UserID, caller.DeviceID)
	rec, err := splitKeys.Get(tx, keyID)
	if errors.Is(err, store.ErrNotFound) {
		return apierr.New(apierr.NotFound, "no delegation of key %q for this device", keyID)
	}
	if err != nil {
		return err
	}
	del, err := delegates.Get(tx, id)
	if errors.Is(err, store.ErrNotFound) {
		return apierr.New(apierr.NotFound, "no delegation of key %q for this device", keyID)
	}
	if err != nil {
		return err
	}
	if rec.Status == statusRevoked {
		return apierr.New(apierr.FailedPrecondition, "key %s is revoked", keyID)
	}
	if err := checkPairStatus(del); err != nil {
		return err
	}
	if del.Status != pairPending {
		return apierr.New(apierr.FailedPrecondition, "the delegation of key %s was accepted already", keyID)
	}
	public, err := cosign.ParsePoint(rec.PublicKey)
	if err != nil {
		return fmt.Errorf("keys: stored public key of %s: %w", keyID, err)
	}
	nonce, ok := nonceOf(del)
	if !ok {
		return fmt.Errorf("keys: stored delegation of %s: bad challenge nonce", keyID)
	}
	challenge := cosign.DelegationChallenge(cosign.DelegationContext(keyID, caller.UserID, caller.DeviceID), &nonce)
	if !cosign.Verify(&public, &challenge, &p.sig) {
		return apierr.Invalidf("confirmation", "does not verify as a signature under key %s on this delegation's challenge", keyID)
	}
	if len(del.ChallengeR) == 0 {
		return apierr.New(apierr.FailedPrecondition, "sign the challenge of key %s with the new pair first (CosignService.Sign)", keyID)
	}
	if subtle.ConstantTimeCompare(del.ChallengeR, p.sig.R[:]) != 1 {
		// A signature under P by another pair of the key (the holder's, another device's):
		// it proves nothing about this device's share.
		return apierr.Invalidf("confirmation", "not the signature the new pair made on the challenge")
	}
	del.Status, del.AcceptedUnixNano = pairActive, tx.Now().UnixNano()
	del.PinVerifier, del.PinSalt, del.PinFailures, del.LockedUntilUnixNano = p.verifier, p.salt, 0, 0
	del.Envelope, del.ChallengeNonce, del.ChallengeR = nil, nil, nil
	if err := delegates.Put(tx, id, del); err != nil {
		return err
	}
	return s.recordTx(tx, caller, keyID, "delegate.accept", "", "ok", pairDetails(del))
}

// RecallDelegation is RecallDelegations for one key.
func (s *Service) RecallDelegation(ctx context.Context, actor authn.Caller, keyID, memberUserID, memberDeviceID string, with func(tx *store.Tx) error) error {
	return s.RecallDelegations(ctx, actor, []string{keyID}, memberUserID, memberDeviceID, with)
}

// RecallDelegations ends a member device's pairs of the keys, in one transaction: their
// shares, envelopes and PINs are erased, their cached shares dropped at once and their
// tickets revoked, so the member's next call with any of the keys is refused
// (PermissionDenied, "the delegation was recalled"); the holder and other members are not
// affected. Recalling a recalled pair does nothing. actor is who recalls (audited); whether
// it may is the caller's decision. with, if not nil, runs in the same transaction.
func (s *Service) RecallDelegations(ctx context.Context, actor authn.Caller, keyIDs []string, memberUserID, memberDeviceID string, with func(tx *store.Tx) error) error {
	if err := firstError(checkDistinct(len(keyIDs), func(i int) (string, string) { return keyIDs[i], "" }), checkMember("member", memberUserID, memberDeviceID)); err != nil {
		return err
	}
	for _, keyID := range keyIDs {
		if err := checkKeyID(keyID); err != nil {
			return err
		}
	}
	err := s.deps.Store.Update(ctx, func(tx *store.Tx) error {
		for _, keyID := range keyIDs {
			if err := s.recallIn(tx, actor, keyID, memberUserID, memberDeviceID); err != nil {
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
		s.tickets.revokeHolder(keyID, memberUserID, memberDeviceID)
	}
	return err
}

// recallIn ends one pair inside tx, with its audit record.
func (s *Service) recallIn(tx *store.Tx, actor authn.Caller, keyID, memberUserID, memberDeviceID string) error {
	id := delegateID(keyID, memberUserID, memberDeviceID)
	rec, err := splitKeys.Get(tx, keyID)
	if errors.Is(err, store.ErrNotFound) {
		return apierr.New(apierr.NotFound, "no key %q", keyID)
	}
	if err != nil {
		return err
	}
	del, err := delegates.Get(tx, id)
	if errors.Is(err, store.ErrNotFound) {
		return apierr.New(apierr.NotFound, "no delegation of key %q for that member and device", keyID)
	}
	if err != nil {
		return err
	}
	switch del.Status {
	case pairRecalled:
		return nil
	case pairPromoted:
		return apierr.New(apierr.FailedPrecondition, "that pair of key %s is the key's primary pair now", keyID)
	}
	endPair(del, pairRecalled, tx.Now())
	rec.Delegates = removeRef(rec.Delegates, memberRef(memberUserID, memberDeviceID))
	if err := delegates.Put(tx, id, del); err != nil {
		return err
	}
	if err := splitKeys.Put(tx, keyID, rec); err != nil {
		return err
	}
	return s.recordTx(tx, actor, keyID, "delegate.recall", "", "ok", pairDetails(del))
}

// errPromotePending: the pair to promote has a share refresh pending. Its pending share and
// offer are versioned and bound as the pair's, and the member's device may commit it at any
// moment, so it is not carried over: the member finishes (or resumes) the refresh first.
var errPromotePending = apierr.New(apierr.FailedPrecondition, "the member's pair has a share refresh pending; the member finishes it first (client.RefreshKey), then promote")

// preparedPromotion is one key's promotion with the member's share rewrapped as a primary
// share of the next version.
type preparedPromotion struct {
	keyID       string
	pairVersion uint32 // the member's pair's share version it was rewrapped from
	version     uint32 // the key's new share version
	wrapped     []byte
	before      *storepb.SplitKey // the key as it was, once committed
	recalled    [][2]string       // members whose pairs the promotion recalled
}

// PromoteDelegation is PromoteDelegations for one key.
func (s *Service) PromoteDelegation(ctx context.Context, actor authn.Caller, keyID, memberUserID, memberDeviceID string, with func(tx *store.Tx) error) error {
	return s.PromoteDelegations(ctx, actor, []string{keyID}, memberUserID, memberDeviceID, with)
}

// PromoteDelegations makes a member device's active pairs of the keys the keys' primary
// pairs (a transfer of the keys), in one transaction: each key's holder, device, PIN (the
// member's of that pair) and share become the member's, under a new share version with the
// share rewrapped as a primary share; the previous holder's share is destroyed, a pending
// refresh of it dropped, and the pair's record marked promoted. Every other member's pair of
// each key is recalled in the same transaction: the previous holder's device made their phone
// shares (d1·ρ) and still knows them, so the new holder grants them anew (and refreshes its
// own pairs, which that device made too). A pair with a share refresh of its own pending is
// refused (errPromotePending). actor is who promotes (audited); whether it may is the
// caller's decision. with, if not nil, runs in the same transaction; an error from it undoes
// the promotion of every key, and nobody's tickets are revoked. with must not return a
// store.Refuse: the promotion would commit but Update's error hides that, so the tickets of
// the previous holders and of the recalled members would stay open.
func (s *Service) PromoteDelegations(ctx context.Context, actor authn.Caller, keyIDs []string, memberUserID, memberDeviceID string, with func(tx *store.Tx) error) error {
	if err := firstError(checkDistinct(len(keyIDs), func(i int) (string, string) { return keyIDs[i], "" }), checkMember("member", memberUserID, memberDeviceID)); err != nil {
		return err
	}
	prepared := make([]*preparedPromotion, len(keyIDs))
	for i, keyID := range keyIDs {
		p, err := s.preparePromotion(ctx, keyID, memberUserID, memberDeviceID)
		if err != nil {
			return err
		}
		prepared[i] = p
	}
	err := s.deps.Store.Update(ctx, func(tx *store.Tx) error {
		// The store may run this more than once: only the last attempt's previous holders
		// and recalled members are the ones committed.
		for _, p := range prepared {
			p.before, p.recalled = nil, nil
		}
		for _, p := range prepared {
			if err := s.commitPromotion(ctx, tx, actor, p, memberUserID, memberDeviceID); err != nil {
				return err
			}
		}
		if with != nil {
			return with(tx)
		}
		return nil
	})
	for _, p := range prepared {
		s.cache.invalidate(p.keyID)
	}
	if err != nil {
		// Nothing changed: the previous holders and the other members keep their tickets.
		return err
	}
	for _, p := range prepared {
		s.tickets.revokeHolder(p.keyID, p.before.UserId, p.before.DeviceId)
		s.tickets.revokeHolder(p.keyID, memberUserID, memberDeviceID)
		for _, m := range p.recalled {
			s.tickets.revokeHolder(p.keyID, m[0], m[1])
		}
	}
	return nil
}

// preparePromotion checks one key's pair and rewraps its share as the key's next primary
// share, outside the store.
func (s *Service) preparePromotion(ctx context.Context, keyID, memberUserID, memberDeviceID string) (*preparedPromotion, error) {
	if err := checkKeyID(keyID); err != nil {
		return nil, err
	}
	rec, err := splitKeys.Read(ctx, s.deps.Store, keyID)
	if errors.Is(err, store.ErrNotFound) {
		return nil, apierr.New(apierr.NotFound, "no key %q", keyID)
	}
	if err != nil {
		return nil, err
	}
	del, err := delegates.Read(ctx, s.deps.Store, delegateID(keyID, memberUserID, memberDeviceID))
	if errors.Is(err, store.ErrNotFound) {
		return nil, apierr.New(apierr.NotFound, "no delegation of key %q for that member and device", keyID)
	}
	if err != nil {
		return nil, err
	}
	if rec.Status == statusRevoked {
		return nil, apierr.New(apierr.FailedPrecondition, "key %s is revoked", keyID)
	}
	if del.Status != pairActive {
		return nil, apierr.New(apierr.FailedPrecondition, "only an accepted (active) delegated pair can be promoted (key %s)", keyID)
	}
	if del.Pending != nil {
		return nil, errPromotePending
	}
	version := max(rec.ShareVersion, rec.GetPending().GetVersion()) + 1
	raw, err := s.deps.Keyring.Unwrap(ctx, del.ShareWrapped, delegateAD(keyID, memberUserID, memberDeviceID, del.ShareVersion))
	if err != nil {
		return nil, hsmError(err)
	}
	share, err := cosign.ParseServerShare(raw)
	if err != nil {
		clear(raw)
		return nil, fmt.Errorf("keys: stored delegated share of %s: %w", keyID, err)
	}
	share.Destroy()
	wrapped, err := s.deps.Keyring.Wrap(ctx, raw, shareAD(keyID, version))
	clear(raw)
	if err != nil {
		return nil, hsmError(err)
	}
	return &preparedPromotion{keyID: keyID, pairVersion: del.ShareVersion, version: version, wrapped: wrapped}, nil
}

// commitPromotion promotes one pair inside tx, recalling the key's other pairs, with the
// audit records.
func (s *Service) commitPromotion(ctx context.Context, tx *store.Tx, actor authn.Caller, p *preparedPromotion, memberUserID, memberDeviceID string) error {
	keyID, version := p.keyID, p.version
	id := delegateID(keyID, memberUserID, memberDeviceID)
	key, err := splitKeys.Get(tx, keyID)
	if err != nil {
		return err
	}
	pair, err := delegates.Get(tx, id)
	if err != nil {
		return err
	}
	if pair.Pending != nil {
		return errPromotePending
	}
	// Aborted only for what a retry prepares anew (a share version moved); a revoked key or an
	// ended pair stays so, and a client must not retry it forever.
	if key.Status == statusRevoked {
		return apierr.New(apierr.FailedPrecondition, "key %s was revoked meanwhile", keyID)
	}
	switch pair.Status {
	case pairActive:
	case pairRecalled:
		return apierr.New(apierr.FailedPrecondition, "the member's pair of key %s was recalled meanwhile", keyID)
	case pairPromoted:
		return apierr.New(apierr.FailedPrecondition, "the member's pair of key %s became the key's primary pair meanwhile", keyID)
	default:
		return apierr.New(apierr.FailedPrecondition, "only an accepted (active) delegated pair can be promoted (key %s)", keyID)
	}
	if pair.ShareVersion != p.pairVersion || max(key.ShareVersion, key.GetPending().GetVersion())+1 != version {
		return apierr.New(apierr.Aborted, "key %s changed meanwhile; retry", keyID)
	}
	wrapped, err := s.deps.Keyring.EnsureCurrent(ctx, p.wrapped, shareAD(keyID, version))
	if err != nil {
		return hsmError(err)
	}
	before := proto.Clone(key).(*storepb.SplitKey)
	clear(key.ShareWrapped)
	if key.Pending != nil {
		clear(key.Pending.ShareWrapped)
		clear(key.Pending.OfferWrapped)
	}
	key.UserId, key.DeviceId = memberUserID, memberDeviceID
	key.ShareVersion, key.ShareWrapped, key.Pending = version, wrapped, nil
	key.PinVerifier, key.PinSalt, key.PinContext = pair.PinVerifier, pair.PinSalt, delegatePINContext(keyID, memberUserID, memberDeviceID)
	key.PinFailures, key.LockedUntilUnixNano = pair.PinFailures, pair.LockedUntilUnixNano
	key.Delegates = removeRef(key.Delegates, memberRef(memberUserID, memberDeviceID))
	endPair(pair, pairPromoted, tx.Now())
	p.recalled = nil
	for _, ref := range key.Delegates {
		user, device, _ := strings.Cut(ref, "/")
		other, err := delegates.Get(tx, delegateID(keyID, user, device))
		if errors.Is(err, store.ErrNotFound) {
			continue
		}
		if err != nil {
			return err
		}
		endPair(other, pairRecalled, tx.Now())
		if err := delegates.Put(tx, delegateID(keyID, user, device), other); err != nil {
			return err
		}
		d := pairDetails(other)
		d["reason"] = "the key's holder changed"
		if err := s.recordTx(tx, actor, keyID, "delegate.recall", "", "ok", d); err != nil {
			return err
		}
		p.recalled = append(p.recalled, [2]string{user, device})
	}
	key.Delegates = nil
	if err := splitKeys.Put(tx, keyID, key); err != nil {
		return err
	}
	if err := delegates.Put(tx, id, pair); err != nil {
		return err
	}
	if before.UserId != memberUserID {
		k, _ := splitKeys.Key(keyID)
		if err := tx.RemoveIndex(indexUserKeys, before.UserId, k); err != nil {
			return err
		}
		if err := tx.AddIndex(indexUserKeys, memberUserID, k); err != nil {
			return err
		}
	}
	p.before = before
	details := map[string]string{
		"member_user": memberUserID, "member_device": memberDeviceID, "version": fmtVersion(version),
		"previous_user": before.UserId, "previous_device": before.DeviceId,
	}
	return s.recordTx(tx, actor, keyID, "delegate.promote", "", "ok", details)
}

// answeredChallenge records, with its audit record, the r of a pending pair's answer to its
// challenge, which its acceptance must carry.
func (s *Service) answeredChallenge(ctx context.Context, caller authn.Caller, keyID string, r []byte) error {
	id := delegateID(keyID, caller.UserID, caller.DeviceID)
	return s.deps.Store.Update(ctx, func(tx *store.Tx) error {
		del, err := delegates.Get(tx, id)
		if err != nil {
			return err
		}
		if del.Status != pairPending {
			return apierr.New(apierr.FailedPrecondition, "the delegation was accepted or ended meanwhile")
		}
		del.ChallengeR = r
		if err := delegates.Put(tx, id, del); err != nil {
			return err
		}
		return s.recordTx(tx, caller, keyID, "delegate.challenge", "", "ok", pairDetails(del))
	})
}

// ListDelegations returns every delegated pair record of a key, ended ones included, without
// their secrets. Who may see them is the caller's decision.
func (s *Service) ListDelegations(ctx context.Context, keyID string) ([]*storepb.DelegatedShare, error) {
	if err := checkKeyID(keyID); err != nil {
		return nil, err
	}
	var out []*storepb.DelegatedShare
	opts := store.ListOptions{Limit: store.MaxListLimit}
	for {
		page, err := delegates.List(ctx, s.deps.Store, keyID+"/delegate/", opts, nil)
		if err != nil {
			return nil, err
		}
		for _, it := range page.Items {
			out = append(out, withoutSecrets(it.Value))
		}
		if page.Next == "" {
			return out, nil
		}
		opts.Cursor = page.Next
	}
}
