package bidopening

import (
	"bytes"
	"crypto/ecdsa"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"math/big"
	"time"

	"github.com/emmansun/gmsm/sm2"
	"github.com/emmansun/gmsm/smx509"

	"github.com/hufu-hsm/hufu/cosign"
)

// ErrVerify is wrapped by every *VerifyError.
var ErrVerify = errors.New("bidopening: opening report does not verify")

// Reason classifies a failed verification.
type Reason string

// Reasons for a failed verification.
const (
	// ReasonMalformed: the file is not a report in the format of the package doc: too large,
	// not JSON lines, an unknown, missing or ill-formed field, lines out of order, or a line
	// that is not byte for byte what the writer produces.
	ReasonMalformed Reason = "malformed"
	// ReasonSignature: the last line is not a signature by the given key over the rest.
	ReasonSignature Reason = "bad signature"
	// ReasonManifest: the envelope lines do not match the header's count or manifest hash.
	ReasonManifest Reason = "manifest"
	// ReasonConsent: a consent's certificate, signature or statement does not check, or its
	// statement does not match the opening, the line or the manifest.
	ReasonConsent Reason = "consent"
	// ReasonWindow: a time is outside the window, or the header's times are out of order.
	ReasonWindow Reason = "window"
	// ReasonRelease: a release names an envelope outside the manifest, or a bulk release
	// has no consent covering it accepted no later than the release.
	ReasonRelease Reason = "release"
)

// VerifyError names the line (1-based; 0 for the file as a whole) where verification
// stopped, and why.
type VerifyError struct {
	Line   int
	Reason Reason
	Detail string
}

func (e *VerifyError) Error() string {
	return fmt.Sprintf("bidopening: opening report line %d: %s: %s", e.Line, e.Reason, e.Detail)
}

// Unwrap makes errors.Is(err, ErrVerify) true.
func (e *VerifyError) Unwrap() error { return ErrVerify }

func verifyError(line int, reason Reason, format string, args ...any) *VerifyError {
	return &VerifyError{Line: line, Reason: reason, Detail: fmt.Sprintf(format, args...)}
}

// Verify checks a report file offline against the report key pub (the appliance's audit
// key, GET /audit/public-key) and returns its content: it checks the signature line first,
// then every line in order as the package doc lists, and returns a *VerifyError for the
// first failure. pub must be an ECDSA P-256 key; any other is an error (not a
// *VerifyError) before the file is read.
func Verify(b []byte, pub *ecdsa.PublicKey) (*Report, error) {
	id, err := keyID(pub)
	if err != nil {
		return nil, err
	}
	if len(b) > MaxReportSize {
		return nil, verifyError(0, ReasonMalformed, "the file has %d bytes, more than %d", len(b), MaxReportSize)
	}
	if len(b) == 0 {
		return nil, verifyError(0, ReasonMalformed, "the file is empty")
	}
	n := bytes.Count(b, []byte{'\n'})
	if b[len(b)-1] != '\n' {
		return nil, verifyError(n+1, ReasonMalformed, "the last line does not end with a newline")
	}
	start := bytes.LastIndexByte(b[:len(b)-1], '\n') + 1
	body, last := b[:start], b[start:len(b)-1]
	if err := checkSignature(last, body, pub, id); err != nil {
		err.Line = n
		return nil, err
	}
	return checkBody(body)
}

// checkSignature checks the signature line (without its newline) over body.
func checkSignature(line, body []byte, pub *ecdsa.PublicKey, id [32]byte) *VerifyError {
	if len(line) > maxLineSize {
		return verifyError(0, ReasonMalformed, "the line is longer than %d bytes", maxLineSize)
	}
	if typ := lineType(line); typ != "signature" {
		return verifyError(0, ReasonSignature, "the last line is not the signature line (type %s)", typ)
	}
	var l signatureLine
	if err := decodeLine(line, &l); err != nil {
		return verifyError(0, ReasonMalformed, "signature line: %v", err)
	}
	keyID, err := parseHash(l.KeyID)
	if err != nil {
		return verifyError(0, ReasonMalformed, "key_id %v", err)
	}
	sig, err := base64.StdEncoding.Strict().DecodeString(l.Signature)
	if err != nil {
		return verifyError(0, ReasonMalformed, "signature is not base64")
	}
	if !canonical(line, &signatureLine{Type: "signature", KeyID: l.KeyID, Signature: base64.StdEncoding.EncodeToString(sig)}) {
		return verifyError(0, ReasonMalformed, "the signature line is not in canonical form")
	}
	if keyID != id {
		return verifyError(0, ReasonSignature, "signed by key %x…, not by the given key %x…", keyID[:8], id[:8])
	}
	digest := reportDigest(body)
	if !ecdsa.VerifyASN1(pub, digest[:], sig) {
		return verifyError(0, ReasonSignature, "the signature does not verify over the report")
	}
	return nil
}

