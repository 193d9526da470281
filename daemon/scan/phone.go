package scan

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/emmansun/gmsm/smx509"

	hufuv1 "github.com/hufu-hsm/hufu/api/hufu/v1"
	"github.com/hufu-hsm/hufu/cms"
	"github.com/hufu-hsm/hufu/cosign"
	"github.com/hufu-hsm/hufu/daemon/apierr"
	"github.com/hufu-hsm/hufu/daemon/authn"
	"github.com/hufu-hsm/hufu/daemon/enterprises"
	"github.com/hufu-hsm/hufu/daemon/keys"
	"github.com/hufu-hsm/hufu/daemon/openings"
	"github.com/hufu-hsm/hufu/store"
	"github.com/hufu-hsm/hufu/store/storepb"
)

// Candidate is a certificate of the person that may answer a session, or why it may not.
type Candidate struct {
	Cert    *storepb.Certificate
	Subject string
	Refusal string
	// Recognition: not valid for the platform, admitted through mutual recognition (互认)
	// with the service open.
	Recognition bool
	// DECRYPT: the certificate's envelopes in the opening.
	Envelopes []*storepb.OpeningEnvelope
}

// candidates lists the person's certificates usable from this device: their own (personal,
// or an enterprise's they hold the key of) and the enterprise certificates whose key they
// hold a delegated pair of on this device.
func (s *Service) candidates(ctx context.Context, caller authn.Caller, ss *storepb.ScanSession) ([]Candidate, error) {
	own, err := s.deps.Certs.ListCertificates(ctx, caller, hufuv1.CertificateListView_CERTIFICATE_LIST_VIEW_ACTIVE)
	if err != nil {
		return nil, err
	}
	var certs []*storepb.Certificate
	for _, c := range own {
		k, err := s.deps.Keys.OwnedKey(ctx, caller, c.KeyId)
		if err == nil && k.DeviceId == caller.DeviceID {
			certs = append(certs, c)
		}
	}
	mine, err := s.deps.Enterprises.ListMine(ctx, caller)
	if err != nil {
		return nil, err
	}
	for _, m := range mine {
		if m.Enterprise.KeyId == "" || m.Enterprise.CertSerial == "" || slices.ContainsFunc(certs, func(c *storepb.Certificate) bool { return c.KeyId == m.Enterprise.KeyId }) {
			continue
		}
		c, _, err := s.deps.Certs.Certificate(ctx, m.Enterprise.CertSerial)
		if err != nil || !s.deps.Certs.Active(c) || !s.holdsPair(ctx, caller, c.KeyId) {
			continue
		}
		certs = append(certs, c)
		// The encryption certificate of the enterprise's pair, which bids are enveloped to,
		// answers DECRYPT sessions with the member's pair of the encryption key (granted with
		// the signing key's: enterprises.Grant).
		if c.PairSerial != "" {
			enc, _, err := s.deps.Certs.Certificate(ctx, c.PairSerial)
			if err == nil && s.deps.Certs.Active(enc) && s.holdsPair(ctx, caller, enc.KeyId) {
				certs = append(certs, enc)
			}
		}
	}
	out := make([]Candidate, 0, len(certs))
	for _, c := range certs {
		cand := Candidate{Cert: c, Subject: subjectOf(c)}
		if ss.Kind == kindDecrypt {
			// A bid is opened with the certificate it was enveloped to, whatever its platforms.
			if cand.Envelopes, err = s.deps.Openings.EnvelopesOf(ctx, ss.OpeningId, c.Serial); err != nil {
				return nil, err
			}
			if len(cand.Envelopes) == 0 {
				continue // only the certificates with envelopes in the opening are offered
			}
		} else {
			if isPairEncryption(c) {
				continue // a pair answers with its signing certificate; envelopes go to this one
			}
			cand.Recognition, cand.Refusal = s.admissible(c, ss)
		}
		out = append(out, cand)
	}
	return out, nil
}

// admissible says how a certificate may answer a session other than DECRYPT, by the
// session's platform and sign mode (§2.3): valid for the platform; or, not valid for it but
// of the national mutual-recognition system (全国CA互认) and admitted by the platform,
// through the gate (recognition); or not (refusal).
func (s *Service) admissible(c *storepb.Certificate, ss *storepb.ScanSession) (recognition bool, refusal string) {
	national := s.recognition != nil && s.recognition.National(c)
	valid := slices.Contains(c.Platforms, ss.PlatformId)
	switch {
	case ss.SignMode == signModeRecognition && !national:
		return false, "not a certificate of the national mutual-recognition system (全国CA互认APP); the system's 扫码认证 sign mode takes the platform's own certificates"
	case valid:
		return false, ""
	case ss.SignMode == signModeScan:
		return false, fmt.Sprintf("not valid for platform %s; in the 扫码认证 sign mode only the platform's certificates answer (全国CA互认APP admits nationally recognised ones)", ss.PlatformId)
	case national && s.recognition.Recognized(c, ss.PlatformId):
		return true, "" // 互认 (seed §1.8.2.3): Choose passes the gate
	}
	return false, fmt.Sprintf("not valid for platform %s, and not a certificate of the national mutual-recognition system (全国CA互认) that the platform admits", ss.PlatformId)
}

