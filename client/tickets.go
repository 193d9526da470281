package client

import (
	"context"
	"fmt"
	"sync"
	"time"

	hufuv1 "github.com/hufu-hsm/hufu/api/hufu/v1"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
)

// renewMargin is how long before its expiry a ticket is replaced, so that a call does not
// reach the appliance just after its ticket lapsed (and covers modest clock skew).
const renewMargin = 30 * time.Second

// ticketSource keeps a cosign ticket for one key fresh. A ticket is good for a number of
// operations within a time (the appliance's ticket_uses and ticket_ttl); the source counts
// the operations it spends, as the appliance does (one per item), and opens a new ticket
// with the PIN before the current one runs out, so that long batch jobs, a bid opening's
// envelopes for example, do not fail half way.
//
// It holds the PIN in memory for as long as the Key lives; a ticket alone would expire, and
// asking the user again in the middle of a batch is worse. If the PIN stops working (changed
// from another device) the source gives up after the first refusal instead of spending the
// key's remaining attempts.
type ticketSource struct {
	conn  *Conn
	keyID string
	now   func() time.Time

	mu        sync.Mutex
	pin       string // "" once the PIN was refused
	ticket    string
	expires   time.Time
	uses      int
	perTicket int   // the uses a new ticket brings (the appliance's ticket_uses)
	err       error // why the PIN no longer works
}

// maxUses returns how many operations a fresh ticket allows, so batches can be cut to fit.
func (t *ticketSource) maxUses() int {
	t.mu.Lock()
	defer t.mu.Unlock()
	return t.perTicket
}

// credential returns a ticket good for n more operations, opening one if needed.
func (t *ticketSource) credential(ctx context.Context, n int) (*hufuv1.Credential, error) {
	t.mu.Lock()
	defer t.mu.Unlock()
	if t.ticket == "" || t.uses < n || !t.now().Add(renewMargin).Before(t.expires) {
		if err := t.openLocked(ctx); err != nil {
			return nil, err
		}
	}
	t.uses -= n
	return TicketCredential(t.ticket), nil
}

func (t *ticketSource) openLocked(ctx context.Context) error {
	if t.pin == "" {
		return t.err
	}
	resp, err := t.conn.Keys.OpenTicket(ctx, &hufuv1.OpenTicketRequest{KeyId: t.keyID, Pin: t.pin})
	if err != nil {
		switch status.Code(err) {
		case codes.Unauthenticated, codes.ResourceExhausted, codes.PermissionDenied:
			// Wrong PIN, locked key, or not ours: trying again would only count failures.
			// (An expired session also lands here; signing in again means opening the key
			// again anyway.)
			t.pin = ""
			t.err = fmt.Errorf("client: key %s: new cosign ticket: %w", t.keyID, err)
			return t.err
		}
		return fmt.Errorf("client: key %s: new cosign ticket: %w", t.keyID, err)
	}
	t.ticket, t.uses = resp.GetTicket(), int(resp.GetUses())
	t.perTicket = t.uses
	t.expires = t.now().Add(time.Hour) // no expiry given: rely on the retry in Remote.call
	if resp.GetExpiresAt() != nil {
		t.expires = resp.GetExpiresAt().AsTime()
	}
	return nil
}

// drop forgets the current ticket after the appliance refused it (expired early by its
// clock, or revoked by a PIN change or reset).
func (t *ticketSource) drop(ticket string) {
	t.mu.Lock()
	defer t.mu.Unlock()
	if t.ticket == ticket {
		t.ticket = ""
	}
}
