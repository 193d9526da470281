package client

// Scan sessions (业务系统, seed manual §2), both sides of them.
//
// The phone: ScanSession checks a QR code's signature under the appliance's pinned scan key
// and claims the session; AnswerSession answers a BIND, LOGIN, SIGN, GENERATE or DECRYPT
// session with a certificate on this device — it checks that what it signs is what the
// person was shown (the challenge names the session; every signed-attribute set carries the
// digest shown for its document, in order; the consent statement names the opening, the
// session and exactly the envelopes shown with the consent points the phone computed)
// before any cosign call, computes each e itself and runs the phone's half of two-party
// signing; ConsentSession answers AUTH; DeclineSession says no.
//
// The business system: VerifyLoginAssertion, VerifySignedDocument and VerifyRelease check a
// session's result; EnvelopeBidFile envelopes a bid file to the signer's certificate, and
// OpenBidFile is the bidder opening it with the two-party decryption.
//
// The bid-opening system (hufu.v1.OpeningService): ReleaseOpening reads the Release stream
// of the consented envelopes' keys, and DownloadReport the signed opening report, which
// bidopening.Verify checks offline.
//
// The QR payload's format is the daemon's (daemon/scan, api/hufu/v1/scan.proto), copied here
// so that the SDK does not import the daemon:
//
//	HUFU1.SCAN.<session id>.<nonce>.<appliance address>.<signature>
//
// session id 20 lower-case hex digits, nonce 24 hex digits, signature base64url (no
// padding) of an ASN.1 ECDSA P-256 signature under the scan key over
// SHA-256("hufu/scan/v1 qr\x00" ‖ everything before ".<signature>"). At most 512 bytes.

import (
	"bytes"
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/sha256"
	"crypto/x509"
	"encoding/base64"
	"encoding/json"
	"encoding/pem"
	"errors"
	"fmt"
	"io"
	"math/big"
	"regexp"
	"strings"
	"time"

	"github.com/emmansun/gmsm/sm2"
	"github.com/emmansun/gmsm/smx509"

	hufuv1 "github.com/hufu-hsm/hufu/api/hufu/v1"
	"github.com/hufu-hsm/hufu/bidopening"
	"github.com/hufu-hsm/hufu/client/keystore"
	"github.com/hufu-hsm/hufu/cms"
	"github.com/hufu-hsm/hufu/cosign"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
)

var (
	// ErrQRCode: a QR payload is not a scan code signed by the pinned appliance key (forged,
	// altered, or from another appliance).
	ErrQRCode = errors.New("client: not a scan code of this appliance, or altered")
	// ErrNotShown: the appliance asked the phone to sign something other than what the person
	// was shown (a challenge for another session, attributes with another digest, another
	// number of documents, another key, a consent statement for another opening or other
	// envelopes or consent points). Nothing was signed.
	ErrNotShown = errors.New("client: the appliance asks to sign something the person was not shown")
	// ErrAssertion: a session result does not verify (signature, certificate chain, or a
	// challenge for another session).
	ErrAssertion = errors.New("client: the session's result does not verify")
)

const (
	qrPrefix    = "HUFU1.SCAN."
	qrDomain    = "hufu/scan/v1 qr\x00"
	authDomain  = "hufu/scan/v1 auth\x00"
	maxQRLength = 512
)

var scanSessionIDRE = regexp.MustCompile(`^[0-9a-f]{20}$`)

// QRCode is a verified scan code: the session it opens and the appliance that signed it.
type QRCode struct {
	SessionID string
	Nonce     string
	// Address is the appliance's address as phones reach it.
	Address string
}

// VerifyQR checks a QR payload's signature under the appliance's scan key (see the format
// above) and returns what it names; anything else is ErrQRCode.
func VerifyQR(pub *ecdsa.PublicKey, payload string) (*QRCode, error) {
	if pub == nil {
		return nil, fmt.Errorf("%w: no pinned scan key", ErrQRCode)
	}
	rest, ok := strings.CutPrefix(payload, qrPrefix)
	if !ok || len(payload) > maxQRLength {
		return nil, ErrQRCode
	}
	i := strings.LastIndexByte(rest, '.')
	if i < 0 {
		return nil, ErrQRCode
	}
	sig, err := base64.RawURLEncoding.Strict().DecodeString(rest[i+1:])
	if err != nil {
		return nil, ErrQRCode
	}
	h := sha256.Sum256([]byte(qrDomain + qrPrefix + rest[:i]))
	if !ecdsa.VerifyASN1(pub, h[:], sig) {
		return nil, ErrQRCode
	}
	parts := strings.SplitN(rest[:i], ".", 3)
	if len(parts) != 3 || !scanSessionIDRE.MatchString(parts[0]) || len(parts[1]) != 24 || parts[2] == "" {
		return nil, ErrQRCode
	}
	return &QRCode{SessionID: parts[0], Nonce: parts[1], Address: parts[2]}, nil
}