// holdsPair reports whether the caller's device holds an accepted delegated pair of keyID.
func (s *Service) holdsPair(ctx context.Context, caller authn.Caller, keyID string) bool {
	pairs, err := s.deps.Keys.ListDelegations(ctx, keyID)
	if err != nil {
		return false
	}
	return slices.ContainsFunc(pairs, func(d *storepb.DelegatedShare) bool {
		return d.MemberUserId == caller.UserID && d.MemberDeviceId == caller.DeviceID && d.Status == storepb.DelegationStatus_DELEGATION_STATUS_ACTIVE
	})
}

func subjectOf(c *storepb.Certificate) string {
	cert, err := smx509.ParseCertificate(c.Der)
	if err != nil {
		return ""
	}
	return cert.Subject.String()
}

// ScanView is what the phone shows after a scan.
type ScanView struct {
	Session        *storepb.ScanSession
	Candidates     []Candidate
	ReleasePreview []byte
	// DECRYPT: the opening.
	Opening *storepb.Opening
}

// Scan claims a session by its QR payload for the caller (one scan per session).
func (s *Service) Scan(ctx context.Context, caller authn.Caller, payload string) (*ScanView, error) {
	id, nonce, _, err := VerifyQR(s.deps.Signer.PublicKey(), payload)
	if err != nil {
		return nil, err
	}
	// What an AUTH session would release is built before the transaction (no store read
	// nests inside one) and pinned in it.
	var preview []byte
	pre, err := s.read(ctx, id)
	if err != nil {
		return nil, err
	}
	switch {
	case pre.Kind == kindAuth:
		if preview, err = s.release(ctx, caller, pre); err != nil {
			return nil, err
		}
	case pre.Kind == kindDecrypt:
		// Nothing of an opening, not even its envelopes, is shown before its window; the code
		// stays good for the opening time.
		if err := s.deps.Openings.CheckConsentWindow(ctx, caller, pre.OpeningId); err != nil {
			return nil, err
		}
		if pre.Hall {
			if pre, err = s.scanHall(ctx, caller, pre, nonce); err != nil {
				return nil, err
			}
			return s.decryptView(ctx, caller, pre)
		}
	}
	ss, err := s.update(ctx, caller, id, "scan", func(tx *store.Tx, ss *storepb.ScanSession) (map[string]string, error) {
		if ss.Nonce != nonce {
			return nil, apierr.Invalidf("qr_payload", "not a scan code of this appliance, or altered")
		}
		switch s.effective(ss) {
		case stateCreated:
		case stateExpired:
			return nil, apierr.New(apierr.FailedPrecondition, "the QR code has expired; ask the system for a new one")
		default:
			return nil, apierr.New(apierr.FailedPrecondition, "this QR code was scanned already; ask the system for a new one")
		}
		ss.State, ss.ScannedByUser, ss.ScannedByDevice = stateScanned, caller.UserID, caller.DeviceID
		if ss.Kind == kindAuth {
			// What is shown is what consent releases: its digest is pinned.
			h := sha256.Sum256(preview)
			ss.Pinned = [][]byte{h[:]}
		}
		return map[string]string{"device": caller.DeviceID}, nil
	})
	if err != nil {
		return nil, err
	}
	if ss.Kind == kindDecrypt {
		return s.decryptView(ctx, caller, ss)
	}
	view := &ScanView{Session: ss, ReleasePreview: preview}
	if ss.Kind != kindAuth {
		view.Candidates, err = s.candidates(ctx, caller, ss)
	}
	return view, err
}

// decryptView is what a bidder is shown of a DECRYPT session: the opening, and their
// certificates with envelopes in it.
func (s *Service) decryptView(ctx context.Context, caller authn.Caller, ss *storepb.ScanSession) (*ScanView, error) {
	o, err := s.deps.Openings.Opening(ctx, ss.OpeningId)
	if err != nil {
		return nil, err
	}
	cands, err := s.candidates(ctx, caller, ss)
	if err != nil {
		return nil, err
	}
	return &ScanView{Session: ss, Opening: o, Candidates: cands}, nil
}

