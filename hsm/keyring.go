//go:build cgo

package hsm

import (
	"context"
	"crypto/cipher"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	"crypto/x509"
	"encoding/pem"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/ThalesGroup/crypto11"
	"github.com/miekg/pkcs11"
	"github.com/thales-e-security/pool"
)

// Keyring is an open connection to the token and its hufu keys. All methods are safe for
// concurrent use.
type Keyring struct {
	cfg     Config
	module  string // the module's canonical path (connect)
	metrics Metrics
	gate    *sessionGate // admits operations to crypto11's session pool; see sessions.go
	closed  atomic.Bool

	// connMu guards the connection: c11 and the key handles below (keks included) belong
	// to one crypto11 context. Operations hold it shared for their whole run; a reopen
	// (recovery.go) holds it exclusively to swap the context and the handles, so it never
	// races an operation in flight.
	connMu sync.RWMutex
	c11    *crypto11.Context // nil while a reopen has closed the old context and not yet opened the new one
	// generation counts the contexts; an outage reported by an operation of an older one
	// is ignored, the reopen has dealt with it.
	generation uint64
	recovery   recovery // outage state and the reconnecting goroutine; see recovery.go

	// keks is replaced, never modified, so Wrap and Unwrap read it without a lock.
	keks     atomic.Pointer[kekSet]
	rotateMu sync.Mutex // serialises RotateKEK and DestroyKEK

	pinKey   *crypto11.SecretKey
	auditKey crypto11.Signer
	audit    *AuditSigner // one for the keyring's life: the store holds it across reopens

	anchor anchorHandle // the audit anchor's own PKCS#11 handle (anchor.go)
}

type kek struct {
	version int
	label   string
	key     *crypto11.SecretKey
	aead    cipher.AEAD
}

type kekSet struct {
	byLabel map[string]*kek
	current *kek
}

func newKEKSet(keks []*kek) *kekSet {
	s := &kekSet{byLabel: make(map[string]*kek, len(keks))}
	for _, k := range keks {
		s.byLabel[k.label] = k
		if s.current == nil || k.version > s.current.version {
			s.current = k
		}
	}
	return s
}

// Open opens the token and finds the keys that Initialize created. A missing key is an
// ErrKeyMissing error naming it.
//
// PKCS#11 login state belongs to the process and the token, not to one connection: while
// another keyring in this process is logged in to the same token, Open accepts any PIN
// (the token answers CKR_USER_ALREADY_LOGGED_IN). The daemon opens one keyring per token.
func Open(ctx context.Context, cfg Config) (*Keyring, error) {
	k, err := connect(ctx, cfg)
	if err != nil {
		return nil, err
	}
	if err := k.loadKeys(); err != nil {
		k.c11.Close()
		return nil, err
	}
	k.startRecovery()
	return k, nil
}

// Initialize creates the first KEK (<prefix>-v1), the PIN-verifier key and the
// audit-signing key on a token that holds none of them, and returns the open keyring. It
// refuses (ErrAlreadyInitialized) if any of them exists: keys are never overwritten. Call it
// only when an operator asks (hufud init); everything else uses Open.
func Initialize(ctx context.Context, cfg Config) (*Keyring, error) {
	k, err := connect(ctx, cfg)
	if err != nil {
		return nil, err
	}
	if err := k.createKeys(); err != nil {
		k.c11.Close()
		return nil, err
	}
	if err := k.loadKeys(); err != nil {
		k.c11.Close()
		return nil, err
	}
	k.startRecovery()
	return k, nil
}

