package bidopening

import (
	"crypto/sha256"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/hufu-hsm/hufu/cosign"
)

func fill(b byte) (h [32]byte) {
	for i := range h {
		h[i] = b
	}
	return h
}

// katStatement and katText are the known answer that pins the statement format.
var (
	katStatement = Statement{
		Opening: "opn-2026-0042", Project: "ZB-2026-0815", Serial: "4A3F0c", Session: "scan-7f3a",
		Time: time.Date(2026, 12, 1, 10, 0, 0, 123456789, time.UTC),
		Envelopes: []StatementEnvelope{
			{ID: "env-a1", CiphertextSHA256: fill(0x11), T1SHA256: fill(0xab)},
			{ID: "env-a2", CiphertextSHA256: fill(0x22), T1SHA256: fill(0xcd)},
		},
	}
	katText = "hufu/opening/v1 consent\n" +
		"opening=opn-2026-0042\n" +
		"project=ZB-2026-0815\n" +
		"serial=4A3F0c\n" +
		"session=scan-7f3a\n" +
		"time=2026-12-01T10:00:00.123456789Z\n" +
		"envelope=env-a1 ciphertext_sha256=" + strings.Repeat("11", 32) + " t1_sha256=" + strings.Repeat("ab", 32) + "\n" +
		"envelope=env-a2 ciphertext_sha256=" + strings.Repeat("22", 32) + " t1_sha256=" + strings.Repeat("cd", 32)
)

func equalStatements(a, b *Statement) bool {
	if a.Opening != b.Opening || a.Project != b.Project || a.Serial != b.Serial || a.Session != b.Session ||
		!a.Time.Equal(b.Time) || len(a.Envelopes) != len(b.Envelopes) {
		return false
	}
	for i := range a.Envelopes {
		if a.Envelopes[i] != b.Envelopes[i] {
			return false
		}
	}
	return true
}

func TestStatementKnownAnswer(t *testing.T) {
	got, err := katStatement.Marshal()
	if err != nil {
		t.Fatal(err)
	}
	if got != katText {
		t.Fatalf("Marshal:\n%s\nwant\n%s", got, katText)
	}
	s, err := ParseStatement(katText)
	if err != nil {
		t.Fatal(err)
	}
	if !equalStatements(s, &katStatement) {
		t.Fatalf("ParseStatement = %+v, want %+v", s, katStatement)
	}
}

func TestStatementRoundTrip(t *testing.T) {
	shanghai := time.FixedZone("CST", 8*3600)
	one := []StatementEnvelope{{ID: "e", CiphertextSHA256: fill(0), T1SHA256: fill(0xff)}}
	var many []StatementEnvelope
	for _, id := range []string{"-", ".", "0", "9", "A", "Z", "_", "a", "z", strings.Repeat("z", 64)} { // bytewise order
		many = append(many, StatementEnvelope{ID: id, CiphertextSHA256: fill(id[0]), T1SHA256: fill(^id[0])})
	}
	tests := []struct {
		name string
		s    Statement
		time string // the time line's value
	}{
		{"known answer", katStatement, "2026-12-01T10:00:00.123456789Z"},
		{"whole second", Statement{"o", "P", "0", "s", time.Date(2026, 12, 1, 10, 0, 0, 0, time.UTC), one}, "2026-12-01T10:00:00Z"},
		{"trailing zeros of the fraction dropped", Statement{"o", "P", "f", "s", time.Date(2026, 12, 1, 10, 0, 0, 120000000, time.UTC), one}, "2026-12-01T10:00:00.12Z"},
		{"local time written in UTC", Statement{"o", "P", "f", "s", time.Date(2026, 12, 1, 18, 0, 0, 1, shanghai), one}, "2026-12-01T10:00:00.000000001Z"},
		{"Chinese project code", Statement{"o", "招标 2026（一）", "ABCDEF", "s", time.Date(2026, 12, 1, 10, 0, 0, 0, time.UTC), one}, "2026-12-01T10:00:00Z"},
		{"longest fields", Statement{strings.Repeat("o", 64), strings.Repeat("项", 64), strings.Repeat("F", 64), strings.Repeat("s", 64), time.Date(9999, 12, 31, 23, 59, 59, 999999999, time.UTC), one}, "9999-12-31T23:59:59.999999999Z"},
		{"many envelopes", Statement{"o", "P", "1", "s", time.Date(2026, 12, 1, 10, 0, 0, 0, time.UTC), many}, "2026-12-01T10:00:00Z"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			text, err := tt.s.Marshal()
			if err != nil {
				t.Fatal(err)
			}
			if want := "\ntime=" + tt.time + "\n"; !strings.Contains(text, want) {
				t.Errorf("text lacks %q:\n%s", want, text)
			}
			s, err := ParseStatement(text)
			if err != nil {
				t.Fatal(err)
			}
			if !equalStatements(s, &tt.s) {
				t.Fatalf("round trip changed the statement:\n%+v\n%+v", s, tt.s)
			}
			again, err := s.Marshal()
			if err != nil || again != text {
				t.Fatalf("Marshal(ParseStatement(x)) = %q, %v; want x", again, err)
			}
		})
	}
}

