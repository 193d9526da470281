package openings

import (
	"context"
	"crypto/ecdsa"
	"crypto/sha256"
	"encoding/hex"
	"encoding/pem"
	"errors"
	"fmt"
	"regexp"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/emmansun/gmsm/smx509"

	hufuv1 "github.com/hufu-hsm/hufu/api/hufu/v1"
	"github.com/hufu-hsm/hufu/bidopening"
	"github.com/hufu-hsm/hufu/cosign"
	"github.com/hufu-hsm/hufu/daemon/apierr"
	"github.com/hufu-hsm/hufu/daemon/authn"
	"github.com/hufu-hsm/hufu/daemon/ca"
	"github.com/hufu-hsm/hufu/store"
	"github.com/hufu-hsm/hufu/store/storepb"
)

var (
	idRE     = regexp.MustCompile(`^[A-Za-z0-9._-]{1,64}$`)
	serialRE = regexp.MustCompile(`^[0-9A-Fa-f]{1,64}$`)
)

// maxRegistration bounds one RegisterEnvelopes call.
const maxRegistration = 1000

// maxSM4KeyCiphertext bounds C2: an envelope carries a symmetric key, not a document.
const maxSM4KeyCiphertext = 64

// maxPerCertificate bounds one certificate's envelopes in an opening, so that its consent
// statement stays far within bidopening.MaxStatementSize.
const maxPerCertificate = 500

// maxLead bounds how far ahead an opening is created (and keeps times far from the end of
// Unix nanoseconds).
const maxLead = 366 * 24 * time.Hour

// Create makes an opening for the calling system (OpeningService.CreateOpening).
func (s *Service) Create(ctx context.Context, caller authn.Caller, req *hufuv1.CreateOpeningRequest) (*storepb.Opening, error) {
	if err := apierr.CheckRequestID("request_id", req.GetRequestId()); err != nil {
		return nil, err
	}
	o := &storepb.Opening{System: caller.System, RequestId: req.GetRequestId(), ProjectCode: req.GetProjectCode(),
		ProjectName: strings.TrimSpace(req.GetProjectName()), PlatformId: req.GetPlatformId()}
	// What consent statements and reports carry must pass their text rule, which also keeps
	// bidirectional tricks off the bidder's screen.
	if err := bidopening.CheckProjectCode(o.ProjectCode); err != nil {
		return nil, apierr.Invalid("project_code", err)
	}
	if err := bidopening.CheckText(o.ProjectName); err != nil || utf8.RuneCountInString(o.ProjectName) > 200 {
		return nil, apierr.Invalidf("project_name", "1 to 200 characters, no control, line-separator or bidirectional-formatting characters")
	}
	if _, ok := s.deps.Accounts.Platform(o.PlatformId); !ok {
		return nil, apierr.Invalidf("platform_id", "no platform %q", o.PlatformId)
	}
	if !req.GetWindowStart().IsValid() {
		return nil, apierr.Invalidf("window_start", "the opening time is required")
	}
	if !req.GetWindowEnd().IsValid() {
		return nil, apierr.Invalidf("window_end", "the end of the opening window is required")
	}
	start, end := req.GetWindowStart().AsTime(), req.GetWindowEnd().AsTime()
	now := s.deps.Clock.Now()
	if !start.After(now) || start.Sub(now) > maxLead {
		return nil, apierr.Invalidf("window_start", "must be in the future, within a year (it is %s now)", now.UTC().Format(time.RFC3339))
	}
	if !end.After(start) || end.Sub(start) > s.opts.MaxWindow {
		return nil, apierr.Invalidf("window_end", "after window_start, by at most %v", s.opts.MaxWindow)
	}
	o.WindowStartUnixNano, o.WindowEndUnixNano = start.UnixNano(), end.UnixNano()
	if raw := req.GetResultPublicKey(); len(raw) > 0 {
		p, err := parseResultKey(raw)
		if err != nil {
			return nil, apierr.Invalid("result_public_key", err)
		}
		o.ResultPublicKey = p[:]
	}
	var out *storepb.Opening
	err := s.deps.Store.Update(ctx, func(tx *store.Tx) error {
		if k, err := tx.Lookup(indexRequest, store.ScopedValue(caller.System, o.RequestId)); err == nil {
			out = new(storepb.Opening)
			return tx.Get(k, out)
		} else if !errors.Is(err, store.ErrNotFound) {
			return err
		}
		o.Id, o.State, o.CreatedUnixNano = store.RandomID(10), stateOpen, tx.Now().UnixNano()
		if err := tx.Claim(indexRequest, store.ScopedValue(caller.System, o.RequestId), openingKey(o.Id)); err != nil {
			return err
		}
		if err := tx.AddIndex(indexSystem, caller.System, openingKey(o.Id)); err != nil {
			return err
		}
		if err := openings.Put(tx, openingID(o.Id), o); err != nil {
			return err
		}
		out = o
		return tx.Audit(store.Event{Actor: caller.Actor(), Action: "opening.create", Subject: openingKey(o.Id), Outcome: store.OutcomeOK,
			Details: map[string]string{"project": o.ProjectCode, "platform": o.PlatformId, "window_start": start.UTC().Format(time.RFC3339Nano),
				"window_end": end.UTC().Format(time.RFC3339Nano), "result_key": fmt.Sprint(len(o.ResultPublicKey) > 0)}})
	})
	if err == nil && out == o {
		s.m.events.WithLabelValues("create").Inc()
	}
	return out, err
}