// ParseScanKey parses the PEM of the appliance's scan key (PhoneScanService.GetQrKey,
// ScanService.GetScanKey): an ECDSA P-256 public key.
func ParseScanKey(pemText string) (*ecdsa.PublicKey, error) {
	block, _ := pem.Decode([]byte(pemText))
	if block == nil || block.Type != "PUBLIC KEY" {
		return nil, errors.New("client: scan key: not a PEM public key")
	}
	k, err := x509.ParsePKIXPublicKey(block.Bytes)
	if err != nil {
		return nil, fmt.Errorf("client: scan key: %w", err)
	}
	pub, ok := k.(*ecdsa.PublicKey)
	if !ok || pub.Curve != elliptic.P256() {
		return nil, errors.New("client: scan key: not an ECDSA P-256 key")
	}
	return pub, nil
}

func phoneScan(conn *Conn) hufuv1.PhoneScanServiceClient {
	return hufuv1.NewPhoneScanServiceClient(conn.ClientConn())
}

// ScanSession is the phone scanning a QR code: it checks the payload's signature under
// pinnedKey (the appliance's scan key, pinned on first use) before anything is sent, then
// claims the session (PhoneScanService.Scan; one scan per session) and returns what the
// system asks, for the person to check. The response's session id is the code's, except for
// a DECRYPT hall code, whose scan starts a session of this person's own: answer that one.
func ScanSession(ctx context.Context, conn *Conn, payload string, pinnedKey *ecdsa.PublicKey) (*hufuv1.ScanResponse, error) {
	qr, err := VerifyQR(pinnedKey, payload)
	if err != nil {
		return nil, err
	}
	resp, err := phoneScan(conn).Scan(ctx, &hufuv1.ScanRequest{QrPayload: payload})
	if err != nil {
		return nil, fmt.Errorf("client: scan: %w", err)
	}
	// A DECRYPT hall code (one code for the whole opening hall) starts a session of the
	// bidder's own: its id is not the code's. The consent statement names it, and
	// AnswerSession checks that.
	if resp.GetSessionId() != qr.SessionID && (resp.GetKind() != hufuv1.SessionKind_SESSION_KIND_DECRYPT || !scanSessionIDRE.MatchString(resp.GetSessionId())) {
		return nil, fmt.Errorf("client: scan: %w: the appliance answered for session %q, the code names %q", ErrBadAnswer, resp.GetSessionId(), qr.SessionID)
	}
	return resp, nil
}