// connect validates cfg, reads the PIN and logs in to the token.
func connect(ctx context.Context, cfg Config) (*Keyring, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	if err := ctx.Err(); err != nil {
		return nil, fmt.Errorf("hsm: open: %w", err)
	}
	cfg = cfg.withDefaults()
	// crypto11 keeps one module instance per path string, so one library must always be
	// named by the same path: absolute, symlinks resolved.
	module, err := filepath.Abs(cfg.ModulePath)
	if err == nil {
		module, err = filepath.EvalSymlinks(module)
	}
	if err != nil {
		if errors.Is(err, os.ErrNotExist) {
			return nil, fmt.Errorf("hsm: open: module %s: %w (install the HSM's PKCS#11 library, or softhsm2 for development)", cfg.ModulePath, ErrModuleNotFound)
		}
		return nil, fmt.Errorf("hsm: open: module %s: %w", cfg.ModulePath, err)
	}
	c11, err := configure(module, cfg)
	if err != nil {
		return nil, err
	}
	// The gate must be exactly as large as crypto11's pool (see sessionGate). If the
	// token's own limit cannot be read, crypto11 read it a moment ago without trouble, so
	// the lookup failing says more about the second handle than about the token: the
	// configured size is used.
	tokenMax, err := tokenMaxRwSessions(module, cfg)
	if err != nil {
		tokenMax = pkcs11.CK_UNAVAILABLE_INFORMATION
	}
	k := &Keyring{cfg: cfg, module: module, c11: c11, metrics: cfg.Metrics,
		gate: newSessionGate(poolCapacity(cfg.MaxSessions, tokenMax), cfg.PoolWaitTimeout, cfg.Metrics)}
	if m, ok := cfg.Metrics.(SessionMetrics); ok {
		m.WatchSessions(k.SessionStats)
	}
	return k, nil
}

// configure reads the PIN and opens a crypto11 context on the token, logged in: at open
// and at every reopen (the PIN file is read again, so a changed PIN is picked up).
func configure(module string, cfg Config) (*crypto11.Context, error) {
	pin, err := readPINFile(cfg.PINFile)
	if err != nil {
		return nil, err
	}
	c11, err := crypto11.Configure(&crypto11.Config{
		Path:            module,
		TokenLabel:      cfg.TokenLabel,
		TokenSerial:     cfg.TokenSerial,
		Pin:             pin,
		MaxSessions:     cfg.MaxSessions,
		PoolWaitTimeout: cfg.PoolWaitTimeout,
		// Only the length matters to us: crypto11 passes our nonce through as the IV as
		// long as UseGCMIVFromHSM is false, which it must stay (SoftHSM2 reuses its IVs).
		GCMIVLength: NonceSize,
	})
	if err != nil {
		return nil, fmt.Errorf("hsm: open token %s: %w", tokenName(cfg), classifyOpenError(err))
	}
	return c11, nil
}

// SessionStats reads the keyring's HSM sessions: the pool's capacity, the operations
// holding a session and those waiting for one.
func (k *Keyring) SessionStats() SessionStats { return k.gate.stats() }

func tokenName(cfg Config) string {
	if cfg.TokenLabel != "" {
		return fmt.Sprintf("label %q", cfg.TokenLabel)
	}
	return fmt.Sprintf("serial %q", cfg.TokenSerial)
}

// classifyOpenError maps crypto11's open errors to sentinels. crypto11 does not export its
// token-not-found error, so that one is recognised by its message.
func classifyOpenError(err error) error {
	switch {
	case errors.Is(err, pkcs11.Error(pkcs11.CKR_PIN_INCORRECT)):
		return fmt.Errorf("%w: %w", ErrWrongPIN, err)
	case strings.Contains(err.Error(), "could not find PKCS#11 token"):
		return fmt.Errorf("%w: %w", ErrTokenNotFound, err)
	}
	return fmt.Errorf("%w: %w", ErrHSM, err)
}

// secretTemplate is the template for every secret key hufu creates: a private token
// object, sensitive and non-extractable, with only the usages it needs.
func secretTemplate(label string, encrypt, sign bool) (crypto11.AttributeSet, error) {
	t, err := crypto11.NewAttributeSetWithIDAndLabel([]byte(label), []byte(label))
	if err != nil {
		return nil, err
	}
	for typ, v := range map[crypto11.AttributeType]bool{
		crypto11.CkaToken:       true,
		crypto11.CkaPrivate:     true,
		crypto11.CkaSensitive:   true,
		crypto11.CkaExtractable: false,
		crypto11.CkaEncrypt:     encrypt,
		crypto11.CkaDecrypt:     encrypt,
		crypto11.CkaSign:        sign,
		crypto11.CkaVerify:      false,
		crypto11.CkaWrap:        false,
		crypto11.CkaUnwrap:      false,
	} {
		if err := t.Set(typ, v); err != nil {
			return nil, err
		}
	}
	return t, nil
}

