package cosign

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/binary"
	"encoding/pem"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"testing"

	"github.com/emmansun/gmsm/sm2"
	"github.com/emmansun/gmsm/smx509"
)

// newDevice returns a member device's SM2 key pair, deterministic per seed.
func newDevice(t testing.TB, seed string) (*sm2.PrivateKey, Point) {
	t.Helper()
	priv, err := sm2.GenerateKey(newDetRand("device/" + seed))
	if err != nil {
		t.Fatal(err)
	}
	pub, err := PointFromPublicKey(&priv.PublicKey)
	if err != nil {
		t.Fatal(err)
	}
	return priv, pub
}

// delegated runs the whole delegation in process: the grantor's phone delegates, the
// server derives the member's share, the member opens and checks. It returns the member's
// key handle and the server's new share.
func delegated(t testing.TB, key *Key, server *LocalServer, device *sm2.PrivateKey, devicePub Point, ctx []byte, r *detRand) (*Key, *ServerShare, Point, []byte) {
	t.Helper()
	grant, envelope, err := key.share.Delegate(r, &devicePub, ctx)
	if err != nil {
		t.Fatal(err)
	}
	if len(envelope) != DelegationEnvelopeSize(len(ctx)) {
		t.Fatalf("envelope of %d bytes, want %d", len(envelope), DelegationEnvelopeSize(len(ctx)))
	}
	var wire DelegationGrant // the grant crosses the network
	if err := wire.UnmarshalBinary(mustMarshal(t, &grant)); err != nil {
		t.Fatal(err)
	}
	memberServer, p2, err := server.Share.Delegate(&wire)
	if err != nil {
		t.Fatal(err)
	}
	member, err := AcceptDelegation(device, envelope, ctx, &key.public, &p2)
	if err != nil {
		t.Fatalf("member accepts: %v", err)
	}
	return NewKey(key.public, member, &LocalServer{Share: memberServer, Rand: r}), memberServer, p2, envelope
}

func TestDelegatedPairSignsAndDecryptsUnderTheSameKey(t *testing.T) {
	r := newDetRand("delegate")
	key, server := newPair(t, "delegate")
	pub := key.Public().(*ecdsaPublicKey)
	device, devicePub := newDevice(t, "staff-1")
	ctx := DelegationContext("key-00000001", "staff", "phone-1")
	member, memberServer, _, _ := delegated(t, key, server, device, devicePub, ctx, r)

	if memberServer.Equal(&server.Share.share) || member.share.Equal(&key.share.share) {
		t.Fatal("the delegated pair must not reuse the original shares")
	}
	msg := []byte("标书 signed by a staff member")
	for name, k := range map[string]*Key{"member": member, "grantor": key} {
		t.Run(name, func(t *testing.T) {
			sig, err := k.Sign(r, msg, &SignerOpts{})
			if err != nil {
				t.Fatal(err)
			}
			if !sm2.VerifyASN1WithSM2(pub, nil, msg, sig) {
				t.Fatal("gmsm rejects the signature")
			}
			ct, err := sm2.Encrypt(r, pub, msg, nil)
			if err != nil {
				t.Fatal(err)
			}
			got, err := k.Decrypt(nil, ct, nil)
			if err != nil || !bytes.Equal(got, msg) {
				t.Fatalf("decrypt: %v", err)
			}
		})
	}

	t.Run("the possession challenge", func(t *testing.T) {
		nonce := [ScalarSize]byte{9}
		e := DelegationChallenge(ctx, &nonce)
		sig, err := member.SignDigest(context.Background(), r, &e)
		if err != nil {
			t.Fatal(err)
		}
		if !Verify(&key.public, &e, &sig) {
			t.Fatal("challenge signature does not verify under P")
		}
		for name, other := range map[string][ScalarSize]byte{
			"other context": DelegationChallenge(DelegationContext("key-00000001", "staff", "phone-2"), &nonce),
			"other nonce":   DelegationChallenge(ctx, &[ScalarSize]byte{8}),
		} {
			if other == e {
				t.Fatalf("%s gives the same challenge", name)
			}
		}
		if e2 := DelegationChallenge(ctx, &nonce); e2 != e {
			t.Fatal("the challenge is not deterministic")
		}
	})

	t.Run("shares do not mix across pairs", func(t *testing.T) {
		mixed := NewKey(key.public, member.share, server)
		if _, err := mixed.Sign(r, msg, &SignerOpts{}); !errors.Is(err, ErrBadSignature) {
			t.Fatalf("member's phone share with the grantor's server share: %v", err)
		}
		mixed = NewKey(key.public, key.share, &LocalServer{Share: memberServer, Rand: r})
		if _, err := mixed.Sign(r, msg, &SignerOpts{}); !errors.Is(err, ErrBadSignature) {
			t.Fatalf("grantor's phone share with the member's server share: %v", err)
		}
	})

	t.Run("OpenSSL", func(t *testing.T) { checkWithOpenSSL(t, member, msg) })
}

