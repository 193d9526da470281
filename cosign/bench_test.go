package cosign

import (
	"crypto/rand"
	"testing"
)

// The server steps are measured beside the raw gmsm operations they are built on, in the same
// run (design §6): sign ≈ one CombinedMult plus the scalar work, decrypt ≈ one ScalarMult.
// Compare with benchstat or by eye:
//
//	go test -run '^$' -bench 'Raw|Server|ScalarWork' -benchmem -count 10 ./cosign/

func benchFixture(b *testing.B) (*Key, *LocalServer, *SignRequest, *DecryptRequest) {
	key, server := newPair(b, "bench")
	e := [ScalarSize]byte{9}
	_, sreq, err := key.share.StartSign(rand.Reader, &key.public, &e)
	if err != nil {
		b.Fatal(err)
	}
	return key, server, sreq, &DecryptRequest{C1: scalarBaseMult(&[ScalarSize]byte{31: 5})}
}

func BenchmarkRawCombinedMult(b *testing.B) {
	_, _, sreq, _ := benchFixture(b)
	var k2, k3 [ScalarSize]byte
	randomScalar(rand.Reader, &k2)
	randomScalar(rand.Reader, &k3)
	qx, qy := sreq.Q1.affine()
	for b.Loop() {
		curveCombinedMult.CombinedMult(qx, qy, k2[:], k3[:])
	}
}

func BenchmarkRawScalarMult(b *testing.B) {
	_, _, _, dreq := benchFixture(b)
	var k [ScalarSize]byte
	randomScalar(rand.Reader, &k)
	cx, cy := dreq.C1.affine()
	for b.Loop() {
		sm2Curve.ScalarMult(cx, cy, k[:])
	}
}

// BenchmarkScalarWork is what the sign step does besides the CombinedMult: two nonce draws
// from crypto/rand and the mod-n arithmetic for r, s2 and s3.
func BenchmarkScalarWork(b *testing.B) {
	_, server, sreq, _ := benchFixture(b)
	var resp SignResponse
	w := getScratch()
	w.x1 = sreq.Q1.x()
	for b.Loop() {
		randomScalar(rand.Reader, &w.k2)
		randomScalar(rand.Reader, &w.k3)
		server.Share.signScalars(w, &sreq.E, &resp)
	}
}

func BenchmarkServerSign(b *testing.B) {
	_, server, sreq, _ := benchFixture(b)
	for b.Loop() {
		if _, err := server.Share.Sign(rand.Reader, sreq); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkServerSignFromWire adds decoding and validating the request, as the daemon does.
func BenchmarkServerSignFromWire(b *testing.B) {
	_, server, sreq, _ := benchFixture(b)
	wire := mustMarshal(b, sreq)
	for b.Loop() {
		var req SignRequest
		if err := req.UnmarshalBinary(wire); err != nil {
			b.Fatal(err)
		}
		if _, err := server.Share.Sign(rand.Reader, &req); err != nil {
			b.Fatal(err)
		}
	}
}

func BenchmarkServerDecrypt(b *testing.B) {
	_, server, _, dreq := benchFixture(b)
	for b.Loop() {
		server.Share.Decrypt(dreq)
	}
}

func BenchmarkServerDecryptFromWire(b *testing.B) {
	_, server, _, dreq := benchFixture(b)
	wire := mustMarshal(b, dreq)
	for b.Loop() {
		var req DecryptRequest
		if err := req.UnmarshalBinary(wire); err != nil {
			b.Fatal(err)
		}
		server.Share.Decrypt(&req)
	}
}

// The phone's side and whole protocols, for reference.
func BenchmarkLocalSign(b *testing.B) {
	key, _, _, _ := benchFixture(b)
	e := [ScalarSize]byte{1}
	for b.Loop() {
		if _, err := key.SignDigest(b.Context(), rand.Reader, &e); err != nil {
			b.Fatal(err)
		}
	}
}

func BenchmarkKeygen(b *testing.B) {
	for b.Loop() {
		if _, _, err := NewLocalPair(rand.Reader, []byte("bench")); err != nil {
			b.Fatal(err)
		}
	}
}

// x returns p's x coordinate.
func (p *Point) x() [ScalarSize]byte {
	var x [ScalarSize]byte
	copy(x[:], p[1:1+ScalarSize])
	return x
}
