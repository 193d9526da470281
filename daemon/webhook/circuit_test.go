package webhook

import (
	"errors"
	"sync"
	"testing"
	"time"
)

type fakeClock struct {
	mu  sync.Mutex
	now time.Time
}

func (c *fakeClock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.now
}

func (c *fakeClock) Advance(d time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.now = c.now.Add(d)
}

func TestBreaker(t *testing.T) {
	clock := &fakeClock{now: testNow}
	var states []CircuitState
	b := newBreaker("sms", clock, 3, 30*time.Second, func(s CircuitState) { states = append(states, s) })
	must := func(gen uint64, err error) uint64 {
		t.Helper()
		if err != nil {
			t.Fatalf("allow: %v", err)
		}
		return gen
	}
	refused := func() *circuitOpenError {
		t.Helper()
		_, err := b.allow()
		var open *circuitOpenError
		if !errors.As(err, &open) || !errors.Is(err, ErrCircuitOpen) {
			t.Fatalf("allow = %v, want a circuit-open error", err)
		}
		return open
	}

	// Two failures, a success, two failures: never three in a row.
	for _, ok := range []bool{false, false, true, false, false} {
		g := must(b.allow())
		if ok {
			b.success(g)
		} else {
			b.failure(g)
		}
	}
	if b.State() != CircuitClosed {
		t.Fatalf("state %v after non-consecutive failures", b.State())
	}
	// An attempt started now and finishing after the circuit opened must not close it.
	late := must(b.allow())
	b.failure(must(b.allow()))
	if b.State() != CircuitOpen {
		t.Fatalf("state %v after 3 consecutive failures", b.State())
	}
	b.success(late)
	if b.State() != CircuitOpen {
		t.Fatal("a late success closed the circuit")
	}
	if open := refused(); open.retryAfter != 30*time.Second || open.failures != 3 {
		t.Fatalf("refusal %+v", open)
	}
	clock.Advance(30*time.Second - time.Nanosecond)
	refused()
	clock.Advance(time.Nanosecond)
	probe := must(b.allow())
	if b.State() != CircuitHalfOpen {
		t.Fatalf("state %v, want half-open", b.State())
	}
	if open := refused(); open.retryAfter != 0 {
		t.Fatalf("a second caller during the probe: %+v", open)
	}
	// The probe's caller gives up: the next caller probes instead.
	b.release(probe)
	probe = must(b.allow())
	b.failure(probe)
	if b.State() != CircuitOpen {
		t.Fatalf("state %v after the probe failed", b.State())
	}
	refused()
	clock.Advance(30 * time.Second)
	b.success(must(b.allow()))
	if b.State() != CircuitClosed {
		t.Fatalf("state %v after the probe succeeded", b.State())
	}
	// Closed again means counting from zero.
	b.failure(must(b.allow()))
	b.failure(must(b.allow()))
	if b.State() != CircuitClosed {
		t.Fatal("failures before the probe were still counted")
	}
	want := []CircuitState{CircuitClosed, CircuitOpen, CircuitHalfOpen, CircuitOpen, CircuitHalfOpen, CircuitOpen, CircuitHalfOpen, CircuitClosed}
	if len(states) != len(want) {
		t.Fatalf("transitions %v, want %v", states, want)
	}
	for i := range want {
		if states[i] != want[i] {
			t.Fatalf("transitions %v, want %v", states, want)
		}
	}
}

func TestBackoffBounded(t *testing.T) {
	p := &Provider{opts: Options{RetryBackoff: Duration(100 * time.Millisecond), MaxBackoff: Duration(time.Second)}}
	tests := []struct {
		attempts int
		base     time.Duration
	}{
		{1, 100 * time.Millisecond}, {2, 200 * time.Millisecond}, {3, 400 * time.Millisecond},
		{4, 800 * time.Millisecond}, {5, time.Second}, {9, time.Second}, {1000, time.Second},
	}
	for _, tt := range tests {
		for range 200 {
			if d := p.backoff(tt.attempts); d < tt.base/2 || d > tt.base {
				t.Fatalf("backoff(%d) = %v, want %v..%v", tt.attempts, d, tt.base/2, tt.base)
			}
		}
	}
}