// checkWithOpenSSL has OpenSSL 3, when installed, verify a signature of k and encrypt to k's
// public key for k to decrypt.
func checkWithOpenSSL(t *testing.T, k *Key, msg []byte) {
	if _, err := exec.LookPath("openssl"); err != nil {
		t.Skip("openssl not found: interoperability with OpenSSL not checked")
	}
	dir := t.TempDir()
	path := func(name string) string { return filepath.Join(dir, name) }
	der, err := smx509.MarshalPKIXPublicKey(k.Public())
	if err != nil {
		t.Fatal(err)
	}
	sig, err := k.Sign(rand.Reader, msg, &SignerOpts{})
	if err != nil {
		t.Fatal(err)
	}
	for name, b := range map[string][]byte{
		"key.pem": pem.EncodeToMemory(&pem.Block{Type: "PUBLIC KEY", Bytes: der}), "msg": msg, "msg.sig": sig,
	} {
		if err := os.WriteFile(path(name), b, 0o600); err != nil {
			t.Fatal(err)
		}
	}
	cmd := exec.Command("openssl", "pkeyutl", "-verify", "-pubin", "-inkey", path("key.pem"), "-rawin", "-digest", "sm3",
		"-in", path("msg"), "-sigfile", path("msg.sig"), "-pkeyopt", "distid:"+DefaultSignerID)
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("openssl verify: %v\n%s", err, out)
	}
	cmd = exec.Command("openssl", "pkeyutl", "-encrypt", "-pubin", "-inkey", path("key.pem"), "-in", path("msg"), "-out", path("msg.enc"))
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("openssl encrypt: %v\n%s", err, out)
	}
	ct, err := os.ReadFile(path("msg.enc"))
	if err != nil {
		t.Fatal(err)
	}
	got, err := k.Decrypt(nil, ct, nil)
	if err != nil || !bytes.Equal(got, msg) {
		t.Fatalf("decrypt OpenSSL's ciphertext: %v", err)
	}
}

