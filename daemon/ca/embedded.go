package ca

import (
	"context"
	"crypto/x509/pkix"
	"errors"
	"fmt"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/emmansun/gmsm/sm2"
	"github.com/emmansun/gmsm/smx509"

	"github.com/hufu-hsm/hufu/store"
	"github.com/hufu-hsm/hufu/store/storepb"
)

// Keyring is what the embedded CA needs of the HSM.
type Keyring interface {
	Wrap(ctx context.Context, plaintext, ad []byte) ([]byte, error)
	Unwrap(ctx context.Context, blob, ad []byte) ([]byte, error)
}

// Clock is the injected time.
type Clock interface{ Now() time.Time }

var states = store.NewCollection(store.KindCert, func() *storepb.CAState { return new(storepb.CAState) })

func stateID(caID string) string { return "ca/" + caID }

func rootAD(caID string) []byte    { return []byte("hufu/ca/v1 root-key " + caID) }
func issuingAD(caID string) []byte { return []byte("hufu/ca/v1 issuing-key " + caID) }

const (
	rootYears    = 20
	issuingYears = 10
)

// Ensure creates the embedded CA caID (root and issuing CA) unless it exists; it reports
// whether it created it. Existing CAs are never changed. With opts.PublicURL the issuing
// CA's certificate points to the root's CRL and certificate (CRL distribution point,
// authority information access); every certificate gets a Subject Key Identifier
// (SubjectKeyID).
func Ensure(ctx context.Context, st *store.Store, kr Keyring, caID, name string, now time.Time, opts Options) (bool, error) {
	if _, err := states.Read(ctx, st, stateID(caID)); err == nil {
		return false, nil
	} else if !errors.Is(err, store.ErrNotFound) {
		return false, err
	}
	rootKey, err := newKey()
	if err != nil {
		return false, err
	}
	issKey, err := newKey()
	if err != nil {
		return false, err
	}
	notBefore := now.Add(-time.Hour).UTC().Truncate(time.Second)
	rootSerial, err := newSerial()
	if err != nil {
		return false, err
	}
	rootSKI, err := SubjectKeyID(rootKey.Public())
	if err != nil {
		return false, err
	}
	issSKI, err := SubjectKeyID(issKey.Public())
	if err != nil {
		return false, err
	}
	root := &smx509.Certificate{
		SerialNumber: rootSerial,
		Subject:      pkix.Name{Country: []string{"CN"}, Organization: []string{name}, CommonName: name + " Root CA"},
		NotBefore:    notBefore, NotAfter: notBefore.AddDate(rootYears, 0, 0),
		KeyUsage:              smx509.KeyUsageCertSign | smx509.KeyUsageCRLSign,
		BasicConstraintsValid: true, IsCA: true, MaxPathLen: 1,
		SubjectKeyId: rootSKI,
	}
	rootDER, err := smx509.CreateCertificate(nil, root, root, rootKey.Public(), rootKey)
	if err != nil {
		return false, fmt.Errorf("ca: root certificate: %w", err)
	}
	rootCert, err := smx509.ParseCertificate(rootDER)
	if err != nil {
		return false, err
	}
	issSerial, err := newSerial()
	if err != nil {
		return false, err
	}
	iss := &smx509.Certificate{
		SerialNumber: issSerial,
		Subject:      pkix.Name{Country: []string{"CN"}, Organization: []string{name}, CommonName: name + " Issuing CA"},
		NotBefore:    notBefore, NotAfter: notBefore.AddDate(issuingYears, 0, 0),
		KeyUsage:              smx509.KeyUsageCertSign | smx509.KeyUsageCRLSign,
		BasicConstraintsValid: true, IsCA: true, MaxPathLen: 0, MaxPathLenZero: true,
		SubjectKeyId: issSKI,
	}
	if u := opts.publicURL(RootCRLPath(caID)); u != "" {
		iss.CRLDistributionPoints = []string{u}
		iss.IssuingCertificateURL = []string{opts.publicURL(RootCertPath(caID))}
	}
	issDER, err := smx509.CreateCertificate(nil, iss, rootCert, issKey.Public(), rootKey)
	if err != nil {
		return false, fmt.Errorf("ca: issuing certificate: %w", err)
	}
	rootD, issD := rootKey.D.FillBytes(make([]byte, 32)), issKey.D.FillBytes(make([]byte, 32))
	defer clear(rootD)
	defer clear(issD)
	rootWrapped, err := kr.Wrap(ctx, rootD, rootAD(caID))
	if err != nil {
		return false, fmt.Errorf("ca: wrapping the root key: %w", err)
	}
	issWrapped, err := kr.Wrap(ctx, issD, issuingAD(caID))
	if err != nil {
		return false, fmt.Errorf("ca: wrapping the issuing key: %w", err)
	}
	created := false
	err = st.Update(ctx, func(tx *store.Tx) error {
		created = false
		if _, err := states.Get(tx, stateID(caID)); err == nil {
			return nil // created meanwhile: keep the existing one
		} else if !errors.Is(err, store.ErrNotFound) {
			return err
		}
		created = true
		if err := states.Put(tx, stateID(caID), &storepb.CAState{
			Id: caID, RootCert: rootDER, RootKeyWrapped: rootWrapped, IssuingCert: issDER,
			IssuingKeyWrapped: issWrapped, CreatedUnixNano: tx.Now().UnixNano(),
		}); err != nil {
			return err
		}
		return tx.Audit(store.Event{Actor: "hufud", Action: "ca.create", Subject: "c/" + stateID(caID), Outcome: store.OutcomeOK,
			Details: map[string]string{"root_serial": serialHex(rootSerial), "issuing_serial": serialHex(issSerial)}})
	})
	return created, err
}

