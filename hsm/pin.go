package hsm

import (
	"crypto/rand"
	"encoding/binary"
	"fmt"
)

// Limits on PIN-verifier inputs. The salt must be long enough to make verifiers of equal
// PINs differ; the upper bounds keep one HSM call small.
const (
	// MinSaltSize is the shortest salt PINVerifier accepts.
	MinSaltSize = 16
	maxPINInput = 1024
)

// pinDomain separates these HMAC inputs from any other use of the key.
const pinDomain = "hufu/pin-verifier/v1"

// pinMessage is the HMAC input: domain, salt, context and PIN, each preceded by its length
// as a 4-byte big-endian integer, so no two different (salt, context, PIN) triples encode
// to the same bytes. The caller zeroes the result: it contains the PIN.
func pinMessage(salt, context, pin []byte) ([]byte, error) {
	switch {
	case len(salt) < MinSaltSize:
		return nil, fmt.Errorf("salt of %d bytes, want at least %d: %w", len(salt), MinSaltSize, ErrInvalidInput)
	case len(pin) == 0:
		return nil, fmt.Errorf("empty PIN: %w", ErrInvalidInput)
	case len(salt) > maxPINInput || len(context) > maxPINInput || len(pin) > maxPINInput:
		return nil, fmt.Errorf("salt, context or PIN longer than %d bytes: %w", maxPINInput, ErrInvalidInput)
	}
	msg := make([]byte, 0, 16+len(pinDomain)+len(salt)+len(context)+len(pin))
	for _, part := range [][]byte{[]byte(pinDomain), salt, context, pin} {
		msg = binary.BigEndian.AppendUint32(msg, uint32(len(part)))
		msg = append(msg, part...)
	}
	return msg, nil
}

// NewPINSalt returns a fresh random salt of MinSaltSize bytes.
func NewPINSalt() ([]byte, error) {
	s := make([]byte, MinSaltSize)
	if _, err := rand.Read(s); err != nil {
		return nil, fmt.Errorf("hsm: salt: %w", err)
	}
	return s, nil
}
