package daemon

import (
	"context"
	"time"
)

// Issuance recovery (daemon/certs/issuing.go): a paid order's certificates are reserved
// before its CA signs them, and a reservation its payment call did not finish (a crash, a CA
// that did not answer) is completed or revoked here.
const (
	// issuanceRecoveryInterval is how often a serving appliance looks for reservations.
	issuanceRecoveryInterval = time.Minute
	// issuanceRecoveryGrace is how old a reservation must be before the periodic recovery
	// takes it: a payment call finishes its own in milliseconds, or its caller retries.
	issuanceRecoveryGrace = time.Minute
)

// recoverIssuance resolves, before the appliance serves, every reservation a previous
// process left, whatever its age: no payment call is running yet. A reservation it cannot
// resolve now (its CA does not answer) is logged and left for the periodic recovery.
func (d *Daemon) recoverIssuance(ctx context.Context) {
	completed, revoked, err := d.certs.RecoverIssuance(ctx, 0)
	if completed+revoked > 0 {
		d.opts.Log.Info("recovered interrupted issuances", "completed", completed, "revoked", revoked)
	}
	if err != nil {
		d.opts.Log.Warn("recovering interrupted issuances; retrying every minute", "err", err)
	}
}