// AnswerSession answers a scanned BIND, LOGIN, SIGN, GENERATE or DECRYPT session with the
// certificate serial (and, for SIGN with a seal, sealID), whose key share is in ks. shown is
// what Scan returned and the person saw.
//
// Before any signing: the certificate must be one of shown's usable candidates with its key
// in ks; for SIGN and GENERATE, when the certificate can be downloaded (the person's own),
// its public key must be the key's. For DECRYPT (扫码解密, consent to the release of the
// bidder's envelopes at a bid opening) the phone parses each envelope's ciphertext shown
// for the certificate and computes its consent point T1 = d1⁻¹·C1, which Choose sends in
// the order shown. Then Choose, and the checks of what the appliance asks to sign: for BIND
// and LOGIN the challenge must be of this kind, name this session and the certificate; for
// SIGN and GENERATE there must be one signed-attribute set per document shown, each carrying
// that document's digest (cms.CheckSignedAttributes), in order; for DECRYPT the challenge
// must be a consent statement (bidopening.ParseStatement) of the opening shown (id and
// project code), this certificate and this session, timed inside the window shown, naming
// exactly the envelopes shown, in order, each with the SHA-256 of the ciphertext shown and
// of the T1 the phone sent. A failed check is ErrNotShown and nothing is cosigned; the
// session stays open until the person declines or it expires. The phone computes every e
// itself — cosign.Digest of the challenge or statement, or cms.Digest of the attributes,
// under the key's public key — so the appliance, which answers only the digests it pinned,
// and the phone must agree. The appliance's half is authorised with the certificate PIN
// (one PIN check for all digests).
func AnswerSession(ctx context.Context, conn *Conn, ks *keystore.Store, sessionID, serial, sealID, pin string, shown *hufuv1.ScanResponse) error {
	if shown == nil || shown.GetSessionId() != sessionID {
		return fmt.Errorf("client: answer session %s: the session shown is another one", sessionID)
	}
	kind := shown.GetKind()
	switch kind {
	case hufuv1.SessionKind_SESSION_KIND_BIND, hufuv1.SessionKind_SESSION_KIND_LOGIN,
		hufuv1.SessionKind_SESSION_KIND_SIGN, hufuv1.SessionKind_SESSION_KIND_GENERATE,
		hufuv1.SessionKind_SESSION_KIND_DECRYPT:
	case hufuv1.SessionKind_SESSION_KIND_AUTH:
		return errors.New("client: an AUTH session is answered by consent (ConsentSession)")
	default:
		return fmt.Errorf("client: answer session %s: unknown kind %v", sessionID, kind)
	}
	var cand *hufuv1.Candidate
	for _, c := range shown.GetCandidates() {
		if c.GetSerial() == serial {
			cand = c
		}
	}
	if cand == nil {
		return fmt.Errorf("client: answer session %s: certificate %s is not one this session may be answered with", sessionID, serial)
	}
	if cand.GetRefusal() != "" {
		return fmt.Errorf("client: answer session %s: certificate %s: %s", sessionID, serial, cand.GetRefusal())
	}
	entry, err := loadSettled(ctx, conn, ks, cand.GetKeyId())
	if err != nil {
		return fmt.Errorf("client: answer session %s: %w", sessionID, err)
	}
	signing := kind == hufuv1.SessionKind_SESSION_KIND_SIGN || kind == hufuv1.SessionKind_SESSION_KIND_GENERATE
	if signing {
		if err := checkCertificateKey(ctx, conn, serial, entry); err != nil {
			return fmt.Errorf("client: answer session %s: %w", sessionID, err)
		}
	}

	var consent *consentPoints
	if kind == hufuv1.SessionKind_SESSION_KIND_DECRYPT {
		if consent, err = newConsentPoints(shown, cand, entry.Share); err != nil {
			return fmt.Errorf("client: answer session %s: %w", sessionID, err)
		}
	}

	chosen, err := phoneScan(conn).Choose(ctx, &hufuv1.ChooseRequest{SessionId: sessionID, CertificateSerial: serial, SealId: sealID,
		ConsentPoints: consent.wire()})
	if err != nil {
		return fmt.Errorf("client: answer session %s: choose: %w", sessionID, err)
	}
	if chosen.GetKeyId() != entry.ID {
		return fmt.Errorf("client: answer session %s: %w: the appliance chose key %s, the certificate's is %s", sessionID, ErrNotShown, chosen.GetKeyId(), entry.ID)
	}
	var digests [][cosign.ScalarSize]byte
	switch {
	case signing:
		digests, err = attributeDigests(chosen.GetSignedAttributes(), shown.GetDocuments(), &entry.Public)
	case consent != nil:
		digests, err = consent.statementDigest(chosen.GetChallenge(), shown.GetOpening(), sessionID, serial, &entry.Public)
	default:
		digests, err = challengeDigest(chosen.GetChallenge(), kind, sessionID, serial, &entry.Public)
	}
	if err != nil {
		return fmt.Errorf("client: answer session %s: %w", sessionID, err)
	}

	sigs, err := cosignSession(ctx, conn, entry, sessionID, PINCredential(pin), digests)
	if err != nil {
		return fmt.Errorf("client: answer session %s: %w", sessionID, err)
	}
	if _, err := phoneScan(conn).Complete(ctx, &hufuv1.CompleteRequest{SessionId: sessionID, Signatures: sigs}); err != nil {
		return fmt.Errorf("client: answer session %s: complete: %w", sessionID, err)
	}
	return nil
}

