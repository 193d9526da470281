package bidopening

import (
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/hufu-hsm/hufu/cosign"
)

// MaxStatementSize bounds a consent statement in bytes (about 1100 envelope lines).
const MaxStatementSize = 256 << 10

// statementHeader is the first line of every consent statement; the version is part of it.
const statementHeader = "hufu/opening/v1 consent"

// Statement is a bidder's consent to the release of their envelopes at one opening. The
// bidder signs its canonical text (Marshal) with the key of the certificate Serial names.
type Statement struct {
	Opening string    // the opening's id
	Project string    // the project code
	Serial  string    // the serial of the bidder's certificate, in hex, as registered
	Session string    // the id of the scan session the consent was given in
	Time    time.Time // when the bidder consented (the phone's clock)
	// Envelopes lists every envelope the consent releases, in strictly increasing id order.
	Envelopes []StatementEnvelope
}

// StatementEnvelope is one released envelope: its id, the SHA-256 of its ciphertext exactly
// as registered, and T1Hash of the point T1 = d1⁻¹·C1 the phone computed for it.
type StatementEnvelope struct {
	ID               string
	CiphertextSHA256 [32]byte
	T1SHA256         [32]byte
}

// T1Hash is the t1_sha256 of a statement: SHA-256 of the 65-byte uncompressed encoding of
// T1 = d1⁻¹·C1. It takes a cosign.Point so that the hash is always over that one encoding.
func T1Hash(t1 *cosign.Point) [32]byte { return sha256.Sum256(t1[:]) }

// ErrStatement is wrapped by every *StatementError.
var ErrStatement = errors.New("bidopening: invalid consent statement")

// StatementError says what is wrong with a consent statement: the line of its text (1 is the
// header line; for Marshal, the line the field would be written on; 0 for the text as a
// whole) and the field ("" for the line as a whole).
type StatementError struct {
	Line   int
	Field  string
	Reason string
}

func (e *StatementError) Error() string { return "bidopening: consent statement " + e.detail() }

// detail is the error without the package prefix: "line 3 (project): is empty".
func (e *StatementError) detail() string {
	where := ""
	if e.Line > 0 {
		where = fmt.Sprintf("line %d", e.Line)
	}
	if e.Field != "" {
		where = strings.TrimSpace(where + " (" + e.Field + ")")
	}
	if where == "" {
		return e.Reason
	}
	return where + ": " + e.Reason
}

// Unwrap makes errors.Is(err, ErrStatement) true.
func (e *StatementError) Unwrap() error { return ErrStatement }

func statementError(line int, field string, err error) error {
	return &StatementError{Line: line, Field: field, Reason: err.Error()}
}

// statementFields are lines 2 to 6 of a statement, in order. Each check validates the value
// of the line as found in the text (parsing) or as formatted from a Statement (marshalling).
var statementFields = [...]struct {
	key   string
	check func(string) error
}{
	{"opening", checkID},
	{"project", func(v string) error { return checkText(v, maxProjectCodeLen) }},
	{"serial", checkSerial},
	{"session", checkID},
	{"time", func(v string) error { _, err := parseTime(v); return err }},
}

// firstEnvelopeLine is the line number of the first envelope line.
const firstEnvelopeLine = 2 + len(statementFields)

// Marshal checks s against the rules of the package doc and returns its canonical text, the
// bytes the bidder signs. It does not sort: envelopes out of order are an error.
func (s *Statement) Marshal() (string, error) {
	values := [len(statementFields)]string{s.Opening, s.Project, s.Serial, s.Session, formatTime(s.Time)}
	var b strings.Builder
	b.WriteString(statementHeader)
	for i, f := range statementFields {
		if err := f.check(values[i]); err != nil {
			return "", statementError(2+i, f.key, err)
		}
		b.WriteString("\n" + f.key + "=" + values[i])
	}
	if len(s.Envelopes) == 0 {
		return "", statementError(firstEnvelopeLine, "envelope", errors.New("a statement names at least one envelope"))
	}
	for i := range s.Envelopes {
		e := &s.Envelopes[i]
		line := firstEnvelopeLine + i
		if err := checkID(e.ID); err != nil {
			return "", statementError(line, "envelope", err)
		}
		if i > 0 && e.ID <= s.Envelopes[i-1].ID {
			return "", statementError(line, "envelope", errors.New("envelope ids are not in strictly increasing order"))
		}
		b.WriteString("\nenvelope=" + e.ID +
			" ciphertext_sha256=" + hex.EncodeToString(e.CiphertextSHA256[:]) +
			" t1_sha256=" + hex.EncodeToString(e.T1SHA256[:]))
	}
	if b.Len() > MaxStatementSize {
		return "", statementError(0, "", fmt.Errorf("longer than %d bytes", MaxStatementSize))
	}
	return b.String(), nil
}

