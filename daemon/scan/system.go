package scan

import (
	"context"
	"crypto/ecdsa"
	"crypto/sha256"
	"crypto/x509"
	"encoding/base64"
	"encoding/hex"
	"encoding/pem"
	"errors"
	"fmt"
	"regexp"
	"strings"
	"time"

	hufuv1 "github.com/hufu-hsm/hufu/api/hufu/v1"
	"github.com/hufu-hsm/hufu/daemon/apierr"
	"github.com/hufu-hsm/hufu/daemon/authn"
	"github.com/hufu-hsm/hufu/daemon/identity"
	"github.com/hufu-hsm/hufu/daemon/text"
	"github.com/hufu-hsm/hufu/store"
	"github.com/hufu-hsm/hufu/store/storepb"
)

const qrPrefix = "HUFU1.SCAN."

// qrDomain separates QR payload signatures from every other use of the signing key (its
// audit checkpoints sign a different, fixed structure).
const qrDomain = "hufu/scan/v1 qr\x00"

func signedDigest(domain, body string) []byte {
	h := sha256.Sum256([]byte(domain + body))
	return h[:]
}

// checkCreate validates a session request and returns the record it makes and, for a BIND
// of a person, the ID number to wrap (never put in the record in clear).
func (s *Service) checkCreate(req *hufuv1.CreateSessionRequest) (*storepb.ScanSession, []byte, error) {
	if err := apierr.CheckRequestID("request_id", req.GetRequestId()); err != nil {
		return nil, nil, err
	}
	var idNumber []byte
	ss := &storepb.ScanSession{Kind: int32(req.GetKind()), PlatformId: req.GetPlatformId(), Reference: strings.TrimSpace(req.GetReference()),
		WithSeal: req.GetWithSeal(), RequestId: req.GetRequestId(), SignMode: int32(req.GetSignMode())}
	if _, ok := s.deps.Accounts.Platform(req.GetPlatformId()); !ok && (req.GetKind() != hufuv1.SessionKind_SESSION_KIND_DECRYPT || req.GetPlatformId() != "") {
		return nil, nil, apierr.Invalidf("platform_id", "no platform %q", req.GetPlatformId())
	}
	if _, err := text.Line("reference", ss.Reference, 64, false); err != nil {
		return nil, nil, err
	}
	switch ss.Kind {
	case kindBind:
		if ss.Reference == "" {
			return nil, nil, apierr.Invalidf("reference", "BIND needs the system's reference of the unit or user")
		}
		sub := req.GetSubject()
		switch {
		case sub.GetUscc() != "":
			code := identity.NormaliseUSCC(sub.GetUscc())
			if err := identity.CheckUSCC(code); err != nil {
				return nil, nil, apierr.Invalid("subject.uscc", err)
			}
			if _, err := text.Line("subject.enterprise_name", sub.GetEnterpriseName(), 100, true); err != nil {
				return nil, nil, err
			}
			ss.SubjectUscc, ss.SubjectEnterpriseName = code, strings.TrimSpace(sub.GetEnterpriseName())
		case sub.GetIdNumber() != "":
			id := strings.ToUpper(strings.TrimSpace(sub.GetIdNumber()))
			if err := identity.CheckResidentID(id, s.deps.Clock.Now()); err != nil {
				return nil, nil, apierr.Invalid("subject.id_number", err)
			}
			if err := identity.CheckName(sub.GetPersonName()); err != nil {
				return nil, nil, apierr.Invalid("subject.person_name", err)
			}
			ss.SubjectPersonName = sub.GetPersonName()
			idNumber = []byte(id) // wrapped in Create, once the session has its id
		default:
			return nil, nil, apierr.Invalidf("subject", "name the enterprise (name and USCC) or the person (name and ID number)")
		}
	case kindLogin, kindAuth:
	case kindDecrypt:
		// The opening itself is checked in Create (it must be the system's).
		if req.GetOpeningId() == "" {
			return nil, nil, apierr.Invalidf("opening_id", "DECRYPT names the system's bid opening")
		}
		ss.OpeningId, ss.Hall = req.GetOpeningId(), req.GetHall()
	case kindSign, kindGenerate:
		// Signing and generating come after binding (§2.1): the system names whose
		// certificate must answer, so no one else can scan the code and answer it.
		if ss.Reference == "" {
			return nil, nil, apierr.Invalidf("reference", "%s needs the reference of the bound unit or user that signs", hufuv1.SessionKind(ss.Kind))
		}
		docs := req.GetDocuments()
		if len(docs) == 0 || len(docs) > s.opts.MaxDocuments {
			return nil, nil, apierr.Invalidf("documents", "1 to %d documents", s.opts.MaxDocuments)
		}
		for i, d := range docs {
			name := strings.TrimSpace(d.GetName())
			if _, err := text.Line(fmt.Sprintf("documents[%d].name", i), name, 128, true); err != nil {
				return nil, nil, err
			}
			if len(d.GetSm3()) != 32 {
				return nil, nil, apierr.Invalidf(fmt.Sprintf("documents[%d].sm3", i), "the SM3 digest is 32 bytes")
			}
			ss.Documents = append(ss.Documents, &storepb.ScanDocument{Name: name, Sm3: d.GetSm3()})
		}
	default:
		return nil, nil, apierr.Invalidf("kind", "BIND, LOGIN, SIGN, AUTH, GENERATE or DECRYPT")
	}
	if ss.WithSeal && ss.Kind != kindSign {
		return nil, nil, apierr.Invalidf("with_seal", "only a SIGN session carries a seal")
	}
	switch {
	case req.GetSignMode() != hufuv1.SignMode_SIGN_MODE_UNSPECIFIED && ss.Kind != kindSign && ss.Kind != kindGenerate:
		return nil, nil, apierr.Invalidf("sign_mode", "only a SIGN or GENERATE session has a sign mode")
	case hufuv1.SignMode_name[ss.SignMode] == "":
		return nil, nil, apierr.Invalidf("sign_mode", "SIGN_MODE_MUTUAL_RECOGNITION (全国CA互认APP) or SIGN_MODE_SCAN (扫码认证)")
	}
	if req.GetHall() && ss.Kind != kindDecrypt {
		return nil, nil, apierr.Invalidf("hall", "only a DECRYPT session is a hall code")
	}
	if req.GetOpeningId() != "" && ss.Kind != kindDecrypt {
		return nil, nil, apierr.Invalidf("opening_id", "only a DECRYPT session names an opening")
	}
	return ss, idNumber, nil
}

