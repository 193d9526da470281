package keys

import (
	"container/list"
	"context"
	"strings"
	"sync"
	"time"

	"github.com/hufu-hsm/hufu/cosign"
	"github.com/hufu-hsm/hufu/store/storepb"
)

// loadedKey is an immutable snapshot of a key: its record and its unwrapped shares. The
// shares are zeroed when the snapshot leaves the cache and nobody holds it any more.
type loadedKey struct {
	rec    *storepb.SplitKey
	state  cosign.ServerKey // Public, Version, Share and, during a refresh, Pending
	public cosign.Point
	// del is set for a member's delegated pair (delegate.go): state.Share is then the
	// member's d2′, state.Version its share version, and rec the key's record as it was
	// loaded (for its status). nil for the key's primary pair.
	del *storepb.DelegatedShare
	// challenge is the only digest a pending delegated pair answers.
	challenge [cosign.ScalarSize]byte
}

// pendingPair reports a delegated pair that the member has not accepted yet.
func (k *loadedKey) pendingPair() bool {
	return k.del != nil && k.del.Status == storepb.DelegationStatus_DELEGATION_STATUS_PENDING
}

func (k *loadedKey) destroy() {
	if k.state.Share != nil {
		k.state.Share.Destroy()
	}
	if k.state.Pending != nil {
		k.state.Pending.Share.Destroy()
	}
}

// shareCache keeps unwrapped shares in memory, because an HSM unwrap per request would cost
// as much as the signature itself. It is bounded in count, entries expire after a TTL,
// concurrent misses for one key share a single load, and a snapshot is zeroed once it is
// evicted (by size, age or invalidation) and its last user releases it. Every write to a key
// record invalidates its entry, so no snapshot outlives a refresh, a lock or a revocation.
//
// A key's primary pair is cached under the key id, each member's delegated pair under
// pairCacheID (the key id, a NUL, then member and device); invalidate drops them all.
type shareCache struct {
	max int
	ttl time.Duration
	now func() time.Time
	obs cacheObserver

	mu      sync.Mutex
	entries map[string]*cacheEntry
	lru     *list.List // of *cacheEntry, most recently used first
	loading map[string]*loadCall
	pairs   map[string]map[string]bool // key id -> cache ids of its delegated pairs' entries
}

// pairCacheID is the cache id of a member's delegated pair of a key. Key ids never hold a
// NUL, so it cannot collide with a key id.
func pairCacheID(keyID, userID, deviceID string) string {
	return keyID + "\x00" + userID + "/" + deviceID
}

// cacheKeyID returns the key id of a cache id.
func cacheKeyID(id string) string {
	keyID, _, _ := strings.Cut(id, "\x00")
	return keyID
}

type cacheObserver interface {
	hit()
	miss()
}

type cacheEntry struct {
	id      string
	key     *loadedKey
	loaded  time.Time
	refs    int
	evicted bool
	elem    *list.Element
}

type loadCall struct {
	done  chan struct{}
	key   *loadedKey
	err   error
	stale bool // invalidated while loading: do not cache, waiters load again
}

func newShareCache(max int, ttl time.Duration, now func() time.Time, obs cacheObserver) *shareCache {
	return &shareCache{max: max, ttl: ttl, now: now, obs: obs,
		entries: map[string]*cacheEntry{}, lru: list.New(), loading: map[string]*loadCall{}, pairs: map[string]map[string]bool{}}
}

// acquireCached returns the snapshot under id if one is cached and fresh, nil otherwise; it
// never loads. Release a returned entry when done.
func (c *shareCache) acquireCached(id string) *cacheEntry {
	c.mu.Lock()
	e, ok := c.entries[id]
	if !ok || c.now().Sub(e.loaded) >= c.ttl {
		c.mu.Unlock()
		return nil // acquire evicts an expired entry when it loads
	}
	e.refs++
	c.lru.MoveToFront(e.elem)
	c.mu.Unlock()
	c.obs.hit()
	return e
}

// acquire returns the key's snapshot, loading it on a miss; release it when done.
func (c *shareCache) acquire(ctx context.Context, id string, load func(context.Context) (*loadedKey, error)) (*cacheEntry, error) {
	for {
		c.mu.Lock()
		if e, ok := c.entries[id]; ok {
			if c.now().Sub(e.loaded) < c.ttl {
				e.refs++
				c.lru.MoveToFront(e.elem)
				c.mu.Unlock()
				c.obs.hit()
				return e, nil
			}
			c.evictLocked(e)
		}
		if call, ok := c.loading[id]; ok {
			c.mu.Unlock()
			select {
			case <-call.done:
			case <-ctx.Done():
				return nil, ctx.Err()
			}
			if call.err != nil && !call.stale {
				return nil, call.err
			}
			continue // cached now, or stale: look again
		}
		call := &loadCall{done: make(chan struct{})}
		c.loading[id] = call
		c.mu.Unlock()
		c.obs.miss()

		key, err := load(ctx)

		c.mu.Lock()
		delete(c.loading, id)
		call.key, call.err = key, err
		if err != nil || call.stale {
			c.mu.Unlock()
			close(call.done)
			if key != nil {
				key.destroy()
			}
			if err != nil {
				return nil, err
			}
			continue
		}
		e := &cacheEntry{id: id, key: key, loaded: c.now(), refs: 1}
		e.elem = c.lru.PushFront(e)
		c.entries[id] = e
		if keyID := cacheKeyID(id); keyID != id {
			if c.pairs[keyID] == nil {
				c.pairs[keyID] = map[string]bool{}
			}
			c.pairs[keyID][id] = true
		}
		for c.lru.Len() > c.max {
			c.evictLocked(c.lru.Back().Value.(*cacheEntry))
		}
		c.mu.Unlock()
		close(call.done)
		return e, nil
	}
}

func (c *shareCache) release(e *cacheEntry) {
	c.mu.Lock()
	e.refs--
	destroy := e.evicted && e.refs == 0
	c.mu.Unlock()
	if destroy {
		e.key.destroy()
	}
}

// invalidate drops every entry of a key, its primary pair's and its delegated pairs'
// (zeroing each once unused), and any load of them in flight.
func (c *shareCache) invalidate(keyID string) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if e, ok := c.entries[keyID]; ok {
		c.evictLocked(e)
	}
	for id := range c.pairs[keyID] {
		if e, ok := c.entries[id]; ok {
			c.evictLocked(e)
		}
	}
	for id, call := range c.loading { // only the loads in flight: a handful
		if cacheKeyID(id) == keyID {
			call.stale = true
		}
	}
}

// invalidateEntry drops one entry (a pair whose own record changed) and its load in flight.
func (c *shareCache) invalidateEntry(id string) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if e, ok := c.entries[id]; ok {
		c.evictLocked(e)
	}
	if call, ok := c.loading[id]; ok {
		call.stale = true
	}
}

func (c *shareCache) evictLocked(e *cacheEntry) {
	delete(c.entries, e.id)
	if keyID := cacheKeyID(e.id); keyID != e.id {
		delete(c.pairs[keyID], e.id)
		if len(c.pairs[keyID]) == 0 {
			delete(c.pairs, keyID)
		}
	}
	c.lru.Remove(e.elem)
	e.evicted = true
	if e.refs == 0 {
		e.key.destroy()
	}
}

// len reports the number of cached keys.
func (c *shareCache) len() int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return len(c.entries)
}
