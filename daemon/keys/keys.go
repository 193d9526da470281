// Package keys is the heart of the appliance: split SM2 keys in the daemon. It runs the
// server half of two-party key generation, signing, decryption and share refresh (package
// cosign), keeps each server share only as an HSM-wrapped blob bound to its key, share
// version and KEK, guards every use with the certificate PIN (or a short-lived ticket opened
// by it), and leaves a usage record and an audit record for every operation in the same
// store batch (seed manual §1.7.4, §1.9.3). A key's holder may give members' devices share
// pairs of their own under the same public key (delegated pairs, delegate.go), which the
// enterprise domain uses for staff; members use the key with their own PINs and can be
// recalled one by one.
//
// The hot path (Sign, Decrypt and their batches) touches the HSM only on a share-cache miss:
// shares are unwrapped once and kept in memory (cache.go), tickets are checked in memory
// (tickets.go), and the only I/O is the store commit of the operation's records.
package keys

import (
	"context"
	"crypto/rand"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"regexp"
	"runtime"
	"strconv"
	"time"

	"github.com/hufu-hsm/hufu/cosign"
	"github.com/hufu-hsm/hufu/daemon/accounts"
	"github.com/hufu-hsm/hufu/daemon/apierr"
	"github.com/hufu-hsm/hufu/daemon/authn"
	"github.com/hufu-hsm/hufu/store"
	"github.com/hufu-hsm/hufu/store/storepb"
	"github.com/prometheus/client_golang/prometheus"
)

// Keyring is what keys needs of the HSM.
type Keyring interface {
	Wrap(ctx context.Context, plaintext, ad []byte) ([]byte, error)
	Unwrap(ctx context.Context, blob, ad []byte) ([]byte, error)
	// EnsureCurrent rewraps a blob made under an older KEK (see hsm.Keyring.EnsureCurrent).
	EnsureCurrent(ctx context.Context, blob, ad []byte) ([]byte, error)
	PINVerifier(ctx context.Context, salt, keyContext, pin []byte) ([]byte, error)
	VerifyPIN(ctx context.Context, want, salt, keyContext, pin []byte) (bool, error)
}

// Accounts is what keys needs of the account domain.
type Accounts interface {
	VerifiedUser(ctx context.Context, userID string) (*storepb.User, error)
	ConsumeCode(ctx context.Context, tx *store.Tx, phone string, purpose accounts.Purpose, code string) error
}

// Options are the key policies, from the daemon's configuration.
type Options struct {
	PINMaxAttempts int           // consecutive wrong PINs that lock a key (default 5)
	PINLockout     time.Duration // how long (default 30m)
	TicketTTL      time.Duration // lifetime of a cosign ticket (default 5m)
	TicketUses     int           // operations one ticket allows (default 1000)
	MaxBatch       int           // items per batch (default 256)
	// DecryptPerMinute bounds decryptions per key outside bid openings (default 600).
	DecryptPerMinute int
	CacheSize        int           // keys with unwrapped shares in memory (default 10000)
	CacheTTL         time.Duration // how long an unwrapped share stays (default 10m)
	// Parallelism bounds the goroutines a batch uses (default GOMAXPROCS).
	Parallelism int
	// MaxKeysPerAccount bounds the keys, not revoked, one account holds (default 20).
	MaxKeysPerAccount int
}

func (o *Options) setDefaults() {
	def := func(v *int, d int) {
		if *v <= 0 {
			*v = d
		}
	}
	defDur := func(v *time.Duration, d time.Duration) {
		if *v <= 0 {
			*v = d
		}
	}
	def(&o.PINMaxAttempts, 5)
	defDur(&o.PINLockout, 30*time.Minute)
	defDur(&o.TicketTTL, 5*time.Minute)
	def(&o.TicketUses, 1000)
	def(&o.MaxBatch, 256)
	def(&o.DecryptPerMinute, 600)
	def(&o.CacheSize, 10000)
	defDur(&o.CacheTTL, 10*time.Minute)
	def(&o.Parallelism, runtime.GOMAXPROCS(0))
	def(&o.MaxKeysPerAccount, 20)
}

// Deps are the collaborators of the service.
type Deps struct {
	Store    *store.Store
	Keyring  Keyring
	Accounts Accounts
	Clock    interface{ Now() time.Time }
	Registry prometheus.Registerer
	Log      *slog.Logger
	// Rand is the randomness of the protocol steps; crypto/rand if nil.
	Rand io.Reader
}

// Service implements KeyService and CosignService.
type Service struct {
	opts     Options
	deps     Deps
	cache    *shareCache
	tickets  *tickets
	limits   *decryptLimits
	metrics  *metrics
	recorder *recorder
	certGate CertificateGate // see SetCertificateGate
	guard    DecryptGuard    // see SetDecryptGuard
}