func TestParseStatementRejects(t *testing.T) {
	lines := strings.Split(katText, "\n")
	with := func(n int, line string) string { // katText with line n (1-based) replaced
		l := append([]string(nil), lines...)
		l[n-1] = line
		return strings.Join(l, "\n")
	}
	without := func(n int) string {
		l := append(append([]string(nil), lines[:n-1]...), lines[n:]...)
		return strings.Join(l, "\n")
	}
	swapped := func(i, j int) string {
		l := append([]string(nil), lines...)
		l[i-1], l[j-1] = l[j-1], l[i-1]
		return strings.Join(l, "\n")
	}
	env := func(id, ct, t1 string) string {
		return "envelope=" + id + " ciphertext_sha256=" + ct + " t1_sha256=" + t1
	}
	h := strings.Repeat("11", 32)
	tests := []struct {
		name  string
		text  string
		line  int
		field string
	}{
		{"empty", "", 1, ""},
		{"wrong version", with(1, "hufu/opening/v2 consent"), 1, ""},
		{"header with trailing space", with(1, "hufu/opening/v1 consent "), 1, ""},
		{"CRLF line ends", strings.ReplaceAll(katText, "\n", "\r\n"), 1, ""},
		{"header only", "hufu/opening/v1 consent", 2, "opening"},
		{"missing session line", without(5), 5, "session"},
		{"missing envelopes", strings.Join(lines[:6], "\n"), 7, "envelope"},
		{"opening and project swapped", swapped(2, 3), 2, "opening"},
		{"key in upper case", with(2, "Opening=opn-2026-0042"), 2, "opening"},
		{"space around =", with(2, "opening = opn-2026-0042"), 2, "opening"},
		{"trailing newline", katText + "\n", 9, ""},
		{"empty line between", strings.Replace(katText, "\nenvelope=env-a2", "\n\nenvelope=env-a2", 1), 8, "envelope"},
		{"unsorted envelopes", katText + "\n" + env("env-a0", h, h), 9, "envelope"},
		{"duplicate envelope", katText + "\n" + lines[7], 9, "envelope"},
		{"envelope id with a space", with(7, env("env a1", h, h)), 7, "envelope"},
		{"envelope words separated by two spaces", with(7, strings.Replace(lines[6], " ", "  ", 1)), 7, "envelope"},
		{"envelope words reordered", with(7, "envelope=env-a1 t1_sha256="+h+" ciphertext_sha256="+h), 7, "ciphertext_sha256"},
		{"envelope id too long", with(7, env(strings.Repeat("e", 65), h, h)), 7, "envelope"},
		{"envelope id empty", with(7, env("", h, h)), 7, "envelope"},
		{"upper-case hex", with(7, env("env-a1", strings.ToUpper(strings.Repeat("ab", 32)), h)), 7, "ciphertext_sha256"},
		{"short hex", with(7, env("env-a1", h[:62], h)), 7, "ciphertext_sha256"},
		{"non-hex", with(7, env("env-a1", h, "g"+h[1:])), 7, "t1_sha256"},
		{"NUL in opening", with(2, "opening=opn\x00"), 2, "opening"},
		{"tab in project", with(3, "project=ZB\t2026"), 3, "project"},
		{"CR in project", with(3, "project=ZB-2026-0815\r"), 3, "project"},
		{"DEL in project", with(3, "project=ZB\x7f"), 3, "project"},
		{"C1 control in project", with(3, "project=ZB\u0085"), 3, "project"},
		{"right-to-left override in project", with(3, "project=ZB\u202e5180"), 3, "project"},
		{"line separator in project", with(3, "project=ZB\u2028envelope=x"), 3, "project"},
		{"invalid UTF-8 in project", with(3, "project=ZB\xff"), 3, "project"},
		{"leading space in project", with(3, "project= ZB"), 3, "project"},
		{"trailing ideographic space in project", with(3, "project=ZB\u3000"), 3, "project"},
		{"empty project", with(3, "project="), 3, "project"},
		{"project of 65 characters", with(3, "project="+strings.Repeat("项", 65)), 3, "project"},
		{"serial with 0x", with(4, "serial=0x4A3F"), 4, "serial"},
		{"serial with sign", with(4, "serial=+4A3F"), 4, "serial"},
		{"serial of 65 digits", with(4, "serial="+strings.Repeat("f", 65)), 4, "serial"},
		{"empty serial", with(4, "serial="), 4, "serial"},
		{"session with slash", with(5, "session=scan/7f3a"), 5, "session"},
		{"time with offset", with(6, "time=2026-12-01T18:00:00.123456789+08:00"), 6, "time"},
		{"time with +00:00", with(6, "time=2026-12-01T10:00:00.123456789+00:00"), 6, "time"},
		{"time with trailing zero", with(6, "time=2026-12-01T10:00:00.120Z"), 6, "time"},
		{"time with .0", with(6, "time=2026-12-01T10:00:00.0Z"), 6, "time"},
		{"time in lower case", with(6, "time=2026-12-01t10:00:00z"), 6, "time"},
		{"time without seconds", with(6, "time=2026-12-01T10:00Z"), 6, "time"},
		{"zero time", with(6, "time=0001-01-01T00:00:00Z"), 6, "time"},
		{"too long", katText + strings.Repeat("\n"+env("z", h, h), MaxStatementSize/100), 0, ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s, err := ParseStatement(tt.text)
			if err == nil {
				t.Fatalf("accepted: %+v", s)
			}
			t.Log(err)
			var se *StatementError
			if !errors.As(err, &se) || !errors.Is(err, ErrStatement) {
				t.Fatalf("error %v (%T) is not a *StatementError", err, err)
			}
			if se.Line != tt.line || se.Field != tt.field {
				t.Errorf("error at line %d field %q, want line %d field %q: %v", se.Line, se.Field, tt.line, tt.field, err)
			}
		})
	}
}

