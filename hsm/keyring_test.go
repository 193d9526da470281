//go:build cgo

package hsm_test

import (
	"bytes"
	"context"
	"crypto/ecdsa"
	"crypto/sha256"
	"crypto/x509"
	"encoding/hex"
	"encoding/pem"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/miekg/pkcs11"

	"github.com/hufu-hsm/hufu/hsm"
	"github.com/hufu-hsm/hufu/softhsm"
	"github.com/hufu-hsm/hufu/softhsm/softhsmtest"
)

// The tests run against the real SoftHSM2. They are deliberately not parallel: one of them
// breaks sessions on purpose, and SoftHSM2 may hand a stale session handle number to
// another test's new session.

func TestMain(m *testing.M) { softhsmtest.Main(m) }

// auditSigner is the interface the store package declares; the keyring's audit signer must
// satisfy it.
type auditSigner interface {
	SignDigest(ctx context.Context, digest []byte) ([]byte, error)
	PublicKey() *ecdsa.PublicKey
}

var _ auditSigner = (*hsm.AuditSigner)(nil)

func configFor(tok *softhsm.Token) hsm.Config {
	return hsm.Config{ModulePath: tok.ModulePath, TokenLabel: tok.Label, PINFile: tok.PINFile}
}

// newKeyring provisions a fresh token, initialises it and closes the keyring at the end.
func newKeyring(t testing.TB) (*hsm.Keyring, *softhsm.Token) {
	t.Helper()
	tok := softhsmtest.New(t)
	k, err := hsm.Initialize(context.Background(), configFor(tok))
	if err != nil {
		t.Fatalf("Initialize: %v", err)
	}
	t.Cleanup(func() { _ = k.Close() })
	return k, tok
}

func TestWrapUnwrapRoundTrip(t *testing.T) {
	k, _ := newKeyring(t)
	ctx := context.Background()
	tests := []struct {
		name      string
		plaintext []byte
		ad        []byte
	}{
		{"empty plaintext", nil, []byte("k/1")},
		{"share-sized", bytes.Repeat([]byte{0xA5}, 64), []byte("key-42|v3|")},
		{"no associated data", []byte("secret"), nil},
		{"64 KiB", bytes.Repeat([]byte("x"), 64<<10), []byte("big")},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			blob, err := k.Wrap(ctx, tc.plaintext, tc.ad)
			if err != nil {
				t.Fatal(err)
			}
			b, err := hsm.ParseBlob(blob)
			if err != nil {
				t.Fatal(err)
			}
			if b.Version != hsm.BlobVersion || b.KEKLabel != "hufu-kek-v1" || len(b.Nonce) != hsm.NonceSize ||
				len(b.Ciphertext) != len(tc.plaintext)+hsm.TagSize {
				t.Fatalf("blob %+v does not describe a v1 blob under hufu-kek-v1", b)
			}
			got, err := k.Unwrap(ctx, blob, tc.ad)
			if err != nil {
				t.Fatal(err)
			}
			if !bytes.Equal(got, tc.plaintext) {
				t.Fatal("round trip changed the plaintext")
			}
			again, err := k.Wrap(ctx, tc.plaintext, tc.ad)
			if err != nil {
				t.Fatal(err)
			}
			if bytes.Equal(blob, again) {
				t.Fatal("two wraps of the same plaintext are identical: nonce reused")
			}
		})
	}
}

