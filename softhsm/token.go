package softhsm

import (
	"errors"
	"fmt"
	"os"
	"strings"
)

// EnvConfig is the environment variable SoftHSM2 reads its configuration path from, once,
// in C_Initialize.
const EnvConfig = "SOFTHSM2_CONF"

// ErrConfigInUse means the SoftHSM2 module is already initialised in this process with a
// different SOFTHSM2_CONF than the directory Provision was asked to use. SoftHSM2 only reads
// its configuration in C_Initialize, so one process can serve one SoftHSM2 directory at a
// time: use one directory and many token labels.
var ErrConfigInUse = errors.New("SoftHSM2 is already initialised in this process with another SOFTHSM2_CONF")

// ErrNoCgo means the binary was built without cgo, which PKCS#11 needs.
var ErrNoCgo = errors.New("hufu needs cgo for PKCS#11 (rebuild with CGO_ENABLED=1 and a C compiler)")

// Options says where and which token Provision prepares.
type Options struct {
	// Dir holds the configuration, the token directory and the PIN files. Required; created
	// with mode 0700 if missing.
	Dir string
	// Label is the token label (1 to 32 bytes, no leading or trailing spaces). Tokens are
	// always found again by label, never by slot id: SoftHSM2 renumbers slots.
	Label string
	// ModulePath is passed to FindModule; empty means $HUFU_PKCS11_MODULE or the Debian
	// locations.
	ModulePath string
	// Existing uses what an earlier Provision made and creates nothing: a missing token
	// directory or token is an error naming it (ErrTokenDir), never a fresh, empty token
	// that would silently stand in for the lost one. hufud serve sets it; hufud init not.
	Existing bool
}

// Token describes a provisioned token: everything needed to open an hsm.Keyring on it.
type Token struct {
	ModulePath string // canonical path of libsofthsm2.so
	ConfigPath string // the SOFTHSM2_CONF this token lives under
	Label      string // the token label
	Serial     string // the serial SoftHSM2 assigned
	PINFile    string // file holding the user PIN
	SOPINFile  string // file holding the security-officer PIN
	Created    bool   // true if this call initialised the token, false if it found it
}

// UserPIN reads the user PIN from PINFile, for tools and tests that log in without
// hsm.Keyring (which reads the file itself).
func (t *Token) UserPIN() (string, error) { return readPIN(t.PINFile) }

// readPIN returns a PIN file's content without its line ending.
func readPIN(path string) (string, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return "", fmt.Errorf("softhsm: read PIN file: %w", err)
	}
	pin := strings.TrimRight(string(b), "\r\n")
	if len(pin) < 4 {
		return "", fmt.Errorf("softhsm: PIN file %s holds fewer than 4 characters", path)
	}
	return pin, nil
}

// validateLabel checks what C_InitToken can represent faithfully: PKCS#11 labels are 32
// bytes padded with spaces, so a longer label would be cut and a trailing space lost.
func validateLabel(label string) error {
	switch {
	case label == "":
		return errors.New("softhsm: token label is empty")
	case len(label) > 32:
		return fmt.Errorf("softhsm: token label %q is longer than 32 bytes", label)
	case strings.TrimSpace(label) != label:
		return fmt.Errorf("softhsm: token label %q has leading or trailing spaces", label)
	}
	return nil
}

// configText is the SoftHSM2 configuration Provision writes: file object store, only
// errors logged (SoftHSM2 logs to syslog), and non-removable slots so that the token stays
// present for the life of the process.
func configText(tokenDir string) string {
	return "# Written by hufu's softhsm package; SOFTHSM2_CONF points here.\n" +
		"directories.tokendir = " + tokenDir + "\n" +
		"objectstore.backend = file\n" +
		"log.level = ERROR\n" +
		"slots.removable = false\n" +
		"slots.mechanisms = ALL\n" +
		"library.reset_on_fork = false\n"
}