// lineType returns the value of the "type" field that a line in canonical form starts
// with, or a description of what it starts with instead (for the error message).
func lineType(line []byte) string {
	rest, ok := bytes.CutPrefix(line, []byte(`{"type":"`))
	if !ok {
		return "missing: the line does not start with {\"type\":\""
	}
	if i := bytes.IndexByte(rest, '"'); i > 0 && i <= 16 {
		if t := string(rest[:i]); lineRank[t] != 0 {
			return t
		}
	}
	return "unknown"
}

// lineRank orders the line types; a file's lines have non-decreasing ranks.
var lineRank = map[string]int{
	"opening": 1, "envelope": 2, "consent": 3, "release": 4, "attempt": 5, "audit": 6, "signature": 7,
}

// decodeLine decodes one JSON object strictly (no unknown fields). Duplicate or
// differently-cased keys, escapes, white space and trailing bytes are caught afterwards by
// canonical.
func decodeLine(line []byte, v any) error {
	dec := json.NewDecoder(bytes.NewReader(line))
	dec.DisallowUnknownFields()
	return dec.Decode(v)
}

// canonical reports whether line (without its newline) is exactly the encoding of v.
func canonical(line []byte, v any) bool {
	var buf bytes.Buffer
	if encodeLine(&buf, v) != nil {
		return false
	}
	return bytes.Equal(buf.Bytes()[:buf.Len()-1], line)
}

// checker holds the state of checkBody.
type checker struct {
	r        *Report
	line     int
	rank     int
	manifest map[string]*Envelope
	// covered maps an envelope id to the earliest AcceptedAt of a consent releasing it.
	covered  map[string]time.Time
	sessions map[string]bool
	count    int // the header's envelope count
}

// checkBody parses and checks every line before the signature line: the strict format,
// the order of the lines and everything Verify promises about their content.
func checkBody(body []byte) (*Report, error) {
	c := &checker{r: &Report{}, covered: map[string]time.Time{}, sessions: map[string]bool{}}
	if len(body) > MaxReportSize {
		return nil, verifyError(0, ReasonMalformed, "the report has %d bytes, more than %d", len(body), MaxReportSize)
	}
	for len(body) > 0 {
		c.line++
		i := bytes.IndexByte(body, '\n')
		if i < 0 {
			return nil, c.fail(ReasonMalformed, "the line does not end with a newline")
		}
		line := body[:i]
		body = body[i+1:]
		if len(line) > maxLineSize {
			return nil, c.fail(ReasonMalformed, "the line is longer than %d bytes", maxLineSize)
		}
		if err := c.next(line); err != nil {
			return nil, err
		}
	}
	if c.rank == 0 {
		return nil, verifyError(1, ReasonMalformed, "no opening line")
	}
	c.line++ // where the missing lines would be: the signature line
	if err := c.endManifest(); err != nil {
		return nil, err
	}
	if c.rank < lineRank["audit"] {
		return nil, c.fail(ReasonMalformed, "no audit line")
	}
	return c.r, nil
}

func (c *checker) fail(reason Reason, format string, args ...any) *VerifyError {
	return verifyError(c.line, reason, format, args...)
}