func TestUnwrapRejects(t *testing.T) {
	k, _ := newKeyring(t)
	ctx := context.Background()
	ad := []byte("key-7|share-v1")
	blob, err := k.Wrap(ctx, bytes.Repeat([]byte{1}, 64), ad)
	if err != nil {
		t.Fatal(err)
	}
	labelLen := int(blob[3])
	nonceAt := 4 + labelLen
	ctAt := nonceAt + hsm.NonceSize
	flip := func(i int) []byte {
		b := bytes.Clone(blob)
		b[i] ^= 0x01
		return b
	}
	other, err := k.Wrap(ctx, bytes.Repeat([]byte{1}, 64), []byte("other"))
	if err != nil {
		t.Fatal(err)
	}

	tests := []struct {
		name string
		blob []byte
		ad   []byte
		want error
	}{
		{"wrong associated data", blob, []byte("key-8|share-v1"), hsm.ErrAuthFailed},
		{"missing associated data", blob, nil, hsm.ErrAuthFailed},
		{"associated data of another blob", other, ad, hsm.ErrAuthFailed},
		{"flipped magic", flip(0), ad, hsm.ErrMalformedBlob},
		{"flipped version", flip(2), ad, hsm.ErrUnsupportedVersion},
		{"flipped label length", flip(3), ad, hsm.ErrUnknownKEK},
		{"flipped label byte", flip(5), ad, hsm.ErrUnknownKEK},
		{"flipped nonce", flip(nonceAt), ad, hsm.ErrAuthFailed},
		{"flipped ciphertext", flip(ctAt + 3), ad, hsm.ErrAuthFailed},
		{"flipped tag", flip(len(blob) - 1), ad, hsm.ErrAuthFailed},
		{"one byte appended", append(bytes.Clone(blob), 0), ad, hsm.ErrAuthFailed},
		{"last byte cut", blob[:len(blob)-1], ad, hsm.ErrAuthFailed},
		{"cut to nonce and tag", blob[:ctAt+hsm.TagSize-1], ad, hsm.ErrMalformedBlob},
		{"cut after label", blob[:nonceAt], ad, hsm.ErrMalformedBlob},
		{"cut inside header", blob[:3], ad, hsm.ErrMalformedBlob},
		{"empty", nil, ad, hsm.ErrMalformedBlob},
		{"unknown KEK", relabel(t, blob, "hufu-kek-v9"), ad, hsm.ErrUnknownKEK},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			pt, err := k.Unwrap(ctx, tc.blob, tc.ad)
			if !errors.Is(err, tc.want) {
				t.Fatalf("Unwrap = %x, %v; want %v", pt, err, tc.want)
			}
			if errors.Is(err, hsm.ErrHSM) {
				t.Errorf("a bad blob is reported as an HSM failure: %v", err)
			}
			if !strings.HasPrefix(err.Error(), "hsm: unwrap: ") {
				t.Errorf("error %q does not name the operation", err)
			}
		})
	}
	// The keyring still works after all those rejections.
	if _, err := k.Unwrap(ctx, blob, ad); err != nil {
		t.Fatalf("good blob after rejections: %v", err)
	}
}

// relabel rewrites a blob's KEK label, keeping everything else.
func relabel(t *testing.T, blob []byte, label string) []byte {
	t.Helper()
	b, err := hsm.ParseBlob(blob)
	if err != nil {
		t.Fatal(err)
	}
	out := append([]byte{blob[0], blob[1], blob[2], byte(len(label))}, label...)
	out = append(out, b.Nonce...)
	return append(out, b.Ciphertext...)
}

// TestKeysCannotBeRead asks the token itself, through a raw PKCS#11 session, whether the
// secret keys can be read out.
func TestKeysCannotBeRead(t *testing.T) {
	_, tok := newKeyring(t) // stays open: the raw session sees private objects only while logged in
	p, sh, _ := softhsmtest.Session(t, tok)
	for _, tc := range []struct {
		label string
		class uint
	}{
		{"hufu-kek-v1", pkcs11.CKO_SECRET_KEY},
		{hsm.DefaultPINKeyLabel, pkcs11.CKO_SECRET_KEY},
		{hsm.DefaultAuditKeyLabel, pkcs11.CKO_PRIVATE_KEY},
	} {
		t.Run(tc.label, func(t *testing.T) {
			obj := findObject(t, p, sh, tc.label, tc.class)
			valueAttr := uint(pkcs11.CKA_VALUE)
			_, err := p.GetAttributeValue(sh, obj, []*pkcs11.Attribute{pkcs11.NewAttribute(valueAttr, nil)})
			if !errors.Is(err, pkcs11.Error(pkcs11.CKR_ATTRIBUTE_SENSITIVE)) {
				t.Fatalf("reading CKA_VALUE: %v; want CKR_ATTRIBUTE_SENSITIVE", err)
			}
			attrs, err := p.GetAttributeValue(sh, obj, []*pkcs11.Attribute{
				pkcs11.NewAttribute(pkcs11.CKA_SENSITIVE, nil),
				pkcs11.NewAttribute(pkcs11.CKA_EXTRACTABLE, nil),
				pkcs11.NewAttribute(pkcs11.CKA_ALWAYS_SENSITIVE, nil),
				pkcs11.NewAttribute(pkcs11.CKA_NEVER_EXTRACTABLE, nil),
				pkcs11.NewAttribute(pkcs11.CKA_TOKEN, nil),
				pkcs11.NewAttribute(pkcs11.CKA_PRIVATE, nil),
			})
			if err != nil {
				t.Fatal(err)
			}
			want := []bool{true, false, true, true, true, true}
			for i, a := range attrs {
				if got := len(a.Value) == 1 && a.Value[0] != 0; got != want[i] {
					t.Errorf("attribute %#x = %v; want %v", a.Type, got, want[i])
				}
			}
		})
	}
}

