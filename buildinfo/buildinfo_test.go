package buildinfo

import (
	"runtime"
	"runtime/debug"
	"testing"
)

func TestFrom(t *testing.T) {
	const rev = "ebd12fe0c0ffee0123456789abcdef0123456789"
	tests := []struct {
		name   string
		bi     *debug.BuildInfo
		ok     bool
		want   Info
		prints string
	}{
		{
			name: "checkout with changes",
			bi: &debug.BuildInfo{GoVersion: "go1.26.0", Main: debug.Module{Version: "(devel)"}, Settings: []debug.BuildSetting{
				{Key: "vcs", Value: "git"}, {Key: "vcs.revision", Value: rev}, {Key: "vcs.modified", Value: "true"},
			}},
			ok:     true,
			want:   Info{Version: "(devel)", Revision: rev, Modified: true, GoVersion: "go1.26.0"},
			prints: "version (devel), revision " + rev + " (modified), go1.26.0",
		},
		{
			name: "clean checkout",
			bi: &debug.BuildInfo{GoVersion: "go1.26.0", Main: debug.Module{Version: "(devel)"}, Settings: []debug.BuildSetting{
				{Key: "vcs.revision", Value: rev}, {Key: "vcs.modified", Value: "false"},
			}},
			ok:     true,
			want:   Info{Version: "(devel)", Revision: rev, GoVersion: "go1.26.0"},
			prints: "version (devel), revision " + rev + ", go1.26.0",
		},
		{
			name:   "module version, no VCS stamp",
			bi:     &debug.BuildInfo{GoVersion: "go1.26.0", Main: debug.Module{Version: "v1.2.3"}},
			ok:     true,
			want:   Info{Version: "v1.2.3", Revision: Unknown, GoVersion: "go1.26.0"},
			prints: "version v1.2.3, revision unknown, go1.26.0",
		},
		{
			name: "no build information",
			want: Info{Version: "(devel)", Revision: Unknown, GoVersion: runtime.Version()},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got := From(tt.bi, tt.ok)
			if got != tt.want {
				t.Fatalf("From = %+v, want %+v", got, tt.want)
			}
			if tt.prints != "" && got.String() != tt.prints {
				t.Errorf("String = %q, want %q", got.String(), tt.prints)
			}
		})
	}
}

// TestReadThisBinary: a test binary has build information but neither a VCS stamp nor a
// linker stamp, so Read is what From makes of the toolchain's record.
func TestReadThisBinary(t *testing.T) {
	got := Read()
	if version != "" || revision != "" {
		t.Fatalf("test binary stamped: version %q, revision %q", version, revision)
	}
	if got != From(debug.ReadBuildInfo()) || got.GoVersion != runtime.Version() || got.Version == "" || got.Revision == "" {
		t.Fatalf("Read = %+v", got)
	}
}

func TestStamp(t *testing.T) {
	const rev = "ebd12fe0c0ffee0123456789abcdef0123456789"
	devel := Info{Version: "(devel)", Revision: Unknown, GoVersion: "go1.26.0"}
	tests := []struct {
		name              string
		from              Info
		version, revision string
		prints            string
	}{
		{
			name: "make bins with -buildvcs=false, clean checkout", from: devel,
			version: "v1.2.0-3-gebd12fe", revision: rev,
			prints: "version v1.2.0-3-gebd12fe, revision " + rev + ", go1.26.0",
		},
		{
			name: "make bins, uncommitted changes", from: devel,
			version: "ebd12fe-dirty", revision: rev,
			prints: "version ebd12fe-dirty, revision " + rev + " (modified), go1.26.0",
		},
		{
			name: "stamp and VCS information", from: Info{Version: "v0.0.0-20261202001159-ebd12feba162", Revision: rev, GoVersion: "go1.26.0"},
			version: "v1.2.0", revision: rev,
			prints: "version v1.2.0, revision " + rev + ", go1.26.0",
		},
		{
			name: "outside a checkout: nothing stamped", from: devel,
			prints: "version (devel), revision unknown, go1.26.0",
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := tt.from.Stamp(tt.version, tt.revision).String(); got != tt.prints {
				t.Fatalf("String = %q, want %q", got, tt.prints)
			}
		})
	}
}
