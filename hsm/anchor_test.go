//go:build cgo

package hsm_test

import (
	"context"
	"errors"
	"testing"

	"github.com/hufu-hsm/hufu/hsm"
)

func TestAuditAnchor(t *testing.T) {
	k, tok := newKeyring(t)
	ctx := context.Background()
	if _, found, err := k.AuditAnchor(ctx); err != nil || found {
		t.Fatalf("new token: found %v, err %v; want no anchor", found, err)
	}
	h := func(b byte) (out [32]byte) { out[0] = b; return }
	steps := []struct {
		name string
		size uint64
		head [32]byte
		err  error
		want uint64
	}{
		{"first raise creates it", 5, h(5), nil, 5},
		{"raise", 9, h(9), nil, 9},
		{"lower is ignored", 3, h(3), nil, 9},
		{"same size same head", 9, h(9), nil, 9},
		{"same size other head", 9, h(1), hsm.ErrAnchorConflict, 9},
	}
	for _, s := range steps {
		err := k.RaiseAuditAnchor(ctx, s.size, s.head)
		if !errors.Is(err, s.err) || (s.err == nil) != (err == nil) {
			t.Fatalf("%s: err %v, want %v", s.name, err, s.err)
		}
		got, found, err := k.AuditAnchor(ctx)
		if err != nil || !found || got.Size != s.want || got.Head != h(byte(s.want)) {
			t.Fatalf("%s: anchor %d %x (found %v, err %v), want %d", s.name, got.Size, got.Head[:1], found, err, s.want)
		}
	}
	if err := k.ResetAuditAnchor(ctx, 2, h(2)); err != nil {
		t.Fatal(err)
	}
	// The anchor is on the token, not in the process: a new keyring reads the reset value.
	if err := k.Close(); err != nil {
		t.Fatal(err)
	}
	k2, err := hsm.Open(ctx, configFor(tok))
	if err != nil {
		t.Fatal(err)
	}
	defer k2.Close()
	got, found, err := k2.AuditAnchor(ctx)
	if err != nil || !found || got.Size != 2 || got.Head != h(2) {
		t.Fatalf("after reset and reopen: %d (found %v, err %v), want 2", got.Size, found, err)
	}
	if _, _, err := k.AuditAnchor(ctx); !errors.Is(err, hsm.ErrClosed) {
		t.Fatalf("closed keyring: %v, want ErrClosed", err)
	}
}