func (k *Keyring) generateKEK(label string) error {
	t, err := secretTemplate(label, true, false)
	if err != nil {
		return err
	}
	_, err = k.c11.GenerateSecretKeyWithAttributes(t, 256, crypto11.CipherAES)
	return err
}

// createKeys refuses if any hufu key exists, then creates all three. If one creation
// fails, the keys made so far are destroyed again so the operator can retry on a clean
// token.
func (k *Keyring) createKeys() error {
	keks, err := k.scanKEKs()
	if err != nil {
		return err
	}
	var present []string
	for _, kk := range keks {
		present = append(present, kk.label)
	}
	for _, label := range []string{k.cfg.PINKeyLabel, k.cfg.AuditKeyLabel} {
		objs, err := k.c11.FindKeys(nil, []byte(label))
		if err != nil {
			return fmt.Errorf("hsm: initialise: find %s: %w: %w", label, ErrHSM, err)
		}
		pairs, err := k.c11.FindKeyPairs(nil, []byte(label))
		if err != nil {
			return fmt.Errorf("hsm: initialise: find %s: %w: %w", label, ErrHSM, err)
		}
		if len(objs)+len(pairs) > 0 {
			present = append(present, label)
		}
	}
	if len(present) > 0 {
		return fmt.Errorf("hsm: initialise: token already holds %s: %w", strings.Join(present, ", "), ErrAlreadyInitialized)
	}

	var undo []func() error
	fail := func(what string, err error) error {
		for _, u := range slices.Backward(undo) {
			_ = u()
		}
		return fmt.Errorf("hsm: initialise: create %s: %w: %w", what, ErrHSM, err)
	}

	first := kekLabel(k.cfg.KEKPrefix, 1)
	if err := k.generateKEK(first); err != nil {
		return fail(first, err)
	}
	undo = append(undo, func() error { return k.destroySecret(first) })

	t, err := secretTemplate(k.cfg.PINKeyLabel, false, true)
	if err != nil {
		return fail(k.cfg.PINKeyLabel, err)
	}
	// CipherGeneric generates with CKM_GENERIC_SECRET_KEY_GEN, which SoftHSM2 and
	// most HSMs support; crypto11's CipherHMACSHA256 tries an nShield-only mechanism
	// first and gives up on the CKR_MECHANISM_INVALID it gets elsewhere.
	pinKey, err := k.c11.GenerateSecretKeyWithAttributes(t, 256, crypto11.CipherGeneric)
	if err != nil {
		return fail(k.cfg.PINKeyLabel, err)
	}
	undo = append(undo, pinKey.Delete)

	label := []byte(k.cfg.AuditKeyLabel)
	pub, err := crypto11.NewAttributeSetWithIDAndLabel(label, label)
	if err != nil {
		return fail(k.cfg.AuditKeyLabel, err)
	}
	priv, err := secretTemplate(k.cfg.AuditKeyLabel, false, true)
	if err != nil {
		return fail(k.cfg.AuditKeyLabel, err)
	}
	for _, typ := range []crypto11.AttributeType{crypto11.CkaEncrypt, crypto11.CkaDecrypt, crypto11.CkaVerify, crypto11.CkaWrap, crypto11.CkaUnwrap} {
		priv.Unset(typ) // not applicable to EC private keys; SoftHSM2 rejects some of them
	}
	if _, err := k.c11.GenerateECDSAKeyPairWithAttributes(pub, priv, elliptic.P256()); err != nil {
		return fail(k.cfg.AuditKeyLabel, err)
	}
	return nil
}

func (k *Keyring) destroySecret(label string) error {
	keys, err := k.c11.FindKeys(nil, []byte(label))
	if err != nil {
		return err
	}
	for _, key := range keys {
		if err := key.Delete(); err != nil {
			return err
		}
	}
	return nil
}

