// Package accounts is the domain of people who sign in to hufu: registration and sign-in by
// SMS code, password, WeChat and carrier one-click login; sessions bound to devices; phone
// and password changes; the choice of trading platform; and real-name verification (seed
// manual §1.2–§1.4, §1.9). Every state change is written with its audit record in one store
// transaction. Phone numbers reach the audit log only masked, ID numbers only masked or
// HSM-wrapped, and store keys only as HSM fingerprints (phoneindex.go).
package accounts

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"runtime"
	"time"

	"github.com/hufu-hsm/hufu/daemon/identity"
	"github.com/hufu-hsm/hufu/store"
	"github.com/hufu-hsm/hufu/store/storepb"
	"github.com/prometheus/client_golang/prometheus"
)

// Keyring is what accounts needs of the HSM: sealing ID numbers and keyed hashes of SMS codes.
type Keyring interface {
	Wrap(ctx context.Context, plaintext, ad []byte) ([]byte, error)
	Unwrap(ctx context.Context, blob, ad []byte) ([]byte, error)
	// EnsureCurrent rewraps a blob made under an older KEK (see hsm.Keyring.EnsureCurrent).
	EnsureCurrent(ctx context.Context, blob, ad []byte) ([]byte, error)
	PINVerifier(ctx context.Context, salt, keyContext, pin []byte) ([]byte, error)
	VerifyPIN(ctx context.Context, want, salt, keyContext, pin []byte) (bool, error)
}

// Clock is where accounts gets time.
type Clock interface{ Now() time.Time }

// Options are the account policies, from the daemon's configuration.
type Options struct {
	SMSCodeTTL          time.Duration
	SMSResendInterval   time.Duration
	SMSMaxPerPhoneHour  int
	SMSMaxPerSourceHour int
	// CodeMaxAttempts wrong SMS codes for one number within CodeFailureWindow (across codes
	// and purposes; a new code does not reset the count) lock the number for CodeLockout,
	// and so does each further wrong code in the window.
	CodeMaxAttempts     int
	CodeFailureWindow   time.Duration
	CodeLockout         time.Duration
	PasswordMaxAttempts int
	PasswordLockout     time.Duration
	AccessTokenTTL      time.Duration
	RefreshTokenTTL     time.Duration
	// Password hashing cost; see PasswordParams.
	Password PasswordParams
	// Platforms the operator configured.
	Platforms []Platform
	// DefaultPlatform is the id of the platform a new account starts on (seed §1.3); empty:
	// the only platform if there is one, else none until the person chooses.
	DefaultPlatform string
}

// Platform is a trading platform people can choose.
type Platform struct{ ID, Name, Region string }

// Deps are the collaborators of the service.
type Deps struct {
	Store    *store.Store
	Keyring  Keyring
	SMS      SMSSender
	WeChat   WeChat
	Carrier  Carrier
	Verifier identity.Verifier
	Clock    Clock
	Log      *slog.Logger
	// Registry takes the package's metrics (a private one if nil).
	Registry prometheus.Registerer
}

// Service implements the account, platform and identity APIs and resolves sessions for the
// gRPC server (authn.Sessions).
type Service struct {
	opts      Options
	platforms map[string]Platform
	resolved  *sessionCache // access tokens already looked up
	argon     chan struct{} // bounds concurrent Argon2id password checks
	// deletion is set once while wiring (SetDeletion), before serving.
	deletion *Deletion
	metrics  metrics
	Deps
}

// metrics of the package: counts only, never a number or a user as a label.
type metrics struct {
	codeFailures prometheus.Counter
	codeLockouts prometheus.Counter
}

func newMetrics(reg prometheus.Registerer) metrics {
	m := metrics{
		codeFailures: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "hufu_accounts_sms_code_failures_total", Help: "Wrong SMS codes entered.",
		}),
		codeLockouts: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "hufu_accounts_sms_code_lockouts_total", Help: "Numbers locked after too many wrong SMS codes in the failure window.",
		}),
	}
	reg.MustRegister(m.codeFailures, m.codeLockouts)
	return m
}

