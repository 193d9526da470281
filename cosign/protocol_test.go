package cosign

import (
	"bytes"
	"context"
	"crypto/ecdsa"
	"crypto/rand"
	"errors"
	"fmt"
	"log/slog"
	"math/big"
	"strings"
	"testing"

	"github.com/emmansun/gmsm/sm2"
	"github.com/emmansun/gmsm/smx509"
)

func TestSignaturesVerifyWithGmsm(t *testing.T) {
	key, _ := newPair(t, "interop-sign")
	pub := key.Public().(*ecdsaPublicKey)
	for _, id := range []string{"", DefaultSignerID, "alice@example.cn", strings.Repeat("x", 300)} {
		for _, size := range []int{0, 1, 32, 33, 1000, 1 << 16} {
			t.Run(fmt.Sprintf("id=%.10q/size=%d", id, size), func(t *testing.T) {
				msg := bytes.Repeat([]byte{0xa5}, size)
				sig, err := key.Sign(rand.Reader, msg, &SignerOpts{ID: []byte(id)})
				if err != nil {
					t.Fatal(err)
				}
				wantID := []byte(id)
				if id == "" {
					wantID = nil // gmsm's default
				}
				if !sm2.VerifyASN1WithSM2(pub, wantID, msg, sig) {
					t.Fatal("gmsm rejects the two-party signature")
				}
				if sm2.VerifyASN1WithSM2(pub, []byte("other-id"), msg, sig) {
					t.Fatal("signature verifies under another signer ID")
				}
			})
		}
	}
	t.Run("gmsm default options", func(t *testing.T) {
		msg := []byte("bid document")
		sig, err := key.Sign(nil, msg, sm2.DefaultSM2SignerOpts)
		if err != nil {
			t.Fatal(err)
		}
		if !sm2.VerifyASN1WithSM2(pub, nil, msg, sig) {
			t.Fatal("gmsm rejects the signature")
		}
	})
	t.Run("precomputed digest", func(t *testing.T) {
		e, err := sm2.CalculateSM2Hash(pub, []byte("m"), nil)
		if err != nil {
			t.Fatal(err)
		}
		sig, err := key.Sign(nil, e, nil)
		if err != nil {
			t.Fatal(err)
		}
		if !sm2.VerifyASN1(pub, e, sig) {
			t.Fatal("gmsm rejects the signature over a digest")
		}
	})
	t.Run("gmsm option with a custom ID is refused, not ignored", func(t *testing.T) {
		if _, err := key.Sign(nil, []byte("m"), sm2.NewSM2SignerOption(true, []byte("bob"))); err == nil {
			t.Fatal("want an error")
		}
	})
}

func TestGmsmCiphertextsDecrypt(t *testing.T) {
	key, server := newPair(t, "interop-decrypt")
	pub := key.Public().(*ecdsaPublicKey)
	joint := jointPrivateKey(t, key, server)
	cases := []struct {
		name string
		opts *sm2.EncrypterOpts
		dec  *DecrypterOpts
	}{
		{"C1C3C2", sm2.NewPlainEncrypterOpts(sm2.MarshalUncompressed, sm2.C1C3C2), nil},
		{"C1C3C2 compressed C1", sm2.NewPlainEncrypterOpts(sm2.MarshalCompressed, sm2.C1C3C2), nil},
		{"C1C2C3", sm2.NewPlainEncrypterOpts(sm2.MarshalUncompressed, sm2.C1C2C3), &DecrypterOpts{Encoding: C1C2C3}},
		{"ASN.1", sm2.ASN1EncrypterOpts, nil},
	}
	for _, c := range cases {
		for _, size := range []int{1, 31, 32, 33, 4096} {
			t.Run(fmt.Sprintf("%s/%d", c.name, size), func(t *testing.T) {
				msg := make([]byte, size)
				rand.Read(msg)
				ct, err := sm2.Encrypt(rand.Reader, pub, msg, c.opts)
				if err != nil {
					t.Fatal(err)
				}
				var opts any
				if c.dec != nil {
					opts = c.dec
				}
				got, err := key.Decrypt(nil, ct, opts)
				if err != nil && size == 1 && gmsmRefuses(joint, ct, c.dec) {
					// gmsm v0.44.0 cannot decrypt about one in 256 of its own ciphertexts of a
					// one-byte message (with the whole key either); ours refuses the same.
					t.Skipf("gmsm v0.44.0 cannot decrypt this ciphertext of its own either: %v", err)
				}
				if err != nil {
					t.Fatal(err)
				}
				if !bytes.Equal(got, msg) {
					t.Fatal("plaintext differs")
				}
			})
		}
	}
}

