package accounts

import (
	"crypto/sha256"
	"sync"
	"time"

	"github.com/hufu-hsm/hufu/daemon/authn"
)

// sessionCache remembers resolved access tokens, so that a call does not read an index entry
// and a session record before it can start: on the cosign hot path those reads cost more than
// the rest of the gate. Closing a session forgets its user's entries after the commit; a
// generation counter keeps a lookup that raced with the close from caching what it read, and
// entries live at most sessionCacheTTL in any case.
type sessionCache struct {
	mu      sync.RWMutex
	gen     uint64
	entries map[[32]byte]cachedSession
}

type cachedSession struct {
	caller        authn.Caller
	accessExpires time.Time
	cachedAt      time.Time
}

const (
	sessionCacheTTL = 30 * time.Second
	sessionCacheMax = 100_000
)

func newSessionCache() *sessionCache {
	return &sessionCache{entries: map[[32]byte]cachedSession{}}
}

func tokenKey(token string) [32]byte { return sha256.Sum256([]byte(token)) }

// get returns the cached session of a token and the generation to pass to put on a miss.
func (c *sessionCache) get(key [32]byte, now time.Time) (cachedSession, uint64, bool) {
	c.mu.RLock()
	defer c.mu.RUnlock()
	e, ok := c.entries[key]
	if ok && now.Sub(e.cachedAt) < sessionCacheTTL {
		return e, c.gen, true
	}
	return cachedSession{}, c.gen, false
}

func (c *sessionCache) put(key [32]byte, e cachedSession, gen uint64) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if gen != c.gen {
		return // a session closed while we read: what we read may be stale
	}
	if len(c.entries) >= sessionCacheMax {
		clear(c.entries)
	}
	c.entries[key] = e
}

// forgetUser drops every cached session of a user; call it after a commit that closed one.
func (c *sessionCache) forgetUser(userID string) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.gen++
	for k, e := range c.entries {
		if e.caller.UserID == userID {
			delete(c.entries, k)
		}
	}
}
