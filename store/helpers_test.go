package store

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"errors"
	"io"
	"log/slog"
	"sync"
	"testing"
	"time"

	"github.com/hufu-hsm/hufu/store/storepb"
)

// fakeClock is the injected clock of every test: time moves only when a test says so.
type fakeClock struct {
	mu  sync.Mutex
	now time.Time
}

func newFakeClock() *fakeClock {
	return &fakeClock{now: time.Date(2026, 11, 30, 8, 0, 0, 0, time.UTC)}
}

func (c *fakeClock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.now
}

func (c *fakeClock) Advance(d time.Duration) {
	c.mu.Lock()
	c.now = c.now.Add(d)
	c.mu.Unlock()
}

var _ Clock = (*fakeClock)(nil)

// keySigner is a real in-memory ECDSA P-256 Signer (the HSM keyring implements the same
// interface with a token-resident key).
type keySigner struct {
	key  *ecdsa.PrivateKey
	fail error // when set, SignDigest fails with it
}

func newKeySigner(t testing.TB) *keySigner {
	t.Helper()
	k, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	return &keySigner{key: k}
}

func (s *keySigner) SignDigest(_ context.Context, digest []byte) ([]byte, error) {
	if s.fail != nil {
		return nil, s.fail
	}
	if len(digest) != 32 {
		return nil, errors.New("digest must be 32 bytes")
	}
	return ecdsa.SignASN1(rand.Reader, s.key, digest)
}

func (s *keySigner) PublicKey() *ecdsa.PublicKey { return &s.key.PublicKey }

var _ Signer = (*keySigner)(nil)

// quietLogger keeps expected errors (injected faults) out of test output.
var quietLogger = slog.New(slog.NewTextHandler(io.Discard, nil))

var examples = NewCollection(KindUser, func() *storepb.Example { return new(storepb.Example) })

type testStore struct {
	*Store
	clock  *fakeClock
	signer *keySigner
	dir    string
}

// openTest opens a store in a fresh temp dir with a fake clock and a real signer; modify
// adjusts the options before opening.
func openTest(t testing.TB, modify ...func(*Options)) *testStore {
	t.Helper()
	ts := &testStore{clock: newFakeClock(), signer: newKeySigner(t), dir: t.TempDir()}
	ts.Store = ts.open(t, modify...)
	t.Cleanup(func() {
		if ts.Store != nil {
			_ = ts.Store.Close(context.Background())
		}
	})
	return ts
}

func (ts *testStore) options(modify ...func(*Options)) Options {
	o := Options{Dir: ts.dir, Clock: ts.clock, Signer: ts.signer, CacheSize: 1 << 20, Logger: quietLogger}
	for _, m := range modify {
		m(&o)
	}
	return o
}

func (ts *testStore) open(t testing.TB, modify ...func(*Options)) *Store {
	t.Helper()
	s, err := Open(context.Background(), ts.options(modify...))
	if err != nil {
		t.Fatalf("Open: %v", err)
	}
	return s
}

// reopen closes and opens the same directory.
func (ts *testStore) reopen(t testing.TB, modify ...func(*Options)) {
	t.Helper()
	if err := ts.Store.Close(context.Background()); err != nil {
		t.Fatalf("Close: %v", err)
	}
	ts.Store = nil
	ts.Store = ts.open(t, modify...)
}

// putExample writes one Example record with its audit event.
func putExample(t testing.TB, s *Store, id string, ex *storepb.Example) {
	t.Helper()
	err := s.Update(context.Background(), func(tx *Tx) error {
		if err := examples.Put(tx, id, ex); err != nil {
			return err
		}
		return tx.Audit(Event{Actor: "test", Action: "example.put", Subject: id, Outcome: OutcomeOK})
	})
	if err != nil {
		t.Fatalf("put %s: %v", id, err)
	}
}
