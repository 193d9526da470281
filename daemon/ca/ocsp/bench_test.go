package ocsp_test

import (
	"context"
	"testing"

	"github.com/hufu-hsm/hufu/daemon/ca/ocsp"
)

// BenchmarkRespond measures one answer over the real CA (SoftHSM2, Pebble), without HTTP:
// from the cache (a status read and a map lookup) and signed fresh for a nonce (the status
// read, the HSM unwrap of the issuing key and the SM2 signature).
func BenchmarkRespond(b *testing.B) {
	f := newFixture(b, ocsp.Config{})
	ctx := context.Background()
	for _, bc := range []struct {
		name  string
		nonce []byte
	}{{"cached", nil}, {"nonce", []byte("0123456789abcdef")}} {
		req := f.request(b, ocsp.SHA1, bc.nonce, f.good)
		b.Run(bc.name, func(b *testing.B) {
			for b.Loop() {
				if r := f.handler.Respond(ctx, req); len(r) < 100 {
					b.Fatalf("response of %d bytes", len(r))
				}
			}
		})
	}
}
