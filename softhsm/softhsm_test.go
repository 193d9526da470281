//go:build cgo

package softhsm_test

import (
	"errors"
	"os"
	"strings"
	"testing"

	"github.com/ThalesGroup/crypto11"

	"github.com/hufu-hsm/hufu/softhsm"
)

// These tests initialise and finalise the module themselves, so none of them is parallel:
// PKCS#11 initialisation is per process.

func userPIN(t *testing.T, tok *softhsm.Token) string {
	t.Helper()
	pin, err := tok.UserPIN()
	if err != nil {
		t.Fatal(err)
	}
	return pin
}

func TestProvisionIsIdempotent(t *testing.T) {
	dir := t.TempDir()
	first, err := softhsm.Provision(softhsm.Options{Dir: dir, Label: "idem"})
	if err != nil {
		t.Fatal(err)
	}
	if !first.Created || first.Serial == "" {
		t.Fatalf("first Provision = %+v; want a created token with a serial", first)
	}
	if got := os.Getenv(softhsm.EnvConfig); got != first.ConfigPath {
		t.Errorf("%s = %q; want %q", softhsm.EnvConfig, got, first.ConfigPath)
	}
	for _, f := range []string{first.PINFile, first.SOPINFile, first.ConfigPath} {
		st, err := os.Stat(f)
		if err != nil {
			t.Fatal(err)
		}
		if st.Mode().Perm() != 0o600 {
			t.Errorf("%s has mode %v; want 0600", f, st.Mode().Perm())
		}
	}
	pin := userPIN(t, first)

	second, err := softhsm.Provision(softhsm.Options{Dir: dir, Label: "idem"})
	if err != nil {
		t.Fatal(err)
	}
	if second.Created || second.Serial != first.Serial {
		t.Fatalf("second Provision = %+v; want the existing token %s", second, first.Serial)
	}
	if userPIN(t, second) != pin {
		t.Error("second Provision changed the user PIN")
	}

	// The token really works with the PIN from the file, opened by label.
	ctx, err := crypto11.Configure(&crypto11.Config{Path: first.ModulePath, TokenLabel: "idem", Pin: pin, MaxSessions: 2})
	if err != nil {
		t.Fatalf("open the provisioned token: %v", err)
	}
	if err := ctx.Close(); err != nil {
		t.Fatal(err)
	}
}

// TestProvisionBesideOpenContext provisions while crypto11 holds the module initialised:
// Provision must borrow that initialisation for the same directory, and refuse another
// directory because SoftHSM2 would silently keep using the first configuration.
func TestProvisionBesideOpenContext(t *testing.T) {
	dir := t.TempDir()
	tok, err := softhsm.Provision(softhsm.Options{Dir: dir, Label: "holder"})
	if err != nil {
		t.Fatal(err)
	}
	holder, err := crypto11.Configure(&crypto11.Config{Path: tok.ModulePath, TokenLabel: "holder", Pin: userPIN(t, tok), MaxSessions: 2})
	if err != nil {
		t.Fatal(err)
	}
	defer holder.Close()

	other, err := softhsm.Provision(softhsm.Options{Dir: dir, Label: "second"})
	if err != nil {
		t.Fatalf("Provision while the module is held: %v", err)
	}
	if !other.Created {
		t.Fatal("second token was not created")
	}
	second, err := crypto11.Configure(&crypto11.Config{Path: other.ModulePath, TokenLabel: "second", Pin: userPIN(t, other), MaxSessions: 2})
	if err != nil {
		t.Fatalf("open a token provisioned beside an open context: %v", err)
	}
	if err := second.Close(); err != nil {
		t.Fatal(err)
	}
	// The holder still works after the other context closed.
	if _, err := holder.FindKeys(nil, []byte("anything")); err != nil {
		t.Fatalf("holder broken after provisioning beside it: %v", err)
	}

	_, err = softhsm.Provision(softhsm.Options{Dir: t.TempDir(), Label: "elsewhere"})
	if !errors.Is(err, softhsm.ErrConfigInUse) {
		t.Fatalf("Provision in another directory while held = %v; want ErrConfigInUse", err)
	}
	if got := os.Getenv(softhsm.EnvConfig); got != tok.ConfigPath {
		t.Errorf("refused Provision left %s = %q; want %q", softhsm.EnvConfig, got, tok.ConfigPath)
	}
}

func TestProvisionRejectsBadOptions(t *testing.T) {
	tests := []struct {
		name string
		opts softhsm.Options
	}{
		{"empty label", softhsm.Options{Dir: t.TempDir()}},
		{"long label", softhsm.Options{Dir: t.TempDir(), Label: strings.Repeat("x", 33)}},
		{"trailing space", softhsm.Options{Dir: t.TempDir(), Label: "x "}},
		{"no dir", softhsm.Options{Label: "x"}},
		{"missing module", softhsm.Options{Dir: t.TempDir(), Label: "x", ModulePath: "/nonexistent/libsofthsm2.so"}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			if tok, err := softhsm.Provision(tc.opts); err == nil {
				t.Fatalf("Provision(%+v) = %+v; want an error", tc.opts, tok)
			}
		})
	}
}
