package bidopening

import (
	"bytes"
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/sha256"
	"crypto/x509"
	"encoding/base64"
	"encoding/binary"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/hufu-hsm/hufu/cosign"
)

// Limits on a report. Verify rejects anything larger before reading it, and Sign refuses to
// produce it.
const (
	// MaxReportSize bounds a whole report file in bytes.
	MaxReportSize = 64 << 20
	// maxLineSize bounds one line: a consent with a statement of MaxStatementSize (its "\n"
	// escaped) and a certificate of some kilobytes fits with room to spare.
	maxLineSize = 1 << 20
)

// reportDomain prefixes the signed bytes, so that the report key's signature on a report can
// never be taken for its signature on anything else.
const reportDomain = "hufu/opening/v1 report\x00"

// manifestDomain prefixes the bytes ManifestSHA256 hashes.
const manifestDomain = "hufu/opening/v1 manifest\x00"

// Values of Release.Via and Attempt.Via.
const (
	ViaRelease = "release" // bulk release by the bid-opening system, on the bidder's consent
	ViaPhone   = "phone"   // the bidder's own two-party decryption through the opening
	ViaDecrypt = "decrypt" // (attempts only) a two-party decryption request
	ViaConsent = "consent" // (attempts only) a consent
)

// OutcomeOK is the outcome of a release that produced the plaintext.
const OutcomeOK = "ok"

// Report is the record of one bid opening (开标记录): what was sealed, who consented, what
// was released, what was refused, and where the audit chain stood. Sign writes it and Verify
// reads it back; every slice is in the order of the package doc.
type Report struct {
	Opening   Opening
	Envelopes []Envelope // the sealed manifest, strictly increasing by ID
	Consents  []Consent  // increasing by (AcceptedAt, Session)
	Releases  []Release  // in time order
	Attempts  []Attempt  // in time order
	Audit     AuditPosition
}

// Opening is the header of a report.
type Opening struct {
	ID          string // the opening's id (the consent statements' "opening")
	System      string // the bid-opening system that registered the opening
	ProjectCode string // the statements' "project"
	ProjectName string
	Platform    string // the trading platform
	WindowStart time.Time
	WindowEnd   time.Time
	SealedAt    time.Time // when the manifest was sealed
	ClosedAt    time.Time // when the opening was closed and the report made
	// ManifestSHA256 is ManifestSHA256 of the envelopes, as computed and stored at sealing.
	// Sign does not compute it: it checks it, so a manifest changed after sealing cannot be
	// signed.
	ManifestSHA256 [32]byte
}

// Envelope is a sealed envelope: a ciphertext the bid-opening system registered for the
// holder of a certificate.
type Envelope struct {
	ID               string
	Serial           string   // the certificate serial, in hex, as registered
	CiphertextSHA256 [32]byte // SHA-256 of the ciphertext exactly as registered
	RegisteredAt     time.Time
}

// Consent is a consent the appliance accepted: the statement text exactly as signed, the
// signature and the signer's certificate.
type Consent struct {
	Session     string
	Serial      string
	Delegated   bool // given with a delegated pair (an enterprise member's device)
	AcceptedAt  time.Time
	Statement   string           // the canonical statement text (ParseStatement reads it)
	Signature   cosign.Signature // SM2, e = SM3(Z_A ‖ Statement), default signer ID
	Certificate []byte           // DER X.509 SM2 certificate of the signer
}

// Release is one computation of an envelope's key by the appliance at the opening.
type Release struct {
	Envelope string
	At       time.Time
	Outcome  string // OutcomeOK or a reason such as "c3_mismatch"
	Via      string // ViaRelease or ViaPhone
}

// Attempt is a refused request to decrypt or release an envelope, or to consent, made too
// early or by someone the envelope does not belong to.
type Attempt struct {
	At       time.Time
	Via      string // ViaDecrypt, ViaRelease or ViaConsent
	Envelope string // the envelope the request named; "" if it named none
	Reason   string // why it was refused, such as "before_window"
}

// AuditPosition is the audit chain's position the report corresponds to: its last record and
// the chain head after it (package store).
type AuditPosition struct {
	Seq  uint64
	Head [32]byte
}

// Signer signs reports; the appliance's audit signer (hsm.AuditSigner) is one.
type Signer interface {
	// SignDigest returns an ASN.1 DER ECDSA P-256 signature over a 32-byte SHA-256 digest.
	SignDigest(ctx context.Context, digest []byte) ([]byte, error)
	// PublicKey returns the key that verifies those signatures.
	PublicKey() *ecdsa.PublicKey
}

