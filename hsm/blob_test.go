package hsm

import (
	"bytes"
	"encoding/hex"
	"errors"
	"testing"
)

// validBlob builds a structurally valid blob (it will not authenticate).
func validBlob(label string, ctLen int) []byte {
	b := appendBlobHeader(nil, label)
	b = append(b, bytes.Repeat([]byte{0x11}, NonceSize)...)
	return append(b, bytes.Repeat([]byte{0x22}, ctLen)...)
}

func TestParseBlob(t *testing.T) {
	tests := []struct {
		name string
		blob []byte
		want error
	}{
		{"valid", validBlob("hufu-kek-v1", TagSize+64), nil},
		{"valid, empty plaintext", validBlob("hufu-kek-v1", TagSize), nil},
		{"empty", nil, ErrMalformedBlob},
		{"three bytes", []byte{'h', 'W', 1}, ErrMalformedBlob},
		{"bad magic", append([]byte{'x'}, validBlob("k", TagSize)[1:]...), ErrMalformedBlob},
		{"version 2", func() []byte { b := validBlob("k", TagSize); b[2] = 2; return b }(), ErrUnsupportedVersion},
		{"version 0", func() []byte { b := validBlob("k", TagSize); b[2] = 0; return b }(), ErrUnsupportedVersion},
		{"empty label", []byte{'h', 'W', 1, 0}, ErrMalformedBlob},
		{"short tag", validBlob("k", TagSize-1), ErrMalformedBlob},
		{"label longer than blob", []byte{'h', 'W', 1, 200, 'a'}, ErrMalformedBlob},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			b, err := ParseBlob(tc.blob)
			if !errors.Is(err, tc.want) {
				t.Fatalf("ParseBlob = %+v, %v; want %v", b, err, tc.want)
			}
			if err == nil && (b.KEKLabel != "hufu-kek-v1" || len(b.Nonce) != NonceSize) {
				t.Fatalf("ParseBlob = %+v", b)
			}
		})
	}
}

// FuzzParseBlob checks that the decoder never panics and that whatever it accepts
// re-encodes to exactly the input (no two encodings of one blob, no ignored bytes).
func FuzzParseBlob(f *testing.F) {
	f.Add(validBlob("hufu-kek-v1", TagSize+64))
	f.Add(validBlob("hufu-kek-v12", TagSize))
	f.Add([]byte{'h', 'W', 1, 0})
	f.Add([]byte{'h', 'W', 2, 1, 'k'})
	f.Fuzz(func(t *testing.T, in []byte) {
		b, err := ParseBlob(in)
		if err != nil {
			if !errors.Is(err, ErrMalformedBlob) && !errors.Is(err, ErrUnsupportedVersion) {
				t.Fatalf("unexpected error class: %v", err)
			}
			return
		}
		out := appendBlobHeader(nil, b.KEKLabel)
		if !bytes.Equal(out, b.header) {
			t.Fatalf("header %x re-encodes as %x", b.header, out)
		}
		out = append(out, b.Nonce...)
		out = append(out, b.Ciphertext...)
		if !bytes.Equal(out, in) {
			t.Fatalf("blob %x re-encodes as %x", in, out)
		}
		if len(b.Nonce) != NonceSize || len(b.Ciphertext) < TagSize || b.KEKLabel == "" {
			t.Fatalf("accepted %+v", b)
		}
	})
}

// TestPINMessage pins the verifier input encoding: changing it would invalidate every
// stored verifier, so it is a known-answer test.
func TestPINMessage(t *testing.T) {
	salt := bytes.Repeat([]byte{0xAA}, MinSaltSize)
	got, err := pinMessage(salt, []byte("k1"), []byte("1234"))
	if err != nil {
		t.Fatal(err)
	}
	want, _ := hex.DecodeString("00000014" + hex.EncodeToString([]byte(pinDomain)) +
		"00000010" + "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa" +
		"00000002" + "6b31" +
		"00000004" + "31323334")
	if !bytes.Equal(got, want) {
		t.Fatalf("pinMessage = %x; want %x", got, want)
	}
	a, _ := pinMessage(salt, []byte("ab"), []byte("c"))
	b, _ := pinMessage(salt, []byte("a"), []byte("bc"))
	if bytes.Equal(a, b) {
		t.Fatal("moving the context/PIN boundary gives the same message")
	}
}

func TestParseKEKLabel(t *testing.T) {
	tests := []struct {
		label string
		want  int
		ok    bool
	}{
		{"hufu-kek-v1", 1, true},
		{"hufu-kek-v42", 42, true},
		{"hufu-kek-v0", 0, false},
		{"hufu-kek-v01", 0, false},
		{"hufu-kek-v", 0, false},
		{"hufu-kek-v1a", 0, false},
		{"hufu-kek-v-1", 0, false},
		{"other-v1", 0, false},
		{"hufu-kek-v1234567890", 0, false},
	}
	for _, tc := range tests {
		v, ok := parseKEKLabel("hufu-kek", tc.label)
		if v != tc.want || ok != tc.ok {
			t.Errorf("parseKEKLabel(%q) = %d, %v; want %d, %v", tc.label, v, ok, tc.want, tc.ok)
		}
		if tc.ok && kekLabel("hufu-kek", v) != tc.label {
			t.Errorf("kekLabel(%d) != %q", v, tc.label)
		}
	}
}
