package openings

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"sync"

	"github.com/hufu-hsm/hufu/bidopening"
	"github.com/hufu-hsm/hufu/cosign"
	"github.com/hufu-hsm/hufu/daemon/apierr"
	"github.com/hufu-hsm/hufu/daemon/authn"
	"github.com/hufu-hsm/hufu/store"
	"github.com/hufu-hsm/hufu/store/storepb"
)

// consentAD binds a consent's wrapped T1s to their opening and session.
func consentAD(opening, session string) []byte {
	return []byte("hufu/opening/v1 consent-points " + opening + "/" + session)
}

// ForSession returns the caller's opening for a DECRYPT scan session: not closed, its window
// not ended. A due opening is sealed first.
func (s *Service) ForSession(ctx context.Context, caller authn.Caller, id string) (*storepb.Opening, error) {
	o, err := s.read(ctx, caller, id)
	var ae *apierr.Error
	if errors.As(err, &ae) && ae.Kind == apierr.NotFound {
		return nil, apierr.Invalidf("opening_id", "no opening %q of this system", id)
	}
	if err != nil {
		return nil, err
	}
	if o, err = s.advance(ctx, o); err != nil {
		return nil, err
	}
	if o.State == stateClosed {
		return nil, errClosed(o)
	}
	return o, nil
}

// Opening returns an opening by id as its window says it stands, for the bidder's view of a
// DECRYPT session.
func (s *Service) Opening(ctx context.Context, id string) (*storepb.Opening, error) {
	o, err := s.load(ctx, id)
	if err != nil {
		return nil, err
	}
	return s.advance(ctx, o)
}

// EnvelopesOf lists a certificate's envelopes in an opening, in id order (the order of the
// consent points and of the statement).
func (s *Service) EnvelopesOf(ctx context.Context, opening, serial string) ([]*storepb.OpeningEnvelope, error) {
	if !serialRE.MatchString(serial) {
		return nil, nil
	}
	var out []*storepb.OpeningEnvelope
	cursor := ""
	for {
		ks, next, err := s.deps.Store.ListIndex(ctx, indexCert, opening+"."+serial, store.ListOptions{Limit: store.MaxListLimit, Cursor: cursor})
		if err != nil {
			return nil, err
		}
		for _, k := range ks {
			e, err := envelopes.Read(ctx, s.deps.Store, envelopes.ID(k))
			if errors.Is(err, store.ErrNotFound) {
				continue
			}
			if err != nil {
				return nil, err
			}
			out = append(out, e)
		}
		if next == "" {
			return out, nil
		}
		cursor = next
	}
}

// PreparedConsent is what a DECRYPT session pins once the bidder sent the consent points:
// the statement to sign, the points, wrapped, and the share version of the pair that
// computed them.
type PreparedConsent struct {
	Statement     string
	PointsWrapped []byte
	ShareVersion  uint32
}

// CheckConsentWindow tells whether the opening takes consent now; outside its window the
// attempt is refused, recorded and counted (a bidder scanning the code before the opening).
func (s *Service) CheckConsentWindow(ctx context.Context, caller authn.Caller, id string) error {
	o, err := s.Opening(ctx, id)
	if err != nil {
		return err
	}
	return s.inWindowNow(ctx, caller, o, "consent", "")
}

// PrepareConsent checks the consent points of a certificate's envelopes, as EnvelopesOf
// listed them for the bidder (one per envelope, on the curve, not the identity), inside the
// window, and builds the consent statement of the session. An attempt outside the window is
// refused, recorded and counted. ConsentTx checks the envelopes again when it records.
func (s *Service) PrepareConsent(ctx context.Context, caller authn.Caller, opening, session, serial string, envs []*storepb.OpeningEnvelope, points [][]byte) (*PreparedConsent, error) {
	o, err := s.Opening(ctx, opening)
	if err != nil {
		return nil, err
	}
	if err := s.inWindowNow(ctx, caller, o, "consent", ""); err != nil {
		return nil, err
	}
	if len(envs) == 0 {
		return nil, apierr.New(apierr.FailedPrecondition, "certificate %s has no envelope in opening %s", serial, o.Id)
	}
	if len(points) != len(envs) {
		return nil, apierr.Invalidf("consent_points", "one per envelope of the certificate: %d, not %d", len(envs), len(points))
	}
	st := bidopening.Statement{Opening: o.Id, Project: o.ProjectCode, Serial: serial, Session: session, Time: s.deps.Clock.Now().UTC()}
	plain := make([]byte, 0, len(points)*cosign.PointSize)
	for i, raw := range points {
		p, err := cosign.ParsePoint(raw)
		if err != nil {
			return nil, apierr.Invalid(fmt.Sprintf("consent_points[%d]", i), err)
		}
		plain = append(plain, p[:]...)
		se := bidopening.StatementEnvelope{ID: envs[i].Id, T1SHA256: bidopening.T1Hash(&p)}
		copy(se.CiphertextSHA256[:], envs[i].CiphertextSha256)
		st.Envelopes = append(st.Envelopes, se)
	}
	text, err := st.Marshal()
	if err != nil {
		return nil, fmt.Errorf("openings: consent statement: %w", err)
	}
	// The points open only with the share of the pair that made them: note its version, so
	// that a refresh before the release is told apart from a bad point.
	_, version, done, err := s.deps.Keys.ReleaseShare(ctx, caller, envs[0].KeyId)
	if err != nil {
		return nil, err
	}
	done()
	wrapped, err := s.deps.Keyring.Wrap(ctx, plain, consentAD(o.Id, session))
	clear(plain)
	if err != nil {
		return nil, &apierr.Error{Kind: apierr.Unavailable, Message: "HSM unavailable; retry later", Cause: err}
	}
	return &PreparedConsent{Statement: text, PointsWrapped: wrapped, ShareVersion: version}, nil
}