// ManifestSHA256 is the hash of a manifest that the header carries and that the appliance
// computes at sealing: SHA-256 of manifestDomain followed, for each envelope in increasing
// id order, by len32(id) ‖ id ‖ len32(serial) ‖ serial ‖ ciphertext_sha256, where len32 is
// a big-endian uint32 byte length. It sorts a copy of envs; the order of envs does not
// matter.
func ManifestSHA256(envs []Envelope) [32]byte {
	sorted := slices.Clone(envs)
	slices.SortStableFunc(sorted, func(a, b Envelope) int { return strings.Compare(a.ID, b.ID) })
	h := sha256.New()
	h.Write([]byte(manifestDomain))
	var b []byte
	for i := range sorted {
		e := &sorted[i]
		b = binary.BigEndian.AppendUint32(b[:0], uint32(len(e.ID)))
		b = append(b, e.ID...)
		b = binary.BigEndian.AppendUint32(b, uint32(len(e.Serial)))
		b = append(b, e.Serial...)
		b = append(b, e.CiphertextSHA256[:]...)
		h.Write(b)
	}
	return [32]byte(h.Sum(nil))
}

// Sign returns the report file signed with signer. It first checks the report exactly as
// Verify would (every field, the order of the lines, the manifest hash, every consent's
// certificate and signature, every time against the window) and refuses, with the
// *VerifyError Verify would return, to sign a report an auditor would reject. It verifies
// the signature it gets from signer before returning.
func (r *Report) Sign(ctx context.Context, signer Signer) ([]byte, error) {
	pub := signer.PublicKey()
	id, err := keyID(pub)
	if err != nil {
		return nil, err
	}
	// JSON cannot carry invalid UTF-8 (encoding/json would silently replace it): refuse
	// it here rather than sign a different text. Every other field is ASCII by its rules.
	for _, f := range []struct{ name, v string }{
		{"system", r.Opening.System}, {"project_code", r.Opening.ProjectCode},
		{"project_name", r.Opening.ProjectName}, {"platform", r.Opening.Platform},
	} {
		if !utf8.ValidString(f.v) {
			return nil, fmt.Errorf("bidopening: refusing to sign: %s is not valid UTF-8", f.name)
		}
	}
	for i := range r.Consents {
		if !utf8.ValidString(r.Consents[i].Statement) {
			return nil, fmt.Errorf("bidopening: refusing to sign: the statement of consent %d is not valid UTF-8", i+1)
		}
	}
	body, err := r.marshalBody()
	if err != nil {
		return nil, err
	}
	if _, err := checkBody(body); err != nil {
		return nil, fmt.Errorf("bidopening: refusing to sign a report that does not verify: %w", err)
	}
	out, err := appendSignature(ctx, body, signer, pub, id)
	if err != nil {
		return nil, err
	}
	if len(out) > MaxReportSize {
		return nil, fmt.Errorf("bidopening: refusing to sign: the report has %d bytes, more than %d", len(out), MaxReportSize)
	}
	return out, nil
}

// appendSignature signs body and returns it followed by the signature line. It checks the
// signature, so a faulty signer never produces a report that does not verify.
func appendSignature(ctx context.Context, body []byte, signer Signer, pub *ecdsa.PublicKey, id [32]byte) ([]byte, error) {
	digest := reportDigest(body)
	sig, err := signer.SignDigest(ctx, digest[:])
	if err != nil {
		return nil, fmt.Errorf("bidopening: sign report: %w", err)
	}
	if !ecdsa.VerifyASN1(pub, digest[:], sig) {
		return nil, errors.New("bidopening: sign report: the signer's signature does not verify under its public key")
	}
	out := bytes.NewBuffer(slices.Grow(slices.Clone(body), 256))
	if err := encodeLine(out, &signatureLine{
		Type: "signature", KeyID: hex.EncodeToString(id[:]), Signature: base64.StdEncoding.EncodeToString(sig),
	}); err != nil {
		return nil, err
	}
	return out.Bytes(), nil
}

// reportDigest is SHA-256(reportDomain ‖ body), what the report signature signs.
func reportDigest(body []byte) [32]byte {
	h := sha256.New()
	h.Write([]byte(reportDomain))
	h.Write(body)
	return [32]byte(h.Sum(nil))
}

// keyID is the id of a report key, SHA-256 of its PKIX DER encoding (store.KeyID, the id of
// the audit key). Only ECDSA P-256 keys are report keys.
func keyID(pub *ecdsa.PublicKey) ([32]byte, error) {
	if pub == nil || pub.Curve != elliptic.P256() {
		return [32]byte{}, errors.New("bidopening: the report key is not an ECDSA P-256 public key")
	}
	der, err := x509.MarshalPKIXPublicKey(pub)
	if err != nil {
		return [32]byte{}, fmt.Errorf("bidopening: encode the report key: %w", err)
	}
	return sha256.Sum256(der), nil
}

// The JSON lines. encoding/json writes struct fields in declaration order, which is the
// order of the package doc; every field is always written (no omitempty).

