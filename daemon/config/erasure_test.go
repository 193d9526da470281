package config

import (
	"strings"
	"testing"
	"time"
)

// TestErasureInterval: production erases weekly by default, development only when told,
// and keys.erasure.interval is 0s or 1h..90 days.
func TestErasureInterval(t *testing.T) {
	if got := Default().Keys.Erasure.Interval.Std(); got != 7*24*time.Hour {
		t.Errorf("production default %s, want 168h", got)
	}
	if got := Development().Keys.Erasure.Interval.Std(); got != 0 {
		t.Errorf("development default %s, want 0s (no schedule)", got)
	}
	for _, tc := range []struct {
		interval time.Duration
		ok       bool
	}{
		{0, true}, {time.Hour, true}, {90 * 24 * time.Hour, true},
		{time.Minute, false}, {-time.Hour, false}, {91 * 24 * time.Hour, false},
	} {
		c := Development()
		c.DataDir = t.TempDir()
		c.Keys.Erasure.Interval = Duration(tc.interval)
		err := c.Validate()
		if tc.ok && err != nil {
			t.Errorf("%s: %v", tc.interval, err)
		}
		if !tc.ok && (err == nil || !strings.Contains(err.Error(), "keys.erasure.interval: ")) {
			t.Errorf("%s: want a problem at keys.erasure.interval, got %v", tc.interval, err)
		}
	}
}