// Embedded is an embedded CA: the Connector over the CA record in the store.
type Embedded struct {
	id, name      string
	st            *store.Store
	kr            Keyring
	clock         Clock
	crlNextUpdate time.Duration
	// crlMu serialises the making of each level's CRL (by Level.index), so that callers
	// arriving together wait for one new CRL instead of each signing their own.
	crlMu         [2]sync.Mutex
	opts          Options
	root, issuing *smx509.Certificate
	chain         [][]byte
	// issuingRevoked is set once the issuing CA is known to be on the root's list (at Open,
	// or by a revocation through this value), so that Plan refuses without a store read;
	// signer reads the store itself, whoever revoked it.
	issuingRevoked atomic.Bool
	// signing orders certificate signing against the issuing CA's revocation: a signing
	// holds the read side from its check of the root's list to its signature, the
	// revocation the write side across its commit, so no certificate is signed after the
	// revocation committed. The daemon has one Embedded per CA, so this is per CA. CRLs and
	// OCSP responses do not take it: they go on being signed after the revocation.
	signing sync.RWMutex
}

var _ Connector = (*Embedded)(nil)

// Open returns the embedded CA caID, which Ensure must have created (else ErrNoCA).
func Open(ctx context.Context, st *store.Store, kr Keyring, clock Clock, caID, name string, opts Options) (*Embedded, error) {
	s, root, iss, err := readCertificates(ctx, st, caID)
	if err != nil {
		return nil, err
	}
	if opts.CRLNextUpdate <= 0 {
		opts.CRLNextUpdate = 24 * time.Hour
	}
	switch opts.SubjectIdentity {
	case IdentityFull:
	case IdentityKeyedHash:
		if len(opts.SubjectIdentityKey) < MinIdentityKeyBytes {
			return nil, fmt.Errorf("ca: the subject identity key has %d bytes, want at least %d", len(opts.SubjectIdentityKey), MinIdentityKeyBytes)
		}
	default:
		return nil, fmt.Errorf("ca: unknown subject identity policy %q", opts.SubjectIdentity)
	}
	e := &Embedded{id: caID, name: name, st: st, kr: kr, clock: clock, crlNextUpdate: opts.CRLNextUpdate, opts: opts,
		root: root, issuing: iss, chain: [][]byte{s.IssuingCert, s.RootCert}}
	if _, revoked, err := e.IssuingCARevocation(ctx); err != nil {
		return nil, err
	} else if revoked {
		e.issuingRevoked.Store(true)
	}
	return e, nil
}

// Certificates returns the root and issuing certificates of the embedded CA caID, which
// Ensure must have created (else ErrNoCA), without opening it: the daemon's metrics report
// when they expire.
func Certificates(ctx context.Context, st *store.Store, caID string) (root, issuing *smx509.Certificate, err error) {
	_, root, issuing, err = readCertificates(ctx, st, caID)
	return root, issuing, err
}

func readCertificates(ctx context.Context, st *store.Store, caID string) (*storepb.CAState, *smx509.Certificate, *smx509.Certificate, error) {
	s, err := states.Read(ctx, st, stateID(caID))
	if errors.Is(err, store.ErrNotFound) {
		return nil, nil, nil, fmt.Errorf("%w: %s", ErrNoCA, caID)
	}
	if err != nil {
		return nil, nil, nil, err
	}
	root, err := smx509.ParseCertificate(s.RootCert)
	if err != nil {
		return nil, nil, nil, fmt.Errorf("ca: stored root of %s: %w", caID, err)
	}
	iss, err := smx509.ParseCertificate(s.IssuingCert)
	if err != nil {
		return nil, nil, nil, fmt.Errorf("ca: stored issuing certificate of %s: %w", caID, err)
	}
	return s, root, iss, nil
}

