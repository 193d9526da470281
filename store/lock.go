package store

import (
	"context"
	"sync"
)

// lockTable hands out one mutex per key, created on demand and dropped when nobody holds
// or waits for it, so memory is proportional to the keys in use, not to the database.
// Each mutex is a 1-slot channel so that waiting can be abandoned when ctx is done.
type lockTable struct {
	mu sync.Mutex
	m  map[string]*keyLock
}

type keyLock struct {
	ch   chan struct{}
	refs int // holders plus waiters
}

func newLockTable() *lockTable { return &lockTable{m: make(map[string]*keyLock)} }

func (t *lockTable) ref(key string) *keyLock {
	t.mu.Lock()
	l := t.m[key]
	if l == nil {
		l = &keyLock{ch: make(chan struct{}, 1)}
		t.m[key] = l
	}
	l.refs++
	t.mu.Unlock()
	return l
}

func (t *lockTable) unref(key string, l *keyLock) {
	t.mu.Lock()
	l.refs--
	if l.refs == 0 {
		delete(t.m, key)
	}
	t.mu.Unlock()
}

// lock blocks until key is held or ctx is done.
func (t *lockTable) lock(ctx context.Context, key string) error {
	l := t.ref(key)
	select {
	case l.ch <- struct{}{}:
		return nil
	default:
	}
	select {
	case l.ch <- struct{}{}:
		return nil
	case <-ctx.Done():
		t.unref(key, l)
		return ctx.Err()
	}
}

// tryLock takes key if it is free, without waiting.
func (t *lockTable) tryLock(key string) bool {
	l := t.ref(key)
	select {
	case l.ch <- struct{}{}:
		return true
	default:
		t.unref(key, l)
		return false
	}
}

func (t *lockTable) unlock(key string) {
	t.mu.Lock()
	l := t.m[key]
	t.mu.Unlock()
	<-l.ch
	t.unref(key, l)
}

// lockAll takes keys, which must be sorted and unique: every multi-key acquirer uses the
// same (bytewise) order, so two of them can never wait for each other in a cycle.
func (t *lockTable) lockAll(ctx context.Context, keys []string) error {
	for i, k := range keys {
		if err := t.lock(ctx, k); err != nil {
			for _, h := range keys[:i] {
				t.unlock(h)
			}
			return err
		}
	}
	return nil
}