// loadSettled loads a key's share, settling an interrupted refresh first (as OpenKey does).
func loadSettled(ctx context.Context, conn *Conn, ks *keystore.Store, keyID string) (*keystore.Entry, error) {
	e, err := ks.Load(keyID)
	if err != nil {
		return nil, fmt.Errorf("key %s: %w", keyID, err)
	}
	if e.Pending != nil {
		return ResumeRefresh(ctx, conn, ks, keyID)
	}
	return e, nil
}

// checkCertificateKey checks that the certificate, when this account can download it, is on
// the key's public key. A delegated enterprise certificate cannot be downloaded by staff;
// then the appliance's pinned e, computed under the certificate, equals ours only if the
// keys are the same, and the appliance refuses any other e.
func checkCertificateKey(ctx context.Context, conn *Conn, serial string, e *keystore.Entry) error {
	resp, err := hufuv1.NewCertificateServiceClient(conn.ClientConn()).DownloadCertificate(ctx,
		&hufuv1.DownloadCertificateRequest{Serial: serial, Format: hufuv1.CertificateFormat_CERTIFICATE_FORMAT_DER})
	if status.Code(err) == codes.NotFound {
		return nil // not ours to download: see above
	}
	if err != nil {
		return fmt.Errorf("certificate %s: %w", serial, err)
	}
	cert, err := smx509.ParseCertificate(resp.GetCertificateData())
	if err != nil {
		return fmt.Errorf("certificate %s: %w", serial, err)
	}
	pub, ok := cert.PublicKey.(*ecdsa.PublicKey)
	if !ok {
		return fmt.Errorf("%w: certificate %s is not on an SM2 key", ErrNotShown, serial)
	}
	p, err := cosign.PointFromPublicKey(pub)
	if err != nil || p != e.Public {
		return fmt.Errorf("%w: certificate %s is not on key %s", ErrNotShown, serial, e.ID)
	}
	return nil
}

// challengeDigest checks a BIND or LOGIN challenge ("hufu/scan/v1 KIND", then key=value
// lines) names this kind, session and certificate, and returns e = SM3(Z_A ‖ challenge).
func challengeDigest(challenge []byte, kind hufuv1.SessionKind, sessionID, serial string, public *cosign.Point) ([][cosign.ScalarSize]byte, error) {
	fields, k, ok := parseChallenge(challenge)
	if !ok || k != kind || fields["session"] != sessionID || fields["serial"] != serial {
		return nil, fmt.Errorf("%w: the challenge is not for this %s session and certificate", ErrNotShown, kindWord(kind))
	}
	e, err := cosign.Digest(public, nil, challenge)
	if err != nil {
		return nil, err
	}
	return [][cosign.ScalarSize]byte{e}, nil
}

// consentPoints is a DECRYPT session's consent as the phone computes it (design §3,
// consent-to-release): per envelope shown for the certificate, in the order shown, the
// consent point T1 = d1⁻¹·C1 sent at Choose and the statement line it must come back as.
type consentPoints struct {
	points []cosign.Point
	lines  []bidopening.StatementEnvelope
}

// newConsentPoints parses each envelope's ciphertext shown for cand (C1C3C2 or ASN.1; C1
// checked on the curve) and computes its T1 with the phone's share.
func newConsentPoints(shown *hufuv1.ScanResponse, cand *hufuv1.Candidate, share *cosign.PhoneShare) (*consentPoints, error) {
	if shown.GetOpening().GetId() == "" {
		return nil, fmt.Errorf("%w: a DECRYPT session shown without its opening", ErrBadAnswer)
	}
	envs := cand.GetEnvelopes()
	if len(envs) == 0 {
		return nil, fmt.Errorf("certificate %s has no envelope in opening %s", cand.GetSerial(), shown.GetOpening().GetId())
	}
	c := &consentPoints{points: make([]cosign.Point, len(envs)), lines: make([]bidopening.StatementEnvelope, len(envs))}
	for i, e := range envs {
		raw := e.GetCiphertext()
		ct, err := cosign.ParseCiphertext(raw, cosign.DetectEncoding(raw))
		if err != nil {
			return nil, fmt.Errorf("%w: envelope %q: %w", ErrBadAnswer, e.GetId(), err)
		}
		c.points[i] = share.ConsentPoint(&ct.C1)
		c.lines[i] = bidopening.StatementEnvelope{ID: e.GetId(), CiphertextSHA256: sha256.Sum256(raw), T1SHA256: bidopening.T1Hash(&c.points[i])}
	}
	return c, nil
}

