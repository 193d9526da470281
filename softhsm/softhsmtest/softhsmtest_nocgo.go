//go:build !cgo

// Package softhsmtest gives tests a ready SoftHSM2 token. It needs cgo.
package softhsmtest

import (
	"testing"

	"github.com/hufu-hsm/hufu/softhsm"
)

// New fails tb: PKCS#11 needs cgo.
func New(tb testing.TB) *softhsm.Token {
	tb.Helper()
	tb.Fatalf("softhsmtest: %v", softhsm.ErrNoCgo)
	return nil
}

// Dir returns "" without cgo.
func Dir() string { return "" }

// Main runs the tests.
func Main(m *testing.M) { m.Run() }
