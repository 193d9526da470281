package cms

import "errors"

// Sentinel errors. Functions return them wrapped in an *Error that names the operation and
// the part of the structure concerned; test with errors.Is.
var (
	// ErrInput: an argument is unusable (a digest that is not 32 bytes, a nil or non-SM2
	// certificate, a time outside 1950–9999).
	ErrInput = errors.New("invalid argument")
	// ErrMalformed: the bytes are not DER, or not the structure expected at that place
	// (truncated, trailing data, wrong tag, missing or repeated element).
	ErrMalformed = errors.New("malformed DER")
	// ErrUnsupported: well-formed, but a content type, version or algorithm this package
	// does not accept (it accepts only the GM/T 0010 forms documented in the package doc).
	ErrUnsupported = errors.New("unsupported content type, version or algorithm")
	// ErrDigestMismatch: the message-digest attribute is not the expected content digest.
	ErrDigestMismatch = errors.New("message digest does not match")
	// ErrSignature: the SM2 signature does not verify under the signer's public key.
	ErrSignature = errors.New("signature does not verify")
	// ErrSigner: no certificate in the SignedData matches the signer's issuer and serial
	// number, or the signer's key is not an SM2 key.
	ErrSigner = errors.New("signer certificate not found or not SM2")
	// ErrSigningTime: the signing time lies outside the signer certificate's validity.
	ErrSigningTime = errors.New("signing time outside the certificate's validity")
	// ErrChain: the signer certificate does not chain to the given roots (or, when
	// building, the given chain is not the signer's issuer chain).
	ErrChain = errors.New("certificate chain does not verify")
	// ErrRecipient: the envelope has no recipient for the given certificate, or several
	// recipients and no certificate was given to choose one.
	ErrRecipient = errors.New("no single matching recipient")
	// ErrDecryption: the content-encryption key could not be recovered, or the content
	// does not decrypt under it.
	ErrDecryption = errors.New("decryption failed")
)

// Error is the error type of this package: Op is the function ("verify", "open envelope",
// ...), Part the element concerned ("signerInfo.signature", "attribute messageDigest", ...)
// and Err one of the sentinel errors, possibly wrapping a library error.
type Error struct {
	Op   string
	Part string
	Err  error
}

func (e *Error) Error() string {
	if e.Part == "" {
		return "cms: " + e.Op + ": " + e.Err.Error()
	}
	return "cms: " + e.Op + ": " + e.Part + ": " + e.Err.Error()
}

func (e *Error) Unwrap() error { return e.Err }

func newError(op, part string, err error) error { return &Error{Op: op, Part: part, Err: err} }

// wrapped joins a sentinel with the underlying error so both match errors.Is/As.
type wrapped struct {
	sentinel error
	cause    error
}

func (w *wrapped) Error() string   { return w.sentinel.Error() + ": " + w.cause.Error() }
func (w *wrapped) Unwrap() []error { return []error{w.sentinel, w.cause} }

func because(sentinel, cause error) error { return &wrapped{sentinel: sentinel, cause: cause} }
