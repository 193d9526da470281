package daemon

import (
	"encoding/hex"
	"fmt"
	"log/slog"
	"os"
	"strings"

	"github.com/hufu-hsm/hufu/daemon/ca"
	"github.com/hufu-hsm/hufu/daemon/config"
)

// DevelopmentSubjectIdentityKey is the HMAC-SM3 key of subject_identity: keyed_hash on a
// development appliance that names no key file (docs/certificates.md): public, so that
// development relying parties can recompute the value, and refused outside development.
const DevelopmentSubjectIdentityKey = "6875667520646576656c6f706d656e74207375626a656374206964656e74697479"

// maxIdentityKeyBytes bounds the key file's content (HMAC takes any length; a longer file is
// a mistake, such as the wrong file).
const maxIdentityKeyBytes = 64

// caOptions are the embedded CAs' options from the configuration: the CRL validity, the
// public URL certificates point to, OCSP, and the subject identity policy with its key read
// from certificates.subject_identity_key_file.
func caOptions(cfg config.Config, log *slog.Logger) (ca.Options, error) {
	cc := cfg.Certificates
	opts := ca.Options{CRLNextUpdate: cc.CRLNextUpdate.Std(), PublicURL: cc.PublicURL, OCSP: cc.OCSP,
		SubjectIdentity: ca.IdentityPolicy(cc.SubjectIdentity)}
	if opts.SubjectIdentity != ca.IdentityKeyedHash {
		return opts, nil
	}
	if cc.SubjectIdentityKeyFile == "" {
		if !cfg.Development {
			return opts, fmt.Errorf("certificates.subject_identity_key_file: must be set outside development")
		}
		opts.SubjectIdentityKey, _ = hex.DecodeString(DevelopmentSubjectIdentityKey)
		return opts, nil
	}
	path := cfg.Path(cc.SubjectIdentityKeyFile)
	key, err := readIdentityKey(path)
	if err != nil {
		return opts, fmt.Errorf("certificates.subject_identity_key_file: %w", err)
	}
	if fi, err := os.Stat(path); err == nil && fi.Mode().Perm()&0o077 != 0 {
		log.Warn("the subject identity key file can be read by other users; chmod 600 it", "key_file", path)
	}
	opts.SubjectIdentityKey = key
	return opts, nil
}

// readIdentityKey reads a hex key file. Errors say what is wrong with the file, never its
// content.
func readIdentityKey(path string) ([]byte, error) {
	raw, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	text := strings.TrimSpace(string(raw))
	want := fmt.Sprintf("want %d to %d hex digits, e.g. from `openssl rand -hex 32`", 2*ca.MinIdentityKeyBytes, 2*maxIdentityKeyBytes)
	if len(text) > 2*maxIdentityKeyBytes {
		return nil, fmt.Errorf("%s: %d characters: %s", path, len(text), want)
	}
	key, err := hex.DecodeString(text)
	if err != nil {
		// hex errors quote the offending byte: say where, not what.
		return nil, fmt.Errorf("%s: not hex (%s)", path, want)
	}
	if len(key) < ca.MinIdentityKeyBytes {
		return nil, fmt.Errorf("%s: a %d-byte key: %s", path, len(key), want)
	}
	return key, nil
}