// scanHall starts the caller's own DECRYPT session from a hall code: the hall session stays
// open for the next bidder until it expires.
func (s *Service) scanHall(ctx context.Context, caller authn.Caller, hall *storepb.ScanSession, nonce string) (*storepb.ScanSession, error) {
	if hall.Nonce != nonce {
		return nil, apierr.Invalidf("qr_payload", "not a scan code of this appliance, or altered")
	}
	if s.effective(hall) != stateCreated {
		return nil, apierr.New(apierr.FailedPrecondition, "the hall code has expired; ask the opening hall for a new one")
	}
	now := s.deps.Clock.Now()
	ss := &storepb.ScanSession{Id: store.RandomID(10), Nonce: store.RandomID(12), System: hall.System, Kind: kindDecrypt, PlatformId: hall.PlatformId,
		Reference: hall.Reference, OpeningId: hall.OpeningId, ParentId: hall.Id, State: stateScanned, ScannedByUser: caller.UserID,
		ScannedByDevice: caller.DeviceID, CreatedUnixNano: now.UnixNano(), UpdatedUnixNano: now.UnixNano(),
		// The bidder's own time to answer, even when the hall code expires sooner.
		ExpiresUnixNano: now.Add(s.opts.DefaultTTL).UnixNano()}
	err := s.deps.Store.Update(ctx, func(tx *store.Tx) error {
		if err := sessions.Put(tx, sessionID(ss.Id), ss, store.ExpiresAt(time.Unix(0, ss.ExpiresUnixNano).Add(keep))); err != nil {
			return err
		}
		return tx.Audit(store.Event{Actor: caller.Actor(), Action: "scan.scan", Subject: sessionKey(ss.Id), Outcome: store.OutcomeOK,
			Details: map[string]string{"device": caller.DeviceID, "hall": hall.Id, "opening": ss.OpeningId, "system": ss.System,
				"kind": hufuv1.SessionKind(ss.Kind).String(), "state": hufuv1.SessionState(ss.State).String()}})
	})
	if err != nil {
		return nil, err
	}
	s.m.events.WithLabelValues("scan").Inc()
	return ss, nil
}

// scanned reads a session the caller scanned and may still answer.
func (s *Service) scanned(tx *store.Tx, caller authn.Caller, id string) (*storepb.ScanSession, error) {
	ss, err := sessions.Get(tx, sessionID(id))
	if errors.Is(err, store.ErrNotFound) || (err == nil && (ss.ScannedByUser != caller.UserID || ss.ScannedByDevice != caller.DeviceID)) {
		return nil, apierr.New(apierr.NotFound, "no scan session %q scanned on this device", id)
	}
	if err != nil {
		return nil, err
	}
	switch s.effective(ss) {
	case stateScanned:
		return ss, nil
	case stateExpired:
		return nil, apierr.New(apierr.FailedPrecondition, "the session has expired")
	}
	return nil, apierr.New(apierr.FailedPrecondition, "the session is %s", strings.ToLower(strings.TrimPrefix(hufuv1.SessionState(ss.State).String(), "SESSION_STATE_")))
}

// scannedNow is scanned in a read-only transaction: the check that comes before any costly
// or side-effecting work for a session (the update re-checks under its lock).
func (s *Service) scannedNow(ctx context.Context, caller authn.Caller, id string) (*storepb.ScanSession, error) {
	var ss *storepb.ScanSession
	err := s.deps.Store.Update(ctx, func(tx *store.Tx) error {
		var err error
		ss, err = s.scanned(tx, caller, id)
		return err
	})
	return ss, err
}

// Choice is what the phone signs after choosing a certificate.
type Choice struct {
	KeyID            string
	Challenge        []byte
	SignedAttributes [][]byte
}