func TestDelegationFailures(t *testing.T) {
	r := newDetRand("delegate-failures")
	key, server := newPair(t, "delegate-failures")
	device, devicePub := newDevice(t, "staff-1")
	otherDevice, _ := newDevice(t, "staff-2")
	ctx := DelegationContext("key-00000001", "staff", "phone-1")
	grant, envelope, err := key.share.Delegate(r, &devicePub, ctx)
	if err != nil {
		t.Fatal(err)
	}
	_, p2, err := server.Share.Delegate(&grant)
	if err != nil {
		t.Fatal(err)
	}

	t.Run("appliance used another rho", func(t *testing.T) {
		wrong := DelegationGrant{Rho: [ScalarSize]byte{31: 5}}
		_, wrongP2, err := server.Share.Delegate(&wrong)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := AcceptDelegation(device, envelope, ctx, &key.public, &wrongP2); !errors.Is(err, ErrKeyMismatch) {
			t.Fatalf("got %v, want ErrKeyMismatch", err)
		}
		// And a member who skipped the check would not get a working pair.
		share, err := OpenDelegation(device, envelope, ctx)
		if err != nil {
			t.Fatal(err)
		}
		bad, _, _ := server.Share.Delegate(&wrong)
		if _, err := NewKey(key.public, share, &LocalServer{Share: bad, Rand: r}).Sign(r, []byte("m"), &SignerOpts{}); !errors.Is(err, ErrBadSignature) {
			t.Fatalf("sign with a mismatched pair: %v", err)
		}
	})
	t.Run("P2' of another key", func(t *testing.T) {
		other, otherServer := newPair(t, "delegate-other-key")
		_, otherP2, err := otherServer.Share.Delegate(&grant)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := AcceptDelegation(device, envelope, ctx, &key.public, &otherP2); !errors.Is(err, ErrKeyMismatch) {
			t.Fatalf("got %v, want ErrKeyMismatch", err)
		}
		if _, err := AcceptDelegation(device, envelope, ctx, &other.public, &p2); !errors.Is(err, ErrKeyMismatch) {
			t.Fatalf("claimed public key: got %v, want ErrKeyMismatch", err)
		}
	})
	if _, err := AcceptDelegation(device, envelope, ctx, &key.public, &p2); err != nil {
		t.Fatalf("the untampered envelope must open: %v", err)
	}

	flip := func(i int) []byte {
		b := bytes.Clone(envelope)
		b[i] ^= 1
		return b
	}
	cases := []struct {
		name     string
		device   *sm2.PrivateKey
		envelope []byte
		ctx      []byte
		field    string
		want     error
	}{
		{"another device's key", otherDevice, envelope, ctx, "delegation_envelope", ErrNotDelegation},
		{"relayed for another member", device, envelope, DelegationContext("key-00000001", "other", "phone-1"), "delegation_envelope.context", ErrDelegationContext},
		{"relayed for another device", device, envelope, DelegationContext("key-00000001", "staff", "phone-9"), "delegation_envelope.context", ErrDelegationContext},
		{"relayed for another key", device, envelope, DelegationContext("key-00000002", "staff", "phone-1"), "delegation_envelope.context", ErrDelegationContext},
		{"tampered C2", device, flip(len(envelope) - 1), ctx, "delegation_envelope", ErrNotDelegation},
		{"tampered C3", device, flip(PointSize), ctx, "delegation_envelope", ErrNotDelegation},
		{"C1 off the curve", device, flip(PointSize - 1), ctx, "delegation_envelope.c1", ErrNotOnCurve},
		{"C1 compressed", device, cat([]byte{0x02}, envelope[1:]), ctx, "delegation_envelope.c1", ErrPointEncoding},
		{"truncated", device, envelope[:DelegationEnvelopeSize(0)-1], ctx, "delegation_envelope", ErrLength},
		{"truncated C2", device, envelope[:len(envelope)-1], ctx, "delegation_envelope", ErrNotDelegation},
		{"empty", device, nil, ctx, "delegation_envelope", ErrLength},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			_, err := AcceptDelegation(c.device, c.envelope, c.ctx, &key.public, &p2)
			var ie *InputError
			if !errors.As(err, &ie) || ie.Field != c.field || !errors.Is(err, c.want) {
				t.Fatalf("got %v, want %v in field %q", err, c.want, c.field)
			}
		})
	}

	t.Run("another SM2 ciphertext to the device is not an envelope", func(t *testing.T) {
		ct, err := sm2.Encrypt(r, &device.PublicKey, bytes.Repeat([]byte{1}, 200), nil)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := OpenDelegation(device, ct, ctx); !errors.Is(err, ErrNotDelegation) {
			t.Fatalf("got %v, want ErrNotDelegation", err)
		}
	})
	t.Run("server refuses an unchecked grant", func(t *testing.T) {
		for _, rho := range [][]byte{zeroScalar, nBytes[:], maxScalar} {
			g := DelegationGrant{Rho: [ScalarSize]byte(rho)}
			var ie *InputError
			if _, _, err := server.Share.Delegate(&g); !errors.As(err, &ie) || ie.Field != "delegation_grant.rho" {
				t.Fatalf("rho %x: got %v", rho, err)
			}
		}
	})
	t.Run("randomness failure", func(t *testing.T) {
		for _, src := range []interface{ Read([]byte) (int, error) }{failingRand{}, constRand(0)} {
			if _, _, err := key.share.Delegate(src, &devicePub, ctx); !errors.Is(err, ErrRandom) {
				t.Fatalf("got %v, want ErrRandom", err)
			}
		}
	})
}