// next checks one line: its place in the order of line types, then its content.
func (c *checker) next(line []byte) error {
	typ := lineType(line)
	rank := lineRank[typ]
	switch {
	case rank == 0:
		return c.fail(ReasonMalformed, "line type %s", typ)
	case c.line == 1 && typ != "opening":
		return c.fail(ReasonMalformed, "the first line is of type %s, not the opening line", typ)
	case typ == "signature":
		return c.fail(ReasonMalformed, "a signature line before the last line")
	case rank == c.rank && (typ == "opening" || typ == "audit"):
		return c.fail(ReasonMalformed, "a second %s line", typ)
	case rank < c.rank:
		return c.fail(ReasonMalformed, "line of type %s after a line of type %s", typ, rankName(c.rank))
	}
	if c.rank <= lineRank["envelope"] && rank > lineRank["envelope"] {
		if err := c.endManifest(); err != nil {
			return err
		}
	}
	c.rank = rank
	switch typ {
	case "opening":
		return c.opening(line)
	case "envelope":
		return c.envelope(line)
	case "consent":
		return c.consent(line)
	case "release":
		return c.release(line)
	case "attempt":
		return c.attempt(line)
	default: // "audit"
		return c.audit(line)
	}
}

func rankName(rank int) string {
	for t, r := range lineRank {
		if r == rank {
			return t
		}
	}
	return "?"
}

// fieldErr is the result of checking one field of a line.
type fieldErr struct {
	name string
	err  error
}

// firstFieldError returns the first non-nil error, as "name: error".
func firstFieldError(fs ...fieldErr) error {
	for _, f := range fs {
		if f.err != nil {
			return fmt.Errorf("%s %w", f.name, f.err)
		}
	}
	return nil
}

func (c *checker) opening(line []byte) error {
	var l openingLine
	if err := decodeLine(line, &l); err != nil {
		return c.fail(ReasonMalformed, "opening line: %v", err)
	}
	o := &c.r.Opening
	o.ID, o.System, o.ProjectCode, o.ProjectName, o.Platform = l.ID, l.System, l.ProjectCode, l.ProjectName, l.Platform
	var errs [9]error
	errs[0] = checkID(l.ID)
	errs[1] = checkText(l.System, maxTextLen)
	errs[2] = checkText(l.ProjectCode, maxProjectCodeLen)
	errs[3] = checkText(l.ProjectName, maxTextLen)
	errs[4] = checkText(l.Platform, maxTextLen)
	o.WindowStart, errs[5] = parseTime(l.WindowStart)
	o.WindowEnd, errs[6] = parseTime(l.WindowEnd)
	o.SealedAt, errs[7] = parseTime(l.SealedAt)
	o.ClosedAt, errs[8] = parseTime(l.ClosedAt)
	var errManifest error
	o.ManifestSHA256, errManifest = parseHash(l.ManifestSHA256)
	if err := firstFieldError(
		fieldErr{"id", errs[0]}, fieldErr{"system", errs[1]}, fieldErr{"project_code", errs[2]},
		fieldErr{"project_name", errs[3]}, fieldErr{"platform", errs[4]}, fieldErr{"window_start", errs[5]},
		fieldErr{"window_end", errs[6]}, fieldErr{"sealed_at", errs[7]}, fieldErr{"closed_at", errs[8]},
		fieldErr{"manifest_sha256", errManifest},
	); err != nil {
		return c.fail(ReasonMalformed, "%v", err)
	}
	if l.Envelopes < 0 {
		return c.fail(ReasonMalformed, "envelopes is negative")
	}
	if !canonical(line, o.line(l.Envelopes)) {
		return c.fail(ReasonMalformed, "the opening line is not in canonical form")
	}
	c.count = l.Envelopes
	switch {
	case o.SealedAt.After(o.WindowStart):
		return c.fail(ReasonWindow, "sealed_at %s is after window_start %s", l.SealedAt, l.WindowStart)
	case o.WindowEnd.Before(o.WindowStart):
		return c.fail(ReasonWindow, "window_end %s is before window_start %s", l.WindowEnd, l.WindowStart)
	case o.ClosedAt.Before(o.WindowStart):
		return c.fail(ReasonWindow, "closed_at %s is before window_start %s", l.ClosedAt, l.WindowStart)
	}
	return nil
}