// jointPrivateKey is the whole key d = (d1·d2)⁻¹ − 1 of a local pair, for checking what gmsm
// itself makes of a ciphertext; only tests ever hold it.
func jointPrivateKey(t *testing.T, key *Key, server *LocalServer) *sm2.PrivateKey {
	t.Helper()
	n := sm2.P256().Params().N
	d := new(big.Int).Mul(new(big.Int).SetBytes(key.share.d[:]), new(big.Int).SetBytes(server.Share.d[:]))
	d.ModInverse(d.Mod(d, n), n)
	d.Mod(d.Sub(d, big.NewInt(1)), n)
	priv, err := sm2.NewPrivateKey(d.FillBytes(make([]byte, ScalarSize)))
	if err != nil {
		t.Fatal(err)
	}
	if !priv.PublicKey.Equal(key.Public()) {
		t.Fatal("the joint private key does not match the pair's public key")
	}
	return priv
}

// gmsmRefuses reports whether gmsm's own decryption with the whole key refuses ct.
func gmsmRefuses(priv *sm2.PrivateKey, ct []byte, dec *DecrypterOpts) bool {
	opts := sm2.NewPlainDecrypterOpts(sm2.C1C3C2)
	if dec != nil && dec.Encoding == C1C2C3 {
		opts = sm2.NewPlainDecrypterOpts(sm2.C1C2C3)
	}
	_, err := priv.Decrypt(nil, ct, opts)
	return err != nil
}

func TestCSRSignedByTwoPartyKeyVerifies(t *testing.T) {
	key, _ := newPair(t, "csr")
	der, err := smx509.CreateCertificateRequest(rand.Reader, &smx509.CertificateRequest{}, key)
	if err != nil {
		t.Fatal(err)
	}
	csr, err := smx509.ParseCertificateRequest(der)
	if err != nil {
		t.Fatal(err)
	}
	if err := csr.CheckSignature(); err != nil {
		t.Fatalf("CSR signature: %v", err)
	}
	if !csr.PublicKey.(*ecdsaPublicKey).Equal(key.Public()) {
		t.Fatal("CSR carries another public key")
	}
}

func TestRoundTripsOverManyKeys(t *testing.T) {
	n := 64
	if testing.Short() {
		n = 8
	}
	ctx := context.Background()
	for i := range n {
		seed := fmt.Sprintf("property-%d", i)
		r := newDetRand(seed)
		key, server := newPair(t, seed)
		pub := key.Public().(*ecdsaPublicKey)
		msg := []byte(seed)

		sig, err := key.Sign(r, msg, &SignerOpts{})
		if err != nil || !sm2.VerifyASN1WithSM2(pub, nil, msg, sig) {
			t.Fatalf("%s: sign: %v", seed, err)
		}
		ct, err := sm2.Encrypt(r, pub, msg, nil)
		if err != nil {
			t.Fatal(err)
		}
		if got, err := key.Decrypt(nil, ct, nil); err != nil || !bytes.Equal(got, msg) {
			t.Fatalf("%s: decrypt: %v", seed, err)
		}

		// Shares survive their storage encoding.
		enc := mustMarshal(t, server.Share)
		back, err := ParseServerShare(enc)
		if err != nil || !back.Equal(&server.Share.share) {
			t.Fatalf("%s: server share round trip: %v", seed, err)
		}

		// Refresh: the public key stays, the new pair works, old phone + new server does not.
		keyID := []byte(seed)
		phone := PhoneKey{Public: key.public, Version: 1, Share: key.share}
		srv := ServerKey{Public: key.public, Version: 1, Share: server.Share}
		srv, offer, err := srv.BeginRefresh(r)
		if err != nil {
			t.Fatal(err)
		}
		phone, challenge, err := phone.AcceptOffer(keyID, &offer)
		if err != nil {
			t.Fatal(err)
		}
		proof, err := signWith(ctx, r, phone.Pending.Share, &phone.Public, routedServer{srv, keyID, r}, &challenge)
		if err != nil {
			t.Fatalf("%s: confirmation signature: %v", seed, err)
		}
		if srv, err = srv.CommitRefresh(keyID, &proof); err != nil {
			t.Fatalf("%s: commit: %v", seed, err)
		}
		oldPhone := phone.Share
		if phone, err = phone.Committed(); err != nil {
			t.Fatal(err)
		}
		if srv.Public != key.public || phone.Public != key.public || srv.Version != 2 || phone.Version != 2 {
			t.Fatalf("%s: public key or version changed", seed)
		}
		newKey := NewKey(phone.Public, phone.Share, &LocalServer{Share: srv.Share, Rand: r})
		sig, err = newKey.Sign(r, msg, &SignerOpts{})
		if err != nil || !sm2.VerifyASN1WithSM2(pub, nil, msg, sig) {
			t.Fatalf("%s: sign after refresh: %v", seed, err)
		}
		if got, err := newKey.Decrypt(nil, ct, nil); err != nil || !bytes.Equal(got, msg) {
			t.Fatalf("%s: old ciphertext after refresh: %v", seed, err)
		}
		stale := NewKey(phone.Public, oldPhone, &LocalServer{Share: srv.Share, Rand: r})
		if _, err := stale.Sign(r, msg, &SignerOpts{}); !errors.Is(err, ErrBadSignature) {
			t.Fatalf("%s: old phone share with new server share: got %v, want ErrBadSignature", seed, err)
		}
		if _, err := stale.Decrypt(nil, ct, nil); !errors.Is(err, ErrDecryption) {
			t.Fatalf("%s: old phone share decrypts with new server share: %v", seed, err)
		}
	}
}