// parseResultKey takes an SM2 public key as a 65-byte point, or as PEM or DER
// SubjectPublicKeyInfo.
func parseResultKey(raw []byte) (cosign.Point, error) {
	if len(raw) == cosign.PointSize && raw[0] == 0x04 {
		return cosign.ParsePoint(raw)
	}
	if b, _ := pem.Decode(raw); b != nil {
		raw = b.Bytes
	}
	pub, err := smx509.ParsePKIXPublicKey(raw)
	if err != nil {
		return cosign.Point{}, errors.New("not an SM2 public key (65-byte point, PEM or DER SubjectPublicKeyInfo)")
	}
	ec, ok := pub.(*ecdsa.PublicKey)
	if !ok {
		return cosign.Point{}, errors.New("not an SM2 public key")
	}
	return cosign.PointFromPublicKey(ec)
}

// Get returns the caller's opening, sealed or closed first if its window says so, with its
// consents counted.
func (s *Service) Get(ctx context.Context, caller authn.Caller, id string) (*storepb.Opening, error) {
	o, err := s.read(ctx, caller, id)
	if err != nil {
		return nil, err
	}
	return s.current(ctx, o)
}

// current brings an opening read from the store up to date: its state by the clock, its
// consent count while sealed.
func (s *Service) current(ctx context.Context, o *storepb.Opening) (*storepb.Opening, error) {
	o, err := s.advance(ctx, o)
	if err != nil {
		return nil, err
	}
	if o.State == stateSealed {
		n, err := s.consented(ctx, o.Id)
		if err != nil {
			return nil, err
		}
		o.Consented = uint32(n)
	}
	return o, nil
}

// advance moves an opening to the state its window says it is in: sealed from the window
// start, closed (with its report) from the window end.
func (s *Service) advance(ctx context.Context, o *storepb.Opening) (*storepb.Opening, error) {
	now := s.deps.Clock.Now()
	var err error
	if o.State == stateOpen && inWindow(o, now) >= 0 {
		if o, err = s.seal(ctx, authn.Caller{}, o); err != nil {
			return nil, err
		}
	}
	if o.State == stateSealed && inWindow(o, now) > 0 {
		if o, _, err = s.close(ctx, authn.Caller{}, o.Id); err != nil {
			return nil, err
		}
	}
	return o, nil
}

// List lists the caller's openings, a page at a time.
func (s *Service) List(ctx context.Context, caller authn.Caller, size int, cursor string) ([]*storepb.Opening, string, error) {
	if size < 0 || size > store.MaxListLimit {
		return nil, "", apierr.Invalidf("page_size", "at most %d", store.MaxListLimit)
	}
	ks, next, err := s.deps.Store.ListIndex(ctx, indexSystem, caller.System, store.ListOptions{Limit: size, Cursor: cursor})
	if errors.Is(err, store.ErrBadCursor) {
		return nil, "", apierr.Invalidf("page_token", "not a token of this listing")
	}
	if err != nil {
		return nil, "", err
	}
	out := make([]*storepb.Opening, 0, len(ks))
	for _, k := range ks {
		o, err := openings.Read(ctx, s.deps.Store, openings.ID(k))
		if errors.Is(err, store.ErrNotFound) {
			continue
		}
		if err != nil {
			return nil, "", err
		}
		out = append(out, o)
	}
	return out, next, nil
}