// wire is the ChooseRequest's consent_points: nil for a session of another kind.
func (c *consentPoints) wire() [][]byte {
	if c == nil {
		return nil
	}
	out := make([][]byte, len(c.points))
	for i := range c.points {
		out[i] = c.points[i][:]
	}
	return out
}

// statementDigest checks a DECRYPT session's consent statement against the opening shown,
// this session and certificate, and the envelopes and points of c, and returns
// e = SM3(Z_A ‖ statement).
func (c *consentPoints) statementDigest(statement []byte, opening *hufuv1.OpeningSummary, sessionID, serial string, public *cosign.Point) ([][cosign.ScalarSize]byte, error) {
	st, err := bidopening.ParseStatement(string(statement))
	if err != nil {
		return nil, fmt.Errorf("%w: the consent statement: %w", ErrNotShown, err)
	}
	for _, f := range []struct{ name, got, want string }{
		{"opening", st.Opening, opening.GetId()},
		{"project", st.Project, opening.GetProjectCode()},
		{"serial", st.Serial, serial},
		{"session", st.Session, sessionID},
	} {
		if f.got != f.want {
			return nil, fmt.Errorf("%w: the consent statement's %s is %q, not %q", ErrNotShown, f.name, f.got, f.want)
		}
	}
	if start, end := opening.GetWindowStart(), opening.GetWindowEnd(); start == nil || end == nil ||
		st.Time.Before(start.AsTime()) || st.Time.After(end.AsTime()) {
		return nil, fmt.Errorf("%w: the consent statement's time %s is outside the opening window shown", ErrNotShown, st.Time.Format(time.RFC3339))
	}
	if len(st.Envelopes) != len(c.lines) {
		return nil, fmt.Errorf("%w: the consent statement names %d envelopes, %d were shown", ErrNotShown, len(st.Envelopes), len(c.lines))
	}
	for i, got := range st.Envelopes {
		switch want := c.lines[i]; {
		case got.ID != want.ID:
			return nil, fmt.Errorf("%w: the consent statement's envelope %d is %q, %q was shown", ErrNotShown, i+1, got.ID, want.ID)
		case got.CiphertextSHA256 != want.CiphertextSHA256:
			return nil, fmt.Errorf("%w: envelope %q: the consent statement names another ciphertext than the one shown", ErrNotShown, want.ID)
		case got.T1SHA256 != want.T1SHA256:
			return nil, fmt.Errorf("%w: envelope %q: the consent statement names another consent point than the phone sent", ErrNotShown, want.ID)
		}
	}
	e, err := cosign.Digest(public, nil, statement)
	if err != nil {
		return nil, err
	}
	return [][cosign.ScalarSize]byte{e}, nil
}

// parseChallenge reads a scan challenge: its kind and its key=value lines.
func parseChallenge(challenge []byte) (map[string]string, hufuv1.SessionKind, bool) {
	lines := strings.Split(string(challenge), "\n")
	word, ok := strings.CutPrefix(lines[0], "hufu/scan/v1 ")
	if !ok {
		return nil, 0, false
	}
	kind, ok := hufuv1.SessionKind_value["SESSION_KIND_"+word]
	if !ok {
		return nil, 0, false
	}
	fields := map[string]string{}
	for _, l := range lines[1:] {
		k, v, ok := strings.Cut(l, "=")
		if !ok {
			return nil, 0, false
		}
		if _, dup := fields[k]; dup {
			return nil, 0, false
		}
		fields[k] = v
	}
	return fields, hufuv1.SessionKind(kind), true
}

// attributeDigests checks each signed-attribute set against the digest shown for its
// document and returns e = SM3(Z_A ‖ attributes) of each.
func attributeDigests(attrs [][]byte, shown []*hufuv1.Document, public *cosign.Point) ([][cosign.ScalarSize]byte, error) {
	if len(attrs) != len(shown) {
		return nil, fmt.Errorf("%w: %d documents shown, %d to sign", ErrNotShown, len(shown), len(attrs))
	}
	pub := public.PublicKey()
	out := make([][cosign.ScalarSize]byte, len(attrs))
	for i, a := range attrs {
		if _, err := cms.CheckSignedAttributes(a, shown[i].GetSm3()); err != nil {
			return nil, fmt.Errorf("%w: document %d (%s): %w", ErrNotShown, i+1, shown[i].GetName(), err)
		}
		e, err := cms.Digest(pub, a)
		if err != nil {
			return nil, err
		}
		out[i] = e
	}
	return out, nil
}