// Choose picks the answering certificate (and seal) and pins the digests e of the session.
func (s *Service) Choose(ctx context.Context, caller authn.Caller, id, serial, sealID string, points [][]byte) (*Choice, error) {
	if !sessionIDRE.MatchString(id) {
		return nil, apierr.New(apierr.NotFound, "no scan session %q", id)
	}
	pre, err := s.scannedNow(ctx, caller, id)
	if err != nil {
		return nil, err
	}
	if sameChoice(pre, serial, sealID) {
		// A retry of the choice made (a lost answer): the same pins, nothing checked or
		// written again (the mutual-recognition debit, if any, was made once).
		return &Choice{KeyID: pre.KeyId, Challenge: pre.Challenge, SignedAttributes: pre.SignedAttributes}, nil
	}
	cands, err := s.candidates(ctx, caller, pre)
	if err != nil {
		return nil, err
	}
	i := slices.IndexFunc(cands, func(c Candidate) bool { return c.Cert.Serial == serial })
	if i < 0 {
		return nil, apierr.Invalidf("certificate_serial", "not one of your certificates usable on this device")
	}
	if cands[i].Refusal != "" {
		return nil, apierr.New(apierr.FailedPrecondition, "certificate %s: %s", serial, cands[i].Refusal)
	}
	cert := cands[i].Cert
	parsed, err := smx509.ParseCertificate(cert.Der)
	if err != nil {
		return nil, fmt.Errorf("scan: stored certificate %s: %w", serial, err)
	}
	pub, err := cosign.PointFromPublicKey(parsedPublic(parsed))
	if err != nil {
		return nil, fmt.Errorf("scan: certificate %s: %w", serial, err)
	}
	var seal *storepb.Seal
	if sealID != "" {
		if !pre.WithSeal {
			return nil, apierr.Invalidf("seal_id", "the system asked for no seal")
		}
		if seal, err = s.deps.Seals.SealUsable(ctx, caller, sealID); err != nil {
			return nil, err
		}
		if seal.EnterpriseUscc != cert.EnterpriseUscc || (seal.EnterpriseUscc == "" && seal.OwnerUserId != caller.UserID) {
			return nil, apierr.Invalidf("seal_id", "the seal is not of the certificate's holder")
		}
		if seal.CertificateSerial != "" && seal.CertificateSerial != serial {
			return nil, apierr.Invalidf("seal_id", "the seal signs with another certificate")
		}
	} else if pre.WithSeal {
		return nil, apierr.Invalidf("seal_id", "the system asks for a seal")
	}
	if pre.Kind == kindBind {
		if err := s.matchSubject(ctx, caller, pre, cert, parsed); err != nil {
			return nil, err
		}
	}
	var consent *openings.PreparedConsent
	if pre.Kind == kindDecrypt {
		if consent, err = s.deps.Openings.PrepareConsent(ctx, caller, pre.OpeningId, pre.Id, serial, cands[i].Envelopes, points); err != nil {
			return nil, err
		}
	} else if len(points) > 0 {
		return nil, apierr.Invalidf("consent_points", "only a DECRYPT session takes consent points")
	}
	if pre.Kind == kindLogin || pre.Kind == kindSign || pre.Kind == kindGenerate {
		b, err := s.bindingOf(ctx, pre.System, serial)
		if err != nil {
			return nil, err
		}
		if b == nil {
			return nil, apierr.New(apierr.FailedPrecondition, "the certificate is not bound to this business system: scan its bind code first")
		}
		if pre.Kind != kindLogin && b.Reference != pre.Reference {
			return nil, apierr.New(apierr.FailedPrecondition, "the certificate is bound to another unit or user of this business system than the one signing")
		}
	}
	var out Choice
	_, err = s.update(ctx, caller, id, "choose", func(tx *store.Tx, ss *storepb.ScanSession) (map[string]string, error) {
		cur, err := s.scanned(tx, caller, id)
		if err != nil {
			return nil, err
		}
		if sameChoice(cur, serial, sealID) {
			// A concurrent retry of the same choice: the same pins, nothing written.
			out = Choice{KeyID: cur.KeyId, Challenge: cur.Challenge, SignedAttributes: cur.SignedAttributes}
			return nil, errChosen
		}
		if cur.CertificateSerial != "" {
			return nil, apierr.New(apierr.FailedPrecondition, "a certificate was chosen already")
		}
		var admitted string
		if cands[i].Recognition {
			if admitted, err = s.recognition.Admit(tx, caller, ss, serial); err != nil {
				return nil, err
			}
		}
		ss.CertificateSerial, ss.KeyId, ss.Uscc = serial, cert.KeyId, cert.EnterpriseUscc
		ss.SubjectIdWrapped = nil // matched: not needed any more
		if seal != nil {
			ss.SealId = seal.Id
		}
		switch ss.Kind {
		case kindBind, kindLogin:
			ss.Challenge = []byte(fmt.Sprintf("hufu/scan/v1 %s\nsession=%s\nsystem=%s\nnonce=%s\ntime=%s\nserial=%s",
				strings.TrimPrefix(hufuv1.SessionKind(ss.Kind).String(), "SESSION_KIND_"), ss.Id, ss.System, ss.Nonce,
				tx.Now().UTC().Format(time.RFC3339), serial))
			e, err := cosign.Digest(&pub, nil, ss.Challenge)
			if err != nil {
				return nil, err
			}
			ss.Pinned = [][]byte{e[:]}
		case kindSign, kindGenerate:
			ss.Pinned, ss.SignedAttributes = nil, nil
			for _, d := range ss.Documents {
				attrs, err := cms.SignedAttributes(d.Sm3, tx.Now())
				if err != nil {
					return nil, err
				}
				e, err := cms.Digest(parsedPublic(parsed), attrs)
				if err != nil {
					return nil, err
				}
				ss.SignedAttributes = append(ss.SignedAttributes, attrs)
				ss.Pinned = append(ss.Pinned, e[:])
			}
		case kindDecrypt:
			ss.Challenge, ss.ConsentPointsWrapped, ss.ConsentShareVersion = []byte(consent.Statement), consent.PointsWrapped, consent.ShareVersion
			e, err := cosign.Digest(&pub, nil, ss.Challenge)
			if err != nil {
				return nil, err
			}
			ss.Pinned = [][]byte{e[:]}
		default:
			return nil, apierr.New(apierr.FailedPrecondition, "an AUTH session is answered by consent, not by a certificate")
		}
		out = Choice{KeyID: cert.KeyId, Challenge: ss.Challenge, SignedAttributes: ss.SignedAttributes}
		details := map[string]string{"serial": serial, "seal": sealID, "pinned": fmt.Sprint(len(ss.Pinned))}
		if admitted != "" {
			details["recognition"] = admitted
		}
		return details, nil
	})
	if errors.Is(err, errChosen) {
		return &out, nil
	}
	var refused *apierr.Error
	if errors.As(err, &refused) && refused.Reason == hufuv1.ReasonRecognitionServiceRequired {
		// No refusal without its record.
		if aerr := s.deps.Store.Append(ctx, store.Event{Actor: caller.Actor(), Action: "scan.recognition", Subject: sessionKey(id), Outcome: store.OutcomeDenied,
			Details: map[string]string{"serial": serial, "platform": pre.PlatformId, "system": pre.System}}); aerr != nil {
			return nil, aerr
		}
	}
	if err != nil {
		return nil, err
	}
	return &out, nil
}

