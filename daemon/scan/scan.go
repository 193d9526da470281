// Package scan is the scan session of a business system (业务系统, seed manual §2): the system
// creates a session of a kind, shows its QR payload; the bidder scans it with the phone,
// checks what is asked, picks a certificate and enters the PIN; the phone completes the
// kind's protocol with the appliance; the system follows the session and takes the result.
// No USB key, and nothing signed that the person was not shown.
//
// # Kinds
//
//   - BIND (§2.1): the system names its unit or user (an enterprise's name and USCC, or a
//     person's name and ID number); the chosen certificate's identity must match exactly;
//     the phone signs a challenge bound to the session; a binding links the system's
//     reference to the certificate.
//   - LOGIN (§2.2): the phone signs a challenge with a bound certificate's key; the system
//     receives the signed assertion with the certificate chain and its binding.
//   - SIGN (§2.3–2.4): the system registers document digests. When the certificate is
//     chosen the appliance builds each document's CMS signed attributes (package cms) and
//     pins e = SM3(Z_A ‖ DER(attributes)); the phone checks the attributes carry the
//     digests it was shown, recomputes e and cosigns; the appliance answers no other e in
//     the session, and hands the system a detached GM/T 0010 SignedData per document (and
//     the chosen seal's image for the appearance).
//   - GENERATE (§2.5): SIGN, and the certificate the system envelopes the bid file to.
//   - AUTH (§2.3.2): the person consents to release their verified identity and
//     enterprises to the system, signed by the appliance.
//   - DECRYPT (§3.1): in a bid opening's window (package openings) the bidder is shown the
//     opening and their envelopes in it, sends the consent point T1 of each, and signs the
//     consent statement the appliance pins; the verified consent is recorded with the
//     session's completion, in one batch. A hall session is a code every bidder in the hall
//     scans: each scan starts a DECRYPT session of its own.
//
// # Sessions
//
// created → scanned (by one account and device) → completed | declined | failed, or
// expired once past its expiry. Every transition is audited. The QR payload is
//
//	HUFU1.SCAN.<session id>.<nonce>.<appliance address>.<signature>
//
// where the signature is ECDSA P-256 by the appliance's HSM-resident signing key over
// SHA-256("hufu/scan/v1 qr\0" ‖ everything before ".<signature>"), so the phone can reject a
// forged or swapped code; the nonce is single-use (one scan per session).
//
// # Records
//
//	s/session/<id>                     storepb.ScanSession, kept a day past its expiry
//	s/binding/<system>/<binding id>    storepb.ScanBinding
//	x/scan-request/<n>:<system>.<request>  -> the session a request made (unique)
//	x/scan-cert/<n>:<system>.<serial>      -> the binding of a certificate (unique)
//	x/scan-ref/<n>:<system>.<reference>/<binding key>
//	x/scan-user/<user id>/<binding key>    the bindings of a person's certificates
//
// (<n> is the length of the system's name, so that one system's values never read as
// another's.)
package scan

import (
	"context"
	"crypto/ecdsa"
	"errors"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	hufuv1 "github.com/hufu-hsm/hufu/api/hufu/v1"
	"github.com/hufu-hsm/hufu/daemon/accounts"
	"github.com/hufu-hsm/hufu/daemon/apierr"
	"github.com/hufu-hsm/hufu/daemon/authn"
	"github.com/hufu-hsm/hufu/daemon/enterprises"
	"github.com/hufu-hsm/hufu/daemon/keys"
	"github.com/hufu-hsm/hufu/daemon/openings"
	"github.com/hufu-hsm/hufu/store"
	"github.com/hufu-hsm/hufu/store/storepb"
)

// Signer signs QR payloads and AUTH releases: the appliance's HSM-resident ECDSA key.
type Signer interface {
	SignDigest(ctx context.Context, digest []byte) ([]byte, error)
	PublicKey() *ecdsa.PublicKey
}

// Keyring keeps a BIND session's ID number wrapped until the match.
type Keyring interface {
	Wrap(ctx context.Context, plaintext, ad []byte) ([]byte, error)
	Unwrap(ctx context.Context, blob, ad []byte) ([]byte, error)
}