type openingLine struct {
	Type           string `json:"type"`
	ID             string `json:"id"`
	System         string `json:"system"`
	ProjectCode    string `json:"project_code"`
	ProjectName    string `json:"project_name"`
	Platform       string `json:"platform"`
	WindowStart    string `json:"window_start"`
	WindowEnd      string `json:"window_end"`
	SealedAt       string `json:"sealed_at"`
	ClosedAt       string `json:"closed_at"`
	Envelopes      int    `json:"envelopes"`
	ManifestSHA256 string `json:"manifest_sha256"`
}

type envelopeLine struct {
	Type             string `json:"type"`
	ID               string `json:"id"`
	Serial           string `json:"serial"`
	CiphertextSHA256 string `json:"ciphertext_sha256"`
	RegisteredAt     string `json:"registered_at"`
}

type consentLine struct {
	Type        string `json:"type"`
	Session     string `json:"session"`
	Serial      string `json:"serial"`
	Delegated   bool   `json:"delegated"`
	AcceptedAt  string `json:"accepted_at"`
	Statement   string `json:"statement"`
	Signature   string `json:"signature"`
	Certificate string `json:"certificate"`
}

type releaseLine struct {
	Type     string `json:"type"`
	Envelope string `json:"envelope"`
	At       string `json:"at"`
	Outcome  string `json:"outcome"`
	Via      string `json:"via"`
}

type attemptLine struct {
	Type     string `json:"type"`
	At       string `json:"at"`
	Via      string `json:"via"`
	Envelope string `json:"envelope"`
	Reason   string `json:"reason"`
}

type auditLine struct {
	Type string `json:"type"`
	Seq  uint64 `json:"seq"`
	Head string `json:"head"`
}

type signatureLine struct {
	Type      string `json:"type"`
	KeyID     string `json:"key_id"`
	Signature string `json:"signature"`
}

func (o *Opening) line(envelopes int) *openingLine {
	return &openingLine{
		Type: "opening", ID: o.ID, System: o.System, ProjectCode: o.ProjectCode, ProjectName: o.ProjectName,
		Platform: o.Platform, WindowStart: formatTime(o.WindowStart), WindowEnd: formatTime(o.WindowEnd),
		SealedAt: formatTime(o.SealedAt), ClosedAt: formatTime(o.ClosedAt), Envelopes: envelopes,
		ManifestSHA256: hex.EncodeToString(o.ManifestSHA256[:]),
	}
}

func (e *Envelope) line() *envelopeLine {
	return &envelopeLine{
		Type: "envelope", ID: e.ID, Serial: e.Serial,
		CiphertextSHA256: hex.EncodeToString(e.CiphertextSHA256[:]), RegisteredAt: formatTime(e.RegisteredAt),
	}
}

func (c *Consent) line() *consentLine {
	sig, _ := c.Signature.MarshalBinary() // never fails
	return &consentLine{
		Type: "consent", Session: c.Session, Serial: c.Serial, Delegated: c.Delegated,
		AcceptedAt: formatTime(c.AcceptedAt), Statement: c.Statement,
		Signature: base64.StdEncoding.EncodeToString(sig), Certificate: base64.StdEncoding.EncodeToString(c.Certificate),
	}
}

func (r *Release) line() *releaseLine {
	return &releaseLine{Type: "release", Envelope: r.Envelope, At: formatTime(r.At), Outcome: r.Outcome, Via: r.Via}
}

func (a *Attempt) line() *attemptLine {
	return &attemptLine{Type: "attempt", At: formatTime(a.At), Via: a.Via, Envelope: a.Envelope, Reason: a.Reason}
}

func (a *AuditPosition) line() *auditLine {
	return &auditLine{Type: "audit", Seq: a.Seq, Head: hex.EncodeToString(a.Head[:])}
}

// encodeLine appends one line: compact JSON, HTML characters not escaped, then "\n".
func encodeLine(buf *bytes.Buffer, v any) error {
	enc := json.NewEncoder(buf)
	enc.SetEscapeHTML(false)
	if err := enc.Encode(v); err != nil {
		return fmt.Errorf("bidopening: encode report line: %w", err)
	}
	return nil
}

// marshalBody writes every line but the signature, without checking anything.
func (r *Report) marshalBody() ([]byte, error) {
	var buf bytes.Buffer
	lines := []any{r.Opening.line(len(r.Envelopes))}
	for i := range r.Envelopes {
		lines = append(lines, r.Envelopes[i].line())
	}
	for i := range r.Consents {
		lines = append(lines, r.Consents[i].line())
	}
	for i := range r.Releases {
		lines = append(lines, r.Releases[i].line())
	}
	for i := range r.Attempts {
		lines = append(lines, r.Attempts[i].line())
	}
	lines = append(lines, r.Audit.line())
	for _, l := range lines {
		if err := encodeLine(&buf, l); err != nil {
			return nil, err
		}
	}
	return buf.Bytes(), nil
}
