package cosign

import (
	"bytes"
	"errors"
	"testing"

	"github.com/emmansun/gmsm/sm2"
)

// Every decoder of bytes from the network or from storage has a fuzz target. Each checks that
// the decoder never panics, that it fails only with *InputError, and that whatever it accepts
// re-encodes to the same bytes (and, for requests, that the server step accepts it too).
// Seeds come from testdata/fuzz (written by -update) and from f.Add below.

// fuzzMessage is the shared body of the fixed-size message targets.
func fuzzMessage(t *testing.T, in []byte, m message) {
	if err := m.UnmarshalBinary(in); err != nil {
		var ie *InputError
		if !errors.As(err, &ie) {
			t.Fatalf("error is not an *InputError: %v", err)
		}
		return
	}
	if out := mustMarshal(t, m); !bytes.Equal(out, in) {
		t.Fatalf("accepted %x but re-encodes as %x", in, out)
	}
}

// fuzzShare is a fixed server share for running server steps on fuzzed requests.
var fuzzShare = func() *ServerShare {
	var d [ScalarSize]byte
	d[31] = 7
	return &ServerShare{newShare(&d)}
}()

func FuzzParsePoint(f *testing.F) {
	f.Add(generator[:])
	f.Fuzz(func(t *testing.T, in []byte) {
		p, err := ParsePoint(in)
		if err == nil && !bytes.Equal(p[:], in) {
			t.Fatal("point changed in decoding")
		}
	})
}

func FuzzParseScalar(f *testing.F) {
	f.Add(oneScalar)
	f.Fuzz(func(t *testing.T, in []byte) {
		k, err := ParseScalar(in)
		if err == nil && !bytes.Equal(k[:], in) {
			t.Fatal("scalar changed in decoding")
		}
	})
}

func FuzzKeygenRequest(f *testing.F) {
	f.Add(cat(generator[:], oneScalar, oneScalar))
	f.Fuzz(func(t *testing.T, in []byte) {
		var m KeygenRequest
		fuzzMessage(t, in, &m)
		if m.UnmarshalBinary(in) == nil {
			if _, _, err := ServerKeygen(newDetRand("fuzz"), nil, &m); err != nil && !errors.Is(err, ErrProof) {
				t.Fatalf("server keygen: %v", err)
			}
		}
	})
}

func FuzzKeygenResponse(f *testing.F) {
	f.Add(cat(generator[:], generator[:]))
	f.Fuzz(func(t *testing.T, in []byte) { fuzzMessage(t, in, new(KeygenResponse)) })
}

func FuzzSignRequest(f *testing.F) {
	f.Add(cat(generator[:], oneScalar))
	f.Fuzz(func(t *testing.T, in []byte) {
		var m SignRequest
		fuzzMessage(t, in, &m)
		if m.UnmarshalBinary(in) == nil {
			if _, err := fuzzShare.Sign(newDetRand("fuzz"), &m); err != nil {
				t.Fatalf("server sign step refused a valid request: %v", err)
			}
		}
	})
}

func FuzzSignResponse(f *testing.F) {
	f.Add(cat(oneScalar, oneScalar, oneScalar))
	f.Fuzz(func(t *testing.T, in []byte) { fuzzMessage(t, in, new(SignResponse)) })
}

func FuzzSignature(f *testing.F) {
	f.Add(cat(oneScalar, nMinusOne))
	f.Fuzz(func(t *testing.T, in []byte) { fuzzMessage(t, in, new(Signature)) })
}

func FuzzDecryptRequest(f *testing.F) {
	f.Add(generator[:])
	f.Fuzz(func(t *testing.T, in []byte) {
		var m DecryptRequest
		fuzzMessage(t, in, &m)
		if m.UnmarshalBinary(in) == nil {
			fuzzShare.Decrypt(&m)
		}
	})
}

func FuzzDecryptResponse(f *testing.F) {
	f.Add(generator[:])
	f.Fuzz(func(t *testing.T, in []byte) { fuzzMessage(t, in, new(DecryptResponse)) })
}

func FuzzRefreshOffer(f *testing.F) {
	f.Add(cat([]byte{0, 0, 0, 2}, oneScalar, oneScalar))
	f.Fuzz(func(t *testing.T, in []byte) { fuzzMessage(t, in, new(RefreshOffer)) })
}

func FuzzParseServerShare(f *testing.F) {
	f.Add(mustMarshal(f, fuzzShare))
	f.Fuzz(func(t *testing.T, in []byte) {
		s, err := ParseServerShare(in)
		if err == nil && !bytes.Equal(mustMarshal(t, s), in) {
			t.Fatal("share changed in decoding")
		}
	})
}

