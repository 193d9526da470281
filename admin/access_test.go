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
			id, caller := admin.RequestIDs(c.in)
			if c.kept && caller != c.in || !c.kept && caller != "" {
				t.Fatalf("RequestIDs(%q): caller %q, kept %v, want %v", c.in, caller, caller == c.in, c.kept)
			}
			if id == c.in || !admin.ValidRequestID(id) {
				t.Fatalf("RequestIDs(%q) = %q: want a fresh well-formed id", c.in, id)
			}
		})
	}
	if a, _ := admin.RequestIDs(""); a == mustID(t) {
		t.Fatalf("two fresh ids are equal: %q", a)
	}
}

func mustID(t *testing.T) string {
	t.Helper()
	id, _ := admin.RequestIDs("")
	return id
}
