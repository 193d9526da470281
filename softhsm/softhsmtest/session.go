//go:build cgo

package softhsmtest

import (
	"errors"
	"testing"

	"github.com/miekg/pkcs11"

	"github.com/hufu-hsm/hufu/softhsm"
)

// Session opens a raw PKCS#11 session on tok, for tests that must ask the token something
// crypto11 does not expose (is CKA_VALUE readable?) or break something on purpose. It
// borrows the process's module initialisation (New must have run) and never finalises it.
// The session sees private objects only while some keyring in the process is logged in to
// the token. It is closed when tb ends.
func Session(tb testing.TB, tok *softhsm.Token) (*pkcs11.Ctx, pkcs11.SessionHandle, uint) {
	tb.Helper()
	p := pkcs11.New(tok.ModulePath)
	if p == nil {
		tb.Fatalf("softhsmtest: load %s", tok.ModulePath)
	}
	if err := p.Initialize(); err == nil {
		_ = p.Finalize()
		p.Destroy()
		tb.Fatal("softhsmtest: module was not initialised; call New first")
	} else if !errors.Is(err, pkcs11.Error(pkcs11.CKR_CRYPTOKI_ALREADY_INITIALIZED)) {
		p.Destroy()
		tb.Fatalf("softhsmtest: C_Initialize: %v", err)
	}
	slots, err := p.GetSlotList(true)
	if err != nil {
		tb.Fatalf("softhsmtest: C_GetSlotList: %v", err)
	}
	for _, s := range slots {
		ti, err := p.GetTokenInfo(s)
		if err != nil || ti.Label != tok.Label {
			continue
		}
		sh, err := p.OpenSession(s, pkcs11.CKF_SERIAL_SESSION|pkcs11.CKF_RW_SESSION)
		if err != nil {
			tb.Fatalf("softhsmtest: C_OpenSession: %v", err)
		}
		tb.Cleanup(func() {
			_ = p.CloseSession(sh)
			p.Destroy()
		})
		return p, sh, s
	}
	p.Destroy()
	tb.Fatalf("softhsmtest: token %q not found", tok.Label)
	return nil, 0, 0
}
