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
	OpAuditAnchor Op = "audit_anchor"
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

// SessionStats is a reading of the keyring's HSM sessions (Keyring.SessionStats).
type SessionStats struct {
	// Capacity is the number of sessions operations can hold at once: crypto11's pool,
	// which is Config.MaxSessions (lowered to the token's own session limit if it states
	// one) minus the session crypto11 keeps logged in.
	Capacity int
	// InUse counts operations holding a session now.
	InUse int
	// Waiting counts operations waiting for a session now.
	Waiting int
}

// SessionMetrics is implemented by a Metrics that also watches the session pool. Open and
// Initialize look for it in Config.Metrics, so a Metrics that only counts operations keeps
// implementing one method.
type SessionMetrics interface {
	Metrics
	// WatchSessions is called once when a keyring opens, with a function that reads its
	// sessions; call it at scrape time. It is cheap (a few loads) and safe for concurrent
	// use, and after Close it reports nothing in use.
	WatchSessions(read func() SessionStats)
	// ObserveSessionWait records one operation that found every session taken: how long
	// it waited and whether it gave up after Config.PoolWaitTimeout (then the operation
	// fails with ErrBusy). Operations that found a session free are not observed: they
	// did not wait.
	ObserveSessionWait(wait time.Duration, timedOut bool)
}

// RecoveryMetrics is implemented by a Metrics that also follows outages (recovery.go). Open
// and Initialize look for it in Config.Metrics.
type RecoveryMetrics interface {
	Metrics
	// WatchAvailability is called once when a keyring opens, with a function that reports
	// whether it is available (false while it reconnects after an outage); call it at
	// scrape time.
	WatchAvailability(available func() bool)
	// ObserveOutage records one outage: an operation failed because the token, the module
	// or the session was gone, and the keyring became unavailable.
	ObserveOutage()
	// ObserveReopen records one attempt to reopen the keyring and whether it succeeded.
	ObserveReopen(ok bool)
}