// Create starts a session for the calling system (ScanService.CreateSession).
func (s *Service) Create(ctx context.Context, caller authn.Caller, req *hufuv1.CreateSessionRequest) (*storepb.ScanSession, error) {
	ss, idNumber, err := s.checkCreate(req)
	if err != nil {
		return nil, err
	}
	defer clear(idNumber)
	if ss.Reference != "" && store.ValidPart(store.ScopedValue(caller.System, ss.Reference)) != nil {
		return nil, apierr.Invalidf("reference", "no '/' or control characters")
	}
	ttl := s.opts.DefaultTTL
	if t := req.GetTtlSeconds(); t != 0 {
		ttl = time.Duration(t) * time.Second
		if ttl < 30*time.Second || ttl > s.opts.MaxTTL {
			return nil, apierr.Invalidf("ttl_seconds", "30 to %d seconds", int(s.opts.MaxTTL.Seconds()))
		}
	}
	if existing, err := s.byRequest(ctx, caller, ss.RequestId); err != nil || existing != nil {
		return existing, err
	}
	if ss.Kind == kindDecrypt {
		o, err := s.deps.Openings.ForSession(ctx, caller, ss.OpeningId)
		if err != nil {
			return nil, err
		}
		if ss.PlatformId == "" {
			ss.PlatformId = o.PlatformId
		} else if ss.PlatformId != o.PlatformId {
			return nil, apierr.Invalidf("platform_id", "the opening is on platform %s", o.PlatformId)
		}
	}
	if err := s.limiter.take(caller.System); err != nil {
		return nil, err
	}
	now := s.deps.Clock.Now()
	ss.Id, ss.Nonce, ss.System = store.RandomID(10), store.RandomID(12), caller.System
	ss.State, ss.CreatedUnixNano, ss.UpdatedUnixNano, ss.ExpiresUnixNano = stateCreated, now.UnixNano(), now.UnixNano(), now.Add(ttl).UnixNano()
	body := qrPrefix + ss.Id + "." + ss.Nonce + "." + s.opts.Address
	sig, err := s.deps.Signer.SignDigest(ctx, signedDigest(qrDomain, body))
	if err != nil {
		return nil, &apierr.Error{Kind: apierr.Unavailable, Message: "HSM unavailable; retry later", Cause: err}
	}
	ss.QrPayload = body + "." + base64.RawURLEncoding.EncodeToString(sig)
	if idNumber != nil {
		if ss.SubjectIdWrapped, err = s.deps.Keyring.Wrap(ctx, idNumber, subjectAD(ss.Id)); err != nil {
			return nil, &apierr.Error{Kind: apierr.Unavailable, Message: "HSM unavailable; retry later", Cause: err}
		}
	}
	var out *storepb.ScanSession
	err = s.deps.Store.Update(ctx, func(tx *store.Tx) error {
		exp := store.ExpiresAt(time.Unix(0, ss.ExpiresUnixNano).Add(keep))
		if k, err := tx.Lookup(indexRequest, store.ScopedValue(caller.System, ss.RequestId)); err == nil {
			out = new(storepb.ScanSession)
			return tx.Get(k, out)
		} else if !errors.Is(err, store.ErrNotFound) {
			return err
		}
		if err := tx.Claim(indexRequest, store.ScopedValue(caller.System, ss.RequestId), sessionKey(ss.Id), exp); err != nil {
			return err
		}
		if err := sessions.Put(tx, sessionID(ss.Id), ss, exp); err != nil {
			return err
		}
		out = ss
		return tx.Audit(store.Event{Actor: caller.Actor(), Action: "scan.create", Subject: sessionKey(ss.Id), Outcome: store.OutcomeOK,
			Details: map[string]string{"kind": hufuv1.SessionKind(ss.Kind).String(), "platform": ss.PlatformId, "documents": fmt.Sprint(len(ss.Documents)),
				"opening": ss.OpeningId, "hall": fmt.Sprint(ss.Hall)}})
	})
	if err == nil {
		s.m.events.WithLabelValues("create").Inc()
	}
	return out, err
}