// scanKEKs lists the AES keys on the token whose label is a KEK label of our prefix.
// PKCS#11 cannot search by label prefix, so it reads the label of every AES key; tokens
// hold few of them.
func (k *Keyring) scanKEKs() ([]*kek, error) {
	attrs := crypto11.NewAttributeSet()
	if err := attrs.Set(crypto11.CkaKeyType, pkcs11.CKK_AES); err != nil {
		return nil, err
	}
	keys, err := k.c11.FindKeysWithAttributes(attrs)
	if err != nil {
		return nil, fmt.Errorf("hsm: find KEKs: %w: %w", ErrHSM, err)
	}
	var keks []*kek
	seen := map[int]bool{}
	for _, key := range keys {
		a, err := k.c11.GetAttribute(key, crypto11.CkaLabel)
		if err != nil {
			return nil, fmt.Errorf("hsm: read KEK label: %w: %w", ErrHSM, err)
		}
		if a == nil {
			continue
		}
		v, ok := parseKEKLabel(k.cfg.KEKPrefix, string(a.Value))
		if !ok {
			continue
		}
		if seen[v] {
			return nil, fmt.Errorf("hsm: KEK %s: %w", string(a.Value), ErrDuplicateKey)
		}
		seen[v] = true
		keks = append(keks, &kek{version: v, label: string(a.Value), key: key})
	}
	return keks, nil
}

// prepareKEK checks the key's protection and makes its AEAD.
func (k *Keyring) prepareKEK(kk *kek) error {
	if err := k.checkProtected(kk.key, kk.label); err != nil {
		return err
	}
	aead, err := kk.key.NewGCM()
	if err != nil {
		return fmt.Errorf("hsm: KEK %s: %w: %w", kk.label, ErrHSM, err)
	}
	kk.aead = aead
	return nil
}

// checkProtected refuses keys that someone created (or imported) under our label without
// the protection Initialize gives them.
func (k *Keyring) checkProtected(key any, label string) error {
	a, err := k.c11.GetAttributes(key, []crypto11.AttributeType{crypto11.CkaSensitive, crypto11.CkaExtractable})
	if err != nil {
		return fmt.Errorf("hsm: check key %s: %w: %w", label, ErrHSM, err)
	}
	s, e := a[crypto11.CkaSensitive], a[crypto11.CkaExtractable]
	if s == nil || e == nil || !attrTrue(s) || attrTrue(e) {
		return fmt.Errorf("hsm: key %s: %w", label, ErrWeakKey)
	}
	return nil
}

func attrTrue(a *crypto11.Attribute) bool { return len(a.Value) == 1 && a.Value[0] != 0 }

// loadKeys finds all keys and fails, naming the key, if any is missing.
func (k *Keyring) loadKeys() error {
	keks, err := k.scanKEKs()
	if err != nil {
		return err
	}
	if len(keks) == 0 {
		return fmt.Errorf("hsm: open: KEK %s (and any later version): %w", kekLabel(k.cfg.KEKPrefix, 1), ErrKeyMissing)
	}
	for _, kk := range keks {
		if err := k.prepareKEK(kk); err != nil {
			return err
		}
	}
	k.keks.Store(newKEKSet(keks))

	pinKeys, err := k.c11.FindKeys(nil, []byte(k.cfg.PINKeyLabel))
	switch {
	case err != nil:
		return fmt.Errorf("hsm: open: find PIN key %s: %w: %w", k.cfg.PINKeyLabel, ErrHSM, err)
	case len(pinKeys) == 0:
		return fmt.Errorf("hsm: open: PIN-verifier key %s: %w", k.cfg.PINKeyLabel, ErrKeyMissing)
	case len(pinKeys) > 1:
		return fmt.Errorf("hsm: open: PIN-verifier key %s: %w", k.cfg.PINKeyLabel, ErrDuplicateKey)
	}
	if err := k.checkProtected(pinKeys[0], k.cfg.PINKeyLabel); err != nil {
		return err
	}
	k.pinKey = pinKeys[0]

	pairs, err := k.c11.FindKeyPairs(nil, []byte(k.cfg.AuditKeyLabel))
	switch {
	case err != nil:
		return fmt.Errorf("hsm: open: find audit key %s: %w: %w", k.cfg.AuditKeyLabel, ErrHSM, err)
	case len(pairs) == 0:
		return fmt.Errorf("hsm: open: audit-signing key pair %s: %w", k.cfg.AuditKeyLabel, ErrKeyMissing)
	case len(pairs) > 1:
		return fmt.Errorf("hsm: open: audit-signing key %s: %w", k.cfg.AuditKeyLabel, ErrDuplicateKey)
	}
	pub, ok := pairs[0].Public().(*ecdsa.PublicKey)
	if !ok || pub.Curve != elliptic.P256() {
		return fmt.Errorf("hsm: open: audit-signing key %s is not ECDSA P-256: %w", k.cfg.AuditKeyLabel, ErrInvalidConfig)
	}
	if err := k.checkProtected(pairs[0], k.cfg.AuditKeyLabel); err != nil {
		return err
	}
	if k.audit != nil && !k.audit.pub.Equal(pub) {
		// A reopen found another key under the label (another token, or the key was
		// replaced): checkpoints signed with it would not verify under the key auditors
		// hold. Stay unavailable rather than sign with it.
		return fmt.Errorf("hsm: reopen: audit-signing key %s is not the key the keyring opened with: %w", k.cfg.AuditKeyLabel, ErrKeyMissing)
	}
	k.auditKey = pairs[0]
	if k.audit == nil {
		k.audit = &AuditSigner{k: k, pub: pub}
	}
	return nil
}

