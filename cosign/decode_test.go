package cosign

import (
	"bytes"
	"errors"
	"math/big"
	"testing"

	"github.com/emmansun/gmsm/sm2"
)

// Encodings used by the bad-input table and as fuzz seeds.
var (
	nPlusOne   = new(big.Int).Add(curveN, big.NewInt(1)).FillBytes(make([]byte, ScalarSize))
	maxScalar  = bytes.Repeat([]byte{0xff}, ScalarSize)
	zeroScalar = make([]byte, ScalarSize)
	oneScalar  = append(make([]byte, ScalarSize-1), 1)
	nMinusOne  = new(big.Int).Sub(curveN, big.NewInt(1)).FillBytes(make([]byte, ScalarSize))
	identity65 = append([]byte{0x04}, make([]byte, 2*ScalarSize)...)
	offCurve   = func() []byte { b := append([]byte(nil), generator[:]...); b[64] ^= 1; return b }()
	xAboveP    = func() []byte { b := append([]byte(nil), generator[:]...); copy(b[1:33], maxScalar); return b }()
	gx         = sm2.P256().Params().Gx.FillBytes(make([]byte, ScalarSize))
)

func cat(parts ...[]byte) []byte { return bytes.Join(parts, nil) }

func TestParsePointAndScalar(t *testing.T) {
	points := []struct {
		name string
		in   []byte
		want error
	}{
		{"generator", generator[:], nil},
		{"empty", nil, ErrLength},
		{"truncated", generator[:64], ErrLength},
		{"over-long", cat(generator[:], []byte{0}), ErrLength},
		{"compressed form", cat([]byte{0x02}, gx, make([]byte, 32)), ErrPointEncoding},
		{"hybrid form", cat([]byte{0x06}, generator[1:]), ErrPointEncoding},
		{"identity (SEC 1)", []byte{0x00}, ErrIdentity},
		{"identity as (0, 0)", identity65, ErrIdentity},
		{"off the curve", offCurve, ErrNotOnCurve},
		{"x ≥ p", xAboveP, ErrNotOnCurve},
	}
	for _, c := range points {
		t.Run("point/"+c.name, func(t *testing.T) {
			p, err := ParsePoint(c.in)
			if !errors.Is(err, c.want) {
				t.Fatalf("got %v, want %v", err, c.want)
			}
			if err == nil && !bytes.Equal(p[:], c.in) {
				t.Fatal("decoded point differs from input")
			}
		})
	}
	scalars := []struct {
		name string
		in   []byte
		want error
	}{
		{"one", oneScalar, nil},
		{"n-1", nMinusOne, nil},
		{"zero", zeroScalar, ErrScalarRange},
		{"n", nBytes[:], ErrScalarRange},
		{"n+1", nPlusOne, ErrScalarRange},
		{"2^256-1", maxScalar, ErrScalarRange},
		{"31 bytes", oneScalar[1:], ErrLength},
		{"33 bytes", cat([]byte{0}, oneScalar), ErrLength},
	}
	for _, c := range scalars {
		t.Run("scalar/"+c.name, func(t *testing.T) {
			if _, err := ParseScalar(c.in); !errors.Is(err, c.want) {
				t.Fatalf("got %v, want %v", err, c.want)
			}
		})
	}
}

// message is any wire message of this package.
type message interface {
	MarshalBinary() ([]byte, error)
	UnmarshalBinary([]byte) error
}