func findObject(t testing.TB, p *pkcs11.Ctx, sh pkcs11.SessionHandle, label string, class uint) pkcs11.ObjectHandle {
	t.Helper()
	if err := p.FindObjectsInit(sh, []*pkcs11.Attribute{
		pkcs11.NewAttribute(pkcs11.CKA_LABEL, label),
		pkcs11.NewAttribute(pkcs11.CKA_CLASS, class),
	}); err != nil {
		t.Fatal(err)
	}
	objs, _, err := p.FindObjects(sh, 2)
	_ = p.FindObjectsFinal(sh)
	if err != nil || len(objs) != 1 {
		t.Fatalf("find %s: %d objects, %v", label, len(objs), err)
	}
	return objs[0]
}

func TestPINVerifier(t *testing.T) {
	k, tok := newKeyring(t)
	ctx := context.Background()
	salt := bytes.Repeat([]byte{7}, hsm.MinSaltSize)
	pin := []byte("123456")
	v, err := k.PINVerifier(ctx, salt, []byte("key-1"), pin)
	if err != nil {
		t.Fatal(err)
	}
	if len(v) != sha256.Size {
		t.Fatalf("verifier of %d bytes", len(v))
	}
	otherSalt := bytes.Repeat([]byte{8}, hsm.MinSaltSize)
	for _, tc := range []struct {
		name           string
		salt, kctx, pn []byte
	}{
		{"other salt", otherSalt, []byte("key-1"), pin},
		{"other context", salt, []byte("key-2"), pin},
		{"other PIN", salt, []byte("key-1"), []byte("123457")},
		// Without length prefixes these two would hash the same bytes.
		{"boundary moved from context to PIN", salt, []byte("key-"), []byte("1123456")},
	} {
		t.Run(tc.name, func(t *testing.T) {
			w, err := k.PINVerifier(ctx, tc.salt, tc.kctx, tc.pn)
			if err != nil {
				t.Fatal(err)
			}
			if bytes.Equal(v, w) {
				t.Fatal("verifiers are equal")
			}
			ok, err := k.VerifyPIN(ctx, v, tc.salt, tc.kctx, tc.pn)
			if err != nil || ok {
				t.Fatalf("VerifyPIN = %v, %v; want false", ok, err)
			}
		})
	}
	if ok, err := k.VerifyPIN(ctx, v, salt, []byte("key-1"), pin); err != nil || !ok {
		t.Fatalf("VerifyPIN with the right PIN = %v, %v", ok, err)
	}
	if _, err := k.PINVerifier(ctx, salt[:hsm.MinSaltSize-1], nil, pin); !errors.Is(err, hsm.ErrInvalidInput) {
		t.Errorf("short salt: %v; want ErrInvalidInput", err)
	}
	if _, err := k.PINVerifier(ctx, salt, nil, nil); !errors.Is(err, hsm.ErrInvalidInput) {
		t.Errorf("empty PIN: %v; want ErrInvalidInput", err)
	}

	// Stable across reopen.
	if err := k.Close(); err != nil {
		t.Fatal(err)
	}
	k2, err := hsm.Open(ctx, configFor(tok))
	if err != nil {
		t.Fatal(err)
	}
	defer k2.Close()
	v2, err := k2.PINVerifier(ctx, salt, []byte("key-1"), pin)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(v, v2) {
		t.Fatal("verifier changed across reopen")
	}
}

func TestAuditSigner(t *testing.T) {
	k, _ := newKeyring(t)
	ctx := context.Background()
	a := k.AuditSigner()
	digest := sha256.Sum256([]byte("checkpoint 42"))
	sig, err := a.SignDigest(ctx, digest[:])
	if err != nil {
		t.Fatal(err)
	}
	if !ecdsa.VerifyASN1(a.PublicKey(), digest[:], sig) {
		t.Fatal("signature does not verify as ASN.1 DER under the public key")
	}
	other := sha256.Sum256([]byte("checkpoint 43"))
	if ecdsa.VerifyASN1(a.PublicKey(), other[:], sig) {
		t.Fatal("signature verifies for another digest")
	}
	pemBytes, err := a.PublicKeyPEM()
	if err != nil {
		t.Fatal(err)
	}
	block, _ := pem.Decode(pemBytes)
	if block == nil || block.Type != "PUBLIC KEY" {
		t.Fatalf("PEM %q", pemBytes)
	}
	pub, err := x509.ParsePKIXPublicKey(block.Bytes)
	if err != nil {
		t.Fatal(err)
	}
	if !a.PublicKey().Equal(pub) {
		t.Fatal("PEM key differs from PublicKey()")
	}
	for _, n := range []int{0, 31, 33, 64} {
		if _, err := a.SignDigest(ctx, make([]byte, n)); !errors.Is(err, hsm.ErrInvalidInput) {
			t.Errorf("%d-byte digest: %v; want ErrInvalidInput", n, err)
		}
	}
}

