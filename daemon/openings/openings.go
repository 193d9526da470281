// Package openings is the bid opening (开标, seed manual §3.1) of a bid-opening system
// (开评标系统): registered envelopes, an opening window, the bidders' consent and the bulk
// release, and the signed report an auditor verifies offline.
//
// # The opening
//
// A system creates an opening (project, platform, window) and, until the window start,
// registers envelopes: per bid the SM2 ciphertext of its SM4 key to the bidder's
// certificate. At the window start (or earlier, when the system asks) the opening is sealed:
// the manifest of every envelope (bidopening.ManifestSHA256) is written and audited in the
// batch that seals, and nothing is added or removed after.
//
// Decryption is bound by key (guard.go): from a key's first registered envelope until its
// opening's window starts, the plain Decrypt of package keys answers nothing for that key —
// binding by C1 alone would not do, since a phone can blind C1. In the window the holder may
// decrypt their own envelope on the phone (recorded as a release "via phone"); after it, or
// with another key, a registered C1 is refused. Refusals before the window name the opening
// time, and are audited, counted and listed in the report.
//
// # Consent and release (design §3, consent-to-release)
//
// In the window a bidder scans a DECRYPT session of the opening (package scan), is shown the
// opening and their envelopes, and sends T1 = d1⁻¹·C1 for each, then signs the consent
// statement (bidopening.Statement: opening, envelopes, ciphertext and T1 hashes, time) with
// a two-party signature. The T1s of one consent are kept HSM-wrapped as one blob (associated
// data "hufu/opening/v1 consent-points <opening>/<session>"), with the statement, its
// signature and the pair's share version as evidence. Consents do not write the opening's
// record (they would queue on its lock); an in-memory gate per opening, held shared by
// consents and exclusively by a seal or a close, keeps a consent from landing in a closed
// opening. Release computes, per consented envelope, d·C1 = d2⁻¹·T1 − C1 with the server
// share of the pair that consented, the KDF and the C3 check, parallel across cores, in
// chunks each committed in one batch — the envelopes' state, one event for the report and an
// audit record listing every envelope with its ciphertext hash — before the chunk is sent.
//
// At close the report (package bidopening) is made from the records, signed by the audit
// key, stored and audited with its SHA-256, so that an auditor can tie it into the log.
//
// # Records
//
//	b/opening/<id>                        storepb.Opening
//	b/envelope/<opening>/<envelope id>    storepb.OpeningEnvelope
//	b/consent/<opening>/<session id>      storepb.OpeningConsent
//	b/event/<opening>/<time>-<seq>        storepb.OpeningEvent (release chunks, phone releases,
//	                                      refused attempts), in time order
//	b/report/<opening>                    storepb.OpeningReport
//	x/opening-request/<n>:<system>.<request id>  -> the opening (unique)
//	x/opening-system/<system>/<opening key>      the system's openings
//	x/opening-c1/<SHA-256 of the uncompressed C1, hex> -> the envelope (unique)
//	x/opening-cert/<opening>.<serial>/<envelope key>  a certificate's envelopes
//	x/opening-key/<key id>/<opening key>          the openings a key has envelopes in
package openings

import (
	"context"
	"crypto/ecdsa"
	"errors"
	"fmt"
	"runtime"
	"sync"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	hufuv1 "github.com/hufu-hsm/hufu/api/hufu/v1"
	"github.com/hufu-hsm/hufu/cosign"
	"github.com/hufu-hsm/hufu/daemon/accounts"
	"github.com/hufu-hsm/hufu/daemon/apierr"
	"github.com/hufu-hsm/hufu/daemon/authn"
	"github.com/hufu-hsm/hufu/store"
	"github.com/hufu-hsm/hufu/store/storepb"
)

// Keyring keeps consent points wrapped under the HSM's KEK.
type Keyring interface {
	Wrap(ctx context.Context, plaintext, ad []byte) ([]byte, error)
	Unwrap(ctx context.Context, blob, ad []byte) ([]byte, error)
}

// Signer signs opening reports: the appliance's HSM-resident audit key.
type Signer interface {
	SignDigest(ctx context.Context, digest []byte) ([]byte, error)
	PublicKey() *ecdsa.PublicKey
}

// Keys gives the server share of the pair that consented.
type Keys interface {
	ReleaseShare(ctx context.Context, holder authn.Caller, keyID string) (share *cosign.ServerShare, version uint32, done func(), err error)
}

// Certs is what openings needs of the certificate domain.
type Certs interface {
	Certificate(ctx context.Context, serial string) (*storepb.Certificate, [][]byte, error)
	Active(c *storepb.Certificate) bool
}

// Accounts is what openings needs of the account domain.
type Accounts interface {
	Platform(id string) (accounts.Platform, bool)
}

// Options are the opening policies.
type Options struct {
	// MaxEnvelopes bounds one opening (default 20000).
	MaxEnvelopes int
	// MaxWindow bounds the window (default 7 days).
	MaxWindow time.Duration
	// ReleaseChunk is the number of envelopes one release batch commits (default 256).
	ReleaseChunk int
	// Parallelism bounds the goroutines of a release (default GOMAXPROCS).
	Parallelism int
}

func (o *Options) setDefaults() {
	if o.MaxEnvelopes <= 0 {
		o.MaxEnvelopes = 20000
	}
	if o.MaxWindow <= 0 {
		o.MaxWindow = 7 * 24 * time.Hour
	}
	if o.ReleaseChunk <= 0 {
		o.ReleaseChunk = 256
	}
	if o.Parallelism <= 0 {
		o.Parallelism = runtime.GOMAXPROCS(0)
	}
}

