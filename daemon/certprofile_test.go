package daemon

import (
	"bytes"
	"encoding/hex"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/hufu-hsm/hufu/daemon/ca"
	"github.com/hufu-hsm/hufu/daemon/config"
)

// The CA options come from the configuration: the key file is read as hex and refused with
// a reason that never quotes its content, the development key stands in only in development,
// and a key file others can read is warned about.
func TestCAOptionsFromConfiguration(t *testing.T) {
	dir := t.TempDir()
	write := func(name, content string, mode os.FileMode) string {
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, []byte(content), mode); err != nil {
			t.Fatal(err)
		}
		return p
	}
	const secretHex = "00112233445566778899aabbccddeeff00112233445566778899aabbccddeeff"
	var logged bytes.Buffer
	log := slog.New(slog.NewTextHandler(&logged, nil))

	cfg := config.Development()
	cfg.Certificates.OCSP = true
	opts, err := caOptions(cfg, log)
	dev, _ := hex.DecodeString(DevelopmentSubjectIdentityKey)
	if err != nil || opts.SubjectIdentity != ca.IdentityKeyedHash || !bytes.Equal(opts.SubjectIdentityKey, dev) ||
		opts.PublicURL != config.DevelopmentPublicURL || !opts.OCSP || opts.CRLNextUpdate != cfg.Certificates.CRLNextUpdate.Std() {
		t.Fatalf("development: %+v %v", opts, err)
	}
	if string(dev) != "hufu development subject identity" || len(dev) < ca.MinIdentityKeyBytes {
		t.Fatalf("the development key is not what docs/certificates.md says: %q", dev)
	}

	cfg.Certificates.SubjectIdentityKeyFile = write("good.key", secretHex+"\n", 0o600)
	opts, err = caOptions(cfg, log)
	if want, _ := hex.DecodeString(secretHex); err != nil || !bytes.Equal(opts.SubjectIdentityKey, want) {
		t.Fatalf("key file: %x %v", opts.SubjectIdentityKey, err)
	}
	if logged.Len() != 0 {
		t.Fatalf("warned about a 0600 key file: %s", logged.String())
	}
	cfg.Certificates.SubjectIdentityKeyFile = write("open.key", secretHex, 0o644)
	if _, err := caOptions(cfg, log); err != nil || !strings.Contains(logged.String(), "chmod 600") {
		t.Fatalf("a readable key file: %v, log %q", err, logged.String())
	}

	for name, content := range map[string]string{
		"short": secretHex[:62], "not hex": "zz" + secretHex[2:], "long": strings.Repeat(secretHex, 3), "empty": "",
	} {
		cfg.Certificates.SubjectIdentityKeyFile = write(strings.ReplaceAll(name, " ", "-")+".key", content, 0o600)
		_, err := caOptions(cfg, log)
		if err == nil || !strings.HasPrefix(err.Error(), "certificates.subject_identity_key_file: ") || strings.Contains(err.Error(), "aabbccdd") {
			t.Fatalf("%s key: %v", name, err)
		}
	}
	cfg.Certificates.SubjectIdentityKeyFile = filepath.Join(dir, "missing.key")
	if _, err := caOptions(cfg, log); err == nil {
		t.Fatal("a missing key file was accepted")
	}

	// Production never falls back to the development key; full needs no key.
	cfg.Development, cfg.Certificates.SubjectIdentityKeyFile = false, ""
	if _, err := caOptions(cfg, log); err == nil {
		t.Fatal("production without a key file used the development key")
	}
	cfg.Certificates.SubjectIdentity = config.SubjectIdentityFull
	if opts, err := caOptions(cfg, log); err != nil || opts.SubjectIdentity != ca.IdentityFull || opts.SubjectIdentityKey != nil {
		t.Fatalf("full: %+v %v", opts, err)
	}
}