// cosignSession runs the phone's half of signing each digest through the session's Cosign
// and returns the finished signatures (64 bytes r ‖ s each), each verified under the key.
func cosignSession(ctx context.Context, conn *Conn, e *keystore.Entry, sessionID string, cred *hufuv1.Credential, digests [][cosign.ScalarSize]byte) ([][]byte, error) {
	sessions := make([]*cosign.SignSession, len(digests))
	reqs := make([][]byte, len(digests))
	for i := range digests {
		s, req, err := e.Share.StartSign(rand.Reader, &e.Public, &digests[i])
		if err != nil {
			return nil, err
		}
		sessions[i] = s
		if reqs[i], err = req.MarshalBinary(); err != nil {
			return nil, err
		}
	}
	resp, err := phoneScan(conn).Cosign(ctx, &hufuv1.CosignRequest{SessionId: sessionID, Credential: cred, SignRequests: reqs})
	if err != nil {
		return nil, fmt.Errorf("cosign: %w", err)
	}
	if v := resp.GetShareVersion(); v != 0 && e.Version != 0 && v != e.Version {
		return nil, fmt.Errorf("%w: key %s, phone at version %d, appliance at %d", ErrVersionMismatch, e.ID, e.Version, v)
	}
	if len(resp.GetItems()) != len(reqs) {
		return nil, fmt.Errorf("%w: %d items for %d requests", ErrBadAnswer, len(resp.GetItems()), len(reqs))
	}
	sigs := make([][]byte, len(reqs))
	for i, it := range resp.GetItems() {
		if err := itemError(it); err != nil {
			return nil, fmt.Errorf("cosign item %d: %w", i, err)
		}
		var sr cosign.SignResponse
		if err := sr.UnmarshalBinary(it.GetResult()); err != nil {
			return nil, fmt.Errorf("%w: %w", ErrBadAnswer, err)
		}
		sig, err := sessions[i].Finish(&sr)
		if err != nil {
			return nil, fmt.Errorf("cosign item %d: %w", i, err)
		}
		if sigs[i], err = sig.MarshalBinary(); err != nil {
			return nil, err
		}
	}
	return sigs, nil
}

// ConsentSession answers a scanned AUTH session: the identity and enterprises shown at Scan
// (ScanResponse.release_preview) are released to the system, signed by the appliance.
func ConsentSession(ctx context.Context, conn *Conn, sessionID string) error {
	if _, err := phoneScan(conn).Consent(ctx, &hufuv1.ConsentRequest{SessionId: sessionID}); err != nil {
		return fmt.Errorf("client: consent to session %s: %w", sessionID, err)
	}
	return nil
}

// DeclineSession answers a scanned session with no; the system learns it, with reason (at
// most 200 characters), at once.
func DeclineSession(ctx context.Context, conn *Conn, sessionID, reason string) error {
	if _, err := phoneScan(conn).Decline(ctx, &hufuv1.DeclineRequest{SessionId: sessionID, Reason: reason}); err != nil {
		return fmt.Errorf("client: decline session %s: %w", sessionID, err)
	}
	return nil
}

