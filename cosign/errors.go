package cosign

import "errors"

// Errors returned by the decoders. They are wrapped in an *InputError that names the
// offending field, so callers can report "invalid q1: point is not on the curve".
var (
	// ErrLength: an encoding is truncated or over-long.
	ErrLength = errors.New("wrong length")
	// ErrPointEncoding: a point does not start with 0x04 (uncompressed).
	ErrPointEncoding = errors.New("point is not in uncompressed form")
	// ErrNotOnCurve: a point's coordinates do not satisfy the curve equation or exceed p.
	ErrNotOnCurve = errors.New("point is not on the curve")
	// ErrIdentity: a point is the point at infinity, which no message may carry.
	ErrIdentity = errors.New("point is the identity")
	// ErrScalarRange: a scalar is zero or not less than the group order n.
	ErrScalarRange = errors.New("scalar is not in [1, n-1]")
	// ErrCiphertextEncoding: a ciphertext is not a well-formed SM2 ciphertext in the
	// requested encoding.
	ErrCiphertextEncoding = errors.New("malformed SM2 ciphertext")
	// ErrNotDelegation: an envelope does not open with the device's key, or what it holds
	// is not a hufu delegation.
	ErrNotDelegation = errors.New("not a delegation envelope for this device")
	// ErrDelegationContext: a delegation envelope was made for another key, member or
	// device than the one opening it.
	ErrDelegationContext = errors.New("envelope was made for another key, member or device")
)

// Errors returned by the protocol steps.
var (
	// ErrProof: the Schnorr proof of knowledge in a key-generation request does not verify.
	ErrProof = errors.New("cosign: proof of knowledge does not verify")
	// ErrKeyMismatch: the phone's check P + G = d1⁻¹·P2 failed, so the server did not combine
	// the public key with this phone's share.
	ErrKeyMismatch = errors.New("cosign: server's key-generation answer does not match our share")
	// ErrBadSignature: the signature assembled from the server's answer does not verify under
	// the joint public key (a faulty or malicious server, or mismatched shares).
	ErrBadSignature = errors.New("cosign: assembled signature does not verify")
	// ErrDegenerate: the assembled signature has s = 0 or r + s = n; the caller should retry.
	ErrDegenerate = errors.New("cosign: degenerate signature, retry")
	// ErrDecryption: the ciphertext's C3 check failed or its key stream was all zero. The
	// message is deliberately uninformative, as in every SM2 implementation.
	ErrDecryption = errors.New("cosign: decryption failed")
	// ErrRandom: the randomness source failed or kept producing out-of-range values.
	ErrRandom = errors.New("cosign: randomness source failed")
	// ErrRefreshState: a refresh transition was asked for in a state that does not allow it.
	ErrRefreshState = errors.New("cosign: refresh not possible in this state")
	// ErrRefreshProof: the proof that the phone holds its new share does not verify.
	ErrRefreshProof = errors.New("cosign: refresh confirmation does not verify")
)

// InputError reports an invalid protocol input and names the field it was found in, so a
// server can answer with a precise InvalidArgument. Err is one of the decoder errors above.
type InputError struct {
	Field string
	Err   error
}

func (e *InputError) Error() string { return "cosign: invalid " + e.Field + ": " + e.Err.Error() }
func (e *InputError) Unwrap() error { return e.Err }

func inputError(field string, err error) error { return &InputError{Field: field, Err: err} }
