package bidopening

import (
	"encoding/hex"
	"errors"
	"fmt"
	"time"
	"unicode"
	"unicode/utf8"
)

// Field rules shared by the statement and the report (see the package doc). Each check
// returns an error that says what is wrong without echoing the value, which comes from
// outside and may be long or unprintable; callers add the field's name.

const (
	maxIDLen          = 64  // bytes (ASCII)
	maxSerialLen      = 64  // hex digits
	maxProjectCodeLen = 64  // characters
	maxTextLen        = 256 // characters
	maxTokenLen       = 64  // bytes (ASCII)
)

// checkID: 1 to 64 of A-Z a-z 0-9 . _ -
func checkID(s string) error {
	if s == "" {
		return errors.New("is empty")
	}
	if len(s) > maxIDLen {
		return fmt.Errorf("is longer than %d characters", maxIDLen)
	}
	for i := 0; i < len(s); i++ {
		if c := s[i]; !isAlnum(c) && c != '.' && c != '_' && c != '-' {
			return fmt.Errorf("byte %d is not one of A-Z a-z 0-9 . _ -", i+1)
		}
	}
	return nil
}

// checkSerial: 1 to 64 hexadecimal digits, either case.
func checkSerial(s string) error {
	if s == "" {
		return errors.New("is empty")
	}
	if len(s) > maxSerialLen {
		return fmt.Errorf("is longer than %d hex digits", maxSerialLen)
	}
	for i := 0; i < len(s); i++ {
		if !isHexDigit(s[i]) {
			return fmt.Errorf("byte %d is not a hex digit", i+1)
		}
	}
	return nil
}

// checkToken: 1 to 64 of a-z 0-9 _ . - (outcomes and reasons).
func checkToken(s string) error {
	if s == "" {
		return errors.New("is empty")
	}
	if len(s) > maxTokenLen {
		return fmt.Errorf("is longer than %d characters", maxTokenLen)
	}
	for i := 0; i < len(s); i++ {
		if c := s[i]; !('a' <= c && c <= 'z') && !('0' <= c && c <= '9') && c != '_' && c != '.' && c != '-' {
			return fmt.Errorf("byte %d is not one of a-z 0-9 _ . -", i+1)
		}
	}
	return nil
}

// checkText: valid UTF-8, 1 to max characters, no character of forbiddenInText, and neither
// the first nor the last character is Unicode White_Space.
func checkText(s string, max int) error {
	if s == "" {
		return errors.New("is empty")
	}
	if !utf8.ValidString(s) {
		return errors.New("is not valid UTF-8")
	}
	n := 0
	for i, r := range s {
		n++
		if n > max {
			return fmt.Errorf("is longer than %d characters", max)
		}
		if forbiddenInText(r) {
			return fmt.Errorf("character %d (U+%04X) is a control, line-separator or bidirectional-formatting character", n, r)
		}
		if (i == 0 || i+utf8.RuneLen(r) == len(s)) && unicode.IsSpace(r) {
			return errors.New("starts or ends with white space")
		}
	}
	return nil
}

// forbiddenInText is a fixed list, independent of the Unicode version: the C0 and C1
// controls and DEL (which include "\n" and "\r"), the line and paragraph separators, and the
// bidirectional formatting characters, which make a displayed text read differently from its
// bytes.
func forbiddenInText(r rune) bool {
	switch {
	case r < 0x20, 0x7f <= r && r <= 0x9f:
		return true
	case r == 0x061c, r == 0x200e, r == 0x200f, 0x202a <= r && r <= 0x202e, 0x2066 <= r && r <= 0x2069:
		return true
	case r == 0x2028, r == 0x2029:
		return true
	}
	return false
}

// parseHash decodes exactly 64 lower-case hex digits.
func parseHash(s string) ([32]byte, error) {
	var h [32]byte
	if len(s) != 2*len(h) {
		return h, fmt.Errorf("has %d characters, want %d lower-case hex digits", len(s), 2*len(h))
	}
	for i := 0; i < len(s); i++ {
		if c := s[i]; !('0' <= c && c <= '9') && !('a' <= c && c <= 'f') {
			return h, fmt.Errorf("byte %d is not a lower-case hex digit", i+1)
		}
	}
	_, err := hex.Decode(h[:], []byte(s))
	return h, err
}

// formatTime is the one time format of this package: RFC 3339 in UTC with the fraction of a
// second as time.RFC3339Nano writes it (no trailing zeros, no fraction for whole seconds).
func formatTime(t time.Time) string { return t.UTC().Format(time.RFC3339Nano) }

// parseTime accepts exactly what formatTime writes, for a year from 1 to 9999 and not the
// zero time (which stands for "never set").
func parseTime(s string) (time.Time, error) {
	t, err := time.Parse(time.RFC3339Nano, s)
	if err != nil {
		return time.Time{}, errors.New("is not an RFC 3339 time")
	}
	if t.IsZero() || t.Year() < 1 || t.Year() > 9999 {
		return time.Time{}, errors.New("is the zero time or outside the years 0001-9999")
	}
	if formatTime(t) != s {
		return time.Time{}, errors.New("is not in canonical form (UTC with \"Z\", no trailing zeros in the fraction)")
	}
	return t.UTC(), nil
}

func isAlnum(c byte) bool {
	return '0' <= c && c <= '9' || 'a' <= c && c <= 'z' || 'A' <= c && c <= 'Z'
}

func isHexDigit(c byte) bool {
	return '0' <= c && c <= '9' || 'a' <= c && c <= 'f' || 'A' <= c && c <= 'F'
}

// CheckProjectCode tells whether s can be an opening's project code: the text rule of the
// formats (no control, line-separator or bidirectional-formatting character, no surrounding
// white space), 1 to 64 characters. The appliance applies it when an opening is created, so
// that every consent statement and report of the opening can be written.
func CheckProjectCode(s string) error { return checkText(s, maxProjectCodeLen) }

// CheckText tells whether s can be a text field of a report (the project name, the system,
// the platform): the same rule, 1 to 256 characters.
func CheckText(s string) error { return checkText(s, maxTextLen) }
