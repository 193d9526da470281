package cosign

import (
	"encoding/binary"
	"errors"
	"math/big"

	"golang.org/x/crypto/cryptobyte"
	"golang.org/x/crypto/cryptobyte/asn1"
)

// Wire encodings. Every message is a fixed-length concatenation of its fields in the order
// listed, points as PointSize-byte uncompressed encodings, scalars and digests as 32-byte
// big-endian, versions as 4-byte big-endian:
//
//	KeygenRequest   P1 ‖ C ‖ Z              65+32+32 = 129 bytes
//	KeygenResponse  P ‖ P2                  65+65    = 130 bytes
//	SignRequest     Q1 ‖ e                  65+32    =  97 bytes
//	SignResponse    r ‖ s2 ‖ s3             32·3     =  96 bytes
//	Signature       r ‖ s                   32·2     =  64 bytes
//	DecryptRequest  C1                                  65 bytes
//	DecryptResponse T2                                  65 bytes
//	RefreshOffer    version ‖ ρ ‖ nonce     4+32+32  =  68 bytes
//	DelegationGrant ρ                                   32 bytes
//
// A delegation envelope (delegate.go) is not fixed-size: it is an SM2 ciphertext
// C1 ‖ C3 ‖ C2 (C1 uncompressed) of tag ‖ len32(context) ‖ context ‖ d1′ ‖ d1′⁻¹, 190 bytes
// plus the context, the tag being "hufu/cosign/v1 delegation" (DelegationEnvelopeSize).
//
// Decoders check the exact length, then every point (form, on the curve, not the identity)
// and every scalar (in [1, n-1]); e and the nonce are digests and may take any value. Errors
// are *InputError naming the message and field, e.g. "sign_request.q1".
const (
	KeygenRequestSize   = PointSize + 2*ScalarSize
	KeygenResponseSize  = 2 * PointSize
	SignRequestSize     = PointSize + ScalarSize
	SignResponseSize    = 3 * ScalarSize
	SignatureSize       = 2 * ScalarSize
	DecryptRequestSize  = PointSize
	DecryptResponseSize = PointSize
	RefreshOfferSize    = 4 + 2*ScalarSize
)

// decoder reads fixed-size fields and remembers the first error.
type decoder struct {
	b   []byte
	msg string
	err error
}

func newDecoder(b []byte, msg string, size int) *decoder {
	d := &decoder{b: b, msg: msg}
	if len(b) != size {
		d.err = inputError(msg, ErrLength)
	}
	return d
}

func (d *decoder) next(n int) []byte {
	f := d.b[:n]
	d.b = d.b[n:]
	return f
}

func (d *decoder) point(field string, p *Point) {
	if d.err != nil {
		return
	}
	var err error
	if *p, err = ParsePoint(d.next(PointSize)); err != nil {
		d.err = inputError(d.msg+"."+field, err)
	}
}

func (d *decoder) scalar(field string, k *[ScalarSize]byte) {
	if d.err != nil {
		return
	}
	var err error
	if *k, err = ParseScalar(d.next(ScalarSize)); err != nil {
		d.err = inputError(d.msg+"."+field, err)
	}
}

func (d *decoder) digest(e *[ScalarSize]byte) {
	if d.err == nil {
		copy(e[:], d.next(ScalarSize))
	}
}

func (d *decoder) uint32(v *uint32) {
	if d.err == nil {
		*v = binary.BigEndian.Uint32(d.next(4))
	}
}

func concat(size int, fields ...[]byte) []byte {
	out := make([]byte, 0, size)
	for _, f := range fields {
		out = append(out, f...)
	}
	return out
}

func (m *KeygenRequest) MarshalBinary() ([]byte, error) {
	return concat(KeygenRequestSize, m.P1[:], m.Proof.C[:], m.Proof.Z[:]), nil
}

func (m *KeygenRequest) UnmarshalBinary(b []byte) error {
	d := newDecoder(b, "keygen_request", KeygenRequestSize)
	d.point("p1", &m.P1)
	d.scalar("proof.c", &m.Proof.C)
	d.scalar("proof.z", &m.Proof.Z)
	return d.err
}

func (m *KeygenResponse) MarshalBinary() ([]byte, error) {
	return concat(KeygenResponseSize, m.Public[:], m.P2[:]), nil
}

