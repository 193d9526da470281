package softhsm

import (
	"bufio"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"

	"golang.org/x/sys/unix"
)

// SoftHSM2 as the appliance's HSM (a small site without a hardware HSM): the module reads
// SOFTHSM2_CONF, or DefaultConfigPath, and keeps every token as a directory of files under
// the configuration's directories.tokendir. The Debian package makes the configuration
// root:softhsm 0640 and the token directory root:softhsm 2770, and softhsm2-util run as
// root makes each token a root-only 0700 directory. A process that cannot read the
// configuration, or finds no token directory, gets a bare CKR_GENERAL_ERROR or "slot not
// found" from the module; CheckSystemTokenDir says which file and what to do instead.

// DefaultConfigPath is the configuration SoftHSM2 reads when SOFTHSM2_CONF is not set
// (the path compiled into the Debian, Ubuntu and Fedora packages).
const DefaultConfigPath = "/etc/softhsm/softhsm2.conf"

// ErrTokenDir: SoftHSM2's configuration or token directory is missing or not usable by
// this process. The error names the file or directory.
var ErrTokenDir = errors.New("softhsm: token directory unusable")

// IsModule reports whether a PKCS#11 module path is SoftHSM2's (libsofthsm2.so).
func IsModule(path string) bool {
	return strings.Contains(strings.ToLower(filepath.Base(path)), "softhsm")
}

// CheckSystemTokenDir checks, before the module is loaded, that the configuration the
// module will read is readable and that its token directory, and each token in it, exists
// and is readable and writable by this process. It returns the token directory.
func CheckSystemTokenDir() (string, error) {
	conf := os.Getenv(EnvConfig)
	if conf == "" {
		conf = DefaultConfigPath
	}
	tokenDir, err := configuredTokenDir(conf)
	if err != nil {
		return "", err
	}
	return tokenDir, checkTokenDir(tokenDir, conf)
}

// configuredTokenDir reads directories.tokendir from a SoftHSM2 configuration file.
func configuredTokenDir(conf string) (string, error) {
	f, err := os.Open(conf)
	if err != nil {
		return "", fmt.Errorf("%w: SoftHSM2 configuration %s: %w (the service's user needs to read it: the softhsm group, see docs/operations.md)", ErrTokenDir, conf, err)
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		line := strings.TrimSpace(sc.Text())
		if strings.HasPrefix(line, "#") {
			continue
		}
		if key, value, ok := strings.Cut(line, "="); ok && strings.TrimSpace(key) == "directories.tokendir" {
			return filepath.Clean(strings.TrimSpace(value)), nil
		}
	}
	if err := sc.Err(); err != nil {
		return "", fmt.Errorf("%w: reading %s: %w", ErrTokenDir, conf, err)
	}
	return "", fmt.Errorf("%w: %s sets no directories.tokendir", ErrTokenDir, conf)
}

// checkTokenDir requires tokenDir (named in conf) and every token directory in it to
// exist and be usable by this process; SoftHSM2 would otherwise fail obscurely, or (when
// Provision creates what is missing) start over with an empty token.
func checkTokenDir(tokenDir, conf string) error {
	fi, err := os.Stat(tokenDir)
	switch {
	case errors.Is(err, os.ErrNotExist):
		return fmt.Errorf("%w: %s (directories.tokendir of %s) does not exist: restore it from the token backup, or for a new appliance create it and initialise the token (docs/operations.md)", ErrTokenDir, tokenDir, conf)
	case err != nil:
		return fmt.Errorf("%w: %s (directories.tokendir of %s): %w", ErrTokenDir, tokenDir, conf, err)
	case !fi.IsDir():
		return fmt.Errorf("%w: %s (directories.tokendir of %s) is not a directory", ErrTokenDir, tokenDir, conf)
	}
	dirs := []string{tokenDir}
	entries, err := os.ReadDir(tokenDir)
	if err != nil {
		return fmt.Errorf("%w: %s: %w", ErrTokenDir, tokenDir, err)
	}
	for _, e := range entries {
		if e.IsDir() {
			dirs = append(dirs, filepath.Join(tokenDir, e.Name()))
		}
	}
	unusable := func(path string, err error) error {
		return fmt.Errorf("%w: %s is not readable and writable by uid %d: %w (a token made by root with softhsm2-util or hufud init is root's alone: chown -R it to the service's user, see docs/operations.md)",
			ErrTokenDir, path, os.Getuid(), err)
	}
	for i, d := range dirs {
		if err := unix.Access(d, unix.R_OK|unix.W_OK|unix.X_OK); err != nil {
			return unusable(d, err)
		}
		if i == 0 {
			continue
		}
		objects, err := os.ReadDir(d)
		if err != nil {
			return unusable(d, err)
		}
		for _, o := range objects {
			if p := filepath.Join(d, o.Name()); o.Type().IsRegular() {
				if err := unix.Access(p, unix.R_OK|unix.W_OK); err != nil {
					return unusable(p, err)
				}
			}
		}
	}
	return nil
}
