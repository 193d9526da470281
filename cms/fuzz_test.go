package cms

import (
	"bytes"
	"testing"

	"github.com/hufu-hsm/hufu/cosign"
)

// The seed corpora in testdata/fuzz/<Target>/ hold valid structures made by this package
// and gmsm (ordinary and two-party keys, several times and recipients) and a few broken
// ones; `go test` runs them as regression tests.

// FuzzCheckSignedAttributes: never panics, and whatever it accepts is canonical, i.e.
// exactly what SignedAttributes writes for that digest and time.
func FuzzCheckSignedAttributes(f *testing.F) {
	f.Add(mustAttrs(f, documentHash[:], signingTime), documentHash[:])
	f.Fuzz(func(t *testing.T, der, digest []byte) {
		at, err := CheckSignedAttributes(der, digest)
		if err != nil {
			return
		}
		again, err := SignedAttributes(digest, at)
		if err != nil {
			t.Fatalf("accepted attributes do not rebuild: %v", err)
		}
		if !bytes.Equal(again, der) {
			t.Fatalf("accepted non-canonical attributes:\n%x\nrebuilt\n%x", der, again)
		}
	})
}

// FuzzVerifyDetached runs the whole verification (the strict parse first, gmsm's second)
// on arbitrary bytes: it must never panic, and anything accepted parses to a signer whose
// attributes carry the digest.
func FuzzVerifyDetached(f *testing.F) {
	f.Add([]byte{0x30, 0x00}, documentHash[:])
	f.Fuzz(func(t *testing.T, der, digest []byte) {
		p, perr := parseDetached("fuzz", der)
		signer, err := VerifyDetached(der, digest, nil)
		if err != nil {
			if signer != nil {
				t.Fatal("signer returned with an error")
			}
			return
		}
		if perr != nil {
			t.Fatalf("verified what does not parse: %v", perr)
		}
		if _, err := CheckSignedAttributes(p.signedAttrs, digest); err != nil {
			t.Fatalf("verified attributes that do not check: %v", err)
		}
	})
}

// FuzzKeyTransportC1: never panics; what it returns is a valid point and the C1 of the
// ciphertext it returns, which lies inside the input.
func FuzzKeyTransportC1(f *testing.F) {
	f.Add([]byte{0x30, 0x00})
	f.Fuzz(func(t *testing.T, der []byte) {
		c1, kt, err := KeyTransportC1(der, nil)
		if err != nil {
			return
		}
		if _, err := cosign.ParsePoint(c1[:]); err != nil {
			t.Fatalf("C1 is not a valid point: %v", err)
		}
		ct, err := cosign.ParseCiphertext(kt, cosign.ASN1)
		if err != nil || ct.C1 != c1 || len(ct.C2) != 16 {
			t.Fatalf("key transport does not hold C1: %v", err)
		}
		if !bytes.Contains(der, kt) {
			t.Fatal("key transport is not from the input")
		}
	})
}
