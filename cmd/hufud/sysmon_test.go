package main

import (
	"slices"
	"testing"
)

func TestSysmonEnv(t *testing.T) {
	for _, c := range []struct {
		name     string
		environ  []string
		want     []string
		wantExec bool
	}{
		{"no GODEBUG", []string{"PATH=/bin", "HUFU_DATA_DIR=/d"}, []string{"PATH=/bin", "HUFU_DATA_DIR=/d", "GODEBUG=" + sysmonGODEBUG}, true},
		{"other settings are kept", []string{"GODEBUG=madvdontneed=1", "PATH=/bin"}, []string{"PATH=/bin", "GODEBUG=madvdontneed=1," + sysmonGODEBUG}, true},
		{"an empty GODEBUG", []string{"GODEBUG=", "PATH=/bin"}, []string{"PATH=/bin", "GODEBUG=" + sysmonGODEBUG}, true},
		{"only the first GODEBUG counts, as for the runtime", []string{"GODEBUG=a=1", "GODEBUG=schedtrace=0"}, []string{"GODEBUG=a=1," + sysmonGODEBUG}, true},
		{"the restarted process", []string{"PATH=/bin", "GODEBUG=" + sysmonGODEBUG}, []string{"PATH=/bin", "GODEBUG=" + sysmonGODEBUG}, false},
		{"the operator turned it off", []string{"GODEBUG=schedtrace=0"}, []string{"GODEBUG=schedtrace=0"}, false},
		{"the operator's own schedtrace", []string{"GODEBUG=gctrace=1,schedtrace=1000"}, []string{"GODEBUG=gctrace=1,schedtrace=1000"}, false},
		// The runtime ignores these settings, so ours is added after them and applies.
		{"a schedtrace after a space", []string{"GODEBUG=gctrace=1, schedtrace=1000"}, []string{"GODEBUG=gctrace=1, schedtrace=1000," + sysmonGODEBUG}, true},
		{"a schedtrace that is not a number", []string{"GODEBUG=schedtrace=x"}, []string{"GODEBUG=schedtrace=x," + sysmonGODEBUG}, true},
		{"the first GODEBUG is empty", []string{"GODEBUG=", "GODEBUG=schedtrace=0"}, []string{"GODEBUG=" + sysmonGODEBUG}, true},
	} {
		got, exec := sysmonEnv(c.environ)
		if exec != c.wantExec || !slices.Equal(got, c.want) {
			t.Errorf("%s: sysmonEnv(%q) = %q, %v; want %q, %v", c.name, c.environ, got, exec, c.want, c.wantExec)
		}
	}
}