func (e *Embedded) ID() string       { return e.id }
func (e *Embedded) Name() string     { return e.name }
func (e *Embedded) DeskReview() bool { return true }

// Root returns the root certificate (for tests and relying parties).
func (e *Embedded) Root() *smx509.Certificate { return e.root }

// Issuing returns the issuing CA certificate.
func (e *Embedded) Issuing() *smx509.Certificate { return e.issuing }

// Submit accepts an application for review on hufu's desk; the reference is the order id.
func (e *Embedded) Submit(_ context.Context, app *Application) (string, error) {
	if app.PublicKey == nil || app.OrderID == "" {
		return "", errors.New("ca: incomplete application")
	}
	return app.OrderID, nil
}

// Review is always Pending: the embedded CA's decisions are made on the review desk.
func (e *Embedded) Review(context.Context, string) (Decision, error) {
	return Decision{State: Pending}, nil
}

// Chain returns the issuing CA's and the root's certificates, DER.
func (e *Embedded) Chain(context.Context) ([][]byte, error) { return slices.Clone(e.chain), nil }

// certificateSigner returns the issuing key for signing a certificate, refusing
// (ErrIssuingCARevoked) once the issuing CA is on the root's list. The caller holds
// e.signing's read side from this call to its signature.
func (e *Embedded) certificateSigner(ctx context.Context) (*sm2.PrivateKey, error) {
	if _, revoked, err := e.revocationAt(ctx, LevelRoot, e.issuing.SerialNumber); err != nil {
		return nil, err
	} else if revoked {
		e.issuingRevoked.Store(true)
		return nil, e.issuingRevokedError()
	}
	return e.issuingKey(ctx)
}

// issuingKey returns the issuing key whether or not the issuing CA is revoked: for its CRL
// and OCSP responses, which go on being signed after the revocation (docs/certificates.md,
// "A revoked issuing CA").
func (e *Embedded) issuingKey(ctx context.Context) (*sm2.PrivateKey, error) {
	s, err := states.Read(ctx, e.st, stateID(e.id))
	if err != nil {
		return nil, err
	}
	return e.unwrapIssuing(ctx, s)
}

func (e *Embedded) unwrapIssuing(ctx context.Context, s *storepb.CAState) (*sm2.PrivateKey, error) {
	d, err := e.kr.Unwrap(ctx, s.IssuingKeyWrapped, issuingAD(e.id))
	if err != nil {
		return nil, fmt.Errorf("ca: unwrapping the issuing key of %s: %w", e.id, err)
	}
	defer clear(d)
	key, err := sm2.NewPrivateKey(d)
	if err != nil {
		return nil, fmt.Errorf("ca: stored issuing key of %s: %w", e.id, err)
	}
	if !key.PublicKey.Equal(e.issuing.PublicKey) {
		return nil, fmt.Errorf("ca: issuing key of %s does not match its certificate", e.id)
	}
	return key, nil
}

// Fetch issues the certificate of an approved, paid application, with the profile of its
// holder and usage (ProfileOf; ErrNoUsage without a usage) and a new serial. It writes
// nothing: the caller stores the certificate it keeps, with its audit record.
func (e *Embedded) Fetch(ctx context.Context, _ string, app *Application) (*Issued, error) {
	p, err := e.Plan(app)
	if err != nil {
		return nil, err
	}
	return e.IssuePlanned(ctx, app, p)
}

// Plan chooses the serial and the validity of app's certificate without signing anything:
// a new random serial, not-before now (whole seconds), not-after ValidityYears later or
// app.NotAfter, never beyond the issuing CA. Under an issuing CA known to be revoked it
// refuses (ErrIssuingCARevoked, FailedPrecondition): that refusal is final, as the
// revocation is.
func (e *Embedded) Plan(app *Application) (Planned, error) {
	if app.PublicKey == nil || app.Name == "" {
		return Planned{}, errors.New("ca: incomplete application")
	}
	if e.issuingRevoked.Load() {
		return Planned{}, e.issuingRevokedError()
	}
	// Refused here, before the caller reserves anything, what IssuePlanned would refuse.
	if _, _, _, err := e.profiled(app); err != nil {
		return Planned{}, err
	}
	if app.ValidityYears < 1 || app.ValidityYears > 3 {
		if app.NotAfter.IsZero() {
			return Planned{}, fmt.Errorf("ca: validity of %d years outside 1..3", app.ValidityYears)
		}
	}
	serial, err := newSerial()
	if err != nil {
		return Planned{}, err
	}
	notBefore := e.clock.Now().UTC().Truncate(time.Second)
	notAfter := notBefore.AddDate(app.ValidityYears, 0, 0)
	if !app.NotAfter.IsZero() {
		notAfter = app.NotAfter.UTC().Truncate(time.Second)
	}
	if notAfter.After(e.issuing.NotAfter) {
		notAfter = e.issuing.NotAfter
	}
	if !notAfter.After(notBefore) {
		return Planned{}, errors.New("ca: the certificate would already be expired")
	}
	return Planned{Serial: serialHex(serial), NotBefore: notBefore, NotAfter: notAfter}, nil
}