// sameChoice reports whether a session's choice was made already with this certificate
// and seal (DECRYPT choices carry consent points and are never repeated).
func sameChoice(ss *storepb.ScanSession, serial, sealID string) bool {
	return ss.CertificateSerial != "" && ss.CertificateSerial == serial && ss.SealId == sealID && ss.Kind != kindDecrypt
}

// errChosen ends the transaction of a repeated choice without writing.
var errChosen = errors.New("scan: the same certificate was chosen already")

// matchSubject checks, for BIND, that the certificate's identity is exactly the one the
// system named (§2.1). A mismatch is audited and leaves the session open for another choice.
func (s *Service) matchSubject(ctx context.Context, caller authn.Caller, ss *storepb.ScanSession, cert *storepb.Certificate, parsed *smx509.Certificate) error {
	ok := false
	switch {
	case ss.SubjectUscc != "":
		ok = cert.EnterpriseUscc == ss.SubjectUscc && enterprises.NameKey(parsed.Subject.CommonName) == enterprises.NameKey(ss.SubjectEnterpriseName)
	case len(ss.SubjectIdWrapped) > 0:
		if cert.EnterpriseUscc != "" || parsed.Subject.CommonName != ss.SubjectPersonName {
			break
		}
		id, err := s.deps.Keyring.Unwrap(ctx, ss.SubjectIdWrapped, subjectAD(ss.Id))
		if err != nil {
			return &apierr.Error{Kind: apierr.Unavailable, Message: "HSM unavailable; retry later", Cause: err}
		}
		ok, err = s.deps.Accounts.IdentityMatches(ctx, caller.UserID, ss.SubjectPersonName, string(id))
		clear(id)
		if err != nil {
			return err
		}
	}
	if ok {
		return nil
	}
	if err := s.deps.Store.Append(ctx, store.Event{Actor: caller.Actor(), Action: "scan.bind.mismatch", Subject: sessionKey(ss.Id), Outcome: "denied",
		Details: map[string]string{"serial": cert.Serial, "system": ss.System}}); err != nil {
		return err // no refusal without its record either
	}
	return apierr.New(apierr.FailedPrecondition, "the certificate's identity is not the unit or person the business system names; choose the right certificate")
}

