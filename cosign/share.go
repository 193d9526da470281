package cosign

import (
	"log/slog"
)

// ShareSize is the length of an encoded share: the share d and its inverse d⁻¹ mod n, both
// 32 bytes. Keeping the inverse saves a modular inversion on every decryption.
const ShareSize = 2 * ScalarSize

// ServerShare is the appliance's half of a split key: d2 and d2⁻¹. It never leaves the
// appliance except wrapped under an HSM key. It prints and logs as redacted.
type ServerShare struct{ share }

// PhoneShare is the phone's half of a split key: d1 and d1⁻¹. It prints and logs as redacted.
type PhoneShare struct{ share }

type share struct {
	d, dInv [ScalarSize]byte
}

func newShare(d *[ScalarSize]byte) share {
	return share{d: *d, dInv: invert(d)}
}

// MarshalBinary returns d ‖ d⁻¹ (ShareSize bytes), the form to wrap for storage.
func (s *share) MarshalBinary() ([]byte, error) {
	out := make([]byte, 0, ShareSize)
	out = append(out, s.d[:]...)
	return append(out, s.dInv[:]...), nil
}

// parseShare decodes d ‖ d⁻¹ and checks both ranges and that d·d⁻¹ = 1, so a corrupted or
// mismatched record is refused instead of producing wrong answers.
func parseShare(b []byte, field string) (share, error) {
	var s share
	if len(b) != ShareSize {
		return s, inputError(field, ErrLength)
	}
	d, err := ParseScalar(b[:ScalarSize])
	if err != nil {
		return s, inputError(field+".d", err)
	}
	dInv, err := ParseScalar(b[ScalarSize:])
	if err != nil {
		return s, inputError(field+".d_inv", err)
	}
	if nat(&d).Mul(nat(&dInv), orderN).IsOne() != 1 {
		return s, inputError(field+".d_inv", ErrScalarRange)
	}
	s.d, s.dInv = d, dInv
	return s, nil
}

// ParseServerShare decodes a server share written by MarshalBinary.
func ParseServerShare(b []byte) (*ServerShare, error) {
	s, err := parseShare(b, "server_share")
	if err != nil {
		return nil, err
	}
	return &ServerShare{s}, nil
}

// ParsePhoneShare decodes a phone share written by MarshalBinary.
func ParsePhoneShare(b []byte) (*PhoneShare, error) {
	s, err := parseShare(b, "phone_share")
	if err != nil {
		return nil, err
	}
	return &PhoneShare{s}, nil
}

// Destroy overwrites the share. Go may have copied it elsewhere (stack growth, earlier
// copies), so this narrows, not closes, the window in which memory holds it.
func (s *share) Destroy() {
	clear(s.d[:])
	clear(s.dInv[:])
}

// Equal reports whether two shares are the same, in constant time.
func (s *share) Equal(o *share) bool {
	return equalScalars(&s.d, &o.d) && equalScalars(&s.dInv, &o.dInv)
}

const redacted = "[REDACTED]"

func (s *share) LogValue() slog.Value { return slog.StringValue(redacted) }
func (s *share) String() string       { return redacted }
func (s *share) GoString() string     { return redacted }

// refreshed returns the share multiplied by m: d·m and d⁻¹·m⁻¹. The phone applies ρ, the
// server ρ⁻¹, so the product d1·d2, and with it the public key, is unchanged.
func (s *share) refreshed(m, mInv *[ScalarSize]byte) share {
	var out share
	putNat(&out.d, nat(&s.d).Mul(nat(m), orderN))
	putNat(&out.dInv, nat(&s.dInv).Mul(nat(mInv), orderN))
	return out
}
