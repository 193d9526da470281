package hsm

import "time"

// Op names a Keyring operation in metrics.
type Op string

// Operations reported to Metrics.
const (
	OpWrap        Op = "wrap"
	OpUnwrap      Op = "unwrap"
	OpRewrap      Op = "rewrap"
	OpPINVerifier Op = "pin_verifier"
	OpAuditSign   Op = "audit_sign"
	OpRotateKEK   Op = "rotate_kek"
	OpDestroyKEK  Op = "destroy_kek"
	OpHealth      Op = "health"
)

// Outcome classifies how an operation ended, for counters.
type Outcome string

// Outcomes reported to Metrics.
const (
	// OutcomeOK: the operation succeeded.
	OutcomeOK Outcome = "ok"
	// OutcomeRejected: the input was refused (bad blob, failed authentication, unknown
	// KEK, invalid argument): the HSM is fine, the caller or the data is not.
	OutcomeRejected Outcome = "rejected"
	// OutcomeError: the HSM, the session pool or the keyring failed.
	OutcomeError Outcome = "error"
)

// Metrics receives one observation per Keyring operation. The daemon implements it with a
// latency histogram labelled by op and a counter labelled by op and outcome; the labels are
// the fixed sets above, never user data. Implementations must be safe for concurrent use
// and cheap: Observe runs on the hot path.
type Metrics interface {
	Observe(op Op, outcome Outcome, elapsed time.Duration)
}

// NopMetrics discards observations; it is the default.
type NopMetrics struct{}

// Observe does nothing.
func (NopMetrics) Observe(Op, Outcome, time.Duration) {}
