//go:build cgo

package hsm

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/miekg/pkcs11"

	"github.com/hufu-hsm/hufu/softhsm/softhsmtest"
)

// TestPoolExhausted holds the only pool session (an unfinished crypto11 HMAC keeps its
// session until Sum) and checks that another operation gives up after PoolWaitTimeout with
// ErrBusy instead of waiting forever. The session is taken behind the keyring's gate, as a
// session crypto11 lost would be, so the gate admits the operation and crypto11's pool
// times out; that wait is still observed as a timed out one.
func TestPoolExhausted(t *testing.T) {
	tok := softhsmtest.New(t)
	rec := &sessionRecorder{}
	k, err := Initialize(context.Background(), Config{
		ModulePath: tok.ModulePath, TokenLabel: tok.Label, PINFile: tok.PINFile,
		MaxSessions: 2, PoolWaitTimeout: 50 * time.Millisecond, Metrics: rec,
	})
	if err != nil {
		t.Fatal(err)
	}
	defer k.Close()
	h, err := k.pinKey.NewHMAC(pkcs11.CKM_SHA256_HMAC, 32)
	if err != nil {
		t.Fatal(err)
	}
	_, err = k.Wrap(context.Background(), []byte("x"), nil)
	if !errors.Is(err, ErrBusy) || !errors.Is(err, ErrHSM) {
		t.Fatalf("Wrap with the pool exhausted: %v; want ErrBusy", err)
	}
	if waits, timeouts := rec.counts(); waits != 1 || timeouts != 1 {
		t.Errorf("observed %d waits, %d timeouts; want 1, 1", waits, timeouts)
	}
	h.Sum(nil) // gives the session back
	if _, err := k.Wrap(context.Background(), []byte("x"), nil); err != nil {
		t.Fatalf("Wrap after the session came back: %v", err)
	}
}