// Cosign is the appliance's signing step, restricted to the session's pinned digests.
func (s *Service) Cosign(ctx context.Context, caller authn.Caller, id string, cred keys.Credential, raws [][]byte) ([]keys.BatchResult, uint32, error) {
	if !sessionIDRE.MatchString(id) {
		return nil, 0, apierr.New(apierr.NotFound, "no scan session %q", id)
	}
	ss, err := s.scannedNow(ctx, caller, id)
	if err != nil {
		return nil, 0, err
	}
	if len(ss.Pinned) == 0 || ss.CertificateSerial == "" {
		return nil, 0, apierr.New(apierr.FailedPrecondition, "choose a certificate first")
	}
	if len(raws) != len(ss.Pinned) {
		return nil, 0, apierr.Invalidf("sign_requests", "the session signs %d digests, not %d", len(ss.Pinned), len(raws))
	}
	for i, raw := range raws {
		var req cosign.SignRequest
		if err := req.UnmarshalBinary(raw); err != nil {
			return nil, 0, apierr.Invalid(fmt.Sprintf("sign_requests[%d]", i), err)
		}
		if !bytes.Equal(req.E[:], ss.Pinned[i]) {
			s.m.events.WithLabelValues("refused_digest").Inc()
			if err := s.deps.Store.Append(ctx, store.Event{Actor: caller.Actor(), Action: "scan.cosign", Subject: sessionKey(id), Outcome: "denied",
				Details: map[string]string{"reason": "digest not registered", "item": fmt.Sprint(i)}}); err != nil {
				return nil, 0, err
			}
			return nil, 0, apierr.Invalidf(fmt.Sprintf("sign_requests[%d].e", i), "not the digest this session registered for that document")
		}
	}
	// The key's usage and audit records name the person and device; the session's own
	// record of the cosign (scan.complete) names the key and the digests.
	return s.deps.Keys.SignBatch(ctx, caller, ss.KeyId, cred, raws)
}

// Complete takes the finished signatures, verifies each under the certificate on its pinned
// digest, builds the result and ends the session.
func (s *Service) Complete(ctx context.Context, caller authn.Caller, id string, rawSigs [][]byte) (*storepb.ScanSession, error) {
	if !sessionIDRE.MatchString(id) {
		return nil, apierr.New(apierr.NotFound, "no scan session %q", id)
	}
	pre, err := s.scannedNow(ctx, caller, id)
	if err != nil {
		return nil, err
	}
	if pre.CertificateSerial == "" {
		return nil, apierr.New(apierr.FailedPrecondition, "choose a certificate first")
	}
	cert, chainDER, err := s.deps.Certs.Certificate(ctx, pre.CertificateSerial)
	if err != nil {
		return nil, err
	}
	if pre.Kind == kindDecrypt && !s.deps.Certs.Active(cert) {
		// A consent is evidence only under a certificate valid when it was given.
		return nil, apierr.New(apierr.FailedPrecondition, "certificate %s is no longer valid", cert.Serial)
	}
	signer, err := smx509.ParseCertificate(cert.Der)
	if err != nil {
		return nil, err
	}
	var chain []*smx509.Certificate
	for _, der := range chainDER {
		c, err := smx509.ParseCertificate(der)
		if err != nil {
			return nil, err
		}
		chain = append(chain, c)
	}
	pub, err := cosign.PointFromPublicKey(parsedPublic(signer))
	if err != nil {
		return nil, err
	}
	if len(rawSigs) != len(pre.Pinned) {
		return nil, apierr.Invalidf("signatures", "the session signs %d digests, not %d", len(pre.Pinned), len(rawSigs))
	}
	var cmsDERs [][]byte
	for i, raw := range rawSigs {
		var sig cosign.Signature
		if err := sig.UnmarshalBinary(raw); err != nil {
			return nil, apierr.Invalid(fmt.Sprintf("signatures[%d]", i), err)
		}
		var e [cosign.ScalarSize]byte
		copy(e[:], pre.Pinned[i])
		if !cosign.Verify(&pub, &e, &sig) {
			return nil, apierr.Invalidf(fmt.Sprintf("signatures[%d]", i), "does not verify under the certificate on the registered digest")
		}
		if pre.Kind == kindSign || pre.Kind == kindGenerate {
			der, err := cms.DetachedSignedData(pre.SignedAttributes[i], sig, signer, chain)
			if err != nil {
				return nil, fmt.Errorf("scan: assembling the CMS of document %d: %w", i, err)
			}
			cmsDERs = append(cmsDERs, der)
		}
	}
	var opening *storepb.Opening
	if pre.Kind == kindDecrypt {
		var done func()
		if opening, done, err = s.deps.Openings.HoldOpen(ctx, pre.OpeningId); err != nil {
			return nil, err
		}
		defer done()
	}
	return s.update(ctx, caller, id, "complete", func(tx *store.Tx, ss *storepb.ScanSession) (map[string]string, error) {
		cur, err := s.scanned(tx, caller, id)
		if err != nil {
			return nil, err
		}
		if cur.CertificateSerial != pre.CertificateSerial || len(cur.Pinned) != len(pre.Pinned) {
			return nil, apierr.New(apierr.Aborted, "the session changed; retry")
		}
		ss.State, ss.Signatures, ss.Cms = stateCompleted, rawSigs, cmsDERs
		if ss.Kind == kindBind {
			b, err := s.bind(tx, caller, ss, cert)
			if err != nil {
				return nil, err
			}
			ss.BindingId = b.Id
		}
		if ss.Kind == kindDecrypt {
			err := s.deps.Openings.ConsentTx(tx, caller, opening, openings.Consent{Session: ss.Id, Serial: ss.CertificateSerial,
				KeyID: ss.KeyId, Delegated: cert.UserId != caller.UserID, Statement: string(ss.Challenge), Signature: rawSigs[0],
				PointsWrapped: ss.ConsentPointsWrapped, ShareVersion: ss.ConsentShareVersion})
			if err != nil {
				return nil, err
			}
			ss.ConsentPointsWrapped = nil // the opening keeps them now
		}
		if ss.Kind != kindBind && ss.Kind != kindAuth && ss.Kind != kindDecrypt {
			// Still bound, under the binding's lock: a removal may have committed since.
			k, err := tx.Lookup(indexCert, store.ScopedValue(ss.System, ss.CertificateSerial))
			if err != nil {
				return nil, apierr.New(apierr.FailedPrecondition, "the certificate's binding was removed meanwhile")
			}
			b := new(storepb.ScanBinding)
			if err := tx.Get(k, b); err != nil {
				return nil, err
			}
			if ss.Kind != kindLogin && b.Reference != ss.Reference {
				return nil, apierr.New(apierr.FailedPrecondition, "the certificate's binding was removed meanwhile")
			}
			ss.BindingId = b.Id
		}
		return map[string]string{"serial": ss.CertificateSerial, "signatures": fmt.Sprint(len(rawSigs))}, nil
	})
}