// routedServer answers sign requests with whichever share ServerKey.ShareFor picks, as the
// daemon does during a refresh.
type routedServer struct {
	key   ServerKey
	keyID []byte
	rand  *detRand
}

func (s routedServer) Sign(_ context.Context, req *SignRequest) (*SignResponse, error) {
	resp, err := s.key.ShareFor(s.keyID, &req.E).Sign(s.rand, req)
	return &resp, err
}

func (s routedServer) Decrypt(_ context.Context, req *DecryptRequest) (*DecryptResponse, error) {
	resp := s.key.Share.Decrypt(req)
	return &resp, nil
}

func TestRefreshTransitions(t *testing.T) {
	ctx := context.Background()
	r := newDetRand("refresh-states")
	key, server := newPair(t, "refresh-states")
	keyID := []byte("key-1")
	srv := ServerKey{Public: key.public, Version: 7, Share: server.Share}
	phone := PhoneKey{Public: key.public, Version: 7, Share: key.share}

	if _, err := srv.CommitRefresh(keyID, &Signature{}); !errors.Is(err, ErrRefreshState) {
		t.Fatalf("commit with nothing pending: %v", err)
	}
	if _, err := phone.Committed(); !errors.Is(err, ErrRefreshState) {
		t.Fatalf("phone commit with nothing pending: %v", err)
	}

	pending, offer, err := srv.BeginRefresh(r)
	if err != nil {
		t.Fatal(err)
	}
	if srv.Pending != nil {
		t.Fatal("BeginRefresh changed its receiver")
	}
	again, offer2, err := pending.BeginRefresh(r)
	if err != nil || offer2 != offer || again.Pending.Share != pending.Pending.Share {
		t.Fatal("a repeated BeginRefresh must return the pending offer")
	}
	if offer.Version != 8 {
		t.Fatalf("offer version %d, want 8", offer.Version)
	}

	// Ordinary digests go to the active share, the challenge to the pending one.
	challenge := offer.Challenge(keyID)
	var other [ScalarSize]byte
	if pending.ShareFor(keyID, &other) != server.Share || pending.ShareFor(keyID, &challenge) != pending.Pending.Share {
		t.Fatal("ShareFor routes wrongly")
	}
	if pending.ShareFor([]byte("key-2"), &challenge) != server.Share {
		t.Fatal("a challenge for another key must not reach the pending share")
	}

	wrong := offer
	wrong.Version = 9
	if _, _, err := phone.AcceptOffer(keyID, &wrong); !errors.Is(err, ErrRefreshState) {
		t.Fatalf("offer skipping a version: %v", err)
	}

	// A proof that is not a signature under P on this challenge does not confirm.
	var e [ScalarSize]byte
	otherSig, err := signWith(ctx, r, key.share, &key.public, server, &e)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := pending.CommitRefresh(keyID, &otherSig); !errors.Is(err, ErrRefreshProof) {
		t.Fatalf("signature on another digest: %v", err)
	}

	// Crash before the phone stored the offer: the old pair still works, abort restores.
	if aborted := pending.AbortRefresh(); aborted.Pending != nil || aborted.Share != server.Share || aborted.Version != 7 {
		t.Fatal("abort must restore the active state")
	}

	phonePending, challenge2, err := phone.AcceptOffer(keyID, &offer)
	if err != nil || challenge2 != challenge {
		t.Fatal("phone and server disagree on the challenge")
	}
	if dropped := phonePending.Abandon(); dropped.Pending != nil || dropped.Share != key.share {
		t.Fatal("abandon must keep the active share")
	}
	proof, err := signWith(ctx, r, phonePending.Pending.Share, &key.public, routedServer{pending, keyID, r}, &challenge)
	if err != nil {
		t.Fatal(err)
	}
	committed, err := pending.CommitRefresh(keyID, &proof)
	if err != nil || committed.Version != 8 || committed.Pending != nil {
		t.Fatalf("commit: %v", err)
	}
	if _, err := committed.CommitRefresh(keyID, &proof); !errors.Is(err, ErrRefreshState) {
		t.Fatal("a second commit must be refused")
	}
	if _, err := pending.CommitRefresh([]byte("key-2"), &proof); !errors.Is(err, ErrRefreshProof) {
		t.Fatal("a proof for another key id must not confirm")
	}
}

