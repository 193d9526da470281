//go:build !cgo

package hsm

import (
	"context"
	"crypto/ecdsa"
	"fmt"
)

// This file keeps the package's API compiling without cgo, so that a binary built with
// CGO_ENABLED=0 fails at Open with a clear message instead of at link time. Open and
// Initialize never return a Keyring here, so the methods below are unreachable.

// Keyring is an open connection to the token and its hufu keys. Without cgo it cannot be
// opened.
type Keyring struct{}

// AuditSigner signs audit checkpoints with the HSM-resident ECDSA P-256 key.
type AuditSigner struct{}

// Open returns ErrNoCgo.
func Open(ctx context.Context, cfg Config) (*Keyring, error) {
	return nil, fmt.Errorf("hsm: open: %w", ErrNoCgo)
}

// Initialize returns ErrNoCgo.
func Initialize(ctx context.Context, cfg Config) (*Keyring, error) {
	return nil, fmt.Errorf("hsm: initialise: %w", ErrNoCgo)
}

func (k *Keyring) Close() error                                           { return ErrNoCgo }
func (k *Keyring) Wrap(context.Context, []byte, []byte) ([]byte, error)   { return nil, ErrNoCgo }
func (k *Keyring) Unwrap(context.Context, []byte, []byte) ([]byte, error) { return nil, ErrNoCgo }
func (k *Keyring) Rewrap(context.Context, []byte, []byte) ([]byte, error) { return nil, ErrNoCgo }
func (k *Keyring) EnsureCurrent(context.Context, []byte, []byte) ([]byte, error) {
	return nil, ErrNoCgo
}
func (k *Keyring) CurrentKEK() string                         { return "" }
func (k *Keyring) KEKs() []KEKInfo                            { return nil }
func (k *Keyring) RotateKEK(context.Context) (KEKInfo, error) { return KEKInfo{}, ErrNoCgo }
func (k *Keyring) DestroyKEK(context.Context, int) error      { return ErrNoCgo }
func (k *Keyring) Health(context.Context) error               { return ErrNoCgo }
func (k *Keyring) SessionStats() SessionStats                 { return SessionStats{} }
func (k *Keyring) AuditSigner() *AuditSigner                  { return nil }
func (k *Keyring) PINVerifier(context.Context, []byte, []byte, []byte) ([]byte, error) {
	return nil, ErrNoCgo
}
func (k *Keyring) VerifyPIN(context.Context, []byte, []byte, []byte, []byte) (bool, error) {
	return false, ErrNoCgo
}
func (a *AuditSigner) SignDigest(context.Context, []byte) ([]byte, error) { return nil, ErrNoCgo }
func (a *AuditSigner) PublicKey() *ecdsa.PublicKey                        { return nil }
func (a *AuditSigner) PublicKeyPEM() ([]byte, error)                      { return nil, ErrNoCgo }

func (k *Keyring) AuditAnchor(context.Context) (AuditAnchor, bool, error) {
	return AuditAnchor{}, false, ErrNoCgo
}
func (k *Keyring) RaiseAuditAnchor(context.Context, uint64, [32]byte) error { return ErrNoCgo }
func (k *Keyring) ResetAuditAnchor(context.Context, uint64, [32]byte) error { return ErrNoCgo }