func TestMessageDecoders(t *testing.T) {
	g, one, e := generator[:], oneScalar, bytes.Repeat([]byte{0x5a}, 32)
	cases := []struct {
		name  string
		msg   func() message
		in    []byte
		field string // "" for success
		want  error
	}{
		{"keygen request ok", func() message { return new(KeygenRequest) }, cat(g, one, one), "", nil},
		{"keygen request truncated", func() message { return new(KeygenRequest) }, cat(g, one, one)[:128], "keygen_request", ErrLength},
		{"keygen request over-long", func() message { return new(KeygenRequest) }, cat(g, one, one, []byte{0}), "keygen_request", ErrLength},
		{"keygen request p1 off curve", func() message { return new(KeygenRequest) }, cat(offCurve, one, one), "keygen_request.p1", ErrNotOnCurve},
		{"keygen request p1 identity", func() message { return new(KeygenRequest) }, cat(identity65, one, one), "keygen_request.p1", ErrIdentity},
		{"keygen request c zero", func() message { return new(KeygenRequest) }, cat(g, zeroScalar, one), "keygen_request.proof.c", ErrScalarRange},
		{"keygen request z = n", func() message { return new(KeygenRequest) }, cat(g, one, nBytes[:]), "keygen_request.proof.z", ErrScalarRange},
		{"keygen response ok", func() message { return new(KeygenResponse) }, cat(g, g), "", nil},
		{"keygen response p2 off curve", func() message { return new(KeygenResponse) }, cat(g, offCurve), "keygen_response.p2", ErrNotOnCurve},
		{"keygen response public identity", func() message { return new(KeygenResponse) }, cat(identity65, g), "keygen_response.public", ErrIdentity},
		{"sign request ok", func() message { return new(SignRequest) }, cat(g, e), "", nil},
		{"sign request digest may be zero", func() message { return new(SignRequest) }, cat(g, zeroScalar), "", nil},
		{"sign request digest may exceed n", func() message { return new(SignRequest) }, cat(g, maxScalar), "", nil},
		{"sign request q1 x ≥ p", func() message { return new(SignRequest) }, cat(xAboveP, e), "sign_request.q1", ErrNotOnCurve},
		{"sign request truncated", func() message { return new(SignRequest) }, cat(g, e)[:96], "sign_request", ErrLength},
		{"sign response ok", func() message { return new(SignResponse) }, cat(one, nMinusOne, one), "", nil},
		{"sign response r zero", func() message { return new(SignResponse) }, cat(zeroScalar, one, one), "sign_response.r", ErrScalarRange},
		{"sign response s2 = n", func() message { return new(SignResponse) }, cat(one, nBytes[:], one), "sign_response.s2", ErrScalarRange},
		{"sign response s3 ≥ n", func() message { return new(SignResponse) }, cat(one, one, maxScalar), "sign_response.s3", ErrScalarRange},
		{"sign response over-long", func() message { return new(SignResponse) }, cat(one, one, one, one), "sign_response", ErrLength},
		{"signature ok", func() message { return new(Signature) }, cat(one, one), "", nil},
		{"signature s zero", func() message { return new(Signature) }, cat(one, zeroScalar), "signature.s", ErrScalarRange},
		{"decrypt request ok", func() message { return new(DecryptRequest) }, g, "", nil},
		{"decrypt request c1 off curve", func() message { return new(DecryptRequest) }, offCurve, "decrypt_request.c1", ErrNotOnCurve},
		{"decrypt request c1 identity", func() message { return new(DecryptRequest) }, identity65, "decrypt_request.c1", ErrIdentity},
		{"decrypt request c1 compressed", func() message { return new(DecryptRequest) }, cat([]byte{0x03}, gx, make([]byte, 32)), "decrypt_request.c1", ErrPointEncoding},
		{"decrypt response t2 truncated", func() message { return new(DecryptResponse) }, g[:33], "decrypt_response", ErrLength},
		{"decrypt response t2 off curve", func() message { return new(DecryptResponse) }, offCurve, "decrypt_response.t2", ErrNotOnCurve},
		{"refresh offer ok", func() message { return new(RefreshOffer) }, cat([]byte{0, 0, 0, 2}, one, e), "", nil},
		{"refresh offer rho zero", func() message { return new(RefreshOffer) }, cat([]byte{0, 0, 0, 2}, zeroScalar, e), "refresh_offer.rho", ErrScalarRange},
		{"refresh offer truncated", func() message { return new(RefreshOffer) }, cat([]byte{0, 0, 0, 2}, one), "refresh_offer", ErrLength},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			m := c.msg()
			err := m.UnmarshalBinary(c.in)
			if c.want == nil {
				if err != nil {
					t.Fatalf("unexpected error %v", err)
				}
				if out := mustMarshal(t, m); !bytes.Equal(out, c.in) {
					t.Fatal("re-encoding differs from input")
				}
				return
			}
			var ie *InputError
			if !errors.As(err, &ie) || ie.Field != c.field || !errors.Is(err, c.want) {
				t.Fatalf("got %v, want %v in field %q", err, c.want, c.field)
			}
		})
	}
}