func (m *KeygenResponse) UnmarshalBinary(b []byte) error {
	d := newDecoder(b, "keygen_response", KeygenResponseSize)
	d.point("public", &m.Public)
	d.point("p2", &m.P2)
	return d.err
}

func (m *SignRequest) MarshalBinary() ([]byte, error) {
	return concat(SignRequestSize, m.Q1[:], m.E[:]), nil
}

func (m *SignRequest) UnmarshalBinary(b []byte) error {
	d := newDecoder(b, "sign_request", SignRequestSize)
	d.point("q1", &m.Q1)
	d.digest(&m.E)
	return d.err
}

func (m *SignResponse) MarshalBinary() ([]byte, error) {
	return concat(SignResponseSize, m.R[:], m.S2[:], m.S3[:]), nil
}

func (m *SignResponse) UnmarshalBinary(b []byte) error {
	d := newDecoder(b, "sign_response", SignResponseSize)
	d.scalar("r", &m.R)
	d.scalar("s2", &m.S2)
	d.scalar("s3", &m.S3)
	return d.err
}

func (m *Signature) MarshalBinary() ([]byte, error) {
	return concat(SignatureSize, m.R[:], m.S[:]), nil
}

func (m *Signature) UnmarshalBinary(b []byte) error {
	d := newDecoder(b, "signature", SignatureSize)
	d.scalar("r", &m.R)
	d.scalar("s", &m.S)
	return d.err
}

func (m *DecryptRequest) MarshalBinary() ([]byte, error) { return concat(PointSize, m.C1[:]), nil }

func (m *DecryptRequest) UnmarshalBinary(b []byte) error {
	d := newDecoder(b, "decrypt_request", DecryptRequestSize)
	d.point("c1", &m.C1)
	return d.err
}

func (m *DecryptResponse) MarshalBinary() ([]byte, error) { return concat(PointSize, m.T2[:]), nil }

func (m *DecryptResponse) UnmarshalBinary(b []byte) error {
	d := newDecoder(b, "decrypt_response", DecryptResponseSize)
	d.point("t2", &m.T2)
	return d.err
}

func (m *RefreshOffer) MarshalBinary() ([]byte, error) {
	var v [4]byte
	binary.BigEndian.PutUint32(v[:], m.Version)
	return concat(RefreshOfferSize, v[:], m.Rho[:], m.Nonce[:]), nil
}

func (m *RefreshOffer) UnmarshalBinary(b []byte) error {
	d := newDecoder(b, "refresh_offer", RefreshOfferSize)
	d.uint32(&m.Version)
	d.scalar("rho", &m.Rho)
	d.digest(&m.Nonce)
	return d.err
}

// encodeSignatureASN1 writes SEQUENCE { r INTEGER, s INTEGER }.
func encodeSignatureASN1(sig *Signature) ([]byte, error) {
	var b cryptobyte.Builder
	b.AddASN1(asn1.SEQUENCE, func(b *cryptobyte.Builder) {
		b.AddASN1BigInt(new(big.Int).SetBytes(sig.R[:]))
		b.AddASN1BigInt(new(big.Int).SetBytes(sig.S[:]))
	})
	return b.Bytes()
}

// ParseSignatureASN1 decodes a DER SM2 signature, with r and s in [1, n-1].
func ParseSignatureASN1(b []byte) (Signature, error) {
	var (
		sig   Signature
		r, s  big.Int
		inner cryptobyte.String
		in    = cryptobyte.String(b)
	)
	if !in.ReadASN1(&inner, asn1.SEQUENCE) || !in.Empty() ||
		!inner.ReadASN1Integer(&r) || !inner.ReadASN1Integer(&s) || !inner.Empty() {
		return sig, inputError("signature", errors.New("malformed DER signature"))
	}
	for _, f := range []struct {
		name string
		v    *big.Int
		out  *[ScalarSize]byte
	}{{"signature.r", &r, &sig.R}, {"signature.s", &s, &sig.S}} {
		if f.v.Sign() <= 0 || f.v.Cmp(curveN) >= 0 {
			return Signature{}, inputError(f.name, ErrScalarRange)
		}
		f.v.FillBytes(f.out[:])
	}
	return sig, nil
}
