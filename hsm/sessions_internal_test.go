//go:build cgo

package hsm

import (
	"context"
	"errors"
	"path/filepath"
	"runtime"
	"sync"
	"testing"
	"time"

	"github.com/miekg/pkcs11"

	"github.com/hufu-hsm/hufu/softhsm/softhsmtest"
)

// sessionRecorder is a SessionMetrics that keeps what it was told.
type sessionRecorder struct {
	NopMetrics
	mu       sync.Mutex
	read     func() SessionStats
	waits    int
	timeouts int
}

func (r *sessionRecorder) WatchSessions(read func() SessionStats) { r.read = read }

func (r *sessionRecorder) ObserveSessionWait(d time.Duration, timedOut bool) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.waits++
	if timedOut {
		r.timeouts++
	}
}

func (r *sessionRecorder) counts() (waits, timeouts int) {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.waits, r.timeouts
}

var _ SessionMetrics = (*sessionRecorder)(nil)

func openWithSessions(t *testing.T, maxSessions int, wait time.Duration) (*Keyring, *sessionRecorder) {
	t.Helper()
	tok := softhsmtest.New(t)
	rec := &sessionRecorder{}
	k, err := Initialize(context.Background(), Config{
		ModulePath: tok.ModulePath, TokenLabel: tok.Label, PINFile: tok.PINFile,
		MaxSessions: maxSessions, PoolWaitTimeout: wait, Metrics: rec,
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = k.Close() })
	if rec.read == nil {
		t.Fatal("Initialize did not hand the session reader to the SessionMetrics")
	}
	return k, rec
}

// hold runs an operation through the keyring's gate that keeps its session until release
// is closed, and returns once it holds it.
func hold(t *testing.T, k *Keyring, release <-chan struct{}) <-chan error {
	t.Helper()
	held, done := make(chan struct{}), make(chan error, 1)
	go func() {
		done <- k.do(context.Background(), OpHealth, func() error {
			close(held)
			<-release
			return nil
		})
	}()
	<-held
	return done
}

// waitFor yields until the keyring's session reading satisfies ok: a state, not a time.
func waitFor(t *testing.T, k *Keyring, ok func(SessionStats) bool) {
	t.Helper()
	for !ok(k.SessionStats()) {
		runtime.Gosched()
	}
}

// TestSessionGateCapacity: the gate is as large as crypto11's pool, MaxSessions minus the
// logged-in session; SoftHSM2 states no session limit of its own, and the lookup finds the
// token as crypto11 does.
func TestSessionGateCapacity(t *testing.T) {
	for _, n := range []int{2, 3, DefaultMaxSessions} {
		k, _ := openWithSessions(t, n, time.Second)
		if got := k.SessionStats(); got != (SessionStats{Capacity: n - 1}) {
			t.Errorf("MaxSessions %d: idle stats %+v, want capacity %d and nothing in use", n, got, n-1)
		}
		module, err := filepath.EvalSymlinks(k.cfg.ModulePath)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := tokenMaxRwSessions(module, k.cfg); err != nil {
			t.Errorf("reading the token's session limit: %v", err)
		}
		if _, err := tokenMaxRwSessions(module, Config{TokenLabel: "no-such-token"}); err == nil {
			t.Error("a missing token's session limit read without error")
		}
	}
}

func TestPoolCapacity(t *testing.T) {
	for _, tt := range []struct {
		name     string
		max      int
		tokenMax uint
		want     int
	}{
		{"token without limit", 8, pkcs11.CK_EFFECTIVELY_INFINITE, 7},
		{"token limit unknown", 8, pkcs11.CK_UNAVAILABLE_INFORMATION, 7},
		{"token limit above ours", 8, 100, 7},
		{"token limit below ours", 8, 4, 3},
		{"token limit equal", 8, 8, 7},
	} {
		t.Run(tt.name, func(t *testing.T) {
			if got := poolCapacity(tt.max, tt.tokenMax); got != tt.want {
				t.Fatalf("poolCapacity(%d, %d) = %d, want %d", tt.max, tt.tokenMax, got, tt.want)
			}
		})
	}
}

// TestSessionWaitsCounted holds the one pool session of a MaxSessions 2 keyring, starts
// wrappers against SoftHSM2 that must queue for it, and checks the readings while they wait
// and after: every one waited, none timed out, and the pool is idle again.
func TestSessionWaitsCounted(t *testing.T) {
	k, rec := openWithSessions(t, 2, time.Minute)
	release := make(chan struct{})
	holder := hold(t, k, release)

	const waiters = 4
	errs := make(chan error, waiters)
	for range waiters {
		go func() {
			_, err := k.Wrap(context.Background(), []byte("share"), []byte("ad"))
			errs <- err
		}()
	}
	waitFor(t, k, func(s SessionStats) bool { return s.Waiting == waiters })
	if got := k.SessionStats(); got != (SessionStats{Capacity: 1, InUse: 1, Waiting: waiters}) {
		t.Fatalf("while held: %+v", got)
	}
	close(release)
	if err := <-holder; err != nil {
		t.Fatal(err)
	}
	for range waiters {
		if err := <-errs; err != nil {
			t.Fatalf("Wrap after waiting: %v", err)
		}
	}
	if got := k.SessionStats(); got != (SessionStats{Capacity: 1}) {
		t.Fatalf("after: %+v, want nothing in use or waiting", got)
	}
	if waits, timeouts := rec.counts(); waits != waiters || timeouts != 0 {
		t.Fatalf("observed %d waits, %d timeouts; want %d, 0", waits, timeouts, waiters)
	}
}

