package enterprises

import (
	"bytes"
	"crypto/sha256"
	"encoding/csv"
	"encoding/hex"
	"errors"
	"fmt"
	"github.com/hufu-hsm/hufu/daemon/text"
	"io"
	"regexp"
	"strconv"
	"strings"
	"time"
	"unicode"
	"unicode/utf8"

	"github.com/hufu-hsm/hufu/daemon/apierr"
)

// A bank statement, as the reconciliation desk imports it (ReconciliationService.
// ImportStatement), is CSV in UTF-8 (an optional byte-order mark; an optional header line
// "date,amount,payer_account,payer_name,remark") with exactly five fields per line:
//
//	date           YYYY-MM-DD, the day the transfer was credited
//	amount         yuan with at most two decimals: "0.37", "12", "1.5"; positive; no sign,
//	               no thousands separators, no currency symbol
//	payer_account  the paying account's number: 6 to 32 digits
//	payer_name     the paying account's holder (付款人户名) as the bank prints it: an
//	               automatic match needs it to be the enterprise's registered name, since
//	               the account's last six digits are the applicant's own word
//	remark         the transfer's remark (附言), at most 140 characters, no control characters
//
// Money is integer fen from here on: "0.37" is 37 exactly; "0.375" is refused.
const (
	// MaxStatementBytes bounds one imported statement.
	MaxStatementBytes = 1 << 20
	// MaxStatementLines bounds its lines.
	MaxStatementLines = 10000
	// maxRemarkRunes bounds a remark.
	maxRemarkRunes = 140
	// maxLineErrors is how many bad lines one refusal lists.
	maxLineErrors = 20
)

var statementColumns = []string{"date", "amount", "payer_account", "payer_name", "remark"}

// StatementLine is one parsed bank-statement line.
type StatementLine struct {
	Line      int // 1-based line number in the file
	Date      time.Time
	AmountFen int64
	Payer     string // the payer's account number, digits only
	PayerName string
	Remark    string
}

// Canonical is the line's canonical form, "date|amount_fen|payer_account|payer_name|remark":
// two lines with the same canonical form are the same credit.
func (l StatementLine) Canonical() string {
	return fmt.Sprintf("%s|%d|%s|%s|%s", l.Date.Format(time.DateOnly), l.AmountFen, l.Payer, l.PayerName, l.Remark)
}

// ID is the hex SHA-256 of the canonical form: the line's content address.
func (l StatementLine) ID() string {
	h := sha256.Sum256([]byte(l.Canonical()))
	return hex.EncodeToString(h[:])
}

// Tail is the last six digits of the payer's account.
func (l StatementLine) Tail() string { return l.Payer[len(l.Payer)-6:] }

// LineError is what is wrong with one line of a statement.
type LineError struct {
	Line, Column int    // 1-based; Column is the field's position (0: the whole line)
	Field        string // the column's name
	Msg          string
}

func (e LineError) Error() string {
	if e.Column == 0 {
		return fmt.Sprintf("line %d: %s", e.Line, e.Msg)
	}
	return fmt.Sprintf("line %d, column %d (%s): %s", e.Line, e.Column, e.Field, e.Msg)
}

// StatementError lists the bad lines of a statement (at most maxLineErrors).
type StatementError []LineError

func (e StatementError) Error() string {
	parts := make([]string, len(e))
	for i, l := range e {
		parts[i] = l.Error()
	}
	return strings.Join(parts, "; ")
}

var (
	amountRE = regexp.MustCompile(`^(0|[1-9][0-9]{0,8})(\.[0-9]+)?$`)
	payerRE  = regexp.MustCompile(`^[0-9]{6,32}$`)
	dateRE   = regexp.MustCompile(`^[0-9]{4}-[0-9]{2}-[0-9]{2}$`)
)

// ParseFen parses an amount in yuan with at most two decimals into fen, exactly.
func ParseFen(s string) (int64, error) {
	m := amountRE.FindStringSubmatch(s)
	if m == nil {
		return 0, fmt.Errorf("%q is not an amount in yuan like 0.37", s)
	}
	frac := strings.TrimPrefix(m[2], ".")
	if len(frac) > 2 {
		return 0, fmt.Errorf("%q has more than 2 decimals", s)
	}
	yuan, err := strconv.ParseInt(m[1], 10, 64)
	if err != nil {
		return 0, fmt.Errorf("%q is not an amount in yuan like 0.37", s)
	}
	fen := yuan * 100
	if frac != "" {
		f, _ := strconv.ParseInt((frac + "0")[:2], 10, 64)
		fen += f
	}
	if fen <= 0 {
		return 0, fmt.Errorf("%q: the amount must be positive", s)
	}
	return fen, nil
}

