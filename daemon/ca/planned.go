package ca

import (
	"context"
	"time"
)

// Planned is what a caller fixes before a CA signs: the serial (lower-case hex) and the
// validity. A caller that records them first (daemon/certs reserves them in the transaction
// that takes the payment) can sign again after a crash and get the same certificate, and can
// revoke the serial if the certificate can no longer be delivered.
type Planned struct {
	Serial              string
	NotBefore, NotAfter time.Time
}

// PlannedIssuer is a CA that signs with a serial and validity chosen before signing. The
// embedded CA is one. A Connector to an external CA that chooses its own serials is not: its
// caller keeps the CA's reference and asks the CA again (Fetch) after a crash.
type PlannedIssuer interface {
	// Plan chooses the serial and validity of app's certificate; it signs and writes nothing.
	Plan(app *Application) (Planned, error)
	// IssuePlanned signs app's certificate as planned; it writes nothing.
	IssuePlanned(ctx context.Context, app *Application, p Planned) (*Issued, error)
}

var _ PlannedIssuer = (*Embedded)(nil)