// New checks the dependencies and returns the service.
func New(opts Options, deps Deps) (*Service, error) {
	switch {
	case deps.Store == nil, deps.Keyring == nil, deps.SMS == nil, deps.WeChat == nil,
		deps.Carrier == nil, deps.Verifier == nil, deps.Clock == nil:
		return nil, errors.New("accounts: missing dependency")
	case len(opts.Platforms) == 0:
		return nil, errors.New("accounts: no platforms configured")
	}
	if deps.Log == nil {
		deps.Log = slog.Default()
	}
	if deps.Registry == nil {
		deps.Registry = prometheus.NewRegistry()
	}
	if opts.CodeFailureWindow <= 0 {
		return nil, errors.New("accounts: the wrong-code window must be positive")
	}
	if opts.PasswordLockout == 0 {
		opts.PasswordLockout = opts.CodeLockout
	}
	if opts.Password == (PasswordParams{}) {
		opts.Password = DefaultPasswordParams
	}
	s := &Service{opts: opts, platforms: map[string]Platform{}, resolved: newSessionCache(), metrics: newMetrics(deps.Registry),
		argon: make(chan struct{}, runtime.GOMAXPROCS(0)), Deps: deps}
	for _, p := range opts.Platforms {
		s.platforms[p.ID] = p
	}
	if _, ok := s.platforms[opts.DefaultPlatform]; opts.DefaultPlatform != "" && !ok {
		return nil, fmt.Errorf("accounts: default platform %q is not configured", opts.DefaultPlatform)
	}
	if opts.DefaultPlatform == "" && len(opts.Platforms) == 1 {
		s.opts.DefaultPlatform = opts.Platforms[0].ID
	}
	return s, nil
}

// Records and indexes of this package (see store/schema.go for the key layout).
var (
	users      = store.NewCollection(store.KindUser, func() *storepb.User { return new(storepb.User) })
	sessions   = store.NewCollection(store.KindVerify, func() *storepb.AuthSession { return new(storepb.AuthSession) })
	smsCodes   = store.NewCollection(store.KindVerify, func() *storepb.SmsCode { return new(storepb.SmsCode) })
	counters   = store.NewCollection(store.KindVerify, func() *storepb.RateCounter { return new(storepb.RateCounter) })
	bindings   = store.NewCollection(store.KindVerify, func() *storepb.PendingBinding { return new(storepb.PendingBinding) })
	faceChecks = store.NewCollection(store.KindVerify, func() *storepb.PendingFace { return new(storepb.PendingFace) })
	families   = store.NewCollection(store.KindVerify, func() *storepb.RefreshFamily { return new(storepb.RefreshFamily) })
)

const (
	indexPhone        = "phone"         // phone fingerprint (phoneindex.go) -> u/<id>
	indexWeChat       = "wechat"        // openid -> u/<id>
	indexAccessToken  = "access-token"  // hex SHA-256 -> v/session/<id>
	indexRefreshToken = "refresh-token" // hex SHA-256 -> v/session/<id>
	// hex SHA-256 of a spent refresh token -> v/refresh-family/<id>, expiring with the
	// refresh token that replaced it (refresh.go)
	indexUsedRefreshToken = "used-refresh-token"
	indexUserSessions     = "user-session" // user id -> v/session/<id> (multi-valued)
)

func (s *Service) now() time.Time { return s.Clock.Now() }

func nanos(t time.Time) int64 { return t.UnixNano() }

func fromNanos(n int64) time.Time { return time.Unix(0, n) }

func userKey(id string) string {
	k, err := users.Key(id)
	if err != nil {
		panic(fmt.Sprintf("accounts: generated user id %q is not a key part", id))
	}
	return k
}