// Deps are the collaborators of the service.
type Deps struct {
	Store    *store.Store
	Keyring  Keyring
	Signer   Signer
	Keys     Keys
	Certs    Certs
	Accounts Accounts
	Clock    interface{ Now() time.Time }
	Registry prometheus.Registerer
}

// Service implements OpeningService, the consent side of DECRYPT scan sessions and the
// decryption guard of package keys.
type Service struct {
	opts Options
	deps Deps
	m    *metrics

	gatesMu sync.Mutex
	gates   map[string]*sync.RWMutex // see gate

	withEnvelopes *envelopeKeys // the keys the decryption guard must look up
}

// New returns the service.
func New(opts Options, deps Deps) (*Service, error) {
	if deps.Store == nil || deps.Keyring == nil || deps.Signer == nil || deps.Keys == nil || deps.Certs == nil ||
		deps.Accounts == nil || deps.Clock == nil {
		return nil, errors.New("openings: missing dependency")
	}
	opts.setDefaults()
	withEnvelopes := newEnvelopeKeys(maxEnvelopeKeys)
	return &Service{opts: opts, deps: deps, m: newMetrics(deps.Registry, withEnvelopes), gates: map[string]*sync.RWMutex{},
		withEnvelopes: withEnvelopes}, nil
}

var (
	openings  = store.NewCollection(store.KindOpening, func() *storepb.Opening { return new(storepb.Opening) })
	envelopes = store.NewCollection(store.KindOpening, func() *storepb.OpeningEnvelope { return new(storepb.OpeningEnvelope) })
	consents  = store.NewCollection(store.KindOpening, func() *storepb.OpeningConsent { return new(storepb.OpeningConsent) })
	events    = store.NewCollection(store.KindOpening, func() *storepb.OpeningEvent { return new(storepb.OpeningEvent) })
	reports   = store.NewCollection(store.KindOpening, func() *storepb.OpeningReport { return new(storepb.OpeningReport) })
)

const (
	indexRequest = "opening-request"
	indexSystem  = "opening-system"
	indexC1      = "opening-c1"
	indexCert    = "opening-cert"
	indexKey     = "opening-key"

	stateOpen   = int32(hufuv1.OpeningState_OPENING_STATE_OPEN)
	stateSealed = int32(hufuv1.OpeningState_OPENING_STATE_SEALED)
	stateClosed = int32(hufuv1.OpeningState_OPENING_STATE_CLOSED)
)

func openingID(id string) string           { return "opening/" + id }
func openingKey(id string) string          { return string(store.KindOpening) + "/" + openingID(id) }
func envelopeID(opening, id string) string { return "envelope/" + opening + "/" + id }
func envelopeKey(opening, id string) string {
	return string(store.KindOpening) + "/" + envelopeID(opening, id)
}
func consentID(opening, session string) string { return "consent/" + opening + "/" + session }
func reportID(opening string) string           { return "report/" + opening }

// eventSeq orders events recorded in the same nanosecond.
var eventSeq atomic.Uint64

func eventID(opening string, t time.Time) string {
	return fmt.Sprintf("event/%s/%016x-%016x", opening, uint64(t.UnixNano()), eventSeq.Add(1))
}

func notFound(id string) error { return apierr.New(apierr.NotFound, "no opening %q", id) }

// load reads an opening; NotFound for an unknown or malformed id.
func (s *Service) load(ctx context.Context, id string) (*storepb.Opening, error) {
	if !idRE.MatchString(id) {
		return nil, notFound(id)
	}
	o, err := openings.Read(ctx, s.deps.Store, openingID(id))
	if errors.Is(err, store.ErrNotFound) {
		return nil, notFound(id)
	}
	return o, err
}

// read returns the caller's opening; another system's does not exist for it.
func (s *Service) read(ctx context.Context, caller authn.Caller, id string) (*storepb.Opening, error) {
	o, err := s.load(ctx, id)
	if err == nil && o.System != caller.System {
		return nil, notFound(id)
	}
	return o, err
}

// get is read inside a transaction.
func (s *Service) get(tx *store.Tx, caller authn.Caller, id string) (*storepb.Opening, error) {
	o, err := openings.Get(tx, openingID(id))
	if errors.Is(err, store.ErrNotFound) || (err == nil && caller.System != "" && o.System != caller.System) {
		return nil, notFound(id)
	}
	return o, err
}

func windowStart(o *storepb.Opening) time.Time { return time.Unix(0, o.WindowStartUnixNano).UTC() }
func windowEnd(o *storepb.Opening) time.Time   { return time.Unix(0, o.WindowEndUnixNano).UTC() }

// inWindow tells where t is against the opening's window: before it (-1), in it (0) or after
// it (1).
func inWindow(o *storepb.Opening, t time.Time) int {
	switch {
	case t.UnixNano() < o.WindowStartUnixNano:
		return -1
	case t.UnixNano() >= o.WindowEndUnixNano:
		return 1
	}
	return 0
}

func errEarly(o *storepb.Opening) error {
	return apierr.New(apierr.FailedPrecondition, "opening %s opens at %s: nothing of it is decrypted before", o.Id, windowStart(o).Format(time.RFC3339))
}

func errEnded(o *storepb.Opening) error {
	return apierr.New(apierr.FailedPrecondition, "opening %s ended at %s", o.Id, windowEnd(o).Format(time.RFC3339))
}

func errClosed(o *storepb.Opening) error {
	return apierr.New(apierr.FailedPrecondition, "opening %s is closed", o.Id)
}
