package client_test

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"encoding/json"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/hufu-hsm/hufu/client"
)

// TestVerifyQRVector checks the SDK's copy of the QR payload format against a payload the
// daemon made (testdata/qr_vector.json, written by TestScanSessionsSDK with
// -update-qr-vector), and that any change to it is refused.
func TestVerifyQRVector(t *testing.T) {
	b, err := os.ReadFile(filepath.Join("testdata", "qr_vector.json"))
	if err != nil {
		t.Fatal(err)
	}
	var v qrVector
	if err := json.Unmarshal(b, &v); err != nil {
		t.Fatal(err)
	}
	pub, err := client.ParseScanKey(v.PublicKeyPEM)
	if err != nil {
		t.Fatal(err)
	}
	qr, err := client.VerifyQR(pub, v.Payload)
	if err != nil || qr.SessionID != v.SessionID || qr.Nonce != v.Nonce || qr.Address != v.Address {
		t.Fatalf("VerifyQR = %+v, %v; want %+v", qr, err, v)
	}
	flip := func(s string, i int) string {
		c := s[i] ^ 1
		return s[:i] + string(c) + s[i+1:]
	}
	sigAt := strings.LastIndexByte(v.Payload, '.')
	other, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	for _, tt := range []struct {
		name    string
		key     *ecdsa.PublicKey
		payload string
	}{
		{"session id changed", pub, strings.Replace(v.Payload, v.SessionID, flip(v.SessionID, 0), 1)},
		{"nonce changed", pub, strings.Replace(v.Payload, v.Nonce, flip(v.Nonce, 3), 1)},
		{"address changed", pub, strings.Replace(v.Payload, v.Address, "127.0.0.2:0", 1)},
		{"signature changed", pub, flip(v.Payload, len(v.Payload)-5)},
		{"signature padded", pub, v.Payload + "="},
		{"signature cut", pub, v.Payload[:sigAt]},
		{"other prefix", pub, "hufu1" + v.Payload[5:]},
		{"too long", pub, v.Payload[:sigAt] + strings.Repeat("x", 512) + v.Payload[sigAt:]},
		{"another appliance's key", &other.PublicKey, v.Payload},
		{"no key", nil, v.Payload},
	} {
		t.Run(tt.name, func(t *testing.T) {
			if _, err := client.VerifyQR(tt.key, tt.payload); !errors.Is(err, client.ErrQRCode) {
				t.Fatalf("got %v, want ErrQRCode", err)
			}
		})
	}
}

func TestParseScanKeyRefuses(t *testing.T) {
	for _, tt := range []struct{ name, pem string }{
		{"empty", ""},
		{"not PEM", "MFkwEwYHKoZIzj0CAQ"},
		{"a certificate", "-----BEGIN CERTIFICATE-----\nMAA=\n-----END CERTIFICATE-----\n"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			if _, err := client.ParseScanKey(tt.pem); err == nil {
				t.Fatal("accepted")
			}
		})
	}
}
