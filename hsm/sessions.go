//go:build cgo

package hsm

import (
	"context"
	"errors"
	"fmt"
	"sync/atomic"
	"time"

	"github.com/miekg/pkcs11"
)

// sessionGate admits keyring operations to crypto11's session pool and measures it.
//
// crypto11 keeps its pool to itself: it exposes neither how many sessions are taken nor who
// waits for one, and its wait cannot be timed from outside. So the keyring queues in front
// of it, in a semaphore of exactly the pool's size. That is not a second limit: every
// keyring operation holds at most one crypto11 session at a time (a GCM Seal or Open, an
// HMAC from NewHMAC to Sum, a Sign, an attribute read, one after another in RotateKEK) and
// gives it back before it returns, so with at most capacity operations admitted crypto11's
// pool never runs dry and never waits; the waiting that crypto11 would do happens here
// instead, with the same timeout (Config.PoolWaitTimeout, ErrBusy), where it can be counted
// and timed. The pool then only waits if crypto11 lost a session (pinMAC's comment says
// when), and that wait still ends in ErrBusy after PoolWaitTimeout; do counts it as a timed
// out wait too.
//
// The semaphore is a buffered channel: taking a free slot is one non-blocking send and
// giving it back one receive, and len(slots) is the number of sessions in use, so the fast
// path keeps no counters of its own. Only an operation that finds no slot free reads the
// clock, starts a timer and updates the waiting count.
type sessionGate struct {
	slots   chan struct{}
	waiting atomic.Int64
	timeout time.Duration
	metrics SessionMetrics // nil: nobody watches the pool
}

// errGateTimeout is the error of a wait that outlived PoolWaitTimeout; classify turns it
// into ErrHSM and ErrBusy as it does crypto11's own pool timeout.
var errGateTimeout = errors.New("waited for a free session for the pool wait timeout")

func newSessionGate(capacity int, timeout time.Duration, m Metrics) *sessionGate {
	g := &sessionGate{slots: make(chan struct{}, capacity), timeout: timeout}
	g.metrics, _ = m.(SessionMetrics)
	return g
}

// acquire takes a slot, waiting at most the pool wait timeout and no longer than ctx
// allows (crypto11's own wait ignores contexts: a caller that has gone away stops waiting
// here instead of taking a session for work nobody wants).
func (g *sessionGate) acquire(ctx context.Context) error {
	select {
	case g.slots <- struct{}{}:
		return nil
	default:
	}
	g.waiting.Add(1)
	start := time.Now()
	t := time.NewTimer(g.timeout)
	var err error
	select {
	case g.slots <- struct{}{}:
	case <-t.C:
		err = errGateTimeout
	case <-ctx.Done():
		err = ctx.Err()
	}
	t.Stop()
	g.waiting.Add(-1)
	g.observeWait(time.Since(start), err == errGateTimeout)
	return err
}

func (g *sessionGate) release() { <-g.slots }

func (g *sessionGate) observeWait(d time.Duration, timedOut bool) {
	if g.metrics != nil {
		g.metrics.ObserveSessionWait(d, timedOut)
	}
}

func (g *sessionGate) stats() SessionStats {
	return SessionStats{Capacity: cap(g.slots), InUse: len(g.slots), Waiting: int(g.waiting.Load())}
}

// poolCapacity is the number of sessions crypto11's pool holds, computed as crypto11
// v1.6 computes it in Configure: MaxSessions, lowered to the token's ulMaxRwSessionCount
// when the token states a finite one, minus the one session crypto11 keeps logged in for
// itself. tokenMax is 0 (CK_EFFECTIVELY_INFINITE) or CK_UNAVAILABLE_INFORMATION when the
// token sets no limit.
func poolCapacity(maxSessions int, tokenMax uint) int {
	if tokenMax != pkcs11.CK_EFFECTIVELY_INFINITE && tokenMax != pkcs11.CK_UNAVAILABLE_INFORMATION && tokenMax < uint(maxSessions) {
		maxSessions = int(tokenMax)
	}
	return max(maxSessions-1, 1)
}

// tokenMaxRwSessions reads the token's ulMaxRwSessionCount through a second handle on the
// module, which crypto11 has loaded and initialised already (dlopen hands out the same
// library, and C_Initialize is not called again, nor C_Finalize, which would end
// crypto11's sessions). crypto11 reads the same field but does not export it. The token is
// found as crypto11 finds it: the first slot with a token whose serial or label matches.
func tokenMaxRwSessions(module string, cfg Config) (uint, error) {
	p := pkcs11.New(module)
	if p == nil {
		return 0, fmt.Errorf("load %s", module)
	}
	defer p.Destroy()
	slot, err := findSlot(p, cfg)
	if err != nil {
		return 0, err
	}
	ti, err := p.GetTokenInfo(slot)
	if err != nil {
		return 0, err
	}
	return ti.MaxRwSessionCount, nil
}
