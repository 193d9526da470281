package admin_test

import (
	"strings"
	"testing"

	"github.com/hufu-hsm/hufu/admin"
)

func TestRequestID(t *testing.T) {
	cases := []struct {
		name, in string
		kept     bool
	}{
		{"letters digits and punctuation", "Abc-123_x.y", true},
		{"64 characters", strings.Repeat("a", 64), true},
		{"one character", "a", true},
		{"empty", "", false},
		{"65 characters", strings.Repeat("a", 65), false},
		{"space", "a b", false},
		{"newline (log injection)", "a\nb", false},
		{"slash", "a/b", false},
		{"non-ASCII", "请求", false},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			got := admin.RequestID(c.in)
			if (got == c.in) != c.kept {
				t.Fatalf("RequestID(%q) = %q, kept %v, want %v", c.in, got, got == c.in, c.kept)
			}
			if !admin.ValidRequestID(got) {
				t.Fatalf("RequestID(%q) = %q, not well-formed", c.in, got)
			}
		})
	}
	if a, b := admin.RequestID(""), admin.RequestID(""); a == b {
		t.Fatalf("two fresh ids are equal: %q", a)
	}
}