func TestDelegationDecoders(t *testing.T) {
	one := oneScalar
	grants := []struct {
		name  string
		in    []byte
		field string
		want  error
	}{
		{"ok", one, "", nil},
		{"n-1", nMinusOne, "", nil},
		{"zero", zeroScalar, "delegation_grant.rho", ErrScalarRange},
		{"n", nBytes[:], "delegation_grant.rho", ErrScalarRange},
		{"2^256-1", maxScalar, "delegation_grant.rho", ErrScalarRange},
		{"truncated", one[1:], "delegation_grant", ErrLength},
		{"over-long", cat(one, []byte{0}), "delegation_grant", ErrLength},
		{"empty", nil, "delegation_grant", ErrLength},
	}
	for _, c := range grants {
		t.Run("grant/"+c.name, func(t *testing.T) {
			var g DelegationGrant
			err := g.UnmarshalBinary(c.in)
			if c.want == nil {
				if err != nil || !bytes.Equal(mustMarshal(t, &g), c.in) {
					t.Fatalf("got %v", err)
				}
				return
			}
			var ie *InputError
			if !errors.As(err, &ie) || ie.Field != c.field || !errors.Is(err, c.want) {
				t.Fatalf("got %v, want %v in field %q", err, c.want, c.field)
			}
		})
	}

	ctx := []byte("ctx")
	share := mustMarshal(t, fuzzShare)
	plain := func(tag string, n uint32, ctx, share []byte) []byte {
		return cat([]byte(tag), binary.BigEndian.AppendUint32(nil, n), ctx, share)
	}
	badInverse := bytes.Clone(share)
	badInverse[63] ^= 1
	plaintexts := []struct {
		name  string
		in    []byte
		field string
		want  error
	}{
		{"ok", plain(delegationTag, 3, ctx, share), "", nil},
		{"empty", nil, "delegation_envelope", ErrLength},
		{"no share", plain(delegationTag, 3, ctx, nil), "delegation_envelope", ErrLength},
		{"other tag", plain("hufu/cosign/v1 delegatioN", 3, ctx, share), "delegation_envelope.tag", ErrNotDelegation},
		{"length prefix too long", plain(delegationTag, 4, ctx, share), "delegation_envelope.context", ErrLength},
		{"length prefix huge", plain(delegationTag, 0xffffffff, ctx, share), "delegation_envelope.context", ErrLength},
		{"length prefix too short", plain(delegationTag, 2, ctx, share), "delegation_envelope.context", ErrLength},
		{"other context", plain(delegationTag, 3, []byte("CTX"), share), "delegation_envelope.context", ErrDelegationContext},
		{"share zero", plain(delegationTag, 3, ctx, cat(zeroScalar, share[32:])), "delegation_envelope.share.d", ErrScalarRange},
		{"inverse out of range", plain(delegationTag, 3, ctx, cat(share[:32], nBytes[:])), "delegation_envelope.share.d_inv", ErrScalarRange},
		{"inverse does not match", plain(delegationTag, 3, ctx, badInverse), "delegation_envelope.share.d_inv", ErrScalarRange},
	}
	for _, c := range plaintexts {
		t.Run("plaintext/"+c.name, func(t *testing.T) {
			s, err := parseDelegationPlaintext(c.in, ctx)
			if c.want == nil {
				if err != nil || !s.Equal(&fuzzShare.share) {
					t.Fatalf("got %v", err)
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

// fuzzDevice is a fixed device key for the envelope fuzz target.
var fuzzDevice = func() *sm2.PrivateKey {
	k, err := sm2.NewPrivateKey(cat(make([]byte, 31), []byte{11}))
	if err != nil {
		panic(err)
	}
	return k
}()

var fuzzDelegationContext = DelegationContext("fuzz-key", "member", "device")

func FuzzDelegationGrant(f *testing.F) {
	f.Add(oneScalar)
	f.Fuzz(func(t *testing.T, in []byte) {
		var m DelegationGrant
		fuzzMessage(t, in, &m)
		if m.UnmarshalBinary(in) == nil {
			if _, _, err := fuzzShare.Delegate(&m); err != nil {
				t.Fatalf("server refused a decoded grant: %v", err)
			}
		}
	})
}

// FuzzOpenDelegation feeds envelopes to a fixed device key; every refusal is an
// *InputError.
func FuzzOpenDelegation(f *testing.F) {
	f.Add(make([]byte, DelegationEnvelopeSize(len(fuzzDelegationContext))))
	f.Fuzz(func(t *testing.T, in []byte) {
		s, err := OpenDelegation(fuzzDevice, in, fuzzDelegationContext)
		if err != nil {
			var ie *InputError
			if !errors.As(err, &ie) {
				t.Fatalf("error is not an *InputError: %v", err)
			}
			return
		}
		if _, err := ParsePhoneShare(mustMarshal(t, s)); err != nil {
			t.Fatalf("opened share does not re-parse: %v", err)
		}
	})
}

// FuzzDelegationPlaintext reaches the plaintext decoder directly, which fuzzing the
// ciphertext would almost never do.
func FuzzDelegationPlaintext(f *testing.F) {
	f.Add(cat([]byte(delegationTag), []byte{0, 0, 0, 0}, mustMarshal(f, fuzzShare)))
	f.Fuzz(func(t *testing.T, in []byte) {
		s, err := parseDelegationPlaintext(in, fuzzDelegationContext)
		if err != nil {
			var ie *InputError
			if !errors.As(err, &ie) {
				t.Fatalf("error is not an *InputError: %v", err)
			}
			return
		}
		want := cat([]byte(delegationTag), binary.BigEndian.AppendUint32(nil, uint32(len(fuzzDelegationContext))), fuzzDelegationContext, mustMarshal(t, s))
		if !bytes.Equal(want, in) {
			t.Fatal("accepted plaintext does not re-encode to itself")
		}
	})
}

// TestWriteDelegationFuzzSeeds writes the delegation seed corpora from a real run when
// -update is given.
func TestWriteDelegationFuzzSeeds(t *testing.T) {
	if !*update {
		t.Skip("run with -update to rewrite testdata/fuzz")
	}
	r := newDetRand("fuzz-seeds-delegation")
	key, _ := newPair(t, "fuzz-seeds-delegation")
	devicePub, err := PointFromPublicKey(&fuzzDevice.PublicKey)
	if err != nil {
		t.Fatal(err)
	}
	grant, envelope, err := key.share.Delegate(r, &devicePub, fuzzDelegationContext)
	if err != nil {
		t.Fatal(err)
	}
	otherCtx, err := func() ([]byte, error) {
		_, e, err := key.share.Delegate(r, &devicePub, []byte("another context"))
		return e, err
	}()
	if err != nil {
		t.Fatal(err)
	}
	tampered := bytes.Clone(envelope)
	tampered[len(tampered)-1] ^= 1
	share := mustMarshal(t, fuzzShare)
	plain := func(ctx []byte) []byte {
		return cat([]byte(delegationTag), binary.BigEndian.AppendUint32(nil, uint32(len(ctx))), ctx, share)
	}
	writeSeedCorpus(t, "FuzzDelegationGrant", mustMarshal(t, &grant), zeroScalar, nBytes[:])
	writeSeedCorpus(t, "FuzzOpenDelegation", envelope, otherCtx, tampered)
	writeSeedCorpus(t, "FuzzDelegationPlaintext", plain(fuzzDelegationContext), plain([]byte("other")))
}
