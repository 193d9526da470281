package openings

import (
	"crypto/rand"
	"encoding/pem"
	"testing"

	"github.com/emmansun/gmsm/sm2"
	"github.com/emmansun/gmsm/smx509"
)

// FuzzParseResultKey: a bid-opening system's result key is untrusted input; any bytes give
// a checked point or an error, never a panic.
func FuzzParseResultKey(f *testing.F) {
	k, err := sm2.GenerateKey(rand.Reader)
	if err != nil {
		f.Fatal(err)
	}
	der, err := smx509.MarshalPKIXPublicKey(&k.PublicKey)
	if err != nil {
		f.Fatal(err)
	}
	f.Add(der)
	f.Add(pem.EncodeToMemory(&pem.Block{Type: "PUBLIC KEY", Bytes: der}))
	f.Fuzz(func(t *testing.T, raw []byte) {
		p, err := parseResultKey(raw)
		if err == nil && (p[0] != 4 || p == [65]byte{}) {
			t.Fatalf("accepted %x as %x", raw, p)
		}
	})
}
