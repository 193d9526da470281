package cosign

import (
	"encoding/binary"
	"io"

	"github.com/emmansun/gmsm/sm3"
)

// KeygenRequest is the phone's first key-generation message: P1 = d1⁻¹·G and a proof that
// the phone knows log_G(P1), bound to the request context.
type KeygenRequest struct {
	P1    Point
	Proof Proof
}

// Proof is a Schnorr proof of knowledge of w = log_G(W), in (challenge, response) form:
// c = H(context, W, R) with R = t·G, and z = t + c·w mod n. Both are in [1, n-1].
type Proof struct {
	C, Z [ScalarSize]byte
}

// KeygenResponse is the server's answer: the joint public key P and P2 = d2⁻¹·G.
type KeygenResponse struct {
	Public Point
	P2     Point
}

// PhoneKeygen holds the phone's state between its two key-generation steps.
type PhoneKeygen struct {
	share PhoneShare
	p1    Point
}

// StartKeygen is the phone's first step: d1 ←$ [1, n-1], P1 = d1⁻¹·G, and a proof of
// knowledge of d1⁻¹ bound to context (the key id and user, encoded by the caller; the
// server must use the same bytes).
func StartKeygen(rand io.Reader, context []byte) (*PhoneKeygen, *KeygenRequest, error) {
	var d1 [ScalarSize]byte
	if err := randomScalar(rand, &d1); err != nil {
		return nil, nil, err
	}
	pk := &PhoneKeygen{share: PhoneShare{newShare(&d1)}}
	clear(d1[:])
	pk.p1 = scalarBaseMult(&pk.share.dInv)
	proof, err := prove(rand, context, &pk.share.dInv, &pk.p1)
	if err != nil {
		return nil, nil, err
	}
	return pk, &KeygenRequest{P1: pk.p1, Proof: proof}, nil
}

// ServerKeygen is the server's step: verify the proof, d2 ←$ [1, n-1], P = d2⁻¹·P1 − G
// (drawing again in the negligible case that P is the identity), P2 = d2⁻¹·G.
func ServerKeygen(rand io.Reader, context []byte, req *KeygenRequest) (*ServerShare, *KeygenResponse, error) {
	if err := verifyProof(context, &req.P1, &req.Proof); err != nil {
		return nil, nil, err
	}
	for {
		var d2 [ScalarSize]byte
		if err := randomScalar(rand, &d2); err != nil {
			return nil, nil, err
		}
		s := &ServerShare{newShare(&d2)}
		clear(d2[:])
		t := scalarMult(&req.P1, &s.dInv)
		pub, err := add(&t, &negGenerator)
		if err != nil { // d1·d2 = 1, so d = 0: not a key
			s.Destroy()
			continue
		}
		return s, &KeygenResponse{Public: pub, P2: scalarBaseMult(&s.dInv)}, nil
	}
}

// Finish is the phone's last step: it checks P + G = d1⁻¹·P2, which holds only if the server
// combined its share with our P1, and returns our share and the joint public key.
func (pk *PhoneKeygen) Finish(resp *KeygenResponse) (*PhoneShare, Point, error) {
	if err := pk.share.CheckPair(&resp.Public, &resp.P2); err != nil {
		return nil, Point{}, err
	}
	s := &PhoneShare{pk.share.share}
	pk.share.Destroy()
	return s, resp.Public, nil
}

// proofDomain separates these proofs from every other use of SM3 in hufu.
const proofDomain = "hufu/cosign/v1 keygen proof of knowledge"

func proofChallenge(context []byte, w, r *Point) [ScalarSize]byte {
	h := sm3.New()
	h.Write([]byte(proofDomain))
	var n [4]byte
	binary.BigEndian.PutUint32(n[:], uint32(len(context)))
	h.Write(n[:])
	h.Write(context)
	h.Write(w[:])
	h.Write(r[:])
	var digest, c [ScalarSize]byte
	h.Sum(digest[:0])
	putNat(&c, reduceDigest(&digest))
	return c
}

func prove(rand io.Reader, context []byte, w *[ScalarSize]byte, wPoint *Point) (Proof, error) {
	for {
		var t [ScalarSize]byte
		if err := randomScalar(rand, &t); err != nil {
			return Proof{}, err
		}
		r := scalarBaseMult(&t)
		p := Proof{C: proofChallenge(context, wPoint, &r)}
		putNat(&p.Z, nat(&t).Add(nat(&p.C).Mul(nat(w), orderN), orderN))
		clear(t[:])
		var zero [ScalarSize]byte
		if p.C != zero && p.Z != zero { // both public; fails with probability ~2⁻²⁵⁵
			return p, nil
		}
	}
}

// verifyProof recomputes R = z·G − c·W with one combined multiplication and checks that it
// hashes to c.
func verifyProof(context []byte, w *Point, p *Proof) error {
	var negC [ScalarSize]byte
	putNat(&negC, bigmodZero().Sub(nat(&p.C), orderN))
	wx, wy := w.affine()
	r, err := pointFromAffine(curveCombinedMult.CombinedMult(wx, wy, p.Z[:], negC[:]))
	if err != nil {
		return ErrProof
	}
	if c := proofChallenge(context, w, &r); c != p.C {
		return ErrProof
	}
	return nil
}

// KeygenContext is the proof context hufu binds a key-generation request to: the account
// and the key id, length-prefixed, so a proof made for one key or user cannot be replayed
// for another. Phone and server compute it the same way.
func KeygenContext(userID, keyID string) []byte {
	out := []byte("hufu/key/v1")
	for _, part := range []string{userID, keyID} {
		out = binary.BigEndian.AppendUint32(out, uint32(len(part)))
		out = append(out, part...)
	}
	return out
}