func TestRotation(t *testing.T) {
	k, tok := newKeyring(t)
	ctx := context.Background()
	ad := []byte("key-r")
	blobs := map[int][]byte{}
	wrapUnder := func(v int) {
		t.Helper()
		b, err := k.Wrap(ctx, []byte(fmt.Sprintf("plaintext under v%d", v)), ad)
		if err != nil {
			t.Fatal(err)
		}
		if pb, _ := hsm.ParseBlob(b); pb.KEKLabel != fmt.Sprintf("hufu-kek-v%d", v) {
			t.Fatalf("blob under %s; want v%d", pb.KEKLabel, v)
		}
		blobs[v] = b
	}
	wrapUnder(1)
	for v := 2; v <= 3; v++ {
		info, err := k.RotateKEK(ctx)
		if err != nil {
			t.Fatal(err)
		}
		if info.Version != v || !info.Current || k.CurrentKEK() != info.Label {
			t.Fatalf("RotateKEK = %+v, current %s; want v%d current", info, k.CurrentKEK(), v)
		}
		wrapUnder(v)
	}
	want := []hsm.KEKInfo{{"hufu-kek-v1", 1, false}, {"hufu-kek-v2", 2, false}, {"hufu-kek-v3", 3, true}}
	if got := k.KEKs(); fmt.Sprint(got) != fmt.Sprint(want) {
		t.Fatalf("KEKs = %v; want %v", got, want)
	}
	for v, b := range blobs {
		pt, err := k.Unwrap(ctx, b, ad)
		if err != nil || string(pt) != fmt.Sprintf("plaintext under v%d", v) {
			t.Fatalf("unwrap v%d blob: %q, %v", v, pt, err)
		}
		re, err := k.Rewrap(ctx, b, ad)
		if err != nil {
			t.Fatal(err)
		}
		if pb, _ := hsm.ParseBlob(re); pb.KEKLabel != "hufu-kek-v3" {
			t.Fatalf("rewrapped v%d blob is under %s", v, pb.KEKLabel)
		}
		if pt2, err := k.Unwrap(ctx, re, ad); err != nil || !bytes.Equal(pt, pt2) {
			t.Fatalf("rewrapped v%d blob: %q, %v", v, pt2, err)
		}
		if _, err := k.Rewrap(ctx, b, []byte("wrong")); !errors.Is(err, hsm.ErrAuthFailed) {
			t.Fatalf("rewrap with wrong associated data: %v", err)
		}
	}

	if err := k.DestroyKEK(ctx, 3); !errors.Is(err, hsm.ErrCurrentKEK) {
		t.Fatalf("destroy current KEK: %v; want ErrCurrentKEK", err)
	}
	if err := k.DestroyKEK(ctx, 7); !errors.Is(err, hsm.ErrUnknownKEK) {
		t.Fatalf("destroy unknown KEK: %v; want ErrUnknownKEK", err)
	}
	if err := k.DestroyKEK(ctx, 1); err != nil {
		t.Fatal(err)
	}
	if _, err := k.Unwrap(ctx, blobs[1], ad); !errors.Is(err, hsm.ErrUnknownKEK) {
		t.Fatalf("unwrap under destroyed KEK: %v; want ErrUnknownKEK", err)
	}

	// "Current" is the highest version on the token, so it survives a reopen.
	if err := k.Close(); err != nil {
		t.Fatal(err)
	}
	k2, err := hsm.Open(ctx, configFor(tok))
	if err != nil {
		t.Fatal(err)
	}
	defer k2.Close()
	want = []hsm.KEKInfo{{"hufu-kek-v2", 2, false}, {"hufu-kek-v3", 3, true}}
	if got := k2.KEKs(); fmt.Sprint(got) != fmt.Sprint(want) {
		t.Fatalf("after reopen KEKs = %v; want %v", got, want)
	}
	for _, v := range []int{2, 3} {
		if _, err := k2.Unwrap(ctx, blobs[v], ad); err != nil {
			t.Fatalf("after reopen, v%d blob: %v", v, err)
		}
	}
	// The next rotation after reopen continues the numbering rather than reusing v1.
	if info, err := k2.RotateKEK(ctx); err != nil || info.Version != 4 {
		t.Fatalf("RotateKEK after reopen = %+v, %v; want v4", info, err)
	}
}