// Close stops a reconnection in progress and releases the sessions. It waits for
// operations in flight. Later calls return ErrClosed. Close is idempotent.
func (k *Keyring) Close() error {
	if k.closed.Swap(true) {
		return nil
	}
	k.stopRecovery()
	k.connMu.Lock()
	defer k.connMu.Unlock()
	k.closeAnchor()
	if k.c11 == nil {
		return nil
	}
	if err := k.c11.Close(); err != nil {
		return fmt.Errorf("hsm: close: %w: %w", ErrHSM, err)
	}
	return nil
}

// do runs one operation: it refuses a closed keyring, an unavailable HSM (recovery.go) or a
// done context, waits for a session (sessionGate), turns a crypto11 panic into ErrHSM,
// classifies the error, starts a reconnection if the error says the token or its sessions
// are gone, and reports the outcome to Metrics.
func (k *Keyring) do(ctx context.Context, op Op, f func() error) (err error) {
	start := time.Now()
	var generation uint64
	defer func() {
		if r := recover(); r != nil {
			err = panicError(r)
		}
		if err != nil {
			if errors.Is(err, pool.ErrTimeout) {
				// crypto11's own pool ran dry behind the gate (a lost session): still a
				// wait that ended in ErrBusy.
				k.gate.observeWait(time.Since(start), true)
			}
			if generation != 0 && isOutage(err) {
				k.outage(generation, err)
				err = fmt.Errorf("%w: %w: %w", ErrHSM, ErrUnavailable, err)
			}
			err = k.classify(op, err)
		}
		k.metrics.Observe(op, outcome(err), time.Since(start))
	}()
	if k.closed.Load() {
		return ErrClosed
	}
	if err := k.unavailable(); err != nil {
		return err
	}
	// A reopen holds the connection exclusively; an operation does not queue behind it (a
	// reopen can take as long as the token takes to answer) but fails fast, as during the
	// outage that caused it.
	if !k.connMu.TryRLock() {
		return k.unavailableNow()
	}
	defer k.connMu.RUnlock()
	if k.closed.Load() {
		return ErrClosed
	}
	if err := k.unavailable(); err != nil {
		return err
	}
	generation = k.generation
	if err := ctx.Err(); err != nil {
		return err
	}
	if err := k.gate.acquire(ctx); err != nil {
		return err
	}
	defer k.gate.release()
	return f()
}

// panicError turns what crypto11 panicked with (an error from PKCS#11 or its session
// pool) into an error. Those carry return codes and messages, never key material.
func panicError(r any) error {
	if err, ok := r.(error); ok {
		return fmt.Errorf("recovered panic: %w", err)
	}
	return fmt.Errorf("recovered panic: %v", r)
}

// classify prefixes the operation and adds ErrHSM, ErrBusy or ErrClosed unless the error
// already carries one of our sentinels.
func (k *Keyring) classify(op Op, err error) error {
	for _, s := range []error{ErrClosed, ErrHSM, ErrInvalidInput, ErrMalformedBlob, ErrUnsupportedVersion, ErrUnknownKEK, ErrAuthFailed, ErrCurrentKEK, ErrAnchorConflict, ErrDuplicateKey, ErrWeakKey, context.Canceled, context.DeadlineExceeded} {
		if errors.Is(err, s) {
			return fmt.Errorf("hsm: %s: %w", op, err)
		}
	}
	switch {
	case errors.Is(err, pool.ErrTimeout), errors.Is(err, errGateTimeout):
		return fmt.Errorf("hsm: %s: %w: %w: %w", op, ErrHSM, ErrBusy, err)
	case k.closed.Load():
		// crypto11 reports use of a closed context with an unexported error.
		return fmt.Errorf("hsm: %s: %w: %w", op, ErrClosed, err)
	}
	return fmt.Errorf("hsm: %s: %w: %w", op, ErrHSM, err)
}