// New returns the service.
func New(opts Options, deps Deps) (*Service, error) {
	if deps.Store == nil || deps.Keyring == nil || deps.Accounts == nil || deps.Clock == nil || deps.Registry == nil {
		return nil, errors.New("keys: missing dependency")
	}
	if deps.Log == nil {
		deps.Log = slog.Default()
	}
	if deps.Rand == nil {
		deps.Rand = rand.Reader
	}
	opts.setDefaults()
	m := newMetrics(deps.Registry)
	s := &Service{opts: opts, deps: deps, metrics: m, recorder: newRecorder(deps.Store),
		tickets: newTickets(deps.Clock.Now), limits: newDecryptLimits(opts.DecryptPerMinute, deps.Clock.Now)}
	s.cache = newShareCache(opts.CacheSize, opts.CacheTTL, deps.Clock.Now, m)
	return s, nil
}

// Run waits for ctx to end, then refuses the records of new operations (recorder.go): the
// daemon runs it for as long as it serves, and stops it only after the last call has
// finished. Records are committed by the operations' own goroutines.
func (s *Service) Run(ctx context.Context) { s.recorder.run(ctx) }

var (
	splitKeys = store.NewCollection(store.KindKey, func() *storepb.SplitKey { return new(storepb.SplitKey) })
	usage     = store.NewCollection(store.KindKey, func() *storepb.UsageRecord { return new(storepb.UsageRecord) })
)

const (
	indexUserKeys = "user-key" // user id -> k/<key id> (multi-valued)
	statusActive  = 1
	statusRevoked = 3
)

// loadTimeout bounds loading one key (a record read and one or two HSM unwraps).
const loadTimeout = 10 * time.Second

var keyIDRE = regexp.MustCompile(`^[A-Za-z0-9._-]{8,64}$`)

func checkKeyID(id string) error {
	if !keyIDRE.MatchString(id) {
		return apierr.Invalidf("key_id", "must be 8 to 64 characters of A-Z, a-z, 0-9, '.', '_' or '-'")
	}
	return nil
}

// shareAD binds a wrapped share to its key and share version, so a blob copied to another
// key or version does not open. The HSM adds the KEK label.
func shareAD(keyID string, version uint32) []byte {
	return []byte("hufu/key/v1 share " + keyID + "/" + fmtVersion(version))
}

func offerAD(keyID string, version uint32) []byte {
	return []byte("hufu/key/v1 refresh-offer " + keyID + "/" + fmtVersion(version))
}

func fmtVersion(v uint32) string { return strconv.FormatUint(uint64(v), 10) }

func pinContext(keyID string) []byte { return []byte("hufu/key/v1 pin " + keyID) }

func hsmError(err error) error {
	return &apierr.Error{Kind: apierr.Unavailable, Message: "HSM unavailable; retry later", Cause: err}
}

// load reads a key's record and unwraps its shares: the cache's loader.
func (s *Service) load(ctx context.Context, keyID string) (*loadedKey, error) {
	rec, err := splitKeys.Read(ctx, s.deps.Store, keyID)
	if errors.Is(err, store.ErrNotFound) {
		return nil, apierr.New(apierr.NotFound, "no key %q", keyID)
	}
	if err != nil {
		return nil, err
	}
	public, err := cosign.ParsePoint(rec.PublicKey)
	if err != nil {
		return nil, fmt.Errorf("keys: stored public key of %s: %w", keyID, err)
	}
	k := &loadedKey{rec: rec, public: public, state: cosign.ServerKey{Public: public, Version: rec.ShareVersion}}
	if rec.Status == statusRevoked {
		return k, nil // no share to unwrap: it was destroyed
	}
	if k.state.Share, err = s.unwrapShareAD(ctx, keyID, rec.ShareWrapped, shareAD(keyID, rec.ShareVersion)); err != nil {
		return nil, err
	}
	if p := rec.Pending; p != nil {
		pending, err := s.unwrapPending(ctx, keyID, p, shareAD(keyID, p.Version), offerAD(keyID, p.Version))
		if err != nil {
			k.destroy()
			return nil, err
		}
		k.state.Pending = pending
	}
	return k, nil
}

// unwrapShareAD unwraps a server share of keyID (the primary pair's, a member's, or a
// pending one) with its associated data.
func (s *Service) unwrapShareAD(ctx context.Context, keyID string, blob, ad []byte) (*cosign.ServerShare, error) {
	raw, err := s.deps.Keyring.Unwrap(ctx, blob, ad)
	if err != nil {
		return nil, hsmError(err)
	}
	defer clear(raw)
	share, err := cosign.ParseServerShare(raw)
	if err != nil {
		return nil, fmt.Errorf("keys: stored share of %s: %w", keyID, err)
	}
	return share, nil
}