// TestSessionWaitTimesOut: with the pool held, an operation gives up after the pool wait
// timeout with ErrBusy, and the wait is observed as timed out.
func TestSessionWaitTimesOut(t *testing.T) {
	k, rec := openWithSessions(t, 2, 20*time.Millisecond)
	release := make(chan struct{})
	holder := hold(t, k, release)
	_, err := k.Wrap(context.Background(), []byte("x"), nil)
	if !errors.Is(err, ErrBusy) || !errors.Is(err, ErrHSM) {
		t.Fatalf("Wrap with every session taken: %v; want ErrBusy", err)
	}
	close(release)
	<-holder
	if waits, timeouts := rec.counts(); waits != 1 || timeouts != 1 {
		t.Fatalf("observed %d waits, %d timeouts; want 1, 1", waits, timeouts)
	}
	if got := k.SessionStats(); got.InUse != 0 || got.Waiting != 0 {
		t.Fatalf("after: %+v", got)
	}
}

// TestSessionWaitCancelled: a caller whose context ends stops waiting, and its wait is
// observed, not as a timeout.
func TestSessionWaitCancelled(t *testing.T) {
	k, rec := openWithSessions(t, 2, time.Minute)
	release := make(chan struct{})
	holder := hold(t, k, release)
	ctx, cancel := context.WithCancel(context.Background())
	errc := make(chan error, 1)
	go func() { _, err := k.Wrap(ctx, []byte("x"), nil); errc <- err }()
	waitFor(t, k, func(s SessionStats) bool { return s.Waiting == 1 })
	cancel()
	if err := <-errc; !errors.Is(err, context.Canceled) || errors.Is(err, ErrBusy) {
		t.Fatalf("cancelled Wrap: %v", err)
	}
	close(release)
	<-holder
	if waits, timeouts := rec.counts(); waits != 1 || timeouts != 0 {
		t.Fatalf("observed %d waits, %d timeouts; want 1, 0", waits, timeouts)
	}
}

// TestSessionsUnderLoad runs sixteen goroutines of SoftHSM2 wraps and unwraps against a
// pool of two sessions: every operation succeeds (none times out: the gate admits no more
// than crypto11's pool holds, so crypto11 never waits), and the pool is idle afterwards.
// How many operations waited depends on the scheduler, so it is logged, not asserted;
// TestSessionWaitsCounted counts waits deterministically.
func TestSessionsUnderLoad(t *testing.T) {
	k, rec := openWithSessions(t, 3, time.Minute)
	ctx := context.Background()
	var wg sync.WaitGroup
	errs := make(chan error, 16)
	for range 16 {
		wg.Go(func() {
			for range 25 {
				blob, err := k.Wrap(ctx, []byte("share"), []byte("ad"))
				if err == nil {
					_, err = k.Unwrap(ctx, blob, []byte("ad"))
				}
				if err != nil {
					errs <- err
					return
				}
			}
		})
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Fatal(err)
	}
	if got := k.SessionStats(); got != (SessionStats{Capacity: 2}) {
		t.Fatalf("after load: %+v, want an idle pool of 2", got)
	}
	waits, timeouts := rec.counts()
	if timeouts != 0 {
		t.Fatalf("%d waits timed out", timeouts)
	}
	t.Logf("%d of 800 operations waited for a session", waits)
}

// BenchmarkSessionGate is what the gate adds to every keyring operation when a session is
// free (the fast path: one non-blocking channel send and one receive), without the HSM:
// compare it with the tens of microseconds of an operation in the keyring benchmarks.
func BenchmarkSessionGate(b *testing.B) {
	g := newSessionGate(DefaultMaxSessions-1, time.Second, &sessionRecorder{})
	ctx := context.Background()
	b.Run("serial", func(b *testing.B) {
		for b.Loop() {
			if err := g.acquire(ctx); err != nil {
				b.Fatal(err)
			}
			g.release()
		}
	})
	b.Run("parallel", func(b *testing.B) {
		b.RunParallel(func(pb *testing.PB) {
			for pb.Next() {
				if err := g.acquire(ctx); err != nil {
					b.Error(err)
					return
				}
				g.release()
			}
		})
	})
}
