package cosign

import (
	"crypto/subtle"
	"math/big"

	"github.com/emmansun/gmsm/kdf"
	"github.com/emmansun/gmsm/sm3"
	"golang.org/x/crypto/cryptobyte"
	"golang.org/x/crypto/cryptobyte/asn1"
)

// DecryptRequest is the phone's decryption message: the ciphertext's C1, checked.
type DecryptRequest struct {
	C1 Point
}

// DecryptResponse is the server's answer T2 = d2⁻¹·C1.
type DecryptResponse struct {
	T2 Point
}

// Ciphertext is an SM2 ciphertext (GB/T 32918.4): C1 = k·G, C3 = SM3(x2 ‖ M ‖ y2), and
// C2 = M ⊕ KDF(x2 ‖ y2, |M|), where (x2, y2) = k·P.
type Ciphertext struct {
	C1 Point
	C3 [sm3.Size]byte
	C2 []byte
}

// Encoding names one of the three ciphertext layouts in use.
type Encoding uint8

const (
	// C1C3C2 is the layout of GB/T 32918.4-2016 and GM/T 0003-2012 (gmsm's default).
	C1C3C2 Encoding = iota + 1
	// C1C2C3 is the older layout of the 2010 draft, still produced by some libraries.
	C1C2C3
	// ASN1 is the DER SEQUENCE { x INTEGER, y INTEGER, hash OCTET STRING, ciphertext OCTET
	// STRING } of GM/T 0009 and GB/T 35276.
	ASN1
)

func (e Encoding) String() string {
	switch e {
	case C1C3C2:
		return "C1C3C2"
	case C1C2C3:
		return "C1C2C3"
	case ASN1:
		return "ASN.1"
	}
	return "unknown encoding"
}

// DetectEncoding guesses a ciphertext's layout from its first byte: a DER SEQUENCE is ASN.1,
// otherwise the standard C1C3C2. C1C2C3 cannot be told apart and must be asked for.
func DetectEncoding(b []byte) Encoding {
	if len(b) > 0 && b[0] == 0x30 {
		return ASN1
	}
	return C1C3C2
}

// ParseCiphertext decodes an SM2 ciphertext in the given encoding. C1 may be compressed or
// uncompressed in the plain layouts; it is checked like every received point. The plaintext
// must not be empty (its key stream would be vacuously all zero, which the standard rejects).
func ParseCiphertext(b []byte, enc Encoding) (*Ciphertext, error) {
	const field = "ciphertext"
	var (
		ct  Ciphertext
		c2  []byte
		err error
	)
	switch enc {
	case C1C3C2, C1C2C3:
		if len(b) == 0 {
			return nil, inputError(field, ErrLength)
		}
		var c1Len int
		switch b[0] {
		case 0x04:
			c1Len = PointSize
		case 0x02, 0x03:
			c1Len = 1 + ScalarSize
		default:
			return nil, inputError(field+".c1", ErrPointEncoding)
		}
		if len(b) <= c1Len+sm3.Size {
			return nil, inputError(field, ErrLength)
		}
		if ct.C1, err = parseAnyPoint(b[:c1Len]); err != nil {
			return nil, inputError(field+".c1", err)
		}
		rest := b[c1Len:]
		if enc == C1C3C2 {
			copy(ct.C3[:], rest[:sm3.Size])
			c2 = rest[sm3.Size:]
		} else {
			c2 = rest[:len(rest)-sm3.Size]
			copy(ct.C3[:], rest[len(rest)-sm3.Size:])
		}
	case ASN1:
		var (
			x, y   big.Int
			c3     []byte
			inner  cryptobyte.String
			in     = cryptobyte.String(b)
			xy     [PointSize]byte
			parsed = in.ReadASN1(&inner, asn1.SEQUENCE) && in.Empty() &&
				inner.ReadASN1Integer(&x) && inner.ReadASN1Integer(&y) &&
				inner.ReadASN1Bytes(&c3, asn1.OCTET_STRING) &&
				inner.ReadASN1Bytes(&c2, asn1.OCTET_STRING) && inner.Empty()
		)
		if !parsed {
			return nil, inputError(field, ErrCiphertextEncoding)
		}
		if x.Sign() < 0 || y.Sign() < 0 || x.BitLen() > 256 || y.BitLen() > 256 {
			return nil, inputError(field+".c1", ErrNotOnCurve)
		}
		if len(c3) != sm3.Size {
			return nil, inputError(field+".c3", ErrLength)
		}
		xy[0] = 0x04
		x.FillBytes(xy[1 : 1+ScalarSize])
		y.FillBytes(xy[1+ScalarSize:])
		if ct.C1, err = ParsePoint(xy[:]); err != nil {
			return nil, inputError(field+".c1", err)
		}
		copy(ct.C3[:], c3)
		if len(c2) == 0 {
			return nil, inputError(field+".c2", ErrLength)
		}
	default:
		return nil, inputError("encoding", ErrCiphertextEncoding)
	}
	ct.C2 = append([]byte(nil), c2...)
	return &ct, nil
}