// VerifyLoginAssertion is the system's check of a completed LOGIN (or BIND) session's
// assertion: the certificate chains to roots now (through result.chain), the challenge is
// of a LOGIN or BIND session named sessionID and of this certificate, and
// challenge_signature is a standard SM2 signature (default signer ID) of the challenge under
// the certificate. It returns the certificate. Failures wrap ErrAssertion.
func VerifyLoginAssertion(result *hufuv1.SessionResult, roots *smx509.CertPool, sessionID string) (*smx509.Certificate, error) {
	if result == nil {
		return nil, fmt.Errorf("%w: no result", ErrAssertion)
	}
	cert, err := verifyChain(result, roots)
	if err != nil {
		return nil, err
	}
	fields, kind, ok := parseChallenge(result.GetChallenge())
	if !ok || (kind != hufuv1.SessionKind_SESSION_KIND_LOGIN && kind != hufuv1.SessionKind_SESSION_KIND_BIND) || fields["session"] != sessionID {
		return nil, fmt.Errorf("%w: the challenge is not of session %s", ErrAssertion, sessionID)
	}
	if serial, ok := new(big.Int).SetString(fields["serial"], 16); !ok || serial.Cmp(cert.SerialNumber) != 0 {
		return nil, fmt.Errorf("%w: the challenge names another certificate", ErrAssertion)
	}
	pub, ok := cert.PublicKey.(*ecdsa.PublicKey)
	if !ok || !sm2.IsSM2PublicKey(pub) {
		return nil, fmt.Errorf("%w: the certificate's key is not SM2", ErrAssertion)
	}
	if !sm2.VerifyASN1WithSM2(pub, nil, result.GetChallenge(), result.GetChallengeSignature()) {
		return nil, fmt.Errorf("%w: the signature of the challenge", ErrAssertion)
	}
	return cert, nil
}

func verifyChain(result *hufuv1.SessionResult, roots *smx509.CertPool) (*smx509.Certificate, error) {
	if roots == nil {
		return nil, fmt.Errorf("%w: no roots to check the certificate against", ErrAssertion)
	}
	cert, err := smx509.ParseCertificate(result.GetCertificate())
	if err != nil {
		return nil, fmt.Errorf("%w: certificate: %w", ErrAssertion, err)
	}
	inter := smx509.NewCertPool()
	for _, der := range result.GetChain() {
		c, err := smx509.ParseCertificate(der)
		if err != nil {
			return nil, fmt.Errorf("%w: chain: %w", ErrAssertion, err)
		}
		inter.AddCert(c)
	}
	if _, err := cert.Verify(smx509.VerifyOptions{Roots: roots, Intermediates: inter, KeyUsages: []smx509.ExtKeyUsage{smx509.ExtKeyUsageAny}}); err != nil {
		return nil, fmt.Errorf("%w: certificate chain: %w", ErrAssertion, err)
	}
	return cert, nil
}

// VerifySignedDocument checks one signed document of a SIGN or GENERATE session: its
// detached CMS verifies for the registered SM3 digest and its signer chains to roots at the
// signing time (cms.VerifyDetached). It returns the signer's certificate.
func VerifySignedDocument(sd *hufuv1.SignedDocument, roots *smx509.CertPool) (*smx509.Certificate, error) {
	if sd == nil {
		return nil, fmt.Errorf("%w: no signed document", ErrAssertion)
	}
	cert, err := cms.VerifyDetached(sd.GetCms(), sd.GetSm3(), roots)
	if err != nil {
		return nil, fmt.Errorf("%w: %s: %w", ErrAssertion, sd.GetName(), err)
	}
	return cert, nil
}

// VerifyRelease checks an AUTH session's released data: the appliance's ECDSA P-256
// signature under its scan key (ScanService.GetScanKey) over
// SHA-256("hufu/scan/v1 auth\x00" ‖ released), and that the release is of sessionID. It
// returns the released JSON.
func VerifyRelease(result *hufuv1.SessionResult, scanKey *ecdsa.PublicKey, sessionID string) ([]byte, error) {
	if result == nil || len(result.GetReleased()) == 0 || scanKey == nil {
		return nil, fmt.Errorf("%w: no release", ErrAssertion)
	}
	h := sha256.Sum256(append([]byte(authDomain), result.GetReleased()...))
	if !ecdsa.VerifyASN1(scanKey, h[:], result.GetReleasedSignature()) {
		return nil, fmt.Errorf("%w: the appliance's signature of the release", ErrAssertion)
	}
	var r struct {
		Session string `json:"session"`
	}
	if err := json.Unmarshal(result.GetReleased(), &r); err != nil || r.Session != sessionID {
		return nil, fmt.Errorf("%w: the release is not of session %s", ErrAssertion, sessionID)
	}
	return result.GetReleased(), nil
}

// EnvelopeBidFile envelopes a bid file to the signer's certificate (a GENERATE session's
// result) as GM/T 0010 EnvelopedData (cms.Envelope), and returns it with the key
// transport's C1 (65 bytes, uncompressed), which a bid opening registers.
func EnvelopeBidFile(content []byte, cert *smx509.Certificate) (enveloped []byte, c1 []byte, err error) {
	enveloped, err = cms.Envelope(content, cert)
	if err != nil {
		return nil, nil, fmt.Errorf("client: envelope bid file: %w", err)
	}
	p, _, err := cms.KeyTransportC1(enveloped, cert)
	if err != nil {
		return nil, nil, fmt.Errorf("client: envelope bid file: %w", err)
	}
	return enveloped, bytes.Clone(p[:]), nil
}

