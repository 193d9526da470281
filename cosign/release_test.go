package cosign

import (
	"bytes"
	"crypto/rand"
	"errors"
	"testing"

	"github.com/emmansun/gmsm/sm2"
)

// TestConsentThenReleaseRecoversThePlaintext checks the consent-to-release algebra of design
// §3 on the real curve: the phone's T1 = d1⁻¹·C1 lets the server alone recover a gmsm
// ciphertext, and a T1 for another C1 is caught by the C3 check.
func TestConsentThenReleaseRecoversThePlaintext(t *testing.T) {
	key, server := newPair(t, "release")
	pub := key.Public().(*ecdsaPublicKey)
	seal := func(msg []byte) *Ciphertext {
		raw, err := sm2.Encrypt(rand.Reader, pub, msg, sm2.NewPlainEncrypterOpts(sm2.MarshalUncompressed, sm2.C1C3C2))
		if err != nil {
			t.Fatal(err)
		}
		ct, err := ParseCiphertext(raw, C1C3C2)
		if err != nil {
			t.Fatal(err)
		}
		return ct
	}
	sm4Key := []byte("0123456789abcdef")
	ct, other := seal(sm4Key), seal([]byte("another bid key!"))
	t1 := key.share.ConsentPoint(&ct.C1)

	t.Run("own T1 releases", func(t *testing.T) {
		got, err := server.Share.Release(ct, &t1)
		if err != nil || !bytes.Equal(got, sm4Key) {
			t.Fatalf("Release = %x, %v; want the SM4 key", got, err)
		}
	})
	t.Run("T1 of another envelope fails the C3 check", func(t *testing.T) {
		wrong := key.share.ConsentPoint(&other.C1)
		if _, err := server.Share.Release(ct, &wrong); !errors.Is(err, ErrDecryption) {
			t.Fatalf("err = %v, want ErrDecryption", err)
		}
	})
	t.Run("T1 that is C1 itself fails the C3 check", func(t *testing.T) {
		if _, err := server.Share.Release(ct, &ct.C1); !errors.Is(err, ErrDecryption) {
			t.Fatalf("err = %v, want ErrDecryption", err)
		}
	})
	t.Run("a delegated pair's T1 releases with its own server share", func(t *testing.T) {
		var rho [ScalarSize]byte
		copy(rho[:], bytes.Repeat([]byte{7}, ScalarSize))
		phone := key.share.refreshed(&rho, ptr(invert(&rho)))
		srv := server.Share.refreshed(ptr(invert(&rho)), &rho)
		t1 := (&PhoneShare{phone}).ConsentPoint(&ct.C1)
		got, err := (&ServerShare{srv}).Release(ct, &t1)
		if err != nil || !bytes.Equal(got, sm4Key) {
			t.Fatalf("Release = %x, %v; want the SM4 key", got, err)
		}
		if _, err := server.Share.Release(ct, &t1); !errors.Is(err, ErrDecryption) {
			t.Fatal("the primary share released a delegated pair's consent")
		}
	})
}

func ptr[T any](v T) *T { return &v }

func BenchmarkServerRelease(b *testing.B) {
	key, server := newPair(b, "bench-release")
	pub := key.Public().(*ecdsaPublicKey)
	raw, err := sm2.Encrypt(rand.Reader, pub, []byte("0123456789abcdef"), nil)
	if err != nil {
		b.Fatal(err)
	}
	ct, err := ParseCiphertext(raw, C1C3C2)
	if err != nil {
		b.Fatal(err)
	}
	t1 := key.share.ConsentPoint(&ct.C1)
	b.ReportAllocs()
	for b.Loop() {
		if _, err := server.Share.Release(ct, &t1); err != nil {
			b.Fatal(err)
		}
	}
}
