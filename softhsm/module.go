package softhsm

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
)

// EnvModule names the environment variable that overrides where the SoftHSM2 module is
// looked for.
const EnvModule = "HUFU_PKCS11_MODULE"

// DefaultModulePaths are the places Debian and Ubuntu install libsofthsm2.so, in the order
// FindModule tries them.
var DefaultModulePaths = []string{
	"/usr/lib/softhsm/libsofthsm2.so",
	"/usr/lib/x86_64-linux-gnu/softhsm/libsofthsm2.so",
	"/usr/lib/aarch64-linux-gnu/softhsm/libsofthsm2.so",
	"/usr/local/lib/softhsm/libsofthsm2.so",
}

// ErrModuleNotFound means no SoftHSM2 module exists where FindModule looked. Its message
// says how to install one.
var ErrModuleNotFound = errors.New("SoftHSM2 PKCS#11 module not found; install it with `apt-get install softhsm2` or set " + EnvModule + " to the path of libsofthsm2.so")

// FindModule returns the canonical path (symlinks resolved) of the SoftHSM2 module: explicit
// if it is not empty, else $HUFU_PKCS11_MODULE if set, else the first of DefaultModulePaths
// that exists. An explicit path or environment value that does not exist is an error; it is
// never silently replaced by a default.
//
// The path is canonical because crypto11 keys its per-process module registry by path
// string: two spellings of one library would make it initialise the library twice.
func FindModule(explicit string) (string, error) {
	if explicit != "" {
		return canonicalModule(explicit, "explicit module path")
	}
	if env := os.Getenv(EnvModule); env != "" {
		return canonicalModule(env, EnvModule)
	}
	for _, p := range DefaultModulePaths {
		if _, err := os.Stat(p); err == nil {
			return canonicalModule(p, "default module path")
		}
	}
	return "", fmt.Errorf("softhsm: looked in %v: %w", DefaultModulePaths, ErrModuleNotFound)
}

func canonicalModule(path, source string) (string, error) {
	abs, err := filepath.Abs(path)
	if err != nil {
		return "", fmt.Errorf("softhsm: %s %q: %w", source, path, err)
	}
	resolved, err := filepath.EvalSymlinks(abs)
	if errors.Is(err, os.ErrNotExist) {
		return "", fmt.Errorf("softhsm: %s %q does not exist: %w", source, path, ErrModuleNotFound)
	}
	if err != nil {
		return "", fmt.Errorf("softhsm: %s %q: %w", source, path, err)
	}
	st, err := os.Stat(resolved)
	if err != nil {
		return "", fmt.Errorf("softhsm: %s %q: %w", source, path, err)
	}
	if st.IsDir() {
		return "", fmt.Errorf("softhsm: %s %q is a directory: %w", source, path, ErrModuleNotFound)
	}
	return resolved, nil
}
