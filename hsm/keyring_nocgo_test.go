//go:build !cgo

package hsm

import (
	"context"
	"errors"
	"strings"
	"testing"
)

func TestOpenWithoutCgo(t *testing.T) {
	cfg := Config{ModulePath: "/m.so", TokenLabel: "t", PINFile: "/p"}
	for name, open := range map[string]func(context.Context, Config) (*Keyring, error){"Open": Open, "Initialize": Initialize} {
		k, err := open(context.Background(), cfg)
		if k != nil || !errors.Is(err, ErrNoCgo) || !strings.Contains(err.Error(), "needs cgo") {
			t.Errorf("%s without cgo = %v, %v; want ErrNoCgo saying hufu needs cgo", name, k, err)
		}
	}
}