func outcome(err error) Outcome {
	switch {
	case err == nil:
		return OutcomeOK
	case errors.Is(err, ErrHSM), errors.Is(err, ErrClosed):
		return OutcomeError
	}
	return OutcomeRejected
}

// Wrap encrypts plaintext under the current KEK, binding ad (for a key share: key id,
// share version) and the KEK label into the blob. The blob format is described in the
// package comment.
func (k *Keyring) Wrap(ctx context.Context, plaintext, ad []byte) ([]byte, error) {
	var blob []byte
	err := k.do(ctx, OpWrap, func() (err error) {
		blob, err = k.seal(k.keks.Load().current, plaintext, ad)
		return err
	})
	return blob, err
}

func (k *Keyring) seal(kk *kek, plaintext, ad []byte) ([]byte, error) {
	blob := make([]byte, 0, blobHeaderBase+len(kk.label)+NonceSize+len(plaintext)+TagSize)
	blob = appendBlobHeader(blob, kk.label)
	hdrLen := len(blob)
	blob = blob[:hdrLen+NonceSize]
	if _, err := rand.Read(blob[hdrLen:]); err != nil {
		return nil, fmt.Errorf("nonce: %w", err)
	}
	// Seal panics on HSM errors; do recovers.
	return kk.aead.Seal(blob, blob[hdrLen:], plaintext, gcmAAD(blob[:hdrLen], ad)), nil
}

// Unwrap authenticates and decrypts a blob made by Wrap (under any KEK still on the token)
// with the same associated data. It fails with ErrMalformedBlob, ErrUnsupportedVersion,
// ErrUnknownKEK or ErrAuthFailed as the blob deserves. The caller owns (and should zero)
// the plaintext.
func (k *Keyring) Unwrap(ctx context.Context, blob, ad []byte) ([]byte, error) {
	var pt []byte
	err := k.do(ctx, OpUnwrap, func() (err error) {
		pt, err = k.open(blob, ad)
		return err
	})
	return pt, err
}

func (k *Keyring) open(blob, ad []byte) ([]byte, error) {
	b, err := ParseBlob(blob)
	if err != nil {
		return nil, err
	}
	kk := k.keks.Load().byLabel[b.KEKLabel]
	if kk == nil {
		return nil, fmt.Errorf("KEK %q: %w", b.KEKLabel, ErrUnknownKEK)
	}
	pt, err := kk.aead.Open(nil, b.Nonce, b.Ciphertext, gcmAAD(b.header, ad))
	if err != nil {
		if isAuthFailure(err) {
			return nil, fmt.Errorf("under %s: %w (%v)", kk.label, ErrAuthFailed, err)
		}
		return nil, err
	}
	return pt, nil
}

// isAuthFailure tells a GCM tag mismatch from an HSM failure. crypto11 formats the
// PKCS#11 error with %v, so only the message carries the return code. A failing tag makes
// C_Decrypt (not C_DecryptInit: key, session and login were fine) return
// CKR_ENCRYPTED_DATA_INVALID, or CKR_GENERAL_ERROR on SoftHSM2 2.6, which passes OpenSSL's
// verdict on through that code.
func isAuthFailure(err error) bool {
	msg := err.Error()
	if !strings.HasPrefix(msg, "C_Decrypt: ") {
		return false
	}
	for _, code := range []string{"CKR_ENCRYPTED_DATA_INVALID", "CKR_ENCRYPTED_DATA_LEN_RANGE", "CKR_GENERAL_ERROR"} {
		if strings.HasSuffix(msg, code) {
			return true
		}
	}
	return false
}