func TestOpenErrors(t *testing.T) {
	ctx := context.Background()

	t.Run("wrong PIN", func(t *testing.T) {
		tok := softhsmtest.New(t)
		k, err := hsm.Initialize(ctx, configFor(tok))
		if err != nil {
			t.Fatal(err)
		}
		// Close first: PKCS#11 login is per process and token, so while a keyring is
		// logged in, C_Login with any PIN reports "already logged in".
		if err := k.Close(); err != nil {
			t.Fatal(err)
		}
		const wrong = "not-the-pin-0000"
		pinFile := t.TempDir() + "/pin"
		if err := os.WriteFile(pinFile, []byte(wrong+"\n"), 0o600); err != nil {
			t.Fatal(err)
		}
		cfg := configFor(tok)
		cfg.PINFile = pinFile
		_, err = hsm.Open(ctx, cfg)
		if !errors.Is(err, hsm.ErrWrongPIN) {
			t.Fatalf("Open with a wrong PIN: %v; want ErrWrongPIN", err)
		}
		right, _ := tok.UserPIN()
		if strings.Contains(err.Error(), wrong) || strings.Contains(err.Error(), right) {
			t.Fatalf("error %q contains a PIN", err)
		}
	})

	t.Run("missing module", func(t *testing.T) {
		tok := softhsmtest.New(t)
		cfg := configFor(tok)
		cfg.ModulePath = "/nonexistent/libsofthsm2.so"
		if _, err := hsm.Open(ctx, cfg); !errors.Is(err, hsm.ErrModuleNotFound) {
			t.Fatalf("Open with a missing module: %v; want ErrModuleNotFound", err)
		}
	})

	t.Run("missing token", func(t *testing.T) {
		tok := softhsmtest.New(t)
		cfg := configFor(tok)
		cfg.TokenLabel = "no-such-token"
		if _, err := hsm.Open(ctx, cfg); !errors.Is(err, hsm.ErrTokenNotFound) {
			t.Fatalf("Open of a missing token: %v; want ErrTokenNotFound", err)
		}
	})

	t.Run("by serial", func(t *testing.T) {
		tok := softhsmtest.New(t)
		cfg := configFor(tok)
		cfg.TokenLabel, cfg.TokenSerial = "", tok.Serial
		k, err := hsm.Initialize(ctx, cfg)
		if err != nil {
			t.Fatalf("Initialize by serial: %v", err)
		}
		_ = k.Close()
	})

	t.Run("uninitialised token", func(t *testing.T) {
		tok := softhsmtest.New(t)
		_, err := hsm.Open(ctx, configFor(tok))
		if !errors.Is(err, hsm.ErrKeyMissing) || !strings.Contains(err.Error(), "hufu-kek-v1") {
			t.Fatalf("Open of an empty token: %v; want ErrKeyMissing naming hufu-kek-v1", err)
		}
	})

	t.Run("initialise twice", func(t *testing.T) {
		_, tok := newKeyring(t)
		_, err := hsm.Initialize(ctx, configFor(tok))
		if !errors.Is(err, hsm.ErrAlreadyInitialized) {
			t.Fatalf("second Initialize: %v; want ErrAlreadyInitialized", err)
		}
		for _, l := range []string{"hufu-kek-v1", hsm.DefaultPINKeyLabel, hsm.DefaultAuditKeyLabel} {
			if !strings.Contains(err.Error(), l) {
				t.Errorf("error %q does not name %s", err, l)
			}
		}
	})

	for _, tc := range []struct {
		label string
		class uint
	}{
		{hsm.DefaultPINKeyLabel, pkcs11.CKO_SECRET_KEY},
		{hsm.DefaultAuditKeyLabel, pkcs11.CKO_PRIVATE_KEY},
	} {
		t.Run("missing "+tc.label, func(t *testing.T) {
			k, tok := newKeyring(t)
			p, sh, _ := softhsmtest.Session(t, tok)
			if err := p.DestroyObject(sh, findObject(t, p, sh, tc.label, tc.class)); err != nil {
				t.Fatal(err)
			}
			if err := k.Close(); err != nil {
				t.Fatal(err)
			}
			_, err := hsm.Open(ctx, configFor(tok))
			if !errors.Is(err, hsm.ErrKeyMissing) || !strings.Contains(err.Error(), tc.label) {
				t.Fatalf("Open without %s: %v; want ErrKeyMissing naming it", tc.label, err)
			}
		})
	}

	t.Run("invalid config", func(t *testing.T) {
		for name, cfg := range map[string]hsm.Config{
			"empty":             {},
			"label and serial":  {ModulePath: "m", TokenLabel: "a", TokenSerial: "b", PINFile: "p"},
			"one session":       {ModulePath: "m", TokenLabel: "a", PINFile: "p", MaxSessions: 1},
			"bad prefix":        {ModulePath: "m", TokenLabel: "a", PINFile: "p", KEKPrefix: "-x"},
			"same labels":       {ModulePath: "m", TokenLabel: "a", PINFile: "p", PINKeyLabel: "k", AuditKeyLabel: "k"},
			"negative wait":     {ModulePath: "m", TokenLabel: "a", PINFile: "p", PoolWaitTimeout: -time.Second},
			"KEK-looking label": {ModulePath: "m", TokenLabel: "a", PINFile: "p", PINKeyLabel: "hufu-kek-v2"},
		} {
			if _, err := hsm.Open(ctx, cfg); !errors.Is(err, hsm.ErrInvalidConfig) {
				t.Errorf("%s: Open = %v; want ErrInvalidConfig", name, err)
			}
		}
	})
}