// IssuePlanned signs app's certificate with the serial and validity of p (from Plan, kept
// by the caller meanwhile). Signing the same application and plan again gives a certificate
// with the same content (SM2 signatures differ). It writes nothing.
func (e *Embedded) IssuePlanned(ctx context.Context, app *Application, p Planned) (*Issued, error) {
	if app.PublicKey == nil || app.Name == "" {
		return nil, errors.New("ca: incomplete application")
	}
	serial, ok := ParseSerial(p.Serial)
	if !ok {
		return nil, fmt.Errorf("ca: bad planned serial %q", p.Serial)
	}
	notBefore, notAfter := p.NotBefore.UTC(), p.NotAfter.UTC()
	if !notAfter.After(notBefore) || notAfter.After(e.issuing.NotAfter) {
		return nil, errors.New("ca: the planned validity is empty or beyond the issuing CA")
	}
	profile, subject, ski, err := e.profiled(app)
	if err != nil {
		return nil, err
	}
	ext, err := MarshalPlatforms(Platforms{Platforms: app.Platforms, Regions: app.Regions})
	if err != nil {
		return nil, err
	}
	tmpl := &smx509.Certificate{
		SerialNumber: serial,
		RawSubject:   subject,
		NotBefore:    notBefore, NotAfter: notAfter,
		KeyUsage:              profile.KeyUsage,
		ExtKeyUsage:           profile.ExtKeyUsage,
		BasicConstraintsValid: true, IsCA: false,
		SubjectKeyId:    ski,
		ExtraExtensions: []pkix.Extension{{Id: OIDPlatforms, Value: ext}},
	}
	if u := e.opts.publicURL(IssuingCRLPath(e.id)); u != "" {
		tmpl.CRLDistributionPoints = []string{u}
		tmpl.IssuingCertificateURL = []string{e.opts.publicURL(IssuingCertPath(e.id))}
		if e.opts.OCSP {
			tmpl.OCSPServer = []string{e.opts.publicURL(OCSPPath(e.id))}
		}
	}
	e.signing.RLock()
	defer e.signing.RUnlock()
	key, err := e.certificateSigner(ctx)
	if err != nil {
		return nil, err
	}
	defer clear(key.D.Bits())
	der, err := smx509.CreateCertificate(nil, tmpl, e.issuing, app.PublicKey, key)
	if err != nil {
		return nil, fmt.Errorf("ca: issuing: %w", err)
	}
	return &Issued{DER: der, Serial: p.Serial, NotBefore: notBefore, NotAfter: notAfter}, nil
}

// profiled returns app's profile, its encoded subject and its subject key identifier.
func (e *Embedded) profiled(app *Application) (profile Profile, subject, ski []byte, err error) {
	if profile, err = ProfileOf(HolderOf(app), app.Usage); err != nil {
		return profile, nil, nil, err
	}
	if subject, err = e.subject(app, profile); err != nil {
		return profile, nil, nil, err
	}
	ski, err = SubjectKeyID(app.PublicKey)
	return profile, subject, ski, err
}

// subject encodes the subject of profile: a person's identity value under the CA's policy,
// or the enterprise's USCC. Errors never quote the ID number.
func (e *Embedded) subject(app *Application, profile Profile) ([]byte, error) {
	org := profile.Organization
	if org == "" {
		org = app.Name
	}
	var serial string
	switch profile.SerialNumber {
	case SerialUSCC:
		serial = app.USCC
		if len(serial) != 18 || !printable(serial) {
			return nil, errors.New("ca: the USCC is not 18 PrintableString characters")
		}
	case SerialIdentity:
		if app.IDNumber == "" {
			return nil, ErrNoIDNumber
		}
		var err error
		if serial, err = SubjectIdentity(e.opts.SubjectIdentity, e.opts.SubjectIdentityKey, app.IDNumber); err != nil {
			return nil, err
		}
	}
	return rawSubject(org, serial, app.Name)
}

// ErrNoIDNumber refuses a person's application that does not carry the ID number the
// subject's identity value is made from.
var ErrNoIDNumber = errors.New("ca: a person's application without the ID number")