func subjectAD(sessionID string) []byte { return []byte("hufu/scan/v1 subject-id " + sessionID) }

// Accounts is what scan needs of the account domain.
type Accounts interface {
	VerifiedUser(ctx context.Context, userID string) (*storepb.User, error)
	IdentityMatches(ctx context.Context, userID, name, idNumber string) (bool, error)
	Platform(id string) (accounts.Platform, bool)
}

// Certs is what scan needs of the certificate domain.
type Certs interface {
	ListCertificates(ctx context.Context, caller authn.Caller, view hufuv1.CertificateListView) ([]*storepb.Certificate, error)
	Certificate(ctx context.Context, serial string) (*storepb.Certificate, [][]byte, error)
	Active(c *storepb.Certificate) bool
}

// Keys is what scan needs of the split keys.
type Keys interface {
	OwnedKey(ctx context.Context, caller authn.Caller, keyID string) (*storepb.SplitKey, error)
	ListDelegations(ctx context.Context, keyID string) ([]*storepb.DelegatedShare, error)
	SignBatch(ctx context.Context, caller authn.Caller, keyID string, cred keys.Credential, raws [][]byte) ([]keys.BatchResult, uint32, error)
}

// Openings is what scan needs of the bid openings (DECRYPT).
type Openings interface {
	ForSession(ctx context.Context, caller authn.Caller, id string) (*storepb.Opening, error)
	Opening(ctx context.Context, id string) (*storepb.Opening, error)
	EnvelopesOf(ctx context.Context, opening, serial string) ([]*storepb.OpeningEnvelope, error)
	PrepareConsent(ctx context.Context, caller authn.Caller, opening, session, serial string, envs []*storepb.OpeningEnvelope, points [][]byte) (*openings.PreparedConsent, error)
	CheckConsentWindow(ctx context.Context, caller authn.Caller, id string) error
	HoldOpen(ctx context.Context, id string) (*storepb.Opening, func(), error)
	ConsentTx(tx *store.Tx, caller authn.Caller, o *storepb.Opening, c openings.Consent) error
}

// Enterprises is what scan needs of the enterprise domain.
type Enterprises interface {
	ListMine(ctx context.Context, caller authn.Caller) ([]enterprises.Membership, error)
}

// Seals is what scan needs of the seals domain.
type Seals interface {
	SealUsable(ctx context.Context, caller authn.Caller, sealID string) (*storepb.Seal, error)
	Get(ctx context.Context, caller authn.Caller, id string) (*storepb.Seal, []byte, error)
}

// Recognition is the mutual-recognition account (互认, daemon/commerce/wallet): a
// certificate that is not valid for a session's platform but belongs to the national
// mutual-recognition system answers the session only through Admit, called in the
// transaction that records the choice.
type Recognition interface {
	// National reports whether the certificate belongs to the national system.
	National(c *storepb.Certificate) bool
	// Recognized reports whether the certificate belongs to the national system and the
	// platform admits such certificates.
	Recognized(c *storepb.Certificate, platform string) bool
	// Admit opens the service for the session inside tx (an active day pass, or one per-use
	// debit keyed by the session: a retry finds the first) and says how, or refuses with
	// FailedPrecondition naming what to open.
	Admit(tx *store.Tx, caller authn.Caller, ss *storepb.ScanSession, serial string) (string, error)
}

// Options are the scan policies.
type Options struct {
	// Address is the appliance's address as phones reach it, carried in QR payloads.
	Address string
	// DefaultTTL and MaxTTL bound a session's life (default 3m and 30m).
	DefaultTTL, MaxTTL time.Duration
	// SessionsPerMinute bounds the sessions one system creates (default 600).
	SessionsPerMinute int
	// MaxDocuments bounds a SIGN or GENERATE session (default 32).
	MaxDocuments int
}

func (o *Options) setDefaults() {
	if o.DefaultTTL <= 0 {
		o.DefaultTTL = 3 * time.Minute
	}
	if o.MaxTTL <= 0 {
		o.MaxTTL = 30 * time.Minute
	}
	if o.SessionsPerMinute <= 0 {
		o.SessionsPerMinute = 600
	}
	if o.MaxDocuments <= 0 {
		o.MaxDocuments = 32
	}
}

