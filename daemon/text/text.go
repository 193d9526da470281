// Package text is the one check of free text that people and systems give hufu to store or
// show: names, titles, reasons, notes, feedback, addresses, labels, file names. Such text
// reaches operators' screens, audit exports, PDFs and other people's phones, so it must not
// carry what would change how the text around it looks: control characters (a newline
// where one line is expected forges another line of a log or a list; an escape sequence
// rewrites a terminal) or Unicode bidirectional overrides and isolates (U+202A–U+202E,
// U+2066–U+2069), which display "gpj.exe" as "exe.jpg" (Trojan Source). Line is for
// one-line fields, Lines for the multi-line ones (feedback bodies, reasons, notes), which
// may also hold line breaks and tabs. Both trim surrounding space and bound the length in
// characters (runes). Refusals are InvalidArgument naming the field.
package text

import (
	"strings"
	"unicode"
	"unicode/utf8"

	"github.com/hufu-hsm/hufu/daemon/apierr"
)

// Line checks a one-line field: at most max characters after trimming, none of them a
// control character or a bidirectional control; required refuses an empty one. It returns
// the trimmed text.
func Line(field, s string, max int, required bool) (string, error) {
	return check(field, s, max, required, false)
}

// Lines checks a multi-line field as Line does, except that line breaks (\n, \r) and tabs
// are allowed.
func Lines(field, s string, max int, required bool) (string, error) {
	return check(field, s, max, required, true)
}

func check(field, s string, max int, required, multiline bool) (string, error) {
	s = strings.TrimSpace(s)
	if !utf8.ValidString(s) {
		return "", apierr.Invalidf(field, "not valid UTF-8")
	}
	for i, r := range s {
		if problem := refused(r, multiline); problem != "" {
			return "", apierr.Invalidf(field, "%s (U+%04X) at byte %d", problem, r, i)
		}
	}
	switch n := utf8.RuneCountInString(s); {
	case n == 0 && required:
		return "", apierr.Invalidf(field, "required (1 to %d characters)", max)
	case n > max:
		return "", apierr.Invalidf(field, "%d characters: at most %d", n, max)
	}
	return s, nil
}

// refused says why r may not appear, or "".
func refused(r rune, multiline bool) string {
	switch {
	case multiline && (r == '\n' || r == '\r' || r == '\t'):
		return ""
	case r == '\n' || r == '\r':
		return "a line break in a one-line field"
	case unicode.IsControl(r):
		return "a control character"
	case Bidi(r):
		return "a bidirectional override"
	}
	return ""
}

// Bidi reports whether r is a bidirectional embedding, override or isolate control
// (U+202A–U+202E, U+2066–U+2069).
func Bidi(r rune) bool {
	return r >= 0x202A && r <= 0x202E || r >= 0x2066 && r <= 0x2069
}