// registration is a checked envelope to register.
type registration struct {
	rec  *storepb.OpeningEnvelope
	c1ID string
}

// checkRegistration validates one envelope and resolves its certificate.
func (s *Service) checkRegistration(ctx context.Context, o *storepb.Opening, i int, r *hufuv1.EnvelopeRegistration) (registration, error) {
	field := func(name string) string { return fmt.Sprintf("envelopes[%d].%s", i, name) }
	if !idRE.MatchString(r.GetEnvelopeId()) {
		return registration{}, apierr.Invalidf(field("envelope_id"), "1 to 64 of [A-Za-z0-9._-]")
	}
	if !serialRE.MatchString(r.GetCertificateSerial()) {
		return registration{}, apierr.Invalidf(field("certificate_serial"), "the certificate's serial in hex")
	}
	ct, err := cosign.ParseCiphertext(r.GetCiphertext(), cosign.DetectEncoding(r.GetCiphertext()))
	if err != nil {
		return registration{}, apierr.Invalid(field("ciphertext"), err)
	}
	if len(ct.C2) > maxSM4KeyCiphertext {
		return registration{}, apierr.Invalidf(field("ciphertext"), "carries %d bytes; an envelope carries the bid's SM4 key (at most %d)", len(ct.C2), maxSM4KeyCiphertext)
	}
	cert, _, err := s.deps.Certs.Certificate(ctx, r.GetCertificateSerial())
	if err != nil {
		var ae *apierr.Error
		if errors.As(err, &ae) && ae.Kind == apierr.NotFound {
			return registration{}, apierr.Invalidf(field("certificate_serial"), "no certificate %s on this appliance", r.GetCertificateSerial())
		}
		return registration{}, err
	}
	if !s.deps.Certs.Active(cert) {
		return registration{}, apierr.Invalidf(field("certificate_serial"), "certificate %s is not active", r.GetCertificateSerial())
	}
	if ca.Usage(cert.Usage) == ca.UsageSigning && cert.PairSerial != "" {
		// Envelopes are encrypted to a pair's encryption certificate; its signing key does
		// not decrypt, so an envelope registered for it could never be opened.
		return registration{}, apierr.Invalidf(field("certificate_serial"), "certificate %s is the signing certificate of a pair: envelope the bid to its encryption certificate %s and register that serial", cert.Serial, cert.PairSerial)
	}
	sum := sha256.Sum256(r.GetCiphertext())
	c1 := sha256.Sum256(ct.C1[:])
	return registration{c1ID: hex.EncodeToString(c1[:]), rec: &storepb.OpeningEnvelope{
		Id: r.GetEnvelopeId(), OpeningId: o.Id, CertificateSerial: cert.Serial, KeyId: cert.KeyId,
		Ciphertext: r.GetCiphertext(), CiphertextSha256: sum[:],
	}}, nil
}