// Deps are the collaborators of the service.
type Deps struct {
	Store       *store.Store
	Signer      Signer
	Keyring     Keyring
	Accounts    Accounts
	Certs       Certs
	Keys        Keys
	Enterprises Enterprises
	Seals       Seals
	Openings    Openings
	Clock       interface{ Now() time.Time }
	Registry    prometheus.Registerer
}

// Service implements ScanService and PhoneScanService.
type Service struct {
	opts    Options
	deps    Deps
	m       *metrics
	watch   *watchers
	limiter *creationLimiter
	// recognition admits certificates of other platforms; nil: none is admitted.
	recognition Recognition
}

// SetRecognition connects the mutual-recognition accounts, before serving.
func (s *Service) SetRecognition(r Recognition) { s.recognition = r }

// New returns the service.
func New(opts Options, deps Deps) (*Service, error) {
	if deps.Store == nil || deps.Signer == nil || deps.Keyring == nil || deps.Accounts == nil || deps.Certs == nil || deps.Keys == nil ||
		deps.Enterprises == nil || deps.Seals == nil || deps.Openings == nil || deps.Clock == nil {
		return nil, errors.New("scan: missing dependency")
	}
	opts.setDefaults()
	if opts.Address == "" {
		return nil, errors.New("scan: the appliance's address for QR payloads is required")
	}
	return &Service{opts: opts, deps: deps, m: newMetrics(deps.Registry), watch: newWatchers(),
		limiter: newCreationLimiter(opts.SessionsPerMinute, deps.Clock.Now)}, nil
}

var (
	sessions = store.NewCollection(store.KindScan, func() *storepb.ScanSession { return new(storepb.ScanSession) })
	bindings = store.NewCollection(store.KindScan, func() *storepb.ScanBinding { return new(storepb.ScanBinding) })
)

const (
	indexRequest = "scan-request"
	indexCert    = "scan-cert"
	indexRef     = "scan-ref"
	indexUser    = "scan-user"

	// keep is how long a session's result stays readable after its expiry.
	keep = 24 * time.Hour

	kindBind     = int32(hufuv1.SessionKind_SESSION_KIND_BIND)
	kindLogin    = int32(hufuv1.SessionKind_SESSION_KIND_LOGIN)
	kindSign     = int32(hufuv1.SessionKind_SESSION_KIND_SIGN)
	kindAuth     = int32(hufuv1.SessionKind_SESSION_KIND_AUTH)
	kindGenerate = int32(hufuv1.SessionKind_SESSION_KIND_GENERATE)
	kindDecrypt  = int32(hufuv1.SessionKind_SESSION_KIND_DECRYPT)

	signModeRecognition = int32(hufuv1.SignMode_SIGN_MODE_MUTUAL_RECOGNITION)
	signModeScan        = int32(hufuv1.SignMode_SIGN_MODE_SCAN)

	stateCreated   = int32(hufuv1.SessionState_SESSION_STATE_CREATED)
	stateScanned   = int32(hufuv1.SessionState_SESSION_STATE_SCANNED)
	stateCompleted = int32(hufuv1.SessionState_SESSION_STATE_COMPLETED)
	stateDeclined  = int32(hufuv1.SessionState_SESSION_STATE_DECLINED)
	stateExpired   = int32(hufuv1.SessionState_SESSION_STATE_EXPIRED)
	stateFailed    = int32(hufuv1.SessionState_SESSION_STATE_FAILED)
)

func sessionID(id string) string  { return "session/" + id }
func sessionKey(id string) string { return string(store.KindScan) + "/" + sessionID(id) }
func bindingID(system, id string) string {
	return "binding/" + system + "/" + id
}

// effective is a session's state as seen now: waiting sessions past their expiry are expired.
func (s *Service) effective(ss *storepb.ScanSession) int32 {
	if (ss.State == stateCreated || ss.State == stateScanned) && s.deps.Clock.Now().UnixNano() >= ss.ExpiresUnixNano {
		return stateExpired
	}
	return ss.State
}