// ParseStatement parses a whole statement strictly. A statement with any bad line is
// refused whole: the error is a StatementError naming each bad line and column.
func ParseStatement(data []byte) ([]StatementLine, error) {
	if len(data) > MaxStatementBytes {
		return nil, fmt.Errorf("the statement is larger than %d bytes; split it", MaxStatementBytes)
	}
	data = bytes.TrimPrefix(data, []byte("\ufeff"))
	r := csv.NewReader(bytes.NewReader(data))
	r.FieldsPerRecord = len(statementColumns)
	r.ReuseRecord = true
	var (
		out  []StatementLine
		bad  StatementError
		seen int
	)
	fail := func(e LineError) bool {
		bad = append(bad, e)
		return len(bad) >= maxLineErrors
	}
	for {
		rec, err := r.Read()
		if errors.Is(err, io.EOF) {
			break
		}
		var pe *csv.ParseError
		if errors.As(err, &pe) {
			line := pe.StartLine
			if line == 0 {
				line = pe.Line
			}
			if errors.Is(pe.Err, csv.ErrFieldCount) {
				if fail(LineError{Line: line, Msg: fmt.Sprintf("%d fields, want 5: date,amount,payer_account,payer_name,remark", len(rec))}) {
					break
				}
				continue
			}
			// A quoting error: the reader cannot find the next line reliably.
			fail(LineError{Line: pe.Line, Column: 0, Msg: fmt.Sprintf("column %d: %v", pe.Column, pe.Err)})
			break
		}
		if err != nil {
			return nil, err
		}
		line, _ := r.FieldPos(0)
		seen++
		if seen == 1 && isHeader(rec) {
			continue
		}
		if len(out)+len(bad) >= MaxStatementLines {
			fail(LineError{Line: line, Msg: fmt.Sprintf("more than %d lines; split the statement", MaxStatementLines)})
			break
		}
		l, errs := parseLine(line, rec)
		if len(errs) > 0 {
			stop := false
			for _, e := range errs {
				stop = stop || fail(e)
			}
			if stop {
				break
			}
			continue
		}
		out = append(out, l)
	}
	if len(bad) > 0 {
		return nil, bad
	}
	if len(out) == 0 {
		return nil, errors.New("the statement has no lines")
	}
	return out, nil
}

func isHeader(rec []string) bool {
	for i, c := range statementColumns {
		if strings.ToLower(strings.TrimSpace(rec[i])) != c {
			return false
		}
	}
	return true
}

// parseLine checks the five fields of one line.
func parseLine(line int, rec []string) (StatementLine, []LineError) {
	var errs []LineError
	bad := func(col int, format string, args ...any) {
		errs = append(errs, LineError{Line: line, Column: col + 1, Field: statementColumns[col], Msg: fmt.Sprintf(format, args...)})
	}
	l := StatementLine{Line: line}
	f := make([]string, len(rec))
	for i, v := range rec {
		f[i] = strings.TrimSpace(v)
		if !utf8.ValidString(f[i]) {
			bad(i, "not UTF-8")
			f[i] = ""
		}
	}
	if !dateRE.MatchString(f[0]) {
		bad(0, "%q: want YYYY-MM-DD", f[0])
	} else if d, err := time.Parse(time.DateOnly, f[0]); err != nil || d.Year() < 2000 {
		bad(0, "%q is not a date", f[0])
	} else {
		l.Date = d
	}
	if fen, err := ParseFen(f[1]); err != nil {
		bad(1, "%v", err)
	} else {
		l.AmountFen = fen
	}
	if !payerRE.MatchString(f[2]) {
		bad(2, "want the payer's account number: 6 to 32 digits")
	} else {
		l.Payer = f[2]
	}
	switch n := utf8.RuneCountInString(f[3]); {
	case n == 0 || n > 100:
		bad(3, "want the payer's account name: 1 to 100 characters")
	case strings.ContainsFunc(f[3], unicode.IsControl):
		bad(3, "contains control characters")
	case strings.ContainsFunc(f[3], text.Bidi):
		bad(3, "contains bidirectional-override characters")
	default:
		l.PayerName = f[3]
	}
	switch {
	case utf8.RuneCountInString(f[4]) > maxRemarkRunes:
		bad(4, "longer than %d characters", maxRemarkRunes)
	case strings.ContainsFunc(f[4], unicode.IsControl):
		bad(4, "contains control characters")
	case strings.ContainsFunc(f[4], text.Bidi):
		bad(4, "contains bidirectional-override characters")
	default:
		l.Remark = f[4]
	}
	return l, errs
}

// statementError turns a parse failure into the API's error, naming the request field.
func statementError(err error) error {
	return apierr.Invalidf("csv", "%v", err)
}

// referenceAlphabet has no 0/O, 1/I/L: references are read off phones and typed into
// banking apps.
const referenceAlphabet = "23456789ABCDEFGHJKMNPQRSTUVWXYZ"

const (
	referencePrefix = "HF"
	referenceLen    = len(referencePrefix) + 6
)

// References returns every reference ("HF" and six characters of the alphabet) found in a
// remark, case-insensitively, overlapping occurrences included.
func References(remark string) []string {
	up := strings.ToUpper(remark)
	var out []string
	for i := 0; i+referenceLen <= len(up); i++ {
		if up[i:i+len(referencePrefix)] != referencePrefix {
			continue
		}
		cand := up[i : i+referenceLen]
		if isReference(cand) {
			out = append(out, cand)
		}
	}
	return out
}

func isReference(s string) bool {
	if len(s) != referenceLen || !strings.HasPrefix(s, referencePrefix) {
		return false
	}
	for _, c := range s[len(referencePrefix):] {
		if !strings.ContainsRune(referenceAlphabet, c) {
			return false
		}
	}
	return true
}
