package webhook

import (
	"crypto/hmac"
	"encoding/hex"
	"errors"
	"fmt"
	"regexp"
	"strconv"
	"time"

	"github.com/emmansun/gmsm/sm3"
)

// The headers of the contract (docs/providers.md §2).
const (
	HeaderTimestamp = "X-Hufu-Timestamp" // Unix seconds, decimal
	HeaderNonce     = "X-Hufu-Nonce"     // 32 lowercase hex digits, fresh per attempt
	HeaderRequestID = "X-Hufu-Request-Id"
	HeaderSignature = "X-Hufu-Signature" // 64 lowercase hex digits: HMAC-SM3 of the string to sign
)

// SignatureScheme is the first line of every string to sign; a future scheme changes it.
const SignatureScheme = "HUFU-HMAC-SM3-V1"

// Direction is the second line of a string to sign. It differs between a request and its
// response, so a gateway's signature can never be replayed as hufu's and back.
type Direction string

const (
	DirectionRequest  Direction = "REQUEST"
	DirectionResponse Direction = "RESPONSE"
)

// Signed is what a signature covers besides the body.
type Signed struct {
	Direction Direction
	Operation string // e.g. "sms.send", the last segment of the request path
	Timestamp string // of the message being signed: the request's, or the response's
	Nonce     string // always the request's nonce: a response is bound to one attempt
	RequestID string
}

var (
	operationRE = regexp.MustCompile(`^[a-z][a-z0-9.-]{0,63}$`)
	nonceRE     = regexp.MustCompile(`^[0-9a-f]{32}$`)
	requestIDRE = regexp.MustCompile(`^[0-9a-f]{32}$`)
	timestampRE = regexp.MustCompile(`^[1-9][0-9]{0,18}$`)
	signatureRE = regexp.MustCompile(`^[0-9a-f]{64}$`)
)

// Check reports a field that cannot be part of a string to sign. Every field is a single
// line, which is what makes the body (the last, unterminated part) unambiguous.
func (s Signed) Check() error {
	switch {
	case s.Direction != DirectionRequest && s.Direction != DirectionResponse:
		return errors.New("direction: want REQUEST or RESPONSE")
	case !operationRE.MatchString(s.Operation):
		return errors.New("operation: want 1-64 of a-z, 0-9, '.', '-'")
	case !timestampRE.MatchString(s.Timestamp):
		return fmt.Errorf("%s: want Unix seconds in decimal", HeaderTimestamp)
	case !nonceRE.MatchString(s.Nonce):
		return fmt.Errorf("%s: want 32 lowercase hex digits", HeaderNonce)
	case !requestIDRE.MatchString(s.RequestID):
		return fmt.Errorf("%s: want 32 lowercase hex digits", HeaderRequestID)
	}
	return nil
}

// StringToSign is the exact byte string a signature covers:
//
//	HUFU-HMAC-SM3-V1 LF direction LF operation LF timestamp LF nonce LF request-id LF body
//
// with LF a single newline (0x0a) and body the HTTP body exactly as sent.
func (s Signed) StringToSign(body []byte) []byte {
	head := SignatureScheme + "\n" + string(s.Direction) + "\n" + s.Operation + "\n" +
		s.Timestamp + "\n" + s.Nonce + "\n" + s.RequestID + "\n"
	return append([]byte(head), body...)
}

// Sign returns the signature of s and body under key, as 64 lowercase hex digits.
func Sign(key []byte, s Signed, body []byte) string {
	mac := hmac.New(sm3.New, key)
	mac.Write(s.StringToSign(body))
	return hex.EncodeToString(mac.Sum(nil))
}

// ErrBadSignature: a signature is missing, malformed or does not match.
var ErrBadSignature = errors.New("webhook: signature does not verify")

// ErrStale: a message's timestamp is outside the accepted window.
var ErrStale = errors.New("webhook: timestamp outside the accepted window")

// Verify checks signature (the header's value) against s and body under key, in constant
// time, and the timestamp of s against now within ±window.
func Verify(key []byte, s Signed, body []byte, signature string, now time.Time, window time.Duration) error {
	if err := s.Check(); err != nil {
		return fmt.Errorf("%w: %v", ErrBadSignature, err)
	}
	if !signatureRE.MatchString(signature) {
		return fmt.Errorf("%w: %s: want 64 lowercase hex digits", ErrBadSignature, HeaderSignature)
	}
	got, _ := hex.DecodeString(signature)
	want, _ := hex.DecodeString(Sign(key, s, body))
	if !hmac.Equal(got, want) {
		return ErrBadSignature
	}
	// The timestamp is checked after the signature: an unsigned timestamp says nothing.
	ts, err := strconv.ParseInt(s.Timestamp, 10, 64)
	if err != nil {
		return fmt.Errorf("%w: %s out of range", ErrStale, HeaderTimestamp)
	}
	if skew := now.Sub(time.Unix(ts, 0)); skew > window || skew < -window {
		return fmt.Errorf("%w: %s is %v from this clock (window ±%v)", ErrStale, HeaderTimestamp, skew.Round(time.Second), window)
	}
	return nil
}
