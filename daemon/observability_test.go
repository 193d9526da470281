package daemon

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"io"
	"log/slog"
	"sync"
	"testing"
	"time"

	"github.com/hufu-hsm/hufu/store"
	"github.com/prometheus/client_golang/prometheus"
)

type stepClock struct {
	mu  sync.Mutex
	now time.Time
}

func (c *stepClock) Now() time.Time { c.mu.Lock(); defer c.mu.Unlock(); return c.now }
func (c *stepClock) Advance(d time.Duration) {
	c.mu.Lock()
	c.now = c.now.Add(d)
	c.mu.Unlock()
}

type ecdsaSigner struct{ key *ecdsa.PrivateKey }

func (s ecdsaSigner) SignDigest(_ context.Context, d []byte) ([]byte, error) {
	return ecdsa.SignASN1(rand.Reader, s.key, d)
}
func (s ecdsaSigner) PublicKey() *ecdsa.PublicKey { return &s.key.PublicKey }

// gauge reads one unlabelled gauge from reg.
func gauge(t *testing.T, reg *prometheus.Registry, name string) float64 {
	t.Helper()
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatalf("gather: %v", err)
	}
	for _, mf := range mfs {
		if mf.GetName() == name {
			return mf.GetMetric()[0].GetGauge().GetValue()
		}
	}
	t.Fatalf("no metric %s", name)
	return 0
}

// TestAuditBacklogGauges: the alerting gauge is 0 on an idle appliance whose log is
// covered, however long it stays idle (while the last checkpoint's age grows); it grows
// with the clock from the first record no checkpoint covers, and is 0 again once one does.
func TestAuditBacklogGauges(t *testing.T) {
	ctx := context.Background()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	clock := &stepClock{now: time.Date(2026, 11, 30, 8, 0, 0, 0, time.UTC)}
	s, err := store.Open(ctx, store.Options{
		Dir: t.TempDir(), Clock: clock, Signer: ecdsaSigner{key}, CacheSize: 1 << 20,
		CheckpointEvery: 100, CheckpointInterval: time.Minute,
		Logger: slog.New(slog.NewTextHandler(io.Discard, nil)),
	})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close(ctx)
	reg := prometheus.NewRegistry()
	registerAuditMetrics(reg, s, clock)
	const (
		age      = "hufu_audit_oldest_unsigned_record_age_seconds"
		unsigned = "hufu_audit_unsigned_records"
		ckptAge  = "hufu_audit_last_checkpoint_age_seconds"
	)
	want := func(step, name string, v float64) {
		t.Helper()
		if got := gauge(t, reg, name); got != v {
			t.Fatalf("%s: %s = %v, want %v", step, name, got, v)
		}
	}
	appendOne := func() {
		t.Helper()
		if err := s.Append(ctx, store.Event{Actor: "t", Action: "tick", Outcome: store.OutcomeOK}); err != nil {
			t.Fatal(err)
		}
	}

	appendOne()
	if _, err := s.Checkpoint(ctx); err != nil {
		t.Fatal(err)
	}
	for _, idle := range []time.Duration{0, time.Minute, 24 * time.Hour, 30 * 24 * time.Hour} {
		clock.Advance(idle)
		want("idle", age, 0)
		want("idle", unsigned, 0)
	}
	if got := gauge(t, reg, ckptAge); got < (30 * 24 * time.Hour).Seconds() {
		t.Fatalf("idle: %s = %v, want the whole idle spell", ckptAge, got)
	}

	appendOne() // the interval has passed: this append is checkpointed at once
	want("first record after idle", age, 0)
	clock.Advance(time.Second)
	appendOne() // this one waits for the interval
	want("uncovered record", unsigned, 1)
	want("uncovered record", age, 0)
	clock.Advance(45 * time.Second)
	want("uncovered record, 45s on", age, 45)
	clock.Advance(15 * time.Second)
	want("uncovered record, 60s on", age, 60)

	if c, err := s.MaybeCheckpoint(ctx); err != nil || c == nil {
		t.Fatalf("MaybeCheckpoint = %+v, %v", c, err)
	}
	want("after the checkpoint", age, 0)
	want("after the checkpoint", unsigned, 0)
	clock.Advance(time.Hour)
	want("idle after the checkpoint", age, 0)
}