// RegisterEnvelopes adds envelopes to an open opening (OpeningService.RegisterEnvelopes).
func (s *Service) RegisterEnvelopes(ctx context.Context, caller authn.Caller, id string, regs []*hufuv1.EnvelopeRegistration) (added, total int, err error) {
	if len(regs) == 0 || len(regs) > maxRegistration {
		return 0, 0, apierr.Invalidf("envelopes", "1 to %d per call, not %d", maxRegistration, len(regs))
	}
	o, err := s.read(ctx, caller, id)
	if err != nil {
		return 0, 0, err
	}
	checked := make([]registration, len(regs))
	seen := make(map[string]bool, 2*len(regs))
	perCert := map[string]int{}
	for i, r := range regs {
		if checked[i], err = s.checkRegistration(ctx, o, i, r); err != nil {
			return 0, 0, err
		}
		if seen[checked[i].rec.Id] {
			return 0, 0, apierr.Invalidf(fmt.Sprintf("envelopes[%d].envelope_id", i), "%q is given twice", checked[i].rec.Id)
		}
		if seen["c1:"+checked[i].c1ID] {
			return 0, 0, apierr.Invalidf(fmt.Sprintf("envelopes[%d].ciphertext", i), "the same ciphertext is given twice")
		}
		seen[checked[i].rec.Id], seen["c1:"+checked[i].c1ID] = true, true
		perCert[checked[i].rec.CertificateSerial]++
	}
	for serial, n := range perCert {
		have, err := s.EnvelopesOf(ctx, o.Id, serial)
		if err != nil {
			return 0, 0, err
		}
		if len(have)+n > maxPerCertificate {
			return 0, 0, apierr.Invalidf("envelopes", "certificate %s would have more than %d envelopes in the opening", serial, maxPerCertificate)
		}
	}
	for _, c := range checked {
		s.withEnvelopes.add(c.rec.KeyId) // before the commit that files it: see envelopeKeys
	}
	err = s.deps.Store.Update(ctx, func(tx *store.Tx) error {
		added = 0
		o, err := s.get(tx, caller, id)
		if err != nil {
			return err
		}
		if err := registrable(o, tx.Now()); err != nil {
			return err
		}
		ids := make([]string, 0, len(checked))
		all := sha256.New()
		for i, c := range checked {
			key := envelopeKey(o.Id, c.rec.Id)
			if cur, err := envelopes.Get(tx, envelopeID(o.Id, c.rec.Id)); err == nil {
				if string(cur.Ciphertext) != string(c.rec.Ciphertext) || cur.CertificateSerial != c.rec.CertificateSerial {
					return apierr.New(apierr.AlreadyExists, "envelopes[%d]: envelope %q is registered with another ciphertext or certificate", i, c.rec.Id)
				}
				continue // a retry
			} else if !errors.Is(err, store.ErrNotFound) {
				return err
			}
			if err := s.claimC1(tx, c.c1ID, key); err != nil {
				if errors.Is(err, store.ErrTaken) {
					return apierr.New(apierr.AlreadyExists, "envelopes[%d].ciphertext: registered already, in an opening not yet closed", i)
				}
				return err
			}
			if err := tx.AddIndex(indexCert, o.Id+"."+c.rec.CertificateSerial, key); err != nil {
				return err
			}
			if err := tx.AddIndex(indexKey, c.rec.KeyId, openingKey(o.Id)); err != nil {
				return err
			}
			c.rec.RegisteredUnixNano = tx.Now().UnixNano()
			if err := envelopes.Put(tx, envelopeID(o.Id, c.rec.Id), c.rec); err != nil {
				return err
			}
			ids = append(ids, c.rec.Id)
			all.Write(c.rec.CiphertextSha256)
			added++
		}
		if added == 0 {
			total = int(o.Envelopes)
			return nil // nothing new: write nothing
		}
		if int(o.Envelopes)+added > s.opts.MaxEnvelopes {
			return apierr.New(apierr.ResourceExhausted, "an opening holds at most %d envelopes", s.opts.MaxEnvelopes)
		}
		o.Envelopes += uint32(added)
		o.Revision++
		total = int(o.Envelopes)
		if err := openings.Put(tx, openingID(o.Id), o); err != nil {
			return err
		}
		return tx.Audit(store.Event{Actor: caller.Actor(), Action: "opening.register", Subject: openingKey(o.Id), Outcome: store.OutcomeOK,
			Details: map[string]string{"added": fmt.Sprint(added), "envelopes": fmt.Sprint(o.Envelopes),
				"ids": truncatedList(ids), "ciphertexts_sha256": hex.EncodeToString(all.Sum(nil))}})
	})
	if err == nil {
		s.m.envelopes.Add(float64(added))
	}
	return added, total, err
}

// claimC1 makes envelope key the holder of a C1. A C1 held by an envelope of a closed
// opening is taken over (the bids of a cancelled opening may be opened again, 重新开标);
// otherwise it is store.ErrTaken.
func (s *Service) claimC1(tx *store.Tx, c1ID, key string) error {
	err := tx.Claim(indexC1, c1ID, key)
	if !errors.Is(err, store.ErrTaken) {
		return err
	}
	owner, err := tx.Lookup(indexC1, c1ID)
	if err != nil {
		return err
	}
	prev := new(storepb.OpeningEnvelope)
	if err := tx.Get(owner, prev); err != nil {
		return err
	}
	o, err := openings.Get(tx, openingID(prev.OpeningId))
	if err != nil {
		return err
	}
	if o.State != stateClosed {
		return store.ErrTaken
	}
	if err := tx.Unclaim(indexC1, c1ID, owner); err != nil {
		return err
	}
	return tx.Claim(indexC1, c1ID, key)
}

