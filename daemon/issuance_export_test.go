package daemon

import (
	"context"
	"time"
)

// RecoverIssuance runs issuance recovery now, as the periodic run does with grace (test hook
// for the external tests).
func (d *Daemon) RecoverIssuance(ctx context.Context, grace time.Duration) (completed, revoked int, err error) {
	return d.certs.RecoverIssuance(ctx, grace)
}