// Consent is a bidder's verified consent, as a DECRYPT session completes.
type Consent struct {
	Session, Serial, KeyID string
	Delegated              bool
	Statement              string
	Signature              []byte
	PointsWrapped          []byte
	ShareVersion           uint32
}

// HoldOpen keeps an opening from closing until done is called, for a consent to be
// recorded in it, and returns the opening as it stands (read after the hold: a close either
// committed before, and shows, or waits). Consents hold an opening side by side; only a close
// waits for them. The opening's record is not locked, so consents do not queue on it.
func (s *Service) HoldOpen(ctx context.Context, id string) (*storepb.Opening, func(), error) {
	g := s.gate(id)
	g.RLock()
	o, err := s.load(ctx, id)
	if err != nil {
		g.RUnlock()
		return nil, nil, err
	}
	return o, g.RUnlock, nil
}

// gate is an opening's gate: consents hold it shared, a seal or a close exclusively. The
// appliance is one process over its store, so an in-memory lock is enough.
func (s *Service) gate(id string) *sync.RWMutex {
	s.gatesMu.Lock()
	defer s.gatesMu.Unlock()
	g, ok := s.gates[id]
	if !ok {
		g = new(sync.RWMutex)
		s.gates[id] = g
	}
	return g
}

// ConsentTx records a consent inside the transaction that completes its scan session: the
// statement, its signature (verified by the session) and the wrapped points, and the
// envelopes it covers. o is the opening as HoldOpen returned it, held for the transaction.
// Refused outside the window.
func (s *Service) ConsentTx(tx *store.Tx, caller authn.Caller, o *storepb.Opening, c Consent) error {
	st, err := bidopening.ParseStatement(c.Statement)
	if err != nil {
		return fmt.Errorf("openings: pinned statement: %w", err)
	}
	if st.Opening != o.Id || st.Serial != c.Serial || st.Session != c.Session {
		return fmt.Errorf("openings: the pinned statement is of another opening, certificate or session")
	}
	switch {
	case o.State == stateClosed:
		return errClosed(o)
	case inWindow(o, tx.Now()) < 0 || o.State != stateSealed:
		return errEarly(o)
	case inWindow(o, tx.Now()) > 0:
		return errEnded(o)
	}
	ids := make([]string, len(st.Envelopes))
	for i, se := range st.Envelopes {
		e, err := envelopes.Get(tx, envelopeID(o.Id, se.ID))
		if err != nil {
			return err
		}
		if e.CertificateSerial != c.Serial || string(e.CiphertextSha256) != string(se.CiphertextSHA256[:]) {
			return apierr.New(apierr.FailedPrecondition, "envelope %s changed since the statement was made", se.ID)
		}
		e.ConsentId = c.Session
		if err := envelopes.Put(tx, envelopeID(o.Id, se.ID), e); err != nil {
			return err
		}
		ids[i] = se.ID
	}
	rec := &storepb.OpeningConsent{Id: c.Session, OpeningId: o.Id, SessionId: c.Session, CertificateSerial: c.Serial, KeyId: c.KeyID,
		UserId: caller.UserID, DeviceId: caller.DeviceID, Delegated: c.Delegated, Statement: c.Statement, Signature: c.Signature,
		PointsWrapped: c.PointsWrapped, EnvelopeIds: ids, AcceptedUnixNano: tx.Now().UnixNano(), ShareVersion: c.ShareVersion}
	if err := consents.Put(tx, consentID(o.Id, c.Session), rec); err != nil {
		return err
	}
	h := sha256.Sum256([]byte(c.Statement))
	return tx.Audit(store.Event{Actor: caller.Actor(), Action: "opening.consent", Subject: openingKey(o.Id), Outcome: store.OutcomeOK,
		Details: map[string]string{"session": c.Session, "serial": c.Serial, "device": caller.DeviceID, "delegated": fmt.Sprint(c.Delegated),
			"envelopes": truncatedList(ids), "statement_sha256": hex.EncodeToString(h[:]), "signature": hex.EncodeToString(c.Signature)}})
}

// inWindowNow checks that o takes consent or release now; outside the window the attempt is
// refused, recorded and counted.
func (s *Service) inWindowNow(ctx context.Context, caller authn.Caller, o *storepb.Opening, via, envelope string) error {
	if o.State == stateClosed {
		return errClosed(o)
	}
	switch inWindow(o, s.deps.Clock.Now()) {
	case 0:
		return nil
	case 1:
		return errEnded(o)
	}
	refusal := errEarly(o)
	if err := s.recordAttempt(ctx, caller, o.Id, via, envelope, "before_window"); err != nil {
		return err // no refusal without its record either
	}
	return refusal
}

// recordAttempt audits and counts a refused early attempt on an opening.
func (s *Service) recordAttempt(ctx context.Context, caller authn.Caller, opening, via, envelope, reason string) error {
	err := s.deps.Store.Update(ctx, func(tx *store.Tx) error {
		return s.attemptTx(tx, caller, opening, via, envelope, reason, 1)
	})
	if err == nil {
		s.m.early.WithLabelValues(via).Inc()
	}
	return err
}
