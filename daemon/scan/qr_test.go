package scan

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"encoding/base64"
	"strings"
	"testing"
)

// testKey is a fixed P-256 key for QR payload tests.
var testKey = func() *ecdsa.PrivateKey {
	k, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		panic(err)
	}
	return k
}()

func signQR(t testing.TB, body string) string {
	sig, err := ecdsa.SignASN1(rand.Reader, testKey, signedDigest(qrDomain, body))
	if err != nil {
		t.Fatal(err)
	}
	return body + "." + base64.RawURLEncoding.EncodeToString(sig)
}

func TestVerifyQR(t *testing.T) {
	body := qrPrefix + "0123456789abcdef0123." + strings.Repeat("ab", 12) + ".hufu.example.cn:7443"
	good := signQR(t, body)
	id, nonce, addr, err := VerifyQR(&testKey.PublicKey, good)
	if err != nil || id != "0123456789abcdef0123" || nonce != strings.Repeat("ab", 12) || addr != "hufu.example.cn:7443" {
		t.Fatalf("verify: %q %q %q %v", id, nonce, addr, err)
	}
	other, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	for _, tc := range []struct{ name, payload string }{
		{"other key", func() string {
			sig, _ := ecdsa.SignASN1(rand.Reader, other, signedDigest(qrDomain, body))
			return body + "." + base64.RawURLEncoding.EncodeToString(sig)
		}()},
		{"address swapped", strings.Replace(good, "hufu.example.cn", "evil.example.cn", 1)},
		{"session swapped", strings.Replace(good, "0123456789abcdef0123", "0123456789abcdef0124", 1)},
		{"no signature", body},
		{"other prefix", strings.Replace(good, "HUFU1.SCAN.", "HUFU1.SCAM.", 1)},
		{"signed without the domain", func() string {
			sig, _ := ecdsa.SignASN1(rand.Reader, testKey, signedDigest("", body))
			return body + "." + base64.RawURLEncoding.EncodeToString(sig)
		}()},
		{"short nonce", signQR(t, qrPrefix+"0123456789abcdef0123.abab.host:1")},
		{"too long", signQR(t, body+strings.Repeat("x", 600))},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if _, _, _, err := VerifyQR(&testKey.PublicKey, tc.payload); err == nil {
				t.Fatal("accepted")
			}
		})
	}
}

// FuzzVerifyQR: QR payloads are scanned from anywhere; checking one never panics and
// accepts only what the key signed.
func FuzzVerifyQR(f *testing.F) {
	f.Add(qrPrefix + "0123456789abcdef0123." + strings.Repeat("ab", 12) + ".host:1.AAAA")
	f.Add(qrPrefix + "....")
	f.Add("HUFU1.INV.x.y.z.w")
	f.Fuzz(func(t *testing.T, payload string) {
		if _, _, _, err := VerifyQR(&testKey.PublicKey, payload); err == nil {
			t.Fatalf("%q verified under a key that signed nothing in the corpus", payload)
		}
	})
}
