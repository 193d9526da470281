//go:build cgo

package softhsm_test

import (
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/hufu-hsm/hufu/softhsm"
)

// TestProvisionExistingCreatesNothing: with Existing (hufud serve), a missing token
// directory or token is ErrTokenDir naming it, and no new token appears.
func TestProvisionExistingCreatesNothing(t *testing.T) {
	dir := t.TempDir()
	if _, err := softhsm.Provision(softhsm.Options{Dir: dir, Label: "kept"}); err != nil {
		t.Fatal(err)
	}
	if tok, err := softhsm.Provision(softhsm.Options{Dir: dir, Label: "kept", Existing: true}); err != nil || tok.Created {
		t.Fatalf("Existing on the provisioned token = %+v, %v; want it found", tok, err)
	}
	_, err := softhsm.Provision(softhsm.Options{Dir: dir, Label: "other", Existing: true})
	if !errors.Is(err, softhsm.ErrTokenDir) || !strings.Contains(err.Error(), `no token labelled "other"`) {
		t.Fatalf("Existing with an unknown label = %v; want ErrTokenDir naming it", err)
	}

	tokens := filepath.Join(dir, "tokens")
	if err := os.RemoveAll(tokens); err != nil {
		t.Fatal(err)
	}
	_, err = softhsm.Provision(softhsm.Options{Dir: dir, Label: "kept", Existing: true})
	if !errors.Is(err, softhsm.ErrTokenDir) || !strings.Contains(err.Error(), tokens) {
		t.Fatalf("Existing without the token directory = %v; want ErrTokenDir naming %s", err, tokens)
	}
	if _, err := os.Stat(tokens); !os.IsNotExist(err) {
		t.Fatalf("%s was recreated (%v)", tokens, err)
	}
}

// TestCheckSystemTokenDir: SoftHSM2 as the appliance's HSM, configured through
// SOFTHSM2_CONF: an unreadable configuration and a missing token directory are named.
func TestCheckSystemTokenDir(t *testing.T) {
	dir := t.TempDir()
	conf := filepath.Join(dir, "softhsm2.conf")
	tokens := filepath.Join(dir, "tokens")
	t.Setenv(softhsm.EnvConfig, conf)

	if _, err := softhsm.CheckSystemTokenDir(); !errors.Is(err, softhsm.ErrTokenDir) || !strings.Contains(err.Error(), conf) {
		t.Fatalf("without a configuration: %v; want ErrTokenDir naming %s", err, conf)
	}
	text := "# SoftHSM v2 configuration file\ndirectories.tokendir = " + tokens + "/\nobjectstore.backend = file\n"
	if err := os.WriteFile(conf, []byte(text), 0o600); err != nil {
		t.Fatal(err)
	}
	_, err := softhsm.CheckSystemTokenDir()
	if !errors.Is(err, softhsm.ErrTokenDir) || !strings.Contains(err.Error(), tokens+" (directories.tokendir of "+conf+") does not exist") {
		t.Fatalf("without the token directory: %v; want ErrTokenDir naming %s", err, tokens)
	}
	if err := os.MkdirAll(filepath.Join(tokens, "8d4f0191-846a-deaf-546a-c7a0fab22855"), 0o700); err != nil {
		t.Fatal(err)
	}
	got, err := softhsm.CheckSystemTokenDir()
	if err != nil || got != tokens {
		t.Fatalf("with the token directory: %q, %v; want %q", got, err, tokens)
	}
	if !softhsm.IsModule("/usr/lib/softhsm/libsofthsm2.so") || softhsm.IsModule("/opt/vendor/lib/libcs_pkcs11_R3.so") {
		t.Fatal("IsModule does not tell SoftHSM2 from a vendor module")
	}
}