// ParseStatement parses a consent statement strictly: it accepts only the canonical text, so
// that for every text it accepts, Marshal of the result returns the same text. It never
// panics, and every error is a *StatementError.
func ParseStatement(text string) (*Statement, error) {
	if len(text) > MaxStatementSize {
		return nil, statementError(0, "", fmt.Errorf("longer than %d bytes", MaxStatementSize))
	}
	lines := strings.Split(text, "\n")
	if lines[0] != statementHeader {
		return nil, statementError(1, "", fmt.Errorf("is not %q", statementHeader))
	}
	if len(lines) > 1 && strings.HasSuffix(text, "\n") {
		return nil, statementError(len(lines), "", errors.New("the statement ends with a newline; it must not"))
	}
	var values [len(statementFields)]string
	for i, f := range statementFields {
		n := 2 + i
		if n > len(lines) {
			return nil, statementError(n, f.key, errors.New("line is missing"))
		}
		v, ok := strings.CutPrefix(lines[n-1], f.key+"=")
		if !ok {
			return nil, statementError(n, f.key, fmt.Errorf("line does not start with %q", f.key+"="))
		}
		if err := f.check(v); err != nil {
			return nil, statementError(n, f.key, err)
		}
		values[i] = v
	}
	t, _ := parseTime(values[4]) // checked above
	s := &Statement{Opening: values[0], Project: values[1], Serial: values[2], Session: values[3], Time: t}
	if len(lines) < firstEnvelopeLine {
		return nil, statementError(firstEnvelopeLine, "envelope", errors.New("line is missing: a statement names at least one envelope"))
	}
	s.Envelopes = make([]StatementEnvelope, 0, len(lines)-firstEnvelopeLine+1)
	for n := firstEnvelopeLine; n <= len(lines); n++ {
		e, field, err := parseEnvelopeLine(lines[n-1])
		if err != nil {
			return nil, statementError(n, field, err)
		}
		if k := len(s.Envelopes); k > 0 && e.ID <= s.Envelopes[k-1].ID {
			return nil, statementError(n, "envelope", errors.New("envelope ids are not in strictly increasing order"))
		}
		s.Envelopes = append(s.Envelopes, e)
	}
	return s, nil
}

// parseEnvelopeLine parses "envelope=<id> ciphertext_sha256=<hex> t1_sha256=<hex>". An id
// holds no space, so the three parts are exactly the three space-separated words.
func parseEnvelopeLine(line string) (StatementEnvelope, string, error) {
	var e StatementEnvelope
	words := strings.Split(line, " ")
	keys := [3]string{"envelope", "ciphertext_sha256", "t1_sha256"}
	if len(words) != len(keys) {
		return e, "envelope", fmt.Errorf("line is not \"envelope=<id> ciphertext_sha256=<hex> t1_sha256=<hex>\" (%d words, want 3)", len(words))
	}
	var values [3]string
	for i, k := range keys {
		v, ok := strings.CutPrefix(words[i], k+"=")
		if !ok {
			return e, k, fmt.Errorf("word %d does not start with %q", i+1, k+"=")
		}
		values[i] = v
	}
	if err := checkID(values[0]); err != nil {
		return e, "envelope", err
	}
	e.ID = values[0]
	var err error
	if e.CiphertextSHA256, err = parseHash(values[1]); err != nil {
		return e, "ciphertext_sha256", err
	}
	if e.T1SHA256, err = parseHash(values[2]); err != nil {
		return e, "t1_sha256", err
	}
	return e, "", nil
}