// OpenBidFile is the bidder opening an enveloped bid file (扫码解密, seed §3.1) with the
// key keyID in ks: the SM4 key's transport is decrypted by the two-party decryption
// (OpenKey, one PIN check), then the content (cms.OpenEnvelope).
func OpenBidFile(ctx context.Context, conn *Conn, ks *keystore.Store, keyID, pin string, enveloped []byte) ([]byte, error) {
	if _, _, err := cms.KeyTransportC1(enveloped, nil); err != nil { // refuse garbage before the PIN check
		return nil, fmt.Errorf("client: open bid file: %w", err)
	}
	key, err := OpenKey(ctx, conn, ks, keyID, pin)
	if err != nil {
		return nil, fmt.Errorf("client: open bid file: %w", err)
	}
	content, err := cms.OpenEnvelope(enveloped, nil, func(ct []byte) ([]byte, error) {
		return key.DecryptContext(ctx, ct, &cosign.DecrypterOpts{Encoding: cosign.ASN1})
	})
	if err != nil {
		return nil, fmt.Errorf("client: open bid file: %w", err)
	}
	return content, nil
}

// ReleaseOpening is the bid-opening system releasing consented envelopes
// (OpeningService.Release, with the system's client certificate): it reads the stream to its
// end and calls each with every answer as it arrives. An answer carries its envelope's SM4
// key (Key in clear, or EncryptedKey to the opening's result key) or why that envelope alone
// failed (Error); each returning an error stops the reading and is returned. The appliance
// commits every answer with its audit record before sending it, so an answer lost to a
// broken stream is released again with req.IncludeReleased.
func ReleaseOpening(ctx context.Context, conn *Conn, req *hufuv1.ReleaseRequest, each func(*hufuv1.ReleasedEnvelope) error) error {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	stream, err := hufuv1.NewOpeningServiceClient(conn.ClientConn()).Release(ctx, req)
	if err != nil {
		return fmt.Errorf("client: release opening %s: %w", req.GetOpeningId(), err)
	}
	for {
		r, err := stream.Recv()
		if errors.Is(err, io.EOF) {
			return nil
		}
		if err != nil {
			return fmt.Errorf("client: release opening %s: %w", req.GetOpeningId(), err)
		}
		for _, e := range r.GetEnvelopes() {
			if err := each(e); err != nil {
				return err
			}
		}
	}
}

// DownloadReport writes the signed report of a closed opening (OpeningService.GetReport, the
// JSON Lines of package bidopening) to w and returns its length; a report longer than
// bidopening.MaxReportSize is refused. It does not verify the report: bidopening.Verify does,
// offline, under the appliance's audit key, which an auditor obtains from the admin surface
// (GET /audit/public-key) rather than from the appliance whose report it checks.
func DownloadReport(ctx context.Context, conn *Conn, openingID string, w io.Writer) (int64, error) {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	stream, err := hufuv1.NewOpeningServiceClient(conn.ClientConn()).GetReport(ctx, &hufuv1.GetReportRequest{OpeningId: openingID})
	if err != nil {
		return 0, fmt.Errorf("client: report of opening %s: %w", openingID, err)
	}
	var n int64
	for {
		part, err := stream.Recv()
		if errors.Is(err, io.EOF) {
			return n, nil
		}
		if err != nil {
			return n, fmt.Errorf("client: report of opening %s: %w", openingID, err)
		}
		if n+int64(len(part.GetChunk())) > bidopening.MaxReportSize {
			return n, fmt.Errorf("client: report of opening %s: %w: longer than %d bytes", openingID, ErrBadAnswer, bidopening.MaxReportSize)
		}
		m, err := w.Write(part.GetChunk())
		n += int64(m)
		if err != nil {
			return n, fmt.Errorf("client: report of opening %s: %w", openingID, err)
		}
	}
}

func kindWord(k hufuv1.SessionKind) string {
	return strings.TrimPrefix(k.String(), "SESSION_KIND_")
}