func FuzzParseSignatureASN1(f *testing.F) {
	f.Add((&Signature{R: [ScalarSize]byte{31: 1}, S: [ScalarSize]byte{31: 2}}).ASN1())
	f.Fuzz(func(t *testing.T, in []byte) {
		sig, err := ParseSignatureASN1(in)
		if err != nil {
			return
		}
		if _, err := ParseSignatureASN1(sig.ASN1()); err != nil {
			t.Fatalf("re-encoded signature does not parse: %v", err)
		}
	})
}

// FuzzParseCiphertext tries every encoding on each input: a decoded ciphertext must survive
// re-encoding, and the phone's and server's steps must run on it without panicking.
func FuzzParseCiphertext(f *testing.F) {
	f.Add(cat(generator[:], oneScalar, []byte("c2")))
	f.Fuzz(func(t *testing.T, in []byte) {
		for _, enc := range []Encoding{C1C3C2, C1C2C3, ASN1} {
			ct, err := ParseCiphertext(in, enc)
			if err != nil {
				var ie *InputError
				if !errors.As(err, &ie) {
					t.Fatalf("%v: error is not an *InputError: %v", enc, err)
				}
				continue
			}
			out, err := ct.Marshal(enc)
			if err != nil {
				t.Fatal(err)
			}
			again, err := ParseCiphertext(out, enc)
			if err != nil || again.C1 != ct.C1 || again.C3 != ct.C3 || !bytes.Equal(again.C2, ct.C2) {
				t.Fatalf("%v: re-encoded ciphertext differs: %v", enc, err)
			}
			resp := fuzzShare.Decrypt(StartDecrypt(ct))
			phone := &PhoneShare{fuzzShare.share}
			if _, err := phone.FinishDecrypt(ct, &resp); err != nil && !errors.Is(err, ErrDecryption) {
				t.Fatalf("%v: %v", enc, err)
			}
		}
	})
}

// TestWriteFuzzSeeds writes the seed corpora from real protocol runs when -update is given.
func TestWriteFuzzSeeds(t *testing.T) {
	if !*update {
		t.Skip("run with -update to rewrite testdata/fuzz")
	}
	key, server := newPair(t, "fuzz-seeds")
	r := newDetRand("fuzz-seeds")
	_, kreq, err := StartKeygen(r, []byte("ctx"))
	if err != nil {
		t.Fatal(err)
	}
	_, kresp, err := ServerKeygen(r, []byte("ctx"), kreq)
	if err != nil {
		t.Fatal(err)
	}
	e := [ScalarSize]byte{1, 2, 3}
	session, sreq, err := key.share.StartSign(r, &key.public, &e)
	if err != nil {
		t.Fatal(err)
	}
	sresp, err := server.Share.Sign(r, sreq)
	if err != nil {
		t.Fatal(err)
	}
	sig, err := session.Finish(&sresp)
	if err != nil {
		t.Fatal(err)
	}
	_, offer, err := ServerKey{Public: key.public, Share: server.Share}.BeginRefresh(r)
	if err != nil {
		t.Fatal(err)
	}
	pub := key.Public().(*ecdsaPublicKey)
	var cts [][]byte
	for _, opts := range []*sm2.EncrypterOpts{
		nil, sm2.ASN1EncrypterOpts,
		sm2.NewPlainEncrypterOpts(sm2.MarshalCompressed, sm2.C1C2C3),
	} {
		ct, err := sm2.Encrypt(r, pub, []byte("sealed bid"), opts)
		if err != nil {
			t.Fatal(err)
		}
		cts = append(cts, ct)
	}
	parsed, _ := ParseCiphertext(cts[0], C1C3C2)
	dreq := StartDecrypt(parsed)
	dresp := server.Share.Decrypt(dreq)

	writeSeedCorpus(t, "FuzzParsePoint", key.public[:], offCurve, identity65, xAboveP)
	writeSeedCorpus(t, "FuzzParseScalar", oneScalar, nMinusOne, nBytes[:], zeroScalar)
	writeSeedCorpus(t, "FuzzKeygenRequest", mustMarshal(t, kreq))
	writeSeedCorpus(t, "FuzzKeygenResponse", mustMarshal(t, kresp))
	writeSeedCorpus(t, "FuzzSignRequest", mustMarshal(t, sreq), cat(offCurve, e[:]))
	writeSeedCorpus(t, "FuzzSignResponse", mustMarshal(t, &sresp), cat(nBytes[:], oneScalar, oneScalar))
	writeSeedCorpus(t, "FuzzSignature", mustMarshal(t, &sig))
	writeSeedCorpus(t, "FuzzDecryptRequest", mustMarshal(t, dreq), identity65)
	writeSeedCorpus(t, "FuzzDecryptResponse", mustMarshal(t, &dresp))
	writeSeedCorpus(t, "FuzzRefreshOffer", mustMarshal(t, &offer))
	writeSeedCorpus(t, "FuzzParseServerShare", mustMarshal(t, server.Share))
	writeSeedCorpus(t, "FuzzParseSignatureASN1", sig.ASN1())
	writeSeedCorpus(t, "FuzzParseCiphertext", cts...)
}