// checkAllFail runs every operation and expects an error matching want, never a panic.
func checkAllFail(t *testing.T, k *hsm.Keyring, blob []byte, want error) {
	t.Helper()
	ctx := context.Background()
	salt := make([]byte, hsm.MinSaltSize)
	digest := make([]byte, 32)
	ops := map[string]func() error{
		"wrap":         func() error { _, err := k.Wrap(ctx, []byte("x"), nil); return err },
		"unwrap":       func() error { _, err := k.Unwrap(ctx, blob, nil); return err },
		"rewrap":       func() error { _, err := k.Rewrap(ctx, blob, nil); return err },
		"pin verifier": func() error { _, err := k.PINVerifier(ctx, salt, nil, []byte("1")); return err },
		"verify pin":   func() error { _, err := k.VerifyPIN(ctx, nil, salt, nil, []byte("1")); return err },
		"audit sign":   func() error { _, err := k.AuditSigner().SignDigest(ctx, digest); return err },
		"rotate":       func() error { _, err := k.RotateKEK(ctx); return err },
		"health":       func() error { return k.Health(ctx) },
	}
	for name, op := range ops {
		if err := op(); !errors.Is(err, want) {
			t.Errorf("%s: %v; want %v", name, err, want)
		}
	}
}

func TestClosedKeyring(t *testing.T) {
	k, _ := newKeyring(t)
	blob, err := k.Wrap(context.Background(), []byte("x"), nil)
	if err != nil {
		t.Fatal(err)
	}
	if err := k.Close(); err != nil {
		t.Fatal(err)
	}
	if err := k.Close(); err != nil {
		t.Fatalf("second Close: %v", err)
	}
	checkAllFail(t, k, blob, hsm.ErrClosed)
}

// TestCloseDuringOperations closes the keyring while goroutines are wrapping: each must
// stop with ErrClosed (or finish its operation), without a panic, and Close must return.
func TestCloseDuringOperations(t *testing.T) {
	k, _ := newKeyring(t)
	ctx := context.Background()
	var wg sync.WaitGroup
	started := make(chan struct{}, 8)
	errs := make(chan error, 8)
	for range 8 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := 0; ; i++ {
				if _, err := k.Wrap(ctx, []byte("x"), nil); err != nil {
					errs <- err
					return
				}
				if i == 0 {
					started <- struct{}{}
				}
			}
		}()
	}
	for range 8 {
		<-started
	}
	if err := k.Close(); err != nil {
		t.Fatal(err)
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		if !errors.Is(err, hsm.ErrClosed) {
			t.Errorf("operation racing Close: %v; want ErrClosed", err)
		}
	}
}

func TestCancelledContext(t *testing.T) {
	k, _ := newKeyring(t)
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if _, err := k.Wrap(ctx, []byte("x"), nil); !errors.Is(err, context.Canceled) {
		t.Fatalf("Wrap with a cancelled context: %v", err)
	}
}

