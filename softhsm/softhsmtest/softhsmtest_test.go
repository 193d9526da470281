//go:build cgo

package softhsmtest_test

import (
	"sync"
	"testing"

	"github.com/ThalesGroup/crypto11"

	"github.com/hufu-hsm/hufu/softhsm/softhsmtest"
)

func TestMain(m *testing.M) { softhsmtest.Main(m) }

// TestParallelTokens asks for tokens from parallel tests and opens and closes each; closing
// one context must not finalise the module under the others.
func TestParallelTokens(t *testing.T) {
	var mu sync.Mutex
	labels := map[string]bool{}
	for i := range 4 {
		t.Run("token", func(t *testing.T) {
			t.Parallel()
			tok := softhsmtest.New(t)
			mu.Lock()
			if labels[tok.Label] {
				t.Errorf("label %q handed out twice", tok.Label)
			}
			labels[tok.Label] = true
			mu.Unlock()
			if !tok.Created {
				t.Errorf("token %d: %q was not freshly created", i, tok.Label)
			}
			pin, err := tok.UserPIN()
			if err != nil {
				t.Fatal(err)
			}
			ctx, err := crypto11.Configure(&crypto11.Config{
				Path: tok.ModulePath, TokenLabel: tok.Label, Pin: pin, MaxSessions: 2,
			})
			if err != nil {
				t.Fatalf("open %q: %v", tok.Label, err)
			}
			if _, err := ctx.GenerateSecretKeyWithLabel([]byte("k"), []byte("k"), 128, crypto11.CipherAES); err != nil {
				t.Errorf("generate on %q: %v", tok.Label, err)
			}
			if err := ctx.Close(); err != nil {
				t.Fatal(err)
			}
		})
	}
}