func TestProtocolFailures(t *testing.T) {
	key, server := newPair(t, "failures")
	r := newDetRand("failures")
	ctx := []byte("ctx")

	t.Run("proof bound to its context", func(t *testing.T) {
		_, req, err := StartKeygen(r, ctx)
		if err != nil {
			t.Fatal(err)
		}
		if _, _, err := ServerKeygen(r, []byte("other ctx"), req); !errors.Is(err, ErrProof) {
			t.Fatalf("got %v, want ErrProof", err)
		}
		tampered := *req
		tampered.Proof.Z[31] ^= 1
		if _, _, err := ServerKeygen(r, ctx, &tampered); !errors.Is(err, ErrProof) {
			t.Fatalf("got %v, want ErrProof", err)
		}
		replaced := *req
		replaced.P1 = generator
		if _, _, err := ServerKeygen(r, ctx, &replaced); !errors.Is(err, ErrProof) {
			t.Fatalf("got %v, want ErrProof", err)
		}
	})
	t.Run("phone detects a server that ignored its P1", func(t *testing.T) {
		phone, req, err := StartKeygen(r, ctx)
		if err != nil {
			t.Fatal(err)
		}
		_, resp, err := ServerKeygen(r, ctx, req)
		if err != nil {
			t.Fatal(err)
		}
		forged := *resp
		forged.Public = key.public
		if _, _, err := phone.Finish(&forged); !errors.Is(err, ErrKeyMismatch) {
			t.Fatalf("got %v, want ErrKeyMismatch", err)
		}
	})
	t.Run("tampered sign response is caught before use", func(t *testing.T) {
		e := [ScalarSize]byte{1}
		session, req, err := key.share.StartSign(r, &key.public, &e)
		if err != nil {
			t.Fatal(err)
		}
		resp, err := server.Share.Sign(r, req)
		if err != nil {
			t.Fatal(err)
		}
		resp.S3[31] ^= 1
		if _, err := session.Finish(&resp); !errors.Is(err, ErrBadSignature) {
			t.Fatalf("got %v, want ErrBadSignature", err)
		}
	})
	t.Run("wrong C3", func(t *testing.T) {
		ct, err := sm2.Encrypt(rand.Reader, key.Public().(*ecdsaPublicKey), []byte("bid"), nil)
		if err != nil {
			t.Fatal(err)
		}
		ct[PointSize] ^= 1
		if _, err := key.Decrypt(nil, ct, nil); !errors.Is(err, ErrDecryption) {
			t.Fatalf("got %v, want ErrDecryption", err)
		}
	})
	t.Run("wrong encoding asked for", func(t *testing.T) {
		ct, err := sm2.Encrypt(rand.Reader, key.Public().(*ecdsaPublicKey), []byte("bid"), nil)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := key.Decrypt(nil, ct, &DecrypterOpts{Encoding: C1C2C3}); !errors.Is(err, ErrDecryption) {
			t.Fatalf("got %v, want ErrDecryption", err)
		}
	})
	for name, src := range map[string]interface{ Read([]byte) (int, error) }{
		"failing source": failingRand{}, "all-zero source": constRand(0), "all-ones source": constRand(0xff),
	} {
		t.Run(name, func(t *testing.T) {
			if _, _, err := StartKeygen(src, ctx); !errors.Is(err, ErrRandom) {
				t.Fatalf("keygen: %v", err)
			}
			var e [ScalarSize]byte
			if _, _, err := key.share.StartSign(src, &key.public, &e); !errors.Is(err, ErrRandom) {
				t.Fatalf("start sign: %v", err)
			}
			req := SignRequest{Q1: generator}
			if _, err := server.Share.Sign(src, &req); !errors.Is(err, ErrRandom) {
				t.Fatalf("server sign: %v", err)
			}
			if _, _, err := (ServerKey{Share: server.Share}).BeginRefresh(src); !errors.Is(err, ErrRandom) {
				t.Fatalf("refresh: %v", err)
			}
		})
	}
}

func TestSharesNeverPrint(t *testing.T) {
	_, server := newPair(t, "redaction")
	raw := fmt.Sprintf("%x", server.Share.d[:8])
	var logged bytes.Buffer
	slog.New(slog.NewJSONHandler(&logged, nil)).Info("loaded", "share", server.Share)
	for _, out := range []string{
		fmt.Sprint(server.Share), fmt.Sprintf("%v %+v %#v %s", server.Share, server.Share, server.Share, server.Share),
		logged.String(),
	} {
		if strings.Contains(out, raw) || !strings.Contains(out, redacted) {
			t.Fatalf("share printed as %q", out)
		}
	}
}

type ecdsaPublicKey = ecdsa.PublicKey