// truncatedList joins ids for an audit detail, within the audit record's bounds.
func truncatedList(ids []string) string {
	var b strings.Builder
	for i, id := range ids {
		if b.Len()+len(id) > 4000 {
			fmt.Fprintf(&b, " …(%d more)", len(ids)-i)
			break
		}
		if i > 0 {
			b.WriteByte(',')
		}
		b.WriteString(id)
	}
	return b.String()
}

// registrable says whether envelopes may still be added to or removed from o at t.
func registrable(o *storepb.Opening, t time.Time) error {
	if o.State != stateOpen {
		return apierr.New(apierr.FailedPrecondition, "opening %s is sealed: no envelope is added or removed after sealing", o.Id)
	}
	if inWindow(o, t) >= 0 {
		return apierr.New(apierr.FailedPrecondition, "the bid deadline of opening %s (%s) has passed: it is sealed", o.Id, windowStart(o).Format(time.RFC3339))
	}
	return nil
}

// Remove withdraws an envelope before sealing (OpeningService.RemoveEnvelope).
func (s *Service) Remove(ctx context.Context, caller authn.Caller, id, envelope string) error {
	if !idRE.MatchString(envelope) {
		return apierr.Invalidf("envelope_id", "1 to 64 of [A-Za-z0-9._-]")
	}
	if _, err := s.read(ctx, caller, id); err != nil {
		return err
	}
	return s.deps.Store.Update(ctx, func(tx *store.Tx) error {
		o, err := s.get(tx, caller, id)
		if err != nil {
			return err
		}
		if err := registrable(o, tx.Now()); err != nil {
			return err
		}
		e, err := envelopes.Get(tx, envelopeID(o.Id, envelope))
		if errors.Is(err, store.ErrNotFound) {
			return apierr.New(apierr.NotFound, "no envelope %q in opening %s", envelope, o.Id)
		}
		if err != nil {
			return err
		}
		ct, err := cosign.ParseCiphertext(e.Ciphertext, cosign.DetectEncoding(e.Ciphertext))
		if err != nil {
			return fmt.Errorf("openings: stored envelope %s: %w", envelope, err)
		}
		c1 := sha256.Sum256(ct.C1[:])
		key := envelopeKey(o.Id, envelope)
		if err := tx.Unclaim(indexC1, hex.EncodeToString(c1[:]), key); err != nil {
			return err
		}
		if err := tx.RemoveIndex(indexCert, o.Id+"."+e.CertificateSerial, key); err != nil {
			return err
		}
		if err := envelopes.Delete(tx, envelopeID(o.Id, envelope)); err != nil {
			return err
		}
		o.Envelopes--
		o.Revision++
		if err := openings.Put(tx, openingID(o.Id), o); err != nil {
			return err
		}
		return tx.Audit(store.Event{Actor: caller.Actor(), Action: "opening.envelope.remove", Subject: key, Outcome: store.OutcomeOK,
			Details: map[string]string{"ciphertext_sha256": hex.EncodeToString(e.CiphertextSha256)}})
	})
}

// Seal seals the caller's opening now (OpeningService.SealOpening).
func (s *Service) Seal(ctx context.Context, caller authn.Caller, id string) (*storepb.Opening, error) {
	o, err := s.read(ctx, caller, id)
	if err != nil {
		return nil, err
	}
	if o.State != stateOpen {
		return o, nil
	}
	return s.seal(ctx, caller, o)
}

