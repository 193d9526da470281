package cosign

import (
	cryptorand "crypto/rand"
	"crypto/subtle"
	"io"
	"math/big"
	"math/bits"

	"filippo.io/bigmod"
)

// ScalarSize is the length of an encoded scalar: 32 bytes, big-endian, always full length so
// that gmsm's constant-time assembly path is taken and lengths never depend on values.
const ScalarSize = 32

// orderN is the group order n as a bigmod modulus. All secret arithmetic mod n goes through
// bigmod, whose operations take time independent of the values.
var orderN = func() *bigmod.Modulus {
	m, err := bigmod.NewModulus(curveN.Bytes())
	if err != nil {
		panic(err)
	}
	return m
}()

// ParseScalar decodes a 32-byte big-endian scalar and checks 1 ≤ k ≤ n-1 without branching on
// its value.
func ParseScalar(b []byte) ([ScalarSize]byte, error) {
	var k [ScalarSize]byte
	if len(b) != ScalarSize {
		return k, ErrLength
	}
	x, err := bigmod.NewNat().SetBytes(b, orderN)
	if err != nil || x.IsZero() == 1 {
		return k, ErrScalarRange
	}
	copy(k[:], b)
	return k, nil
}

// nat returns k as a bigmod.Nat. k must already be < n (every scalar in this package is).
func nat(k *[ScalarSize]byte) *bigmod.Nat {
	x, err := bigmod.NewNat().SetBytes(k[:], orderN)
	if err != nil {
		panic("cosign: internal error: scalar not reduced")
	}
	return x
}

// putNat writes x into out as 32 big-endian bytes without allocating.
func putNat(out *[ScalarSize]byte, x *bigmod.Nat) {
	const limbBytes = bits.UintSize / 8
	i := ScalarSize
	for _, limb := range x.Bits() {
		for j := 0; j < limbBytes && i > 0; j++ {
			i--
			out[i] = byte(limb)
			limb >>= 8
		}
	}
	for i > 0 {
		i--
		out[i] = 0
	}
}

// randomScalar fills k with a uniform scalar in [1, n-1] by rejection sampling. n is within
// 2⁻³² of 2²⁵⁶, so a draw is rejected about once in four billion; a source that keeps
// producing rejected values is broken, and we say so rather than loop forever.
func randomScalar(rand io.Reader, k *[ScalarSize]byte) error {
	for range 64 {
		if _, err := io.ReadFull(rand, k[:]); err != nil {
			return ErrRandom
		}
		x, err := bigmod.NewNat().SetBytes(k[:], orderN)
		if err == nil && x.IsZero() == 0 {
			return nil
		}
	}
	clear(k[:])
	return ErrRandom
}

// reduceDigest returns a 32-byte digest as an integer mod n (e in GB/T 32918.2).
func reduceDigest(e *[ScalarSize]byte) *bigmod.Nat {
	x, err := bigmod.NewNat().SetOverflowingBytes(e[:], orderN)
	if err != nil {
		panic("cosign: internal error: 32-byte digest overflows n's size")
	}
	return x
}

// invert returns k⁻¹ mod n using gmsm's constant-time inversion (Fermat, in assembly on
// amd64 and arm64). The big.Int wrapping is gmsm's API; the inversion itself works on the
// full 32 bytes.
func invert(k *[ScalarSize]byte) [ScalarSize]byte {
	var out [ScalarSize]byte
	curveInverse.Inverse(new(big.Int).SetBytes(k[:])).FillBytes(out[:])
	return out
}

// equalScalars compares two scalars in constant time.
func equalScalars(a, b *[ScalarSize]byte) bool {
	return subtle.ConstantTimeCompare(a[:], b[:]) == 1
}

// bigmodZero returns 0 sized for arithmetic mod n.
func bigmodZero() *bigmod.Nat { return bigmod.NewNat().ExpandFor(orderN) }

// cryptoRand is the randomness used when a caller passes none.
var cryptoRand = cryptorand.Reader
