// Package buildinfo says which build of hufu is running: the module version, the VCS
// revision and whether the working tree had uncommitted changes, and the Go version, as the
// Go toolchain stamped them into the binary. `hufud version`, `hufu version` and the
// daemon's hufu_build_info metric all read them here, so that they agree.
//
// Go stamps vcs.revision and vcs.modified when it builds a main package inside a git
// checkout (unless -buildvcs=false, which GOFLAGS may set); since Go 1.24 the module version
// is then a pseudo-version ("v0.0.0-20261202001159-ebd12feba162+dirty"), and without the
// stamp it is "(devel)", printed as such. Test binaries carry no VCS stamp.
package buildinfo

import (
	"fmt"
	"runtime"
	"runtime/debug"
)

// Unknown is the revision of a binary built without VCS information (-buildvcs=false, a
// test binary, a build outside a checkout).
const Unknown = "unknown"

// Info is a binary's build.
type Info struct {
	Version   string // module version; "(devel)" for a build from a checkout
	Revision  string // VCS revision, or Unknown
	Modified  bool   // the checkout had uncommitted changes
	GoVersion string // Go toolchain, "go1.26.0"
}

// Read returns the running binary's build.
func Read() Info { return From(debug.ReadBuildInfo()) }

// From extracts an Info from what debug.ReadBuildInfo returned.
func From(bi *debug.BuildInfo, ok bool) Info {
	info := Info{Version: "(devel)", Revision: Unknown, GoVersion: runtime.Version()}
	if !ok || bi == nil {
		return info
	}
	if bi.Main.Version != "" {
		info.Version = bi.Main.Version
	}
	if bi.GoVersion != "" {
		info.GoVersion = bi.GoVersion
	}
	for _, s := range bi.Settings {
		switch s.Key {
		case "vcs.revision":
			if s.Value != "" {
				info.Revision = s.Value
			}
		case "vcs.modified":
			info.Modified = s.Value == "true"
		}
	}
	return info
}

// String is the one line the version commands print:
// "version (devel), revision 0123abc… (modified), go1.26.0".
func (i Info) String() string {
	rev := i.Revision
	if i.Modified {
		rev += " (modified)"
	}
	return fmt.Sprintf("version %s, revision %s, %s", i.Version, rev, i.GoVersion)
}