func terminal(state int32) bool { return state != stateCreated && state != stateScanned }

// update changes a session inside one transaction, audits the change and wakes its
// watchers after the commit.
func (s *Service) update(ctx context.Context, caller authn.Caller, id, action string, change func(tx *store.Tx, ss *storepb.ScanSession) (map[string]string, error)) (*storepb.ScanSession, error) {
	var out *storepb.ScanSession
	err := s.deps.Store.Update(ctx, func(tx *store.Tx) error {
		ss, err := sessions.Get(tx, sessionID(id))
		if errors.Is(err, store.ErrNotFound) {
			return apierr.New(apierr.NotFound, "no scan session %q", id)
		}
		if err != nil {
			return err
		}
		details, err := change(tx, ss)
		if err != nil {
			return err
		}
		ss.UpdatedUnixNano = tx.Now().UnixNano()
		if err := sessions.Put(tx, sessionID(id), ss, store.ExpiresAt(time.Unix(0, ss.ExpiresUnixNano).Add(keep))); err != nil {
			return err
		}
		out = ss
		if details == nil {
			details = map[string]string{}
		}
		details["state"] = hufuv1.SessionState(ss.State).String()
		details["kind"] = hufuv1.SessionKind(ss.Kind).String()
		details["system"] = ss.System
		return tx.Audit(store.Event{Actor: caller.Actor(), Action: "scan." + action, Subject: sessionKey(id), Outcome: store.OutcomeOK, Details: details})
	})
	if err == nil {
		s.watch.notify(id)
		s.m.events.WithLabelValues(action).Inc()
	}
	return out, err
}

// watchers wakes WatchSession streams when their session changes. An entry lives while
// someone waits on it: the last waiter to leave removes it, so abandoned watches leave
// nothing behind.
type watchers struct {
	mu sync.Mutex
	m  map[string]*waiters
}

type waiters struct {
	ch chan struct{}
	n  int
}

func newWatchers() *watchers { return &watchers{m: map[string]*waiters{}} }

// wait returns a channel closed at the session's next change, and the function to call
// when no longer waiting.
func (w *watchers) wait(id string) (<-chan struct{}, func()) {
	w.mu.Lock()
	defer w.mu.Unlock()
	ws, ok := w.m[id]
	if !ok {
		ws = &waiters{ch: make(chan struct{})}
		w.m[id] = ws
	}
	ws.n++
	return ws.ch, func() {
		w.mu.Lock()
		defer w.mu.Unlock()
		ws.n--
		if ws.n == 0 && w.m[id] == ws {
			delete(w.m, id)
		}
	}
}

func (w *watchers) notify(id string) {
	w.mu.Lock()
	defer w.mu.Unlock()
	if ws, ok := w.m[id]; ok {
		close(ws.ch)
		delete(w.m, id)
	}
}

// creationLimiter bounds session creation per system: a token bucket of perMinute.
type creationLimiter struct {
	mu        sync.Mutex
	perMinute int
	now       func() time.Time
	buckets   map[string]*bucket
}

type bucket struct {
	tokens float64
	at     time.Time
}

func newCreationLimiter(perMinute int, now func() time.Time) *creationLimiter {
	return &creationLimiter{perMinute: perMinute, now: now, buckets: map[string]*bucket{}}
}

func (l *creationLimiter) take(system string) error {
	l.mu.Lock()
	defer l.mu.Unlock()
	now := l.now()
	b, ok := l.buckets[system]
	if !ok {
		b = &bucket{tokens: float64(l.perMinute), at: now}
		l.buckets[system] = b
	}
	b.tokens = min(float64(l.perMinute), b.tokens+now.Sub(b.at).Minutes()*float64(l.perMinute))
	b.at = now
	if b.tokens < 1 {
		wait := time.Duration((1 - b.tokens) / float64(l.perMinute) * float64(time.Minute))
		return apierr.Exhausted(wait, "this system creates more than %d sessions a minute; retry in %v", l.perMinute, wait.Round(time.Millisecond))
	}
	b.tokens--
	return nil
}