// unwrapPending unwraps a pending refresh of keyID's primary pair or of a member's pair:
// its share with the associated data sAD, its offer with oAD.
func (s *Service) unwrapPending(ctx context.Context, keyID string, p *storepb.PendingRefresh, sAD, oAD []byte) (*cosign.ServerPending, error) {
	share, err := s.unwrapShareAD(ctx, keyID, p.ShareWrapped, sAD)
	if err != nil {
		return nil, err
	}
	raw, err := s.deps.Keyring.Unwrap(ctx, p.OfferWrapped, oAD)
	if err != nil {
		share.Destroy()
		return nil, hsmError(err)
	}
	defer clear(raw)
	var offer cosign.RefreshOffer
	if err := offer.UnmarshalBinary(raw); err != nil {
		share.Destroy()
		return nil, fmt.Errorf("keys: stored refresh offer of %s: %w", keyID, err)
	}
	return &cosign.ServerPending{Offer: offer, Share: share}, nil
}

// use acquires the key for an operation by caller: the key's primary pair for its holder on
// the holder's device, or the caller's delegated pair (delegate.go) for a member on the
// delegated device; the key not revoked, the pair not ended, the caller's PIN not locked.
// Release the entry when done.
//
// Whose key it is, is decided before any HSM work: on a cache miss the record alone (a store
// read) says whether the caller holds the primary pair, so a key id of another account never
// costs an unwrap nor puts that account's share in the cache.
func (s *Service) use(ctx context.Context, caller authn.Caller, keyID string) (*cacheEntry, error) {
	if err := checkKeyID(keyID); err != nil {
		return nil, err
	}
	e := s.cache.acquireCached(keyID)
	if e == nil {
		rec, err := splitKeys.Read(ctx, s.deps.Store, keyID)
		if errors.Is(err, store.ErrNotFound) {
			return nil, apierr.New(apierr.NotFound, "no key %q", keyID)
		}
		if err != nil {
			return nil, err
		}
		if !isHolder(caller, rec) {
			return s.useAsMember(ctx, caller, keyID, s.checkUsable(caller, rec))
		}
		if err := s.checkUsable(caller, rec); err != nil {
			return nil, err
		}
		if e, err = s.cache.acquire(ctx, keyID, func(ctx context.Context) (*loadedKey, error) {
			// Concurrent misses share this load: the first caller giving up must not fail the
			// others, so the load has its own bound rather than the first caller's context.
			ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), loadTimeout)
			defer cancel()
			return s.load(ctx, keyID)
		}); err != nil {
			return nil, err
		}
	}
	// The snapshot may be newer than the record read above: check it again.
	if !isHolder(caller, e.key.rec) {
		notHolder := s.checkUsable(caller, e.key.rec)
		s.cache.release(e)
		return s.useAsMember(ctx, caller, keyID, notHolder)
	}
	if err := s.checkUsable(caller, e.key.rec); err != nil {
		s.cache.release(e)
		return nil, err
	}
	if err := s.CertificateUsable(ctx, keyID); err != nil {
		s.cache.release(e)
		return nil, err
	}
	return e, nil
}

// useAsMember is use for a caller who is not the key's holder: the caller's delegated pair,
// or notHolder if there is none. loadPair reads the pair's record before it unwraps anything.
func (s *Service) useAsMember(ctx context.Context, caller authn.Caller, keyID string, notHolder error) (*cacheEntry, error) {
	e, err := s.usePair(ctx, caller, keyID, notHolder)
	if err != nil {
		return nil, err
	}
	if err := s.CertificateUsable(ctx, keyID); err != nil {
		s.cache.release(e)
		return nil, err
	}
	return e, nil
}

func (s *Service) checkUsable(caller authn.Caller, rec *storepb.SplitKey) error {
	if rec.UserId != caller.UserID {
		return apierr.New(apierr.NotFound, "no key %q", rec.Id) // other people's keys do not exist for you
	}
	if rec.DeviceId != caller.DeviceID {
		return apierr.New(apierr.PermissionDenied, "this key belongs to another device of your account")
	}
	if rec.Status == statusRevoked {
		return apierr.New(apierr.FailedPrecondition, "the key is revoked and its server share deleted")
	}
	if until := time.Unix(0, rec.LockedUntilUnixNano); s.deps.Clock.Now().Before(until) {
		wait := until.Sub(s.deps.Clock.Now())
		return apierr.Exhausted(wait, "the key is locked after too many wrong PINs; retry in %v or reset the PIN", wait.Round(time.Second))
	}
	return nil
}

// owned reads a key record for its owner (any device), for management calls.
func (s *Service) owned(ctx context.Context, caller authn.Caller, keyID string) (*storepb.SplitKey, error) {
	if err := checkKeyID(keyID); err != nil {
		return nil, err
	}
	rec, err := splitKeys.Read(ctx, s.deps.Store, keyID)
	if errors.Is(err, store.ErrNotFound) || (err == nil && rec.UserId != caller.UserID) {
		return nil, apierr.New(apierr.NotFound, "no key %q", keyID)
	}
	return rec, err
}
