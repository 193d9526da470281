package webhook

import (
	"errors"
	"fmt"
	"sync"
	"time"
)

// CircuitState is the state of a provider's circuit breaker; its value is the
// hufu_provider_circuit_state gauge.
type CircuitState int

const (
	CircuitClosed   CircuitState = 0 // attempts go through
	CircuitHalfOpen CircuitState = 1 // one probe attempt is in flight; others fail fast
	CircuitOpen     CircuitState = 2 // attempts fail fast until the cool-down ends
)

func (s CircuitState) String() string {
	switch s {
	case CircuitClosed:
		return "closed"
	case CircuitHalfOpen:
		return "half-open"
	case CircuitOpen:
		return "open"
	}
	return fmt.Sprintf("CircuitState(%d)", int(s))
}

// ErrCircuitOpen: the provider's circuit is open (or its one probe is in flight), so the
// call failed without asking the gateway. The error wrapping it says when the next probe
// may go.
var ErrCircuitOpen = errors.New("webhook: circuit open")

// circuitOpenError is ErrCircuitOpen with the time to wait.
type circuitOpenError struct {
	provider   string
	failures   int
	retryAfter time.Duration // 0 while a probe is in flight
}

func (e *circuitOpenError) Error() string {
	if e.retryAfter <= 0 {
		return fmt.Sprintf("provider %s: circuit half-open, a probe request is in flight; failing fast", e.provider)
	}
	return fmt.Sprintf("provider %s: circuit open after %d consecutive failures; failing fast, next probe in %v",
		e.provider, e.failures, e.retryAfter.Round(time.Second))
}

func (e *circuitOpenError) Is(target error) bool { return target == ErrCircuitOpen }

// breaker is a consecutive-failure circuit breaker. Closed, it counts failed attempts in a
// row and opens at the threshold. Open, it refuses attempts until the cool-down ends, then
// lets exactly one probe through (half-open): the probe's success closes it, its failure
// opens it for another cool-down.
//
// Each allowed attempt carries the generation it was allowed in; an outcome reported after
// the state changed (an attempt that started before the circuit opened) is ignored, so a
// late success cannot close a circuit that opened since.
type breaker struct {
	name      string
	clock     Clock
	threshold int
	cooldown  time.Duration
	onChange  func(CircuitState)

	mu         sync.Mutex
	state      CircuitState
	generation uint64
	failures   int // consecutive, in the closed state; at opening, how many opened it
	openUntil  time.Time
}

func newBreaker(name string, clock Clock, threshold int, cooldown time.Duration, onChange func(CircuitState)) *breaker {
	b := &breaker{name: name, clock: clock, threshold: threshold, cooldown: cooldown, onChange: onChange}
	onChange(CircuitClosed)
	return b
}

// allow asks to make one attempt; it returns the generation to report the outcome with, or
// a *circuitOpenError.
func (b *breaker) allow() (uint64, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	switch b.state {
	case CircuitOpen:
		now := b.clock.Now()
		if now.Before(b.openUntil) {
			return 0, &circuitOpenError{provider: b.name, failures: b.failures, retryAfter: b.openUntil.Sub(now)}
		}
		b.setLocked(CircuitHalfOpen) // this attempt is the probe
		return b.generation, nil
	case CircuitHalfOpen:
		return 0, &circuitOpenError{provider: b.name, failures: b.failures}
	}
	return b.generation, nil
}

// success reports a healthy answer (any decision of the gateway, "mismatch" included).
func (b *breaker) success(gen uint64) {
	b.mu.Lock()
	defer b.mu.Unlock()
	if gen != b.generation {
		return
	}
	b.failures = 0
	if b.state == CircuitHalfOpen {
		b.setLocked(CircuitClosed)
	}
}

// failure reports a failed attempt.
func (b *breaker) failure(gen uint64) {
	b.mu.Lock()
	defer b.mu.Unlock()
	if gen != b.generation {
		return
	}
	switch b.state {
	case CircuitClosed:
		b.failures++
		if b.failures >= b.threshold {
			b.openLocked()
		}
	case CircuitHalfOpen:
		b.openLocked()
	}
}

// release reports an attempt that said nothing about the gateway (the caller gave up): a
// probe's slot goes to the next caller.
func (b *breaker) release(gen uint64) {
	b.mu.Lock()
	defer b.mu.Unlock()
	if gen == b.generation && b.state == CircuitHalfOpen {
		b.setLocked(CircuitOpen) // with openUntil passed: the next allow probes
	}
}

func (b *breaker) openLocked() {
	b.openUntil = b.clock.Now().Add(b.cooldown)
	b.setLocked(CircuitOpen)
}

func (b *breaker) setLocked(s CircuitState) {
	b.state = s
	b.generation++
	b.onChange(s)
}

// State returns the current state.
func (b *breaker) State() CircuitState {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.state
}
