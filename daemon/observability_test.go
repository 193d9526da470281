package daemon

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"errors"
	"github.com/hufu-hsm/hufu/daemon/ca"
	"io"
	"log/slog"
	"math/big"
	"sync"
	"testing"
	"time"

	"github.com/hufu-hsm/hufu/hsm"
	"github.com/hufu-hsm/hufu/softhsm/softhsmtest"
	"github.com/hufu-hsm/hufu/store"
	"github.com/prometheus/client_golang/prometheus"
	dto "github.com/prometheus/client_model/go"
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

// TestHSMSessionPoolMetrics runs concurrent wraps against a real SoftHSM2 keyring with a
// one-session pool until some of them have had to wait (how many do in a round is up to the
// scheduler; with sixteen goroutines on one session the first round nearly always has
// some), then checks that the waits were counted in the histogram, none timed out, and the
// pool reads idle again.
func TestHSMSessionPoolMetrics(t *testing.T) {
	tok := softhsmtest.New(t)
	reg := prometheus.NewRegistry()
	m := newHSMMetrics(reg)
	if got := gatherOne(t, reg, "hufu_hsm_session_pool_capacity"); got != nil {
		t.Fatalf("pool gauges before any keyring opened: %v", got)
	}
	k, err := hsm.Initialize(context.Background(), hsm.Config{
		ModulePath: tok.ModulePath, TokenLabel: tok.Label, PINFile: tok.PINFile,
		MaxSessions: 2, PoolWaitTimeout: time.Minute, Metrics: m,
	})
	if err != nil {
		t.Fatal(err)
	}
	defer k.Close()
	if c := gauge(t, reg, "hufu_hsm_session_pool_capacity"); c != 1 {
		t.Fatalf("capacity %v, want 1 (MaxSessions 2 less the login session)", c)
	}
	waits := func() uint64 {
		return gatherOne(t, reg, "hufu_hsm_session_wait_duration_seconds").GetMetric()[0].GetHistogram().GetSampleCount()
	}
	for round := 0; waits() == 0; round++ {
		if round == 100 {
			t.Fatal("100 rounds of 16 concurrent wraps on one session and no wait counted")
		}
		var wg sync.WaitGroup
		for range 16 {
			wg.Go(func() {
				if _, err := k.Wrap(context.Background(), []byte("share"), nil); err != nil {
					t.Error(err)
				}
			})
		}
		wg.Wait()
	}
	for _, name := range []string{"hufu_hsm_session_pool_in_use", "hufu_hsm_session_pool_waiting"} {
		if v := gauge(t, reg, name); v != 0 {
			t.Errorf("%s = %v after the load, want 0", name, v)
		}
	}
	if v := gatherOne(t, reg, "hufu_hsm_session_wait_timeouts_total").GetMetric()[0].GetCounter().GetValue(); v != 0 {
		t.Errorf("%v waits timed out with a one-minute pool wait timeout", v)
	}
	t.Logf("%d waits counted", waits())
}

// gatherOne returns the family name from reg, nil if it has no series.
func gatherOne(t *testing.T, reg *prometheus.Registry, name string) *dto.MetricFamily {
	t.Helper()
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatalf("gather: %v", err)
	}
	for _, mf := range mfs {
		if mf.GetName() == name {
			return mf
		}
	}
	return nil
}

// TestCRLGaugeKeepsLastCRL: when a new CRL cannot be made (the HSM or the store fails),
// the gauge stays at the last CRL's nextUpdate, so that the alert fires when that passes;
// before any CRL was seen there is no series rather than a made-up time.
func TestCRLGaugeKeepsLastCRL(t *testing.T) {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	issuer := &x509.Certificate{SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "test CA"},
		NotBefore: time.Unix(0, 0), NotAfter: time.Unix(1<<32, 0), KeyUsage: x509.KeyUsageCRLSign | x509.KeyUsageCertSign,
		BasicConstraintsValid: true, IsCA: true}
	der, err := x509.CreateCertificate(rand.Reader, issuer, issuer, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	if issuer, err = x509.ParseCertificate(der); err != nil {
		t.Fatal(err)
	}
	next := time.Date(2026, 12, 3, 8, 0, 0, 0, time.UTC)
	crl, err := x509.CreateRevocationList(rand.Reader, &x509.RevocationList{Number: big.NewInt(1),
		ThisUpdate: next.Add(-24 * time.Hour), NextUpdate: next}, issuer, key)
	if err != nil {
		t.Fatal(err)
	}
	failing := errors.New("HSM unavailable")
	var answer error = failing
	reg := prometheus.NewRegistry()
	reg.MustRegister(&expiryCollector{crlCA: []crlLevel{{"hufu-ca", ca.LevelIssuing}}, lastCRL: map[crlLevel]time.Time{},
		crl: func(context.Context, crlLevel) ([]byte, error) {
			if answer != nil {
				return nil, answer
			}
			return crl, nil
		}})
	const name = "hufu_ca_crl_next_update_timestamp_seconds"
	if f := gatherOne(t, reg, name); f != nil {
		t.Fatalf("a series before any CRL was made: %v", f)
	}
	answer = nil
	if v := gauge(t, reg, name); v != float64(next.Unix()) {
		t.Fatalf("gauge %v, want %d", v, next.Unix())
	}
	answer = failing
	if v := gauge(t, reg, name); v != float64(next.Unix()) {
		t.Fatalf("gauge %v once signing fails, want the last CRL's %d", v, next.Unix())
	}
}