func (s *Service) byRequest(ctx context.Context, caller authn.Caller, requestID string) (*storepb.ScanSession, error) {
	var out *storepb.ScanSession
	err := s.deps.Store.Update(ctx, func(tx *store.Tx) error {
		k, err := tx.Lookup(indexRequest, store.ScopedValue(caller.System, requestID))
		if errors.Is(err, store.ErrNotFound) {
			return nil
		}
		if err != nil {
			return err
		}
		out = new(storepb.ScanSession)
		return tx.Get(k, out)
	})
	if out != nil && out.System != caller.System {
		return nil, apierr.New(apierr.Internal, "scan: a request index names another system's session")
	}
	return out, err
}

var sessionIDRE = regexp.MustCompile(`^[0-9a-f]{20}$`)

// read reads a session; NotFound for a malformed id.
func (s *Service) read(ctx context.Context, id string) (*storepb.ScanSession, error) {
	if !sessionIDRE.MatchString(id) {
		return nil, apierr.New(apierr.NotFound, "no scan session %q", id)
	}
	ss, err := sessions.Read(ctx, s.deps.Store, sessionID(id))
	if errors.Is(err, store.ErrNotFound) {
		return nil, apierr.New(apierr.NotFound, "no scan session %q", id)
	}
	return ss, err
}

// Get returns one of the calling system's sessions; another system's does not exist for it.
func (s *Service) Get(ctx context.Context, caller authn.Caller, id string) (*storepb.ScanSession, error) {
	ss, err := s.read(ctx, id)
	if err != nil {
		return nil, err
	}
	if ss.System != caller.System {
		return nil, apierr.New(apierr.NotFound, "no scan session %q", id)
	}
	return ss, nil
}

// Watch calls send with the session now and after every change until it ends or ctx does.
func (s *Service) Watch(ctx context.Context, caller authn.Caller, id string, send func(*storepb.ScanSession) error) error {
	for {
		// Registered before the read, so a change between the two is not missed.
		changed, done := s.watch.wait(id)
		ss, err := s.Get(ctx, caller, id)
		if err == nil {
			err = send(ss)
		}
		if err != nil || terminal(s.effective(ss)) {
			done()
			return err
		}
		// Wake at the expiry (on the appliance's clock) to report it.
		expiry := time.NewTimer(time.Unix(0, ss.ExpiresUnixNano).Sub(s.deps.Clock.Now()) + 10*time.Millisecond)
		select {
		case <-ctx.Done():
			err = ctx.Err()
		case <-changed:
		case <-expiry.C:
		}
		expiry.Stop()
		done()
		if err != nil {
			return err
		}
	}
}