// bind creates (or keeps) the binding of the session's certificate to its reference.
func (s *Service) bind(tx *store.Tx, caller authn.Caller, ss *storepb.ScanSession, cert *storepb.Certificate) (*storepb.ScanBinding, error) {
	if k, err := tx.Lookup(indexCert, store.ScopedValue(ss.System, cert.Serial)); err == nil {
		b := new(storepb.ScanBinding)
		if err := tx.Get(k, b); err != nil {
			return nil, err
		}
		if b.Reference != ss.Reference {
			return nil, apierr.New(apierr.FailedPrecondition, "the certificate is bound to another reference of this system; the system removes that binding first")
		}
		return b, nil
	} else if !errors.Is(err, store.ErrNotFound) {
		return nil, err
	}
	b := &storepb.ScanBinding{Id: store.RandomID(10), System: ss.System, Reference: ss.Reference, PlatformId: ss.PlatformId,
		CertificateSerial: cert.Serial, Uscc: cert.EnterpriseUscc, UserId: caller.UserID, SessionId: ss.Id, CreatedUnixNano: tx.Now().UnixNano()}
	k := string(store.KindScan) + "/" + bindingID(b.System, b.Id)
	if err := tx.Claim(indexCert, store.ScopedValue(b.System, b.CertificateSerial), k); err != nil {
		return nil, err
	}
	if err := tx.AddIndex(indexRef, store.ScopedValue(b.System, b.Reference), k); err != nil {
		return nil, err
	}
	if err := tx.AddIndex(indexUser, b.UserId, k); err != nil {
		return nil, err
	}
	if err := bindings.Put(tx, bindingID(b.System, b.Id), b); err != nil {
		return nil, err
	}
	return b, tx.Audit(store.Event{Actor: caller.Actor(), Action: "scan.binding.create", Subject: k, Outcome: store.OutcomeOK,
		Details: map[string]string{"system": b.System, "serial": b.CertificateSerial, "session": ss.Id}})
}

// authRelease is what an AUTH session releases, as signed JSON.
type authRelease struct {
	Session     string               `json:"session"`
	System      string               `json:"system"`
	Platform    string               `json:"platform"`
	Time        string               `json:"time"`
	Name        string               `json:"name"`
	IDMasked    string               `json:"id_number_masked"`
	Method      string               `json:"verification_method"`
	Enterprises []releasedEnterprise `json:"enterprises"`
}

type releasedEnterprise struct {
	USCC   string `json:"uscc"`
	Name   string `json:"name"`
	Role   string `json:"role"`
	Serial string `json:"certificate_serial,omitempty"`
}