// EnsureCurrent returns blob as it is if the current KEK wrapped it, and rewrapped under
// the current KEK otherwise. Callers that wrap outside a store transaction run it inside the
// transaction that stores the blob: a blob wrapped just before a KEK rotation and committed
// after its sweep would otherwise be left under a KEK that finishing the rotation destroys.
func (k *Keyring) EnsureCurrent(ctx context.Context, blob, ad []byte) ([]byte, error) {
	b, err := ParseBlob(blob)
	if err != nil {
		return nil, fmt.Errorf("hsm: ensure current: %w", err)
	}
	if b.KEKLabel == k.CurrentKEK() {
		return blob, nil
	}
	return k.Rewrap(ctx, blob, ad)
}

// Rewrap unwraps a blob made under any known KEK and wraps the plaintext again under the
// current one, with a fresh nonce and the same associated data.
func (k *Keyring) Rewrap(ctx context.Context, blob, ad []byte) ([]byte, error) {
	var out []byte
	err := k.do(ctx, OpRewrap, func() error {
		pt, err := k.open(blob, ad)
		if err != nil {
			return err
		}
		defer clear(pt)
		out, err = k.seal(k.keks.Load().current, pt, ad)
		return err
	})
	return out, err
}

// CurrentKEK returns the label of the KEK that Wrap uses.
func (k *Keyring) CurrentKEK() string { return k.keks.Load().current.label }

// KEKs lists the KEK versions this keyring knows, oldest first: those on the token when it
// was opened plus those it created since.
func (k *Keyring) KEKs() []KEKInfo {
	set := k.keks.Load()
	out := make([]KEKInfo, 0, len(set.byLabel))
	for _, kk := range set.byLabel {
		out = append(out, KEKInfo{Label: kk.label, Version: kk.version, Current: kk == set.current})
	}
	slices.SortFunc(out, func(a, b KEKInfo) int { return a.Version - b.Version })
	return out
}

// RotateKEK creates the next KEK version on the token and makes it current. Blobs under
// older versions keep working until their KEK is destroyed; move them with Rewrap. The
// version after the highest one on the token is used, so a KEK created by another process
// is never duplicated.
func (k *Keyring) RotateKEK(ctx context.Context) (KEKInfo, error) {
	var info KEKInfo
	err := k.do(ctx, OpRotateKEK, func() error {
		k.rotateMu.Lock()
		defer k.rotateMu.Unlock()
		onToken, err := k.scanKEKs()
		if err != nil {
			return err
		}
		next := 1
		for _, kk := range onToken {
			next = max(next, kk.version+1)
		}
		label := kekLabel(k.cfg.KEKPrefix, next)
		if err := k.generateKEK(label); err != nil {
			return fmt.Errorf("create %s: %w", label, err)
		}
		// Rescan so the new key (and any version another process made) enters the set
		// with the same checks as at open.
		if onToken, err = k.scanKEKs(); err != nil {
			return err
		}
		old := k.keks.Load().byLabel
		for _, kk := range onToken {
			if prev := old[kk.label]; prev != nil {
				*kk = *prev
				continue
			}
			if err := k.prepareKEK(kk); err != nil {
				return err
			}
		}
		set := newKEKSet(onToken)
		if set.current.label != label {
			return fmt.Errorf("new KEK %s is not the highest version: %w", label, ErrDuplicateKey)
		}
		k.keks.Store(set)
		info = KEKInfo{Label: label, Version: next, Current: true}
		return nil
	})
	return info, err
}

// DestroyKEK destroys an old KEK version on the token. Blobs still wrapped under it become
// unreadable (ErrUnknownKEK), so call it only after every blob has been rewrapped. It refuses
// the current KEK (ErrCurrentKEK).
func (k *Keyring) DestroyKEK(ctx context.Context, version int) error {
	return k.do(ctx, OpDestroyKEK, func() error {
		k.rotateMu.Lock()
		defer k.rotateMu.Unlock()
		set := k.keks.Load()
		label := kekLabel(k.cfg.KEKPrefix, version)
		kk := set.byLabel[label]
		switch {
		case kk == nil:
			return fmt.Errorf("KEK %s: %w", label, ErrUnknownKEK)
		case kk == set.current:
			return fmt.Errorf("KEK %s: %w", label, ErrCurrentKEK)
		}
		// Drop it from the set first, so Unwraps that start from now on fail with
		// ErrUnknownKEK; one already holding the handle may fail with ErrHSM.
		rest := make([]*kek, 0, len(set.byLabel)-1)
		for _, o := range set.byLabel {
			if o != kk {
				rest = append(rest, o)
			}
		}
		k.keks.Store(newKEKSet(rest))
		if err := kk.key.Delete(); err != nil {
			return fmt.Errorf("destroy %s: %w", label, err)
		}
		return nil
	})
}

