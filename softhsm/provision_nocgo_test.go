//go:build !cgo

package softhsm

import (
	"errors"
	"testing"
)

func TestProvisionWithoutCgo(t *testing.T) {
	if _, err := Provision(Options{Dir: t.TempDir(), Label: "x"}); !errors.Is(err, ErrNoCgo) {
		t.Fatalf("Provision without cgo: %v; want ErrNoCgo", err)
	}
}