func TestMarshalStatementRejects(t *testing.T) {
	h := fill(1)
	base := func() Statement {
		s := katStatement
		s.Envelopes = append([]StatementEnvelope(nil), katStatement.Envelopes...)
		return s
	}
	tests := []struct {
		name  string
		edit  func(*Statement)
		line  int
		field string
	}{
		{"bad opening", func(s *Statement) { s.Opening = "opn 1" }, 2, "opening"},
		{"project with a newline (line injection)", func(s *Statement) { s.Project = "ZB\nserial=00" }, 3, "project"},
		{"serial not hex", func(s *Statement) { s.Serial = "4A3G" }, 4, "serial"},
		{"empty session", func(s *Statement) { s.Session = "" }, 5, "session"},
		{"zero time", func(s *Statement) { s.Time = time.Time{} }, 6, "time"},
		{"year 10000", func(s *Statement) { s.Time = time.Date(10000, 1, 1, 0, 0, 0, 0, time.UTC) }, 6, "time"},
		{"no envelopes", func(s *Statement) { s.Envelopes = nil }, 7, "envelope"},
		{"envelope id injecting a line", func(s *Statement) {
			s.Envelopes[0].ID = "env-a0 ciphertext_sha256=" + strings.Repeat("00", 32) + " t1_sha256=" + strings.Repeat("00", 32) + "\nenvelope=env-a1"
		}, 7, "envelope"},
		{"unsorted", func(s *Statement) { s.Envelopes[0], s.Envelopes[1] = s.Envelopes[1], s.Envelopes[0] }, 8, "envelope"},
		{"duplicate", func(s *Statement) { s.Envelopes[1].ID = s.Envelopes[0].ID }, 8, "envelope"},
		{"too long", func(s *Statement) {
			s.Envelopes = nil
			for i := range MaxStatementSize / 200 {
				s.Envelopes = append(s.Envelopes, StatementEnvelope{ID: strings.Repeat("e", 58) + string(rune('a'+i/26/26%26)) + string(rune('a'+i/26%26)) + string(rune('a'+i%26)), CiphertextSHA256: h, T1SHA256: h})
			}
		}, 0, ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s := base()
			tt.edit(&s)
			text, err := s.Marshal()
			if err == nil {
				t.Fatalf("marshalled:\n%s", text)
			}
			t.Log(err)
			var se *StatementError
			if !errors.As(err, &se) {
				t.Fatalf("error %v (%T) is not a *StatementError", err, err)
			}
			if se.Line != tt.line || se.Field != tt.field {
				t.Errorf("error at line %d field %q, want line %d field %q: %v", se.Line, se.Field, tt.line, tt.field, err)
			}
		})
	}
}

func TestT1Hash(t *testing.T) {
	f := getFixture(t)
	h := T1Hash(&f.t1)
	if h != sha256.Sum256(f.t1[:]) || len(f.t1) != cosign.PointSize || f.t1[0] != 0x04 {
		t.Fatalf("T1Hash is not SHA-256 of the 65-byte uncompressed point")
	}
}