// release builds the data an AUTH session would release: the person's verified identity
// and their enterprises.
func (s *Service) release(ctx context.Context, caller authn.Caller, ss *storepb.ScanSession) ([]byte, error) {
	u, err := s.deps.Accounts.VerifiedUser(ctx, caller.UserID)
	if err != nil {
		return nil, err
	}
	r := authRelease{Session: ss.Id, System: ss.System, Platform: ss.PlatformId, Time: time.Unix(0, ss.CreatedUnixNano).UTC().Format(time.RFC3339),
		Name: u.Identity.GetName(), IDMasked: u.Identity.GetIdNumberMasked(), Method: hufuv1.IdentityMethod(u.Identity.GetMethod()).String(),
		Enterprises: []releasedEnterprise{}}
	mine, err := s.deps.Enterprises.ListMine(ctx, caller)
	if err != nil {
		return nil, err
	}
	for _, m := range mine {
		r.Enterprises = append(r.Enterprises, releasedEnterprise{USCC: m.Enterprise.Uscc, Name: m.Enterprise.Name,
			Role: strings.ToLower(strings.TrimPrefix(hufuv1.MemberRole(m.Member.Role).String(), "MEMBER_ROLE_")), Serial: m.Enterprise.CertSerial})
	}
	return json.Marshal(r)
}

const authDomain = "hufu/scan/v1 auth\x00"

// Consent answers an AUTH session: the data shown is released to the system, signed.
func (s *Service) Consent(ctx context.Context, caller authn.Caller, id string) (*storepb.ScanSession, error) {
	if !sessionIDRE.MatchString(id) {
		return nil, apierr.New(apierr.NotFound, "no scan session %q", id)
	}
	pre, err := s.scannedNow(ctx, caller, id)
	if err != nil {
		return nil, err
	}
	if pre.Kind != kindAuth {
		return nil, apierr.New(apierr.FailedPrecondition, "only an AUTH session is answered by consent")
	}
	released, err := s.release(ctx, caller, pre)
	if err != nil {
		return nil, err
	}
	if h := sha256.Sum256(released); len(pre.Pinned) != 1 || !bytes.Equal(h[:], pre.Pinned[0]) {
		return nil, apierr.New(apierr.FailedPrecondition, "your data changed since it was shown; scan the code again")
	}
	sig, err := s.deps.Signer.SignDigest(ctx, signedDigest(authDomain, string(released)))
	if err != nil {
		return nil, &apierr.Error{Kind: apierr.Unavailable, Message: "HSM unavailable; retry later", Cause: err}
	}
	h := sha256.Sum256(released)
	return s.update(ctx, caller, id, "consent", func(tx *store.Tx, ss *storepb.ScanSession) (map[string]string, error) {
		if _, err := s.scanned(tx, caller, id); err != nil {
			return nil, err
		}
		ss.State, ss.Released, ss.ReleasedSignature = stateCompleted, released, sig
		return map[string]string{"released_sha256": hex.EncodeToString(h[:])}, nil
	})
}

// Decline answers a session with no: the system learns it at once.
func (s *Service) Decline(ctx context.Context, caller authn.Caller, id, reason string) error {
	if !sessionIDRE.MatchString(id) {
		return apierr.New(apierr.NotFound, "no scan session %q", id)
	}
	if len([]rune(reason)) > 200 {
		return apierr.Invalidf("reason", "at most 200 characters")
	}
	_, err := s.update(ctx, caller, id, "decline", func(tx *store.Tx, ss *storepb.ScanSession) (map[string]string, error) {
		if _, err := s.scanned(tx, caller, id); err != nil {
			return nil, err
		}
		ss.State, ss.Reason, ss.SubjectIdWrapped = stateDeclined, strings.TrimSpace(reason), nil
		return nil, nil
	})
	return err
}

// MyBindings lists the bindings of the caller's certificates to business systems.
func (s *Service) MyBindings(ctx context.Context, caller authn.Caller) ([]*storepb.ScanBinding, error) {
	ks, _, err := s.deps.Store.ListIndex(ctx, indexUser, caller.UserID, store.ListOptions{Limit: store.MaxListLimit})
	if err != nil {
		return nil, err
	}
	var out []*storepb.ScanBinding
	for _, k := range ks {
		b, err := bindings.Read(ctx, s.deps.Store, bindings.ID(k))
		if errors.Is(err, store.ErrNotFound) {
			continue
		}
		if err != nil {
			return nil, err
		}
		out = append(out, b)
	}
	return out, nil
}

// RemoveMyBinding removes a binding of one of the caller's certificates.
func (s *Service) RemoveMyBinding(ctx context.Context, caller authn.Caller, system, id string) error {
	if !sessionIDRE.MatchString(id) || store.ValidPart(system) != nil {
		return apierr.New(apierr.NotFound, "no binding %q", id)
	}
	return s.deps.Store.Update(ctx, func(tx *store.Tx) error {
		b, err := bindings.Get(tx, bindingID(system, id))
		if errors.Is(err, store.ErrNotFound) || (err == nil && b.UserId != caller.UserID) {
			return apierr.New(apierr.NotFound, "no binding %q", id)
		}
		if err != nil {
			return err
		}
		return removeBinding(tx, caller, b)
	})
}
