//go:build cgo

package hsm_test

import (
	"crypto/rand"
	"testing"

	"github.com/miekg/pkcs11"

	"github.com/hufu-hsm/hufu/softhsm/softhsmtest"
)

// BenchmarkRawGCMDecrypt measures SoftHSM2 itself, without crypto11 or this package: one
// C_DecryptInit + C_Decrypt of a 64-byte share on one raw session, first with the KEK (a
// token object, backed by a file that SoftHSM2 re-checks on every use), then with a
// session-object copy made inside the token (C_CopyObject with CKA_TOKEN false). It is the
// floor the keyring's Unwrap is measured against.
func BenchmarkRawGCMDecrypt(b *testing.B) {
	k, tok := benchKeyring(b)
	_ = k
	p, sh, _ := softhsmtest.Session(b, tok)
	kek := findObject(b, p, sh, "hufu-kek-v1", pkcs11.CKO_SECRET_KEY)
	sessionCopy, err := p.CopyObject(sh, kek, []*pkcs11.Attribute{pkcs11.NewAttribute(pkcs11.CKA_TOKEN, false)})
	if err != nil {
		b.Fatal(err)
	}
	nonce := make([]byte, 12)
	_, _ = rand.Read(nonce)
	for _, tc := range []struct {
		name string
		key  pkcs11.ObjectHandle
	}{{"token-object", kek}, {"session-object", sessionCopy}} {
		b.Run(tc.name, func(b *testing.B) {
			params := pkcs11.NewGCMParams(nonce, []byte("ad"), 128)
			defer params.Free()
			mech := []*pkcs11.Mechanism{pkcs11.NewMechanism(pkcs11.CKM_AES_GCM, params)}
			if err := p.EncryptInit(sh, mech, tc.key); err != nil {
				b.Fatal(err)
			}
			ct, err := p.Encrypt(sh, share)
			if err != nil {
				b.Fatal(err)
			}
			for b.Loop() {
				if err := p.DecryptInit(sh, mech, tc.key); err != nil {
					b.Fatal(err)
				}
				if _, err := p.Decrypt(sh, ct); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}
