// Package hsm is hufu's one place that talks to a PKCS#11 HSM. A Keyring, opened from a
// Config, holds handles to three kinds of key that never leave the token:
//
//   - key-encryption keys (KEKs), AES-256, labelled <prefix>-v1, <prefix>-v2, …: Wrap and
//     Unwrap protect server key shares and other secrets at rest with AES-GCM under the
//     current KEK (the highest version on the token); RotateKEK, Rewrap and DestroyKEK
//     move blobs to a new KEK and retire old ones;
//   - the PIN-verifier key, a generic secret used for HMAC-SHA256 (PINVerifier, VerifyPIN),
//     so a stolen database of verifiers cannot be brute-forced without the HSM;
//   - the audit-signing key, ECDSA P-256 (AuditSigner), which signs audit checkpoints that
//     auditors verify offline with its exported public key.
//
// Beside the keys, the token holds the audit anchor (anchor_format.go): a data object with
// the size and head hash of the newest signed audit checkpoint, which the store cannot roll
// back, so the daemon detects a restored or rolled-back log at start.
//
// Initialize creates the keys on an empty token (hufud init); Open refuses a token on which
// any of them is missing. All keys are created sensitive and non-extractable, and Open
// checks that they still are.
//
// The package uses crypto11 (over miekg/pkcs11) and therefore needs cgo; built without cgo,
// Open and Initialize return ErrNoCgo.
//
// # Failures
//
// Errors name the operation ("hsm: unwrap: …") and match one of the sentinel errors below
// with errors.Is. They never contain PINs, plaintexts or key material. crypto11 panics on
// some HSM errors (AEAD Seal, HMAC Sum); every Keyring method recovers and returns ErrHSM
// instead. A context passed to a method is checked before the HSM is called and ends a wait
// for a session: a PKCS#11 call itself cannot be cancelled, and waiting for a session is
// bounded by Config.PoolWaitTimeout (ErrBusy). Keyring.SessionStats and SessionMetrics
// report the session pool.
//
// An error that says the token, the module or the session is gone (CKR_DEVICE_REMOVED,
// CKR_SESSION_HANDLE_INVALID, …) makes the keyring unavailable: operations fail at once
// with ErrUnavailable (and ErrHSM) while one background goroutine reopens the PKCS#11
// context, pool and login with backoff (Config.ReopenBackoff); Health follows, and a
// RecoveryMetrics counts outages and reopens. recovery.go says how it avoids a thundering
// herd and races with operations in flight.
//
// # Blob format (version 1)
//
// Wrap returns a self-describing byte string; every multi-byte integer is big-endian:
//
//	offset  size  field
//	0       2     magic "hW"
//	2       1     format version, 1
//	3       1     n, length of the KEK label (1..255)
//	4       n     KEK label, e.g. "hufu-kek-v3"
//	4+n     12    GCM nonce, random, generated in Go
//	16+n    rest  AES-256-GCM ciphertext followed by its 16-byte tag
//
// The GCM additional data is bytes [0, 4+n) of the blob (magic, version, label length,
// label) followed by the caller's associated data, so a blob cannot be moved to another
// record (different associated data), another format version or another KEK label without
// failing authentication. Nonces come from crypto/rand and are never taken from the HSM:
// SoftHSM2 reuses IVs it generates. With random 96-bit nonces one KEK must not seal more
// than about 2^32 blobs; rotate long before that.
package hsm