func (c *checker) envelope(line []byte) error {
	var l envelopeLine
	if err := decodeLine(line, &l); err != nil {
		return c.fail(ReasonMalformed, "envelope line: %v", err)
	}
	e := Envelope{ID: l.ID, Serial: l.Serial}
	var errHash, errTime error
	e.CiphertextSHA256, errHash = parseHash(l.CiphertextSHA256)
	e.RegisteredAt, errTime = parseTime(l.RegisteredAt)
	if err := firstFieldError(
		fieldErr{"id", checkID(l.ID)}, fieldErr{"serial", checkSerial(l.Serial)},
		fieldErr{"ciphertext_sha256", errHash}, fieldErr{"registered_at", errTime},
	); err != nil {
		return c.fail(ReasonMalformed, "%v", err)
	}
	if !canonical(line, e.line()) {
		return c.fail(ReasonMalformed, "the envelope line is not in canonical form")
	}
	if k := len(c.r.Envelopes); k > 0 && e.ID <= c.r.Envelopes[k-1].ID {
		return c.fail(ReasonMalformed, "envelope %s is not after envelope %s: ids must be strictly increasing", e.ID, c.r.Envelopes[k-1].ID)
	}
	if e.RegisteredAt.After(c.r.Opening.SealedAt) {
		return c.fail(ReasonWindow, "envelope %s: registered_at %s is after sealed_at", e.ID, l.RegisteredAt)
	}
	c.r.Envelopes = append(c.r.Envelopes, e)
	return nil
}

// endManifest runs once, after the last envelope line: the count and the manifest hash. Its
// errors point at the header, which states both.
func (c *checker) endManifest() error {
	if c.manifest != nil {
		return nil
	}
	if len(c.r.Envelopes) != c.count {
		return verifyError(1, ReasonManifest, "the header announces %d envelopes, the report has %d", c.count, len(c.r.Envelopes))
	}
	if ManifestSHA256(c.r.Envelopes) != c.r.Opening.ManifestSHA256 {
		return verifyError(1, ReasonManifest, "manifest_sha256 does not match the envelope lines")
	}
	c.manifest = make(map[string]*Envelope, len(c.r.Envelopes))
	for i := range c.r.Envelopes {
		c.manifest[c.r.Envelopes[i].ID] = &c.r.Envelopes[i]
	}
	return nil
}

func (c *checker) consent(line []byte) error {
	var l consentLine
	if err := decodeLine(line, &l); err != nil {
		return c.fail(ReasonMalformed, "consent line: %v", err)
	}
	k := Consent{Session: l.Session, Serial: l.Serial, Delegated: l.Delegated, Statement: l.Statement}
	var errTime, errSig, errCert error
	k.AcceptedAt, errTime = parseTime(l.AcceptedAt)
	sig, err := base64.StdEncoding.Strict().DecodeString(l.Signature)
	if err != nil {
		errSig = errors.New("is not base64")
	} else if k.Signature.UnmarshalBinary(sig) != nil {
		errSig = errors.New("is not 64 bytes r ‖ s with r and s in [1, n-1]")
	}
	if k.Certificate, err = base64.StdEncoding.Strict().DecodeString(l.Certificate); err != nil {
		errCert = errors.New("is not base64")
	}
	if err := firstFieldError(
		fieldErr{"session", checkID(l.Session)}, fieldErr{"serial", checkSerial(l.Serial)},
		fieldErr{"accepted_at", errTime}, fieldErr{"signature", errSig}, fieldErr{"certificate", errCert},
	); err != nil {
		return c.fail(ReasonMalformed, "%v", err)
	}
	if !canonical(line, k.line()) {
		return c.fail(ReasonMalformed, "the consent line is not in canonical form")
	}
	if n := len(c.r.Consents); n > 0 {
		p := &c.r.Consents[n-1]
		if k.AcceptedAt.Before(p.AcceptedAt) || k.AcceptedAt.Equal(p.AcceptedAt) && k.Session <= p.Session {
			return c.fail(ReasonMalformed, "consent of session %s is not after consent of session %s: consents are ordered by accepted_at, then session", k.Session, p.Session)
		}
	}
	if c.sessions[k.Session] {
		return c.fail(ReasonConsent, "a second consent in session %s", k.Session)
	}
	c.sessions[k.Session] = true
	if err := c.checkConsent(&k, l.AcceptedAt); err != nil {
		return err
	}
	c.r.Consents = append(c.r.Consents, k)
	return nil
}

