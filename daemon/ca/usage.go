package ca

import "time"

// Usage is what an end-entity certificate's key is for. GM practice (GM/T 0015) issues a
// person or an enterprise two certificates on two keys: one that signs and one that bid files
// and other data are encrypted to, so an encryption key can be escrowed, recovered or
// rotated without touching the key that makes signatures binding.
type Usage int

const (
	// UsageSigning: digitalSignature and nonRepudiation (contentCommitment).
	UsageSigning Usage = iota + 1
	// UsageEncryption: keyEncipherment and dataEncipherment.
	UsageEncryption
	// UsageCombined is the one certificate per key issued before pairs, for both uses. Only
	// orders made before pairs are paid or renewed with it (their holder has one key); no new
	// application asks for it.
	UsageCombined
)

// String names the usage as it appears in records, logs and the CLI.
func (u Usage) String() string {
	switch u {
	case UsageSigning:
		return "signing"
	case UsageEncryption:
		return "encryption"
	case UsageCombined:
		return "combined"
	}
	return "unspecified"
}

// Revocation is a serial's entry on a CA's revocation list.
type Revocation struct {
	At     time.Time
	Reason int // RFC 5280 §5.3.1 reason code
}