func TestParseCiphertext(t *testing.T) {
	key, _ := newPair(t, "ciphertexts")
	ct, err := sm2.Encrypt(newDetRand("ct"), key.Public().(*ecdsaPublicKey), []byte("sealed bid"), nil)
	if err != nil {
		t.Fatal(err)
	}
	parsed, err := ParseCiphertext(ct, C1C3C2)
	if err != nil {
		t.Fatal(err)
	}
	asn1CT, err := parsed.Marshal(ASN1)
	if err != nil {
		t.Fatal(err)
	}
	if viaGmsm, err := sm2.ASN1Ciphertext2Plain(asn1CT, nil); err != nil || !bytes.Equal(viaGmsm, ct) {
		t.Fatalf("our ASN.1 encoding is not gmsm's: %v", err)
	}
	header := ct[:PointSize+32]
	cases := []struct {
		name  string
		in    []byte
		enc   Encoding
		field string
		want  error
	}{
		{"empty", nil, C1C3C2, "ciphertext", ErrLength},
		{"no C2", header, C1C3C2, "ciphertext", ErrLength},
		{"no C2, old layout", header, C1C2C3, "ciphertext", ErrLength},
		{"C1 off curve", cat(offCurve, ct[PointSize:]), C1C3C2, "ciphertext.c1", ErrNotOnCurve},
		{"C1 identity", cat(identity65, ct[PointSize:]), C1C3C2, "ciphertext.c1", ErrIdentity},
		{"C1 hybrid", cat([]byte{0x07}, ct[1:]), C1C3C2, "ciphertext.c1", ErrPointEncoding},
		{"compressed C1 not on curve", cat([]byte{0x02}, bytes.Repeat([]byte{0xff}, 32), ct[PointSize:]), C1C3C2, "ciphertext.c1", ErrNotOnCurve},
		{"ASN.1 garbage", []byte{0x30, 0x03, 0x02, 0x01}, ASN1, "ciphertext", ErrCiphertextEncoding},
		{"ASN.1 trailing bytes", cat(asn1CT, []byte{0}), ASN1, "ciphertext", ErrCiphertextEncoding},
		{"unknown encoding", ct, Encoding(9), "encoding", ErrCiphertextEncoding},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			_, err := ParseCiphertext(c.in, c.enc)
			var ie *InputError
			if !errors.As(err, &ie) || ie.Field != c.field || !errors.Is(err, c.want) {
				t.Fatalf("got %v, want %v in field %q", err, c.want, c.field)
			}
		})
	}
}

func TestParseShare(t *testing.T) {
	_, server := newPair(t, "share-decoding")
	good := mustMarshal(t, server.Share)
	mismatched := append(append([]byte(nil), good[:32]...), oneScalar...)
	cases := []struct {
		name, field string
		in          []byte
		want        error
	}{
		{"truncated", "server_share", good[:63], ErrLength},
		{"zero d", "server_share.d", cat(zeroScalar, good[32:]), ErrScalarRange},
		{"d_inv ≥ n", "server_share.d_inv", cat(good[:32], maxScalar), ErrScalarRange},
		{"d_inv not the inverse", "server_share.d_inv", mismatched, ErrScalarRange},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			_, err := ParseServerShare(c.in)
			var ie *InputError
			if !errors.As(err, &ie) || ie.Field != c.field || !errors.Is(err, c.want) {
				t.Fatalf("got %v, want %v in field %q", err, c.want, c.field)
			}
		})
	}
}

func TestSignatureASN1(t *testing.T) {
	sig := Signature{}
	copy(sig.R[:], oneScalar)
	copy(sig.S[:], nMinusOne)
	back, err := ParseSignatureASN1(sig.ASN1())
	if err != nil || back != sig {
		t.Fatalf("round trip: %v", err)
	}
	zero := Signature{S: sig.S}
	if _, err := ParseSignatureASN1(zero.ASN1()); !errors.Is(err, ErrScalarRange) {
		t.Fatalf("r = 0: %v", err)
	}
	if _, err := ParseSignatureASN1(append(sig.ASN1(), 0)); err == nil {
		t.Fatal("trailing byte accepted")
	}
}