// checkConsent checks what a consent says against its certificate, the opening and the
// manifest.
func (c *checker) checkConsent(k *Consent, acceptedAt string) error {
	o := &c.r.Opening
	cert, err := smx509.ParseCertificate(k.Certificate)
	if err != nil {
		return c.fail(ReasonConsent, "session %s: the certificate does not parse: %v", k.Session, err)
	}
	serial, _ := new(big.Int).SetString(k.Serial, 16) // k.Serial is 1-64 hex digits
	if cert.SerialNumber == nil || cert.SerialNumber.Sign() <= 0 || cert.SerialNumber.Cmp(serial) != 0 {
		return c.fail(ReasonConsent, "session %s: the certificate's serial number is not %s", k.Session, k.Serial)
	}
	if k.AcceptedAt.Before(cert.NotBefore) || k.AcceptedAt.After(cert.NotAfter) {
		return c.fail(ReasonConsent, "session %s: accepted_at %s is outside the certificate's validity", k.Session, acceptedAt)
	}
	ecPub, ok := cert.PublicKey.(*ecdsa.PublicKey)
	if !ok || !sm2.IsSM2PublicKey(ecPub) {
		return c.fail(ReasonConsent, "session %s: the certificate's key is not an SM2 key", k.Session)
	}
	pub, err := cosign.PointFromPublicKey(ecPub)
	if err != nil {
		return c.fail(ReasonConsent, "session %s: the certificate's key: %v", k.Session, err)
	}
	e, err := cosign.Digest(&pub, nil, []byte(k.Statement))
	if err != nil {
		return c.fail(ReasonConsent, "session %s: %v", k.Session, err)
	}
	if !cosign.Verify(&pub, &e, &k.Signature) {
		return c.fail(ReasonConsent, "session %s: the signature does not verify on the statement under the certificate's key", k.Session)
	}
	s, err := ParseStatement(k.Statement)
	if err != nil {
		detail := err.Error()
		if se := (*StatementError)(nil); errors.As(err, &se) {
			detail = se.detail()
		}
		return c.fail(ReasonConsent, "session %s: statement %s", k.Session, detail)
	}
	switch {
	case s.Opening != o.ID:
		return c.fail(ReasonConsent, "session %s: the statement is for opening %s, not %s", k.Session, s.Opening, o.ID)
	case s.Project != o.ProjectCode:
		return c.fail(ReasonConsent, "session %s: the statement's project is not the opening's project_code", k.Session)
	case s.Serial != k.Serial:
		return c.fail(ReasonConsent, "session %s: the statement's serial %s is not the line's %s", k.Session, s.Serial, k.Serial)
	case s.Session != k.Session:
		return c.fail(ReasonConsent, "session %s: the statement is for session %s", k.Session, s.Session)
	}
	for _, se := range s.Envelopes {
		m := c.manifest[se.ID]
		switch {
		case m == nil:
			return c.fail(ReasonConsent, "session %s: the statement names envelope %s, which is not in the manifest", k.Session, se.ID)
		case m.Serial != k.Serial:
			return c.fail(ReasonConsent, "session %s: envelope %s is registered for serial %s, not %s", k.Session, se.ID, m.Serial, k.Serial)
		case m.CiphertextSHA256 != se.CiphertextSHA256:
			return c.fail(ReasonConsent, "session %s: the statement's ciphertext_sha256 of envelope %s is not the manifest's", k.Session, se.ID)
		}
	}
	end := o.WindowEnd
	if o.ClosedAt.Before(end) {
		end = o.ClosedAt
	}
	switch {
	case outside(s.Time, o.WindowStart, o.WindowEnd):
		return c.fail(ReasonWindow, "session %s: the statement's time %s is outside the window", k.Session, formatTime(s.Time))
	case outside(k.AcceptedAt, o.WindowStart, end):
		return c.fail(ReasonWindow, "session %s: accepted_at %s is outside the window (or after closed_at)", k.Session, acceptedAt)
	}
	for _, se := range s.Envelopes {
		if _, ok := c.covered[se.ID]; !ok { // consents come in accepted_at order: the first is the earliest
			c.covered[se.ID] = k.AcceptedAt
		}
	}
	return nil
}

// outside reports whether t is not in [from, to].
func outside(t, from, to time.Time) bool { return t.Before(from) || t.After(to) }