// seal writes the manifest and seals, in one batch with its audit record. The envelopes are
// listed outside the transaction; the opening's revision, unchanged under its lock, proves
// the listing is the whole of them (a registration in between makes it list again).
func (s *Service) seal(ctx context.Context, caller authn.Caller, o *storepb.Opening) (*storepb.Opening, error) {
	// At the opening time every bidder's scan finds the opening due to seal: one lists the
	// envelopes and seals, the others wait and find it sealed.
	g := s.gate(o.Id)
	g.Lock()
	defer g.Unlock()
	o, err := s.load(ctx, o.Id)
	if err != nil || o.State != stateOpen {
		return o, err
	}
	actor := caller.Actor()
	if caller.System == "" {
		actor = "appliance" // sealed because the bid deadline passed
	}
	for attempt := 0; ; attempt++ {
		all, err := s.listEnvelopes(ctx, o.Id)
		if err != nil {
			return nil, err
		}
		manifest := bidopening.ManifestSHA256(manifestOf(all))
		var out *storepb.Opening
		stale, sealed := false, false
		err = s.deps.Store.Update(ctx, func(tx *store.Tx) error {
			cur, err := openings.Get(tx, openingID(o.Id))
			if err != nil {
				return err
			}
			if cur.State != stateOpen {
				out = cur // sealed meanwhile
				return nil
			}
			if cur.Revision != o.Revision || int(cur.Envelopes) != len(all) {
				o, stale = cur, true
				return nil
			}
			// Sealed later than the bid deadline, the manifest is still the deadline's: no
			// envelope is added or removed from the window start on.
			cur.State, cur.SealedUnixNano, cur.ManifestSha256 = stateSealed, min(tx.Now().UnixNano(), cur.WindowStartUnixNano), manifest[:]
			if err := openings.Put(tx, openingID(o.Id), cur); err != nil {
				return err
			}
			out, sealed = cur, true
			return tx.Audit(store.Event{Actor: actor, Action: "opening.seal", Subject: openingKey(o.Id), Outcome: store.OutcomeOK,
				Details: map[string]string{"envelopes": fmt.Sprint(len(all)), "manifest_sha256": hex.EncodeToString(manifest[:]),
					"sealed_at": time.Unix(0, cur.SealedUnixNano).UTC().Format(time.RFC3339Nano)}})
		})
		if err != nil {
			return nil, err
		}
		if !stale {
			if sealed {
				s.m.events.WithLabelValues("seal").Inc()
			}
			return out, nil
		}
		if attempt == 10 {
			return nil, apierr.New(apierr.Aborted, "opening %s is changing too fast to seal; retry", o.Id)
		}
	}
}

// listEnvelopes reads every envelope of an opening, in id order.
func (s *Service) listEnvelopes(ctx context.Context, opening string) ([]*storepb.OpeningEnvelope, error) {
	var out []*storepb.OpeningEnvelope
	err := listAll(ctx, s.deps.Store, envelopes, "envelope/"+opening+"/", func(e *storepb.OpeningEnvelope) error {
		out = append(out, e)
		return nil
	})
	return out, err
}

func manifestOf(all []*storepb.OpeningEnvelope) []bidopening.Envelope {
	out := make([]bidopening.Envelope, len(all))
	for i, e := range all {
		out[i] = bidopening.Envelope{ID: e.Id, Serial: e.CertificateSerial, RegisteredAt: time.Unix(0, e.RegisteredUnixNano).UTC()}
		copy(out[i].CiphertextSHA256[:], e.CiphertextSha256)
	}
	return out
}

// ListEnvelopes lists an opening's envelopes with their state.
func (s *Service) ListEnvelopes(ctx context.Context, caller authn.Caller, id string, size int, cursor string) ([]*storepb.OpeningEnvelope, string, error) {
	if size < 0 || size > store.MaxListLimit {
		return nil, "", apierr.Invalidf("page_size", "at most %d", store.MaxListLimit)
	}
	if _, err := s.read(ctx, caller, id); err != nil {
		return nil, "", err
	}
	page, err := envelopes.List(ctx, s.deps.Store, "envelope/"+id+"/", store.ListOptions{Limit: size, Cursor: cursor}, nil)
	if errors.Is(err, store.ErrBadCursor) {
		return nil, "", apierr.Invalidf("page_token", "not a token of this listing")
	}
	if err != nil {
		return nil, "", err
	}
	out := make([]*storepb.OpeningEnvelope, len(page.Items))
	for i, it := range page.Items {
		out[i] = it.Value
	}
	return out, page.Next, nil
}