// Bindings lists a page of the calling system's bindings (of one reference, or all).
func (s *Service) Bindings(ctx context.Context, caller authn.Caller, reference string, size int, token string) ([]*storepb.ScanBinding, string, error) {
	if size < 0 || size > store.MaxListLimit {
		return nil, "", apierr.Invalidf("page_size", "want 0..%d", store.MaxListLimit)
	}
	opts := store.ListOptions{Limit: size, Cursor: token}
	badToken := func(err error) error {
		if errors.Is(err, store.ErrBadCursor) {
			return apierr.Invalidf("page_token", "not a token from the previous page")
		}
		return err
	}
	var out []*storepb.ScanBinding
	if reference == "" {
		page, err := bindings.List(ctx, s.deps.Store, "binding/"+caller.System+"/", opts, nil)
		if err != nil {
			return nil, "", badToken(err)
		}
		for _, it := range page.Items {
			out = append(out, it.Value)
		}
		return out, page.Next, nil
	}
	if store.ValidPart(store.ScopedValue(caller.System, reference)) != nil {
		return nil, "", apierr.Invalidf("reference", "not a reference")
	}
	ks, next, err := s.deps.Store.ListIndex(ctx, indexRef, store.ScopedValue(caller.System, reference), opts)
	if err != nil {
		return nil, "", badToken(err)
	}
	for _, k := range ks {
		b, err := bindings.Read(ctx, s.deps.Store, bindings.ID(k))
		if errors.Is(err, store.ErrNotFound) {
			continue
		}
		if err != nil {
			return nil, "", err
		}
		if b.System == caller.System {
			out = append(out, b)
		}
	}
	return out, next, nil
}

// RemoveBinding removes one of the calling system's bindings.
func (s *Service) RemoveBinding(ctx context.Context, caller authn.Caller, id string) error {
	if !sessionIDRE.MatchString(id) {
		return apierr.New(apierr.NotFound, "no binding %q", id)
	}
	return s.deps.Store.Update(ctx, func(tx *store.Tx) error {
		b, err := bindings.Get(tx, bindingID(caller.System, id))
		if errors.Is(err, store.ErrNotFound) {
			return apierr.New(apierr.NotFound, "no binding %q", id)
		}
		if err != nil {
			return err
		}
		return removeBinding(tx, caller, b)
	})
}

func removeBinding(tx *store.Tx, caller authn.Caller, b *storepb.ScanBinding) error {
	k := string(store.KindScan) + "/" + bindingID(b.System, b.Id)
	if err := bindings.Delete(tx, bindingID(b.System, b.Id)); err != nil {
		return err
	}
	if err := tx.Unclaim(indexCert, store.ScopedValue(b.System, b.CertificateSerial), k); err != nil {
		return err
	}
	if err := tx.RemoveIndex(indexRef, store.ScopedValue(b.System, b.Reference), k); err != nil {
		return err
	}
	if err := tx.RemoveIndex(indexUser, b.UserId, k); err != nil {
		return err
	}
	return tx.Audit(store.Event{Actor: caller.Actor(), Action: "scan.binding.remove", Subject: k, Outcome: store.OutcomeOK,
		Details: map[string]string{"system": b.System, "serial": b.CertificateSerial}})
}

// Resolve maps a certificate to the calling system's binding of it.
func (s *Service) Resolve(ctx context.Context, caller authn.Caller, serial string) (*storepb.ScanBinding, error) {
	b, err := s.bindingOf(ctx, caller.System, serial)
	if err != nil {
		return nil, err
	}
	if b == nil {
		return nil, apierr.New(apierr.NotFound, "certificate %q is not bound to this system", serial)
	}
	return b, nil
}

func (s *Service) bindingOf(ctx context.Context, system, serial string) (*storepb.ScanBinding, error) {
	if store.ValidPart(store.ScopedValue(system, serial)) != nil {
		return nil, apierr.New(apierr.NotFound, "no certificate %q", serial)
	}
	var out *storepb.ScanBinding
	err := s.deps.Store.Update(ctx, func(tx *store.Tx) error {
		k, err := tx.Lookup(indexCert, store.ScopedValue(system, serial))
		if errors.Is(err, store.ErrNotFound) {
			return nil
		}
		if err != nil {
			return err
		}
		out = new(storepb.ScanBinding)
		return tx.Get(k, out)
	})
	if out != nil && out.System != system {
		return nil, nil
	}
	return out, err
}

// ScanKeyPEM is the PEM of the public key that signs QR payloads and AUTH releases.
func (s *Service) ScanKeyPEM() (string, error) {
	der, err := x509.MarshalPKIXPublicKey(s.deps.Signer.PublicKey())
	if err != nil {
		return "", err
	}
	return string(pem.EncodeToMemory(&pem.Block{Type: "PUBLIC KEY", Bytes: der})), nil
}

