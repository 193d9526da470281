package text

import (
	"strings"
	"testing"

	"github.com/hufu-hsm/hufu/daemon/apierr"
)

func TestLineAndLines(t *testing.T) {
	cases := []struct {
		name      string
		in        string
		multiline bool
		required  bool
		want      string // the trimmed text, or "" when refused
		problem   string // part of the refusal's message
	}{
		{"plain", "  杭州某某建设有限公司 ", false, true, "杭州某某建设有限公司", ""},
		{"empty optional", "  ", false, false, "", ""},
		{"empty required", " ", false, true, "", "required"},
		{"exactly max", strings.Repeat("名", 10), false, true, strings.Repeat("名", 10), ""},
		{"over max", strings.Repeat("名", 11), false, true, "", "11 characters: at most 10"},
		{"not UTF-8", "a\xffb", false, false, "", "not valid UTF-8"},
		{"newline in a line", "first\nsecond", false, false, "", "a line break in a one-line field (U+000A)"},
		{"carriage return in a line", "a\rb", false, false, "", "line break"},
		{"tab in a line", "a\tb", false, false, "", "a control character (U+0009)"},
		{"newline in lines", "a\r\nb\tc", true, false, "a\r\nb\tc", ""},
		{"escape", "a\x1b[31mred", true, false, "", "a control character (U+001B)"},
		{"NUL", "a\x00", true, false, "", "control character"},
		{"DEL", "a\x7f", true, false, "", "control character"},
		{"C1", "a\u0085b", true, false, "", "control character"},
		{"RLO", "x\u202Egpj.exe", true, false, "", "a bidirectional override (U+202E)"},
		{"LRE", "a\u202Ab", false, false, "", "U+202A"},
		{"FSI", "a\u2068b", false, false, "", "U+2068"},
		{"PDI", "a\u2069b", false, false, "", "U+2069"},
		{"LRI", "a\u2066b", false, false, "", "U+2066"},
		{"next to the ranges is fine", "a\u2029\u2065\u202Fb", false, false, "a\u2029\u2065\u202Fb", ""},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			check := Line
			if c.multiline {
				check = Lines
			}
			got, err := check("title", c.in, 10, c.required)
			if c.problem == "" {
				if err != nil || got != c.want {
					t.Fatalf("got %q, %v; want %q", got, err, c.want)
				}
				return
			}
			st, _ := apierr.Status(err)
			if err == nil || st.Code().String() != "InvalidArgument" || !strings.HasPrefix(st.Message(), "title: ") || !strings.Contains(st.Message(), c.problem) {
				t.Fatalf("got %q, %v; want InvalidArgument naming title with %q", got, err, c.problem)
			}
		})
	}
}
