//go:build cgo

package hsm

import (
	"errors"
	"fmt"
	"math/rand/v2"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/ThalesGroup/crypto11"
	"github.com/miekg/pkcs11"
)

// Recovery from an HSM outage, in process.
//
// A PKCS#11 context does not survive its token: once the token is removed or reset, the
// module restarted or the sessions closed, every call on the old sessions and key handles
// fails for good, and before this a restart of the daemon was the only way back. Now an
// operation whose error says the token, the module or the session is gone (isOutage)
// marks the keyring unavailable and starts one background goroutine that reopens it:
// close the crypto11 context (which finalises the module when it was the last one), open
// a new one (C_Initialize, a new pool, a new login), find the keys again and check them as
// Open does, with the audit key required to be the very key the keyring opened with.
//
//   - No thundering herd: while the keyring is unavailable operations fail at once with
//     ErrUnavailable, without touching the token; only the one goroutine calls it, with
//     exponential backoff (Config.ReopenBackoff doubling up to ReopenMaxBackoff) and
//     jitter, so appliances sharing a network HSM do not retry in step.
//   - No race with operations in flight: operations hold the connection lock shared, a
//     reopen holds it exclusively, so the context and handles are swapped only when no
//     operation uses them; an operation that finds a reopen under way fails fast rather
//     than queue behind it. An outage reported by an operation of a context that has since
//     been replaced is ignored (generation).
//   - A false alarm costs one probe: the reopen first probes the current context (as
//     Health does) and keeps it if it works, e.g. for a key handle that a concurrent
//     DestroyKEK invalidated.
//
// Readiness follows: Health fails with ErrUnavailable during the outage and succeeds once
// the reopen has. A Metrics that implements RecoveryMetrics counts outages and reopens.

// outageCodes are the PKCS#11 return codes that mean the token, the module or the session
// (and with it the login and the key handles) is gone, rather than a refused input.
var outageCodes = map[uint]string{
	pkcs11.CKR_DEVICE_ERROR:             "CKR_DEVICE_ERROR",
	pkcs11.CKR_DEVICE_REMOVED:           "CKR_DEVICE_REMOVED",
	pkcs11.CKR_TOKEN_NOT_PRESENT:        "CKR_TOKEN_NOT_PRESENT",
	pkcs11.CKR_TOKEN_NOT_RECOGNIZED:     "CKR_TOKEN_NOT_RECOGNIZED",
	pkcs11.CKR_SLOT_ID_INVALID:          "CKR_SLOT_ID_INVALID",
	pkcs11.CKR_SESSION_HANDLE_INVALID:   "CKR_SESSION_HANDLE_INVALID",
	pkcs11.CKR_SESSION_CLOSED:           "CKR_SESSION_CLOSED",
	pkcs11.CKR_CRYPTOKI_NOT_INITIALIZED: "CKR_CRYPTOKI_NOT_INITIALIZED",
	pkcs11.CKR_USER_NOT_LOGGED_IN:       "CKR_USER_NOT_LOGGED_IN",
	// A key handle of ours that the token no longer knows: the token was reset or
	// re-initialised, or its storage went away, under the context.
	pkcs11.CKR_OBJECT_HANDLE_INVALID: "CKR_OBJECT_HANDLE_INVALID",
	pkcs11.CKR_KEY_HANDLE_INVALID:    "CKR_KEY_HANDLE_INVALID",
}

// isOutage reports whether err carries one of outageCodes. crypto11 wraps some PKCS#11
// errors and formats others with %v, so the code's name in the message counts too.
func isOutage(err error) bool {
	var code pkcs11.Error
	if errors.As(err, &code) {
		if _, ok := outageCodes[uint(code)]; ok {
			return true
		}
	}
	msg := err.Error()
	for _, name := range outageCodes {
		if strings.Contains(msg, name) {
			return true
		}
	}
	return false
}

// recovery is the keyring's outage state.
type recovery struct {
	down atomic.Bool // mirrors state.down for the operations' fast path

	mu       sync.Mutex
	stop     chan struct{}
	stopped  bool
	running  bool // a reconnecting goroutine runs
	since    time.Time
	cause    error // the error that revealed the outage
	attempts int
	last     error // the last reopen's error
	wg       sync.WaitGroup

	metrics RecoveryMetrics // nil: nobody counts
}

// startRecovery arms outage detection once the keyring is open.
func (k *Keyring) startRecovery() {
	r := &k.recovery
	r.stop = make(chan struct{})
	k.generation = 1
	if m, ok := k.metrics.(RecoveryMetrics); ok {
		r.metrics = m
		m.WatchAvailability(func() bool { return !r.down.Load() })
	}
}

// stopRecovery ends a reconnection in progress and waits for it (Close).
func (k *Keyring) stopRecovery() {
	r := &k.recovery
	r.mu.Lock()
	if r.stop == nil || r.stopped {
		r.mu.Unlock()
		return
	}
	r.stopped = true
	close(r.stop)
	r.mu.Unlock()
	r.wg.Wait()
}

