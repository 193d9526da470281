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
	copy(k[:], b)
	if !scalarInRange(&k) {
		return [ScalarSize]byte{}, ErrScalarRange
	}
	return k, nil
}

// nBytes is n, big-endian.
var nBytes = [ScalarSize]byte(curveN.FillBytes(make([]byte, ScalarSize)))

// scalarInRange reports 1 ≤ k ≤ n-1 in constant time: it computes the borrow of k − n byte by
// byte and ORs k's bytes, with no branch or index depending on k. Only the verdict leaks.
func scalarInRange(k *[ScalarSize]byte) bool {
	var borrow, nonzero uint32
	for i := ScalarSize - 1; i >= 0; i-- {
		d := uint32(k[i]) - uint32(nBytes[i]) - borrow
		borrow = (d >> 31) & 1
		nonzero |= uint32(k[i])
	}
	return borrow == 1 && nonzero != 0
}

// nat returns k as a bigmod.Nat. k must already be < n (every scalar in this package is).
func nat(k *[ScalarSize]byte) *bigmod.Nat { return setNat(bigmod.NewNat(), k) }

// setNat sets x = k reusing x's storage, which the server steps keep in a pool so they do
// not allocate.
func setNat(x *bigmod.Nat, k *[ScalarSize]byte) *bigmod.Nat {
	if _, err := x.SetBytes(k[:], orderN); err != nil {
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
		if scalarInRange(k) {
			return nil
		}
	}
	clear(k[:])
	return ErrRandom
}

// reduceDigest returns a 32-byte digest as an integer mod n (e in GB/T 32918.2).
func reduceDigest(e *[ScalarSize]byte) *bigmod.Nat { return setReduced(bigmod.NewNat(), e) }

// setReduced sets x = b mod n for any 32-byte b, reusing x's storage. Values up to 2²⁵⁶−1 are
// below 2n, so one conditional subtraction suffices.
func setReduced(x *bigmod.Nat, b *[ScalarSize]byte) *bigmod.Nat {
	if _, err := x.SetOverflowingBytes(b[:], orderN); err != nil {
		panic("cosign: internal error: 32-byte value overflows n's size")
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