// VerifyQR checks a QR payload's signature under the appliance's key (pub): what the phone
// does before trusting the address in it. It returns the session id, nonce and address.
func VerifyQR(pub *ecdsa.PublicKey, payload string) (id, nonce, address string, err error) {
	bad := apierr.Invalidf("qr_payload", "not a scan code of this appliance, or altered")
	rest, ok := strings.CutPrefix(payload, qrPrefix)
	if !ok || len(payload) > 512 {
		return "", "", "", bad
	}
	i := strings.LastIndexByte(rest, '.')
	if i < 0 {
		return "", "", "", bad
	}
	sig, err := base64.RawURLEncoding.Strict().DecodeString(rest[i+1:])
	if err != nil || !ecdsa.VerifyASN1(pub, signedDigest(qrDomain, qrPrefix+rest[:i]), sig) {
		return "", "", "", bad
	}
	parts := strings.SplitN(rest[:i], ".", 3)
	if len(parts) != 3 || !sessionIDRE.MatchString(parts[0]) || len(parts[1]) != 24 {
		return "", "", "", bad
	}
	return parts[0], parts[1], parts[2], nil
}

// sessionPB shows a session to its system.
func (s *Service) sessionPB(ctx context.Context, ss *storepb.ScanSession) *hufuv1.ScanSession {
	state := s.effective(ss)
	out := &hufuv1.ScanSession{Id: ss.Id, Kind: hufuv1.SessionKind(ss.Kind), State: hufuv1.SessionState(state), PlatformId: ss.PlatformId,
		Reference: ss.Reference, CreatedAt: hufuv1.Timestamp(ss.CreatedUnixNano), ExpiresAt: hufuv1.Timestamp(ss.ExpiresUnixNano), CertificateSerial: ss.CertificateSerial,
		Reason: ss.Reason, OpeningId: ss.OpeningId, Hall: ss.Hall, ParentId: ss.ParentId, SignMode: hufuv1.SignMode(ss.SignMode)}
	if state == stateCreated {
		out.QrPayload = ss.QrPayload
	}
	for _, d := range ss.Documents {
		out.Documents = append(out.Documents, &hufuv1.Document{Name: d.Name, Sm3: d.Sm3})
	}
	if state == stateCompleted {
		out.Result = s.resultPB(ctx, ss)
	}
	return out
}

// pseudonym names an account or device to one system without letting two systems link it.
func pseudonym(system, what, id string) string {
	if id == "" {
		return ""
	}
	h := sha256.Sum256([]byte("hufu/scan/v1 " + what + "\x00" + system + "\x00" + id))
	return hex.EncodeToString(h[:16])
}

// resultPB is a completed session's result.
func (s *Service) resultPB(ctx context.Context, ss *storepb.ScanSession) *hufuv1.SessionResult {
	r := &hufuv1.SessionResult{Released: ss.Released, ReleasedSignature: ss.ReleasedSignature,
		AnsweredByUser: pseudonym(ss.System, "account", ss.ScannedByUser), AnsweredByDevice: pseudonym(ss.System, "device", ss.ScannedByDevice)}
	if ss.CertificateSerial != "" {
		if c, chain, err := s.deps.Certs.Certificate(ctx, ss.CertificateSerial); err == nil {
			r.Certificate, r.Chain, r.Delegated = c.Der, chain, c.UserId != ss.ScannedByUser
			if ss.Kind == kindGenerate {
				r.EncryptionCertificate = s.envelopeCertificate(ctx, c)
			}
		}
	}
	switch ss.Kind {
	case kindBind, kindLogin, kindDecrypt:
		r.Challenge = ss.Challenge
		if len(ss.Signatures) == 1 {
			r.ChallengeSignature = asn1Signature(ss.Signatures[0])
		}
	case kindSign, kindGenerate:
		for i, d := range ss.Documents {
			sd := &hufuv1.SignedDocument{Name: d.Name, Sm3: d.Sm3}
			if i < len(ss.Cms) {
				sd.Cms, sd.Signature, sd.SignedAttributes = ss.Cms[i], ss.Signatures[i], ss.SignedAttributes[i]
			}
			r.Signatures = append(r.Signatures, sd)
		}
		if ss.SealId != "" {
			if seal, image, err := s.deps.Seals.Get(ctx, authn.Caller{UserID: ss.ScannedByUser, DeviceID: ss.ScannedByDevice}, ss.SealId); err == nil {
				r.Seal = &hufuv1.SealAppearance{SealId: seal.Id, Name: seal.Name, Type: hufuv1.SealType(seal.Type).String(), Image: image}
			}
		}
	}
	if ss.BindingId != "" {
		if b, err := bindings.Read(ctx, s.deps.Store, bindingID(ss.System, ss.BindingId)); err == nil {
			r.Binding = bindingPB(b)
		}
	}
	return r
}