// outage marks the keyring unavailable after an operation of context generation failed
// with cause, and starts the reconnecting goroutine unless it runs.
func (k *Keyring) outage(generation uint64, cause error) {
	// A reopen under way (holding the connection) deals with the outage itself.
	if !k.connMu.TryRLock() {
		return
	}
	current := k.generation
	k.connMu.RUnlock()
	if generation != current {
		return
	}
	r := &k.recovery
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.stopped || r.stop == nil {
		return
	}
	if !r.down.Load() {
		r.down.Store(true)
		r.since, r.cause, r.attempts, r.last = time.Now(), cause, 0, nil
		if r.metrics != nil {
			r.metrics.ObserveOutage()
		}
	}
	if !r.running {
		r.running = true
		r.wg.Add(1)
		go k.reconnect()
	}
}

// unavailable returns ErrUnavailable while the keyring is reconnecting, else nil.
func (k *Keyring) unavailable() error {
	if !k.recovery.down.Load() {
		return nil
	}
	return k.unavailableNow()
}

// unavailableNow describes the outage: since when, what revealed it, how the reopens go.
func (k *Keyring) unavailableNow() error {
	r := &k.recovery
	r.mu.Lock()
	defer r.mu.Unlock()
	if !r.down.Load() {
		// A reopen that is only a probe (a false alarm) holds the connection briefly.
		return fmt.Errorf("%w: %w (the connection is being checked)", ErrHSM, ErrUnavailable)
	}
	last := ""
	if r.last != nil {
		last = fmt.Sprintf("; last attempt: %v", r.last)
	}
	return fmt.Errorf("%w: %w since %s after %v; %d reconnection attempts%s", ErrHSM, ErrUnavailable,
		r.since.UTC().Format(time.RFC3339), r.cause, r.attempts, last)
}

// reconnect reopens the keyring until it succeeds or the keyring closes.
func (k *Keyring) reconnect() {
	r := &k.recovery
	defer r.wg.Done()
	backoff := k.cfg.ReopenBackoff
	// The first attempt is at once: reopen probes the connection first, so an error that
	// only looked like an outage (a key handle destroyed under an operation by DestroyKEK)
	// costs one probe, not a backoff of refusals.
	wait := time.Duration(0)
	for {
		t := time.NewTimer(wait)
		select {
		case <-r.stop:
			t.Stop()
			r.mu.Lock()
			r.running = false
			r.mu.Unlock()
			return
		case <-t.C:
		}
		err := k.reopen()
		r.mu.Lock()
		if err == nil {
			r.down.Store(false)
			r.running = false
		} else {
			r.attempts++
			r.last = err
		}
		r.mu.Unlock()
		if r.metrics != nil {
			r.metrics.ObserveReopen(err == nil)
		}
		if err == nil {
			return
		}
		// Full backoff halved, plus up to the other half at random.
		wait = backoff/2 + rand.N(backoff/2+1)
		backoff = min(2*backoff, k.cfg.ReopenMaxBackoff)
	}
}

// reopen replaces the crypto11 context and every key handle, holding the connection
// exclusively. It keeps the current context if it works after all.
func (k *Keyring) reopen() (err error) {
	k.connMu.Lock()
	defer k.connMu.Unlock()
	defer func() {
		if r := recover(); r != nil {
			err = panicError(r)
		}
	}()
	if k.closed.Load() {
		return ErrClosed
	}
	if k.c11 != nil && k.probe() == nil {
		return nil
	}
	if k.c11 != nil {
		closeContext(k.c11, k.cfg.PoolWaitTimeout)
		k.c11 = nil
	}
	// The anchor's handle belongs to the module instance just closed: the next anchor
	// operation finds the token again on the new one.
	k.closeAnchor()
	c11, err := configure(k.module, k.cfg)
	if err != nil {
		return err
	}
	k.c11 = c11
	if err := k.loadKeys(); err != nil {
		closeContext(c11, k.cfg.PoolWaitTimeout)
		k.c11 = nil
		return err
	}
	k.generation++
	return nil
}

// probe is Health's check without the operation around it: a session, the login and the
// current KEK's handle work.
func (k *Keyring) probe() (err error) {
	defer func() {
		if r := recover(); r != nil {
			err = panicError(r)
		}
	}()
	cur := k.keks.Load().current
	a, err := k.c11.GetAttribute(cur.key, crypto11.CkaLabel)
	if err != nil {
		return err
	}
	if a == nil || string(a.Value) != cur.label {
		return fmt.Errorf("KEK %s changed on the token", cur.label)
	}
	return nil
}

// closeContext closes a context that no operation uses, waiting at most timeout: crypto11's
// Close waits for every pool session to come back, and one that leaked (pinMAC says when)
// never does. The close then finishes, or not, on its own; the reopen goes on.
func closeContext(c *crypto11.Context, timeout time.Duration) {
	done := make(chan struct{})
	go func() {
		defer close(done)
		defer func() { _ = recover() }()
		_ = c.Close()
	}()
	t := time.NewTimer(timeout)
	defer t.Stop()
	select {
	case <-done:
	case <-t.C:
	}
}
