//go:build cgo

package hsm_test

import (
	"bytes"
	"context"
	"crypto/sha256"
	"fmt"
	"os"
	"strconv"
	"testing"

	"github.com/hufu-hsm/hufu/hsm"
	"github.com/hufu-hsm/hufu/softhsm"
	"github.com/hufu-hsm/hufu/softhsm/softhsmtest"
)

// Benchmarks run against SoftHSM2 with the default pool (hsm.DefaultMaxSessions, i.e. one
// login-holding session plus a pool of MaxSessions-1), or HUFU_BENCH_SESSIONS if set. The
// plaintext is 64 bytes, the size of a server share (d2 ‖ d2⁻¹).
//
//	go test -run '^$' -bench . -benchtime 2000x ./hsm/

func benchKeyring(b *testing.B) (*hsm.Keyring, *softhsm.Token) {
	b.Helper()
	tok := softhsmtest.New(b)
	cfg := configFor(tok)
	if s := os.Getenv("HUFU_BENCH_SESSIONS"); s != "" {
		n, err := strconv.Atoi(s)
		if err != nil {
			b.Fatal(err)
		}
		cfg.MaxSessions = n
	}
	k, err := hsm.Initialize(context.Background(), cfg)
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { _ = k.Close() })
	return k, tok
}

// both runs op from one goroutine and from GOMAXPROCS goroutines (b.RunParallel).
func both(b *testing.B, op func() error) {
	b.Run("serial", func(b *testing.B) {
		for b.Loop() {
			if err := op(); err != nil {
				b.Fatal(err)
			}
		}
	})
	b.Run("parallel", func(b *testing.B) {
		b.RunParallel(func(pb *testing.PB) {
			for pb.Next() {
				if err := op(); err != nil {
					b.Error(err)
					return
				}
			}
		})
	})
}

var share = bytes.Repeat([]byte{0x5A}, 64)

func BenchmarkWrap(b *testing.B) {
	k, _ := benchKeyring(b)
	ctx := context.Background()
	ad := []byte("key-1|v1")
	both(b, func() error { _, err := k.Wrap(ctx, share, ad); return err })
}

func BenchmarkUnwrap(b *testing.B) {
	k, _ := benchKeyring(b)
	ctx := context.Background()
	ad := []byte("key-1|v1")
	blob, err := k.Wrap(ctx, share, ad)
	if err != nil {
		b.Fatal(err)
	}
	both(b, func() error { _, err := k.Unwrap(ctx, blob, ad); return err })
}

func BenchmarkVerifyPIN(b *testing.B) {
	k, _ := benchKeyring(b)
	ctx := context.Background()
	salt := bytes.Repeat([]byte{1}, hsm.MinSaltSize)
	v, err := k.PINVerifier(ctx, salt, []byte("key-1"), []byte("123456"))
	if err != nil {
		b.Fatal(err)
	}
	both(b, func() error {
		ok, err := k.VerifyPIN(ctx, v, salt, []byte("key-1"), []byte("123456"))
		if err == nil && !ok {
			err = fmt.Errorf("PIN rejected")
		}
		return err
	})
}

func BenchmarkAuditSign(b *testing.B) {
	k, _ := benchKeyring(b)
	ctx := context.Background()
	d := sha256.Sum256([]byte("checkpoint"))
	a := k.AuditSigner()
	both(b, func() error { _, err := a.SignDigest(ctx, d[:]); return err })
}