func (c *checker) release(line []byte) error {
	var l releaseLine
	if err := decodeLine(line, &l); err != nil {
		return c.fail(ReasonMalformed, "release line: %v", err)
	}
	r := Release{Envelope: l.Envelope, Outcome: l.Outcome, Via: l.Via}
	var errTime, errVia error
	r.At, errTime = parseTime(l.At)
	if l.Via != ViaRelease && l.Via != ViaPhone {
		errVia = fmt.Errorf("is not %q or %q", ViaRelease, ViaPhone)
	}
	if err := firstFieldError(
		fieldErr{"envelope", checkID(l.Envelope)}, fieldErr{"at", errTime},
		fieldErr{"outcome", checkToken(l.Outcome)}, fieldErr{"via", errVia},
	); err != nil {
		return c.fail(ReasonMalformed, "%v", err)
	}
	if !canonical(line, r.line()) {
		return c.fail(ReasonMalformed, "the release line is not in canonical form")
	}
	if n := len(c.r.Releases); n > 0 && r.At.Before(c.r.Releases[n-1].At) {
		return c.fail(ReasonMalformed, "release at %s is before the release on the line above: releases are in time order", l.At)
	}
	o := &c.r.Opening
	if c.manifest[r.Envelope] == nil {
		return c.fail(ReasonRelease, "envelope %s is not in the manifest", r.Envelope)
	}
	if outside(r.At, o.WindowStart, o.ClosedAt) {
		return c.fail(ReasonWindow, "release of envelope %s at %s is outside [window_start, closed_at]", r.Envelope, l.At)
	}
	if r.Via == ViaRelease {
		consented, ok := c.covered[r.Envelope]
		if !ok {
			return c.fail(ReasonRelease, "envelope %s was released without a consent", r.Envelope)
		}
		if consented.After(r.At) {
			return c.fail(ReasonRelease, "envelope %s was released at %s, before its first consent was accepted at %s", r.Envelope, l.At, formatTime(consented))
		}
	}
	c.r.Releases = append(c.r.Releases, r)
	return nil
}

func (c *checker) attempt(line []byte) error {
	var l attemptLine
	if err := decodeLine(line, &l); err != nil {
		return c.fail(ReasonMalformed, "attempt line: %v", err)
	}
	a := Attempt{Via: l.Via, Envelope: l.Envelope, Reason: l.Reason}
	var errTime, errVia, errEnvelope error
	a.At, errTime = parseTime(l.At)
	if l.Via != ViaDecrypt && l.Via != ViaRelease && l.Via != ViaConsent {
		errVia = fmt.Errorf("is not %q, %q or %q", ViaDecrypt, ViaRelease, ViaConsent)
	}
	if l.Envelope != "" {
		errEnvelope = checkID(l.Envelope)
	}
	if err := firstFieldError(
		fieldErr{"at", errTime}, fieldErr{"via", errVia},
		fieldErr{"envelope", errEnvelope}, fieldErr{"reason", checkToken(l.Reason)},
	); err != nil {
		return c.fail(ReasonMalformed, "%v", err)
	}
	if !canonical(line, a.line()) {
		return c.fail(ReasonMalformed, "the attempt line is not in canonical form")
	}
	if n := len(c.r.Attempts); n > 0 && a.At.Before(c.r.Attempts[n-1].At) {
		return c.fail(ReasonMalformed, "attempt at %s is before the attempt on the line above: attempts are in time order", l.At)
	}
	if a.At.After(c.r.Opening.ClosedAt) {
		return c.fail(ReasonWindow, "attempt at %s is after closed_at", l.At)
	}
	c.r.Attempts = append(c.r.Attempts, a)
	return nil
}

func (c *checker) audit(line []byte) error {
	var l auditLine
	if err := decodeLine(line, &l); err != nil {
		return c.fail(ReasonMalformed, "audit line: %v", err)
	}
	a := AuditPosition{Seq: l.Seq}
	var err error
	if a.Head, err = parseHash(l.Head); err != nil {
		return c.fail(ReasonMalformed, "head %v", err)
	}
	if a.Seq == 0 {
		return c.fail(ReasonMalformed, "seq is 0; the audit chain starts at record 1")
	}
	if !canonical(line, a.line()) {
		return c.fail(ReasonMalformed, "the audit line is not in canonical form")
	}
	c.r.Audit = a
	return nil
}