// parseAnyPoint accepts a compressed or uncompressed point, as ciphertexts from other
// implementations may use either, and returns it uncompressed.
func parseAnyPoint(b []byte) (Point, error) {
	if b[0] == 0x04 {
		return ParsePoint(b)
	}
	x, y := curveUncompress.UnmarshalCompressed(b)
	if x == nil {
		return Point{}, ErrNotOnCurve
	}
	return pointFromAffine(x, y)
}

// Marshal encodes the ciphertext in the given layout, with C1 uncompressed.
func (ct *Ciphertext) Marshal(enc Encoding) ([]byte, error) {
	switch enc {
	case C1C3C2:
		return append(append(append([]byte(nil), ct.C1[:]...), ct.C3[:]...), ct.C2...), nil
	case C1C2C3:
		return append(append(append([]byte(nil), ct.C1[:]...), ct.C2...), ct.C3[:]...), nil
	case ASN1:
		x, y := ct.C1.affine()
		var b cryptobyte.Builder
		b.AddASN1(asn1.SEQUENCE, func(b *cryptobyte.Builder) {
			b.AddASN1BigInt(x)
			b.AddASN1BigInt(y)
			b.AddASN1OctetString(ct.C3[:])
			b.AddASN1OctetString(ct.C2)
		})
		return b.Bytes()
	}
	return nil, inputError("encoding", ErrCiphertextEncoding)
}

// StartDecrypt is the phone's first step. The ciphertext was parsed, so C1 is already
// checked; the request carries only C1.
func StartDecrypt(ct *Ciphertext) *DecryptRequest {
	return &DecryptRequest{C1: ct.C1}
}

// Decrypt is the server's step: T2 = d2⁻¹·C1, one scalar multiplication. The server learns
// nothing about the plaintext: turning T2 into d·C1 needs d1.
func (s *ServerShare) Decrypt(req *DecryptRequest) DecryptResponse {
	w := getScratch()
	defer putScratch(w)
	cx, cy := w.affine(&req.C1)
	t2, err := pointFromAffine(sm2Curve.ScalarMult(cx, cy, s.dInv[:]))
	if err != nil {
		panic("cosign: internal error: d2⁻¹·C1 is the identity") // C1 ≠ O and d2⁻¹ ≠ 0
	}
	return DecryptResponse{T2: t2}
}

// FinishDecrypt is the phone's last step: d·C1 = d1⁻¹·T2 − C1 = (x2, y2), then the standard
// key derivation, the C3 check in constant time, and the plaintext.
func (p *PhoneShare) FinishDecrypt(ct *Ciphertext, resp *DecryptResponse) ([]byte, error) {
	v := scalarMult(&resp.T2, &p.dInv)
	return finishDecrypt(ct, &v)
}

// ConsentPoint is the phone's consent to a bid opening's release of one envelope (design §3,
// consent-to-release): T1 = d1⁻¹·C1. With T1 the appliance alone computes d·C1 at release
// (ServerShare.Release), and for this C1 only.
func (p *PhoneShare) ConsentPoint(c1 *Point) Point {
	return scalarMult(c1, &p.dInv)
}

// Release is the appliance's step at a bid opening: d·C1 = d2⁻¹·T1 − C1 = (x2, y2) from the
// bidder's consent point T1 = d1⁻¹·C1, then the key derivation and the C3 check, so that a
// wrong T1 is caught here and reported as ErrDecryption for this ciphertext alone. T1 was
// checked on decoding (on the curve, not the identity).
func (s *ServerShare) Release(ct *Ciphertext, t1 *Point) ([]byte, error) {
	w := getScratch()
	defer putScratch(w)
	tx, ty := w.affine(t1)
	v, err := pointFromAffine(sm2Curve.ScalarMult(tx, ty, s.dInv[:]))
	if err != nil {
		return nil, ErrDecryption // unreachable for a checked T1; never a panic on input
	}
	return finishDecrypt(ct, &v)
}

// finishDecrypt turns v = (d1·d2)⁻¹·C1 into the plaintext: d·C1 = v − C1 = (x2, y2), the
// standard key derivation, and the C3 check in constant time.
func finishDecrypt(ct *Ciphertext, v *Point) ([]byte, error) {
	negC1 := negate(&ct.C1)
	shared, err := add(v, &negC1)
	if err != nil {
		return nil, ErrDecryption
	}
	defer clear(shared[:])
	x2y2 := shared[1:]
	key := kdf.Kdf(sm3.New, x2y2, len(ct.C2))
	defer clear(key)
	if allZero(key) {
		return nil, ErrDecryption
	}
	msg := make([]byte, len(ct.C2))
	subtle.XORBytes(msg, ct.C2, key)
	h := sm3.New()
	h.Write(x2y2[:ScalarSize])
	h.Write(msg)
	h.Write(x2y2[ScalarSize:])
	if subtle.ConstantTimeCompare(h.Sum(nil), ct.C3[:]) != 1 {
		clear(msg)
		return nil, ErrDecryption
	}
	return msg, nil
}
