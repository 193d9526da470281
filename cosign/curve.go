package cosign

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"math/big"

	"github.com/emmansun/gmsm/sm2"
)

// PointSize is the length of an encoded point: 0x04 ‖ x ‖ y, coordinates 32-byte big-endian.
const PointSize = 1 + 2*ScalarSize

// Point is a point of the SM2 curve other than the identity, in uncompressed encoding. The
// only ways to obtain one are ParsePoint and the arithmetic in this package, so a Point is
// always valid; the zero Point is not, and no function accepts it.
type Point [PointSize]byte

// sm2Curve is gmsm's constant-time SM2 P-256 implementation. The operations we need beyond
// elliptic.Curve are reached by interface assertion, as crypto/ecdsa does.
var sm2Curve = sm2.P256()

type combinedMulter interface {
	// CombinedMult returns s1·G + s2·P.
	CombinedMult(Px, Py *big.Int, s1, s2 []byte) (x, y *big.Int)
}

type inverter interface {
	// Inverse returns k⁻¹ mod n in constant time.
	Inverse(k *big.Int) *big.Int
}

type compressedUnmarshaler interface {
	UnmarshalCompressed(data []byte) (x, y *big.Int)
}

var (
	curveCombinedMult = sm2Curve.(combinedMulter)
	curveInverse      = sm2Curve.(inverter)
	curveUncompress   = sm2Curve.(compressedUnmarshaler)
	curveN            = sm2Curve.Params().N
	curveP            = sm2Curve.Params().P
)

// ParsePoint decodes an uncompressed point, checking its length, its form, that it lies on
// the curve and that it is not the identity. gmsm's arithmetic panics on invalid points, so
// every point from outside passes through here first.
func ParsePoint(b []byte) (Point, error) {
	var p Point
	if len(b) == 1 && b[0] == 0x00 { // SEC 1 encoding of the point at infinity
		return p, ErrIdentity
	}
	if len(b) != PointSize {
		return p, ErrLength
	}
	if b[0] != 0x04 {
		return p, ErrPointEncoding
	}
	if allZero(b[1:]) { // (0, 0), the affine stand-in for infinity that some libraries use
		return p, ErrIdentity
	}
	if x, _ := elliptic.Unmarshal(sm2Curve, b); x == nil {
		return p, ErrNotOnCurve // off the curve, or a coordinate ≥ p
	}
	copy(p[:], b)
	return p, nil
}

// affine returns the coordinates of p. p is valid by construction, so no curve check.
func (p *Point) affine() (x, y *big.Int) {
	return new(big.Int).SetBytes(p[1 : 1+ScalarSize]), new(big.Int).SetBytes(p[1+ScalarSize:])
}

// pointFromAffine encodes (x, y), which gmsm returned from an operation on valid points.
// gmsm represents the identity as (0, 0).
func pointFromAffine(x, y *big.Int) (Point, error) {
	var p Point
	if x.Sign() == 0 && y.Sign() == 0 {
		return p, ErrIdentity
	}
	p[0] = 0x04
	x.FillBytes(p[1 : 1+ScalarSize])
	y.FillBytes(p[1+ScalarSize:])
	return p, nil
}

// PublicKey returns p as an SM2 public key for gmsm and crypto interfaces.
func (p *Point) PublicKey() *ecdsa.PublicKey {
	x, y := p.affine()
	return &ecdsa.PublicKey{Curve: sm2Curve, X: x, Y: y}
}

// PointFromPublicKey converts an SM2 public key, checking it like a received point.
func PointFromPublicKey(pub *ecdsa.PublicKey) (Point, error) {
	if pub == nil || pub.Curve != sm2Curve || pub.X == nil || pub.Y == nil {
		return Point{}, ErrNotOnCurve
	}
	if pub.X.Sign() < 0 || pub.Y.Sign() < 0 || pub.X.BitLen() > 256 || pub.Y.BitLen() > 256 {
		return Point{}, ErrNotOnCurve
	}
	var b [PointSize]byte
	b[0] = 0x04
	pub.X.FillBytes(b[1 : 1+ScalarSize])
	pub.Y.FillBytes(b[1+ScalarSize:])
	return ParsePoint(b[:])
}

func scalarBaseMult(k *[ScalarSize]byte) Point {
	x, y := sm2Curve.ScalarBaseMult(k[:])
	p, err := pointFromAffine(x, y)
	if err != nil {
		// k is in [1, n-1] everywhere this is called, and G has order n.
		panic("cosign: internal error: k·G is the identity")
	}
	return p
}

// scalarMult returns k·p; with k in [1, n-1] and p of prime order n the result is never the
// identity.
func scalarMult(p *Point, k *[ScalarSize]byte) Point {
	px, py := p.affine()
	x, y := sm2Curve.ScalarMult(px, py, k[:])
	q, err := pointFromAffine(x, y)
	if err != nil {
		panic("cosign: internal error: k·P is the identity")
	}
	return q
}

// add returns p + q, or ErrIdentity when q = -p.
func add(p, q *Point) (Point, error) {
	px, py := p.affine()
	qx, qy := q.affine()
	return pointFromAffine(sm2Curve.Add(px, py, qx, qy))
}

// negate returns -p = (x, p - y).
func negate(p *Point) Point {
	x, y := p.affine()
	y.Sub(curveP, y)
	q, _ := pointFromAffine(x, y) // y ≠ 0 for every point of odd order, so never (0, 0)
	return q
}

// generator is G in encoded form.
var generator = func() Point {
	params := sm2Curve.Params()
	p, err := pointFromAffine(params.Gx, params.Gy)
	if err != nil {
		panic(err)
	}
	return p
}()

var negGenerator = negate(&generator)

func allZero(b []byte) bool {
	var acc byte
	for _, c := range b {
		acc |= c
	}
	return acc == 0
}
