package hsm

import "errors"

// Sentinel errors. Errors returned by this package wrap one of them (sometimes two, such as
// ErrHSM and ErrBusy) and say which operation failed.
var (
	// ErrNoCgo means the binary was built without cgo; PKCS#11 needs it.
	ErrNoCgo = errors.New("hufu needs cgo for PKCS#11 (rebuild with CGO_ENABLED=1 and a C compiler)")
	// ErrInvalidConfig means Config.Validate rejected the configuration.
	ErrInvalidConfig = errors.New("invalid HSM configuration")
	// ErrModuleNotFound means the PKCS#11 module file does not exist.
	ErrModuleNotFound = errors.New("PKCS#11 module not found")
	// ErrTokenNotFound means no token has the configured label or serial.
	ErrTokenNotFound = errors.New("PKCS#11 token not found")
	// ErrWrongPIN means the token rejected the user PIN.
	ErrWrongPIN = errors.New("the token rejected the user PIN")
	// ErrKeyMissing means a key the keyring needs is not on the token; the error names it.
	// Run initialisation (hufud init) on a new token.
	ErrKeyMissing = errors.New("key missing on the token")
	// ErrAlreadyInitialized means Initialize found keys on the token and refused to
	// overwrite them.
	ErrAlreadyInitialized = errors.New("token already holds hufu keys")
	// ErrDuplicateKey means two objects on the token carry one label, which makes the
	// label ambiguous.
	ErrDuplicateKey = errors.New("two keys with the same label")
	// ErrWeakKey means a key on the token is extractable or not sensitive.
	ErrWeakKey = errors.New("key is extractable or not sensitive")
	// ErrClosed means the keyring was closed.
	ErrClosed = errors.New("keyring is closed")
	// ErrBusy means no HSM session became free within Config.PoolWaitTimeout.
	ErrBusy = errors.New("no HSM session free within the pool wait timeout")
	// ErrUnavailable means the token, its module or the keyring's sessions are gone (the
	// token was removed, the module lost its state, the sessions were closed) and the
	// keyring is reconnecting in the background; the operation was not attempted, or failed
	// with the error that revealed the outage. Errors wrapping it wrap ErrHSM too. Retry
	// later: Keyring.Health reports nil again once the keyring has reconnected.
	ErrUnavailable = errors.New("HSM unavailable, reconnecting")
	// ErrHSM means the HSM or the PKCS#11 library failed; the wrapped error says how.
	ErrHSM = errors.New("HSM operation failed")
	// ErrInvalidInput means an argument was rejected before reaching the HSM (a short salt,
	// a digest that is not 32 bytes, …).
	ErrInvalidInput = errors.New("invalid input")

	// ErrMalformedBlob means a blob is truncated or not in the blob format.
	ErrMalformedBlob = errors.New("malformed blob")
	// ErrUnsupportedVersion means a blob has a format version this build cannot read.
	ErrUnsupportedVersion = errors.New("unsupported blob format version")
	// ErrUnknownKEK means a blob names a KEK that is not on the token (or was destroyed).
	ErrUnknownKEK = errors.New("blob names an unknown KEK")
	// ErrAuthFailed means the blob did not authenticate: wrong associated data, or the
	// ciphertext, tag or nonce was altered.
	ErrAuthFailed = errors.New("blob failed authentication")
	// ErrAnchorConflict means RaiseAuditAnchor was given another head for the size the
	// audit anchor already holds: two logs whose records are numbered alike.
	ErrAnchorConflict = errors.New("audit anchor holds another head at that size")
	// ErrCurrentKEK means DestroyKEK was asked to destroy the current KEK.
	ErrCurrentKEK = errors.New("refusing to destroy the current KEK")
)