// PINVerifier returns HMAC-SHA256, computed inside the HSM, over the length-prefixed
// (salt, keyContext, pin); keyContext binds the verifier to its key (the key id). Store it
// with the salt; check PINs with VerifyPIN. The salt must be at least MinSaltSize random
// bytes (NewPINSalt).
func (k *Keyring) PINVerifier(ctx context.Context, salt, keyContext, pin []byte) ([]byte, error) {
	var mac []byte
	err := k.do(ctx, OpPINVerifier, func() (err error) {
		mac, err = k.pinMAC(salt, keyContext, pin)
		return err
	})
	return mac, err
}

// VerifyPIN recomputes the verifier and compares it with want in constant time.
func (k *Keyring) VerifyPIN(ctx context.Context, want, salt, keyContext, pin []byte) (bool, error) {
	var ok bool
	err := k.do(ctx, OpPINVerifier, func() error {
		mac, err := k.pinMAC(salt, keyContext, pin)
		if err != nil {
			return err
		}
		ok = hmac.Equal(mac, want)
		return nil
	})
	return ok, err
}

func (k *Keyring) pinMAC(salt, keyContext, pin []byte) ([]byte, error) {
	msg, err := pinMessage(salt, keyContext, pin)
	if err != nil {
		return nil, err
	}
	defer clear(msg)
	h, err := k.pinKey.NewHMAC(pkcs11.CKM_SHA256_HMAC, sha256.Size)
	if err != nil {
		return nil, err
	}
	// One Write, then always Sum: Sum returns the session to crypto11's pool, also when
	// C_SignFinal fails (it then panics, which do recovers). The one path that leaks a
	// pool session is C_SignUpdate failing right after C_SignInit succeeded on the same
	// session, where crypto11's Sum panics before giving the session back; a leaked
	// session shrinks the pool, and an empty pool yields ErrBusy, not a hang.
	_, werr := h.Write(msg)
	mac := h.Sum(nil)
	if werr != nil {
		return nil, werr
	}
	return mac, nil
}

// Health is a cheap liveness probe for /readyz: it reads one attribute of the current KEK,
// which needs a working session, a logged-in token and the key still present. While the
// keyring reconnects after an outage it fails with ErrUnavailable (recovery.go).
func (k *Keyring) Health(ctx context.Context) error {
	return k.do(ctx, OpHealth, k.probe)
}

// AuditSigner returns the signer backed by the audit-signing key.
func (k *Keyring) AuditSigner() *AuditSigner { return k.audit }

// AuditSigner signs audit checkpoints with the HSM-resident ECDSA P-256 key. It stays valid
// across reopens: it signs with the keyring's current handle to the key.
type AuditSigner struct {
	k   *Keyring
	pub *ecdsa.PublicKey
}

// SignDigest returns an ASN.1 DER ECDSA P-256 signature over a 32-byte SHA-256 digest.
func (a *AuditSigner) SignDigest(ctx context.Context, digest []byte) ([]byte, error) {
	var sig []byte
	err := a.k.do(ctx, OpAuditSign, func() (err error) {
		if len(digest) != sha256.Size {
			return fmt.Errorf("digest of %d bytes, want %d: %w", len(digest), sha256.Size, ErrInvalidInput)
		}
		// crypto11 converts PKCS#11's raw r‖s into ASN.1 DER.
		sig, err = a.k.auditKey.Sign(nil, digest, nil)
		return err
	})
	return sig, err
}

// PublicKey returns the key that verifies those signatures.
func (a *AuditSigner) PublicKey() *ecdsa.PublicKey { return a.pub }

// PublicKeyPEM returns the public key as a PEM "PUBLIC KEY" block (PKIX), for auditors.
func (a *AuditSigner) PublicKeyPEM() ([]byte, error) {
	der, err := x509.MarshalPKIXPublicKey(a.pub)
	if err != nil {
		return nil, fmt.Errorf("hsm: audit public key: %w", err)
	}
	return pem.EncodeToMemory(&pem.Block{Type: "PUBLIC KEY", Bytes: der}), nil
}
