// Package buildinfo says which build of hufu is running: the module version, the VCS
// revision and whether the working tree had uncommitted changes, and the Go version, as the
// Go toolchain stamped them into the binary. `hufud version`, `hufu version` and the
// daemon's hufu_build_info metric all read them here, so that they agree.
//
// Two sources, the first one that says something wins:
//
//   - The build's own stamp: `make bins` (and the Containerfile) set the version to
//     `git describe --always --dirty` and the revision to the commit with
//     -ldflags "-X github.com/hufu-hsm/hufu/buildinfo.version=… -X …buildinfo.revision=…"
//     (see Stamp). It works with -buildvcs=false, which GOFLAGS may set, and in a container
//     build whose context has no .git, where the build arguments carry it in.
//   - What the Go toolchain recorded: vcs.revision and vcs.modified when it builds a main
//     package inside a git checkout without -buildvcs=false; since Go 1.24 the module
//     version is then a pseudo-version ("v0.0.0-20261202001159-ebd12feba162+dirty"), and
//     without the VCS stamp it is "(devel)", printed as such.
//
// A plain `go build` with -buildvcs=false and test binaries carry neither.
package buildinfo

import (
	"fmt"
	"runtime"
	"runtime/debug"
	"strings"
)

// Unknown is the revision of a binary built without VCS information (-buildvcs=false, a
// test binary, a build outside a checkout).
const Unknown = "unknown"

// Info is a binary's build.
type Info struct {
	Version   string // the stamped git describe, else the module version ("(devel)" from a checkout)
	Revision  string // VCS revision, or Unknown
	Modified  bool   // the checkout had uncommitted changes
	GoVersion string // Go toolchain, "go1.26.0"
}

// Set by the linker (-X); empty when the build did not stamp them. Unexported, so that
// only the build sets them.
var (
	version  string // `git describe --always --dirty`: "v1.2.0-3-gebd12fe-dirty", or a short commit
	revision string // the full commit id
)

// Read returns the running binary's build.
func Read() Info { return From(debug.ReadBuildInfo()).Stamp(version, revision) }

// Stamp returns i with what the build stamped: a non-empty version replaces the module
// version (a describe is what a person can read; the pseudo-version repeats the commit)
// and marks the build modified when git describe said "-dirty"; a non-empty revision
// fills in an unknown one (where the toolchain recorded one too, they are the same commit).
func (i Info) Stamp(version, revision string) Info {
	if version != "" {
		i.Version = version
		if strings.HasSuffix(version, "-dirty") {
			i.Modified = true
		}
	}
	if revision != "" && i.Revision == Unknown {
		i.Revision = revision
	}
	return i
}

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