// TestBrokenSessions closes every session of the process on the token behind the keyring's
// back (C_CloseAllSessions, which also logs the token out). crypto11 then panics in
// AEAD.Seal and fails elsewhere; the first failure makes the keyring unavailable, every
// operation must then come back as ErrUnavailable (and ErrHSM), and Close must still return
// while the keyring waits to reconnect. TestRecoversAfterClosedSessions covers the way back.
func TestBrokenSessions(t *testing.T) {
	tok := softhsmtest.New(t)
	cfg := configFor(tok)
	cfg.ReopenBackoff = time.Hour // the keyring stays unavailable for the test's length
	k, err := hsm.Initialize(context.Background(), cfg)
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	blob, err := k.Wrap(ctx, []byte("x"), nil)
	if err != nil {
		t.Fatal(err)
	}
	if err := k.Health(ctx); err != nil {
		t.Fatalf("Health before: %v", err)
	}
	p, _, slot := softhsmtest.Session(t, tok)
	if err := p.CloseAllSessions(slot); err != nil {
		t.Fatal(err)
	}
	// Wrap is the path where crypto11 panics (AEAD.Seal); make sure it was taken and that
	// the panic's PKCS#11 code was recognised as an outage.
	if _, err := k.Wrap(ctx, []byte("x"), nil); err == nil || !strings.Contains(err.Error(), "recovered panic") || !errors.Is(err, hsm.ErrUnavailable) {
		t.Errorf("Wrap on a broken session: %v; want a recovered crypto11 panic and ErrUnavailable", err)
	} else {
		t.Logf("Wrap: %v", err)
	}
	checkAllFail(t, k, blob, hsm.ErrUnavailable)
	checkAllFail(t, k, blob, hsm.ErrHSM)
	done := make(chan error, 1)
	go func() { done <- k.Close() }()
	select {
	case <-done:
	case <-time.After(30 * time.Second):
		t.Fatal("Close hangs after broken sessions: a session leaked from the pool, or the reconnection does not stop")
	}
	checkAllFail(t, k, blob, hsm.ErrClosed)
}

// TestConcurrent wraps and unwraps from 32 goroutines (run with -race), more goroutines
// than sessions, so they also contend for the pool.
func TestConcurrent(t *testing.T) {
	k, _ := newKeyring(t)
	ctx := context.Background()
	var wg sync.WaitGroup
	errs := make(chan error, 32)
	for g := range 32 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range 25 {
				ad := []byte(fmt.Sprintf("g%d-i%d", g, i))
				pt := bytes.Repeat([]byte{byte(g)}, 64)
				blob, err := k.Wrap(ctx, pt, ad)
				if err != nil {
					errs <- err
					return
				}
				got, err := k.Unwrap(ctx, blob, ad)
				if err != nil || !bytes.Equal(got, pt) {
					errs <- fmt.Errorf("goroutine %d: unwrap: %v", g, err)
					return
				}
			}
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
}

// TestHealth checks the probe on a good keyring.
func TestHealth(t *testing.T) {
	k, _ := newKeyring(t)
	if err := k.Health(context.Background()); err != nil {
		t.Fatal(err)
	}
}

type recordingMetrics struct {
	mu  sync.Mutex
	got map[string]int
}

func (m *recordingMetrics) Observe(op hsm.Op, o hsm.Outcome, d time.Duration) {
	m.mu.Lock()
	defer m.mu.Unlock()
	if d <= 0 {
		m.got["non-positive duration"]++
	}
	m.got[string(op)+"/"+string(o)]++
}

func TestMetrics(t *testing.T) {
	tok := softhsmtest.New(t)
	m := &recordingMetrics{got: map[string]int{}}
	cfg := configFor(tok)
	cfg.Metrics = m
	k, err := hsm.Initialize(context.Background(), cfg)
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	blob, _ := k.Wrap(ctx, []byte("x"), nil)
	_, _ = k.Unwrap(ctx, blob, nil)
	_, _ = k.Unwrap(ctx, blob, []byte("wrong"))
	_ = k.Health(ctx)
	_ = k.Close()
	_ = k.Health(ctx)
	want := map[string]int{"wrap/ok": 1, "unwrap/ok": 1, "unwrap/rejected": 1, "health/ok": 1, "health/error": 1}
	if fmt.Sprint(m.got) != fmt.Sprint(want) {
		t.Fatalf("observations %v; want %v", m.got, want)
	}
}

