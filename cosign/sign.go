package cosign

import (
	"io"
	"math/big"

	"github.com/emmansun/gmsm/sm2"
)

// DefaultSignerID is the SM2 signer ID of GB/T 32918.2 used when none is given.
const DefaultSignerID = "1234567812345678"

// SignRequest is the phone's signing message: Q1 = k1·G and the digest e = SM3(Z_A ‖ M).
// The server never sees M.
type SignRequest struct {
	Q1 Point
	E  [ScalarSize]byte
}

// SignResponse is the server's answer: r and the two partial values s2 = d2·k3 and
// s3 = d2·(r + k2), all in [1, n-1].
type SignResponse struct {
	R, S2, S3 [ScalarSize]byte
}

// Signature is an SM2 signature (r, s), both in [1, n-1].
type Signature struct {
	R, S [ScalarSize]byte
}

// Digest returns e = SM3(Z_A ‖ msg) for the public key and signer ID (DefaultSignerID when
// id is empty), the value an SM2 signature signs.
func Digest(pub *Point, id, msg []byte) ([ScalarSize]byte, error) {
	var e [ScalarSize]byte
	if len(id) == 0 {
		id = []byte(DefaultSignerID)
	}
	h, err := sm2.CalculateSM2Hash(pub.PublicKey(), msg, id)
	if err != nil {
		return e, err
	}
	copy(e[:], h)
	return e, nil
}

// SignSession holds the phone's nonce k1 between its two signing steps. Use it once.
type SignSession struct {
	share  *PhoneShare
	public Point
	e      [ScalarSize]byte
	k1     [ScalarSize]byte
}

// StartSign is the phone's first step: k1 ←$ [1, n-1], Q1 = k1·G.
func (p *PhoneShare) StartSign(rand io.Reader, public *Point, e *[ScalarSize]byte) (*SignSession, *SignRequest, error) {
	s := &SignSession{share: p, public: *public, e: *e}
	if err := randomScalar(rand, &s.k1); err != nil {
		return nil, nil, err
	}
	return s, &SignRequest{Q1: scalarBaseMult(&s.k1), E: *e}, nil
}

// Sign is the server's step. With k2, k3 ←$ [1, n-1]:
//
//	(x1, y1) = k3·Q1 + k2·G      (one combined multiplication)
//	r  = (e + x1) mod n          (drawn again if r = 0)
//	s2 = d2·k3 mod n
//	s3 = d2·(r + k2) mod n       (drawn again if 0)
//
// The nonce of the joint signature is k = k1·k3 + k2, unknown to either side alone.
func (s *ServerShare) Sign(rand io.Reader, req *SignRequest) (SignResponse, error) {
	var resp SignResponse
	w := getScratch()
	defer putScratch(w)
	qx, qy := w.affine(&req.Q1)
	for {
		if err := randomScalar(rand, &w.k2); err != nil {
			return resp, err
		}
		if err := randomScalar(rand, &w.k3); err != nil {
			return resp, err
		}
		x1, y1 := curveCombinedMult.CombinedMult(qx, qy, w.k2[:], w.k3[:])
		if x1.Sign() == 0 && y1.Sign() == 0 { // k3·k1 + k2 = 0 mod n
			continue
		}
		x1.FillBytes(w.x1[:])
		if s.signScalars(w, &req.E, &resp) {
			return resp, nil
		}
	}
}

// signScalars is the scalar part of the server's step: r, s2 and s3 from e and the x1, k2 and
// k3 in w. It reports false when r or s3 is zero and fresh nonces are needed.
func (s *ServerShare) signScalars(w *scratch, e *[ScalarSize]byte, resp *SignResponse) bool {
	d2 := setNat(w.d, &s.d)
	r := setReduced(w.r, e).Add(setReduced(w.t, &w.x1), orderN)
	if r.IsZero() == 1 {
		return false
	}
	s3 := setNat(w.s3, &w.k2).Add(r, orderN).Mul(d2, orderN)
	if s3.IsZero() == 1 {
		return false
	}
	putNat(&resp.R, r)
	putNat(&resp.S2, setNat(w.t, &w.k3).Mul(d2, orderN))
	putNat(&resp.S3, s3)
	return true
}

// Finish is the phone's last step: s = d1·(k1·s2 + s3) − r mod n, which equals
// (1 + d)⁻¹·(k − r·d) for the joint key d. It rejects s = 0 and r + s = n and verifies (r, s)
// under the joint public key before returning it, so a faulty server answer never becomes a
// bad signature in the world.
func (ss *SignSession) Finish(resp *SignResponse) (Signature, error) {
	defer clear(ss.k1[:])
	r := nat(&resp.R)
	t := nat(&ss.k1).Mul(nat(&resp.S2), orderN).Add(nat(&resp.S3), orderN)
	sNat := t.Mul(nat(&ss.share.d), orderN).Sub(r, orderN)
	if sNat.IsZero() == 1 || bigmodZero().Add(sNat, orderN).Add(r, orderN).IsZero() == 1 {
		return Signature{}, ErrDegenerate
	}
	sig := Signature{R: resp.R}
	putNat(&sig.S, sNat)
	if !Verify(&ss.public, &ss.e, &sig) {
		return Signature{}, ErrBadSignature
	}
	return sig, nil
}

// Verify checks a signature on digest e under pub with gmsm's standard SM2 verification.
func Verify(pub *Point, e *[ScalarSize]byte, sig *Signature) bool {
	return sm2.Verify(pub.PublicKey(), e[:], new(big.Int).SetBytes(sig.R[:]), new(big.Int).SetBytes(sig.S[:]))
}

// ASN1 returns the signature in the DER form that gmsm, OpenSSL and X.509 use.
func (sig *Signature) ASN1() []byte {
	b, err := encodeSignatureASN1(sig)
	if err != nil {
		panic("cosign: internal error: " + err.Error())
	}
	return b
}
