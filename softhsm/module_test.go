package softhsm_test

import (
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/hufu-hsm/hufu/softhsm"
)

func TestFindModule(t *testing.T) {
	real, err := softhsm.FindModule("")
	if err != nil {
		t.Fatalf("FindModule on a machine with softhsm2 installed: %v", err)
	}
	link := filepath.Join(t.TempDir(), "libsofthsm2-link.so")
	if err := os.Symlink(real, link); err != nil {
		t.Fatal(err)
	}
	missing := filepath.Join(t.TempDir(), "nope.so")

	tests := []struct {
		name     string
		explicit string
		env      string
		want     string
		wantErr  error
	}{
		{name: "default location", want: real},
		{name: "explicit symlink is resolved", explicit: link, want: real},
		{name: "env symlink is resolved", env: link, want: real},
		{name: "explicit wins over env", explicit: real, env: missing, want: real},
		{name: "missing explicit path", explicit: missing, wantErr: softhsm.ErrModuleNotFound},
		{name: "missing env path", env: missing, wantErr: softhsm.ErrModuleNotFound},
		{name: "directory", explicit: t.TempDir(), wantErr: softhsm.ErrModuleNotFound},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Setenv(softhsm.EnvModule, tc.env)
			got, err := softhsm.FindModule(tc.explicit)
			if tc.wantErr != nil {
				if !errors.Is(err, tc.wantErr) {
					t.Fatalf("FindModule = %q, %v; want %v", got, err, tc.wantErr)
				}
				if !strings.Contains(err.Error(), "apt-get install softhsm2") {
					t.Errorf("error %q does not say how to install SoftHSM2", err)
				}
				return
			}
			if err != nil || got != tc.want {
				t.Fatalf("FindModule = %q, %v; want %q", got, err, tc.want)
			}
		})
	}
}