// TestReopenInNewProcess initialises a token, wraps a blob and computes a PIN verifier,
// then re-executes this test binary to open the same token by label in a fresh process
// (fresh C_Initialize, possibly renumbered slots) and check the same keys are found.
func TestReopenInNewProcess(t *testing.T) {
	k, tok := newKeyring(t)
	ctx := context.Background()
	blob, err := k.Wrap(ctx, []byte("survives restarts"), []byte("ad"))
	if err != nil {
		t.Fatal(err)
	}
	salt := bytes.Repeat([]byte{3}, hsm.MinSaltSize)
	verifier, err := k.PINVerifier(ctx, salt, []byte("key-1"), []byte("2468"))
	if err != nil {
		t.Fatal(err)
	}
	pubPEM, err := k.AuditSigner().PublicKeyPEM()
	if err != nil {
		t.Fatal(err)
	}
	if _, err := k.RotateKEK(ctx); err != nil {
		t.Fatal(err)
	}
	if err := k.Close(); err != nil {
		t.Fatal(err)
	}

	cmd := exec.Command(os.Args[0], "-test.run=^TestReopenChild$", "-test.v")
	cmd.Env = append(os.Environ(), // SOFTHSM2_CONF is inherited from softhsm.Provision
		"HUFU_HSM_CHILD=1",
		"HUFU_HSM_CHILD_MODULE="+tok.ModulePath,
		"HUFU_HSM_CHILD_LABEL="+tok.Label,
		"HUFU_HSM_CHILD_PINFILE="+tok.PINFile,
		"HUFU_HSM_CHILD_BLOB="+hex.EncodeToString(blob),
		"HUFU_HSM_CHILD_VERIFIER="+hex.EncodeToString(verifier),
		"HUFU_HSM_CHILD_PUB="+hex.EncodeToString(pubPEM),
	)
	out, err := cmd.CombinedOutput()
	if err != nil || !bytes.Contains(out, []byte("child: same keys")) {
		t.Fatalf("child process: %v\n%s", err, out)
	}
}

// TestReopenChild is the child half of TestReopenInNewProcess; it does nothing in a
// normal run.
func TestReopenChild(t *testing.T) {
	if os.Getenv("HUFU_HSM_CHILD") != "1" {
		t.Skip("runs only as TestReopenInNewProcess's child")
	}
	ctx := context.Background()
	hx := func(name string) []byte {
		b, err := hex.DecodeString(os.Getenv(name))
		if err != nil {
			t.Fatal(err)
		}
		return b
	}
	k, err := hsm.Open(ctx, hsm.Config{
		ModulePath: os.Getenv("HUFU_HSM_CHILD_MODULE"),
		TokenLabel: os.Getenv("HUFU_HSM_CHILD_LABEL"),
		PINFile:    os.Getenv("HUFU_HSM_CHILD_PINFILE"),
	})
	if err != nil {
		t.Fatal(err)
	}
	defer k.Close()
	if k.CurrentKEK() != "hufu-kek-v2" {
		t.Fatalf("current KEK %s; want hufu-kek-v2", k.CurrentKEK())
	}
	pt, err := k.Unwrap(ctx, hx("HUFU_HSM_CHILD_BLOB"), []byte("ad"))
	if err != nil || string(pt) != "survives restarts" {
		t.Fatalf("unwrap: %q, %v", pt, err)
	}
	ok, err := k.VerifyPIN(ctx, hx("HUFU_HSM_CHILD_VERIFIER"), bytes.Repeat([]byte{3}, hsm.MinSaltSize), []byte("key-1"), []byte("2468"))
	if err != nil || !ok {
		t.Fatalf("verify PIN: %v, %v", ok, err)
	}
	pub, err := k.AuditSigner().PublicKeyPEM()
	if err != nil || !bytes.Equal(pub, hx("HUFU_HSM_CHILD_PUB")) {
		t.Fatalf("audit key differs: %v", err)
	}
	t.Log("child: same keys")
}

func TestEnsureCurrent(t *testing.T) {
	ctx := context.Background()
	kr, _ := newKeyring(t)
	ad := []byte("k/key-1 share 1")
	old, err := kr.Wrap(ctx, []byte("share"), ad)
	if err != nil {
		t.Fatal(err)
	}
	same, err := kr.EnsureCurrent(ctx, old, ad)
	if err != nil || !bytes.Equal(same, old) {
		t.Fatalf("a blob under the current KEK must come back unchanged: %v", err)
	}
	if _, err := kr.RotateKEK(ctx); err != nil {
		t.Fatal(err)
	}
	fresh, err := kr.EnsureCurrent(ctx, old, ad)
	if err != nil {
		t.Fatal(err)
	}
	b, err := hsm.ParseBlob(fresh)
	if err != nil || b.KEKLabel != kr.CurrentKEK() {
		t.Fatalf("rewrapped under %q, want %q (%v)", b.KEKLabel, kr.CurrentKEK(), err)
	}
	if pt, err := kr.Unwrap(ctx, fresh, ad); err != nil || string(pt) != "share" {
		t.Fatalf("unwrap after EnsureCurrent: %v", err)
	}
	if _, err := kr.EnsureCurrent(ctx, old, []byte("another record")); err == nil {
		t.Fatal("a blob moved to another record must not be rewrapped")
	}
}
