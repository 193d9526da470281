package store

import "sync"

// lockedReads holds the committed values of record keys read inside transactions, so that a
// record every operation reads — a key's pair record, read to order each answer against
// share refreshes (daemon/keys, superseded.go) — costs a map lookup rather than a Pebble
// point read, which under load walks the memtables and the sstable levels (≈30 µs a call,
// 5 % of the daemon's CPU per signature; issue 18).
//
// It is exact, not eventually consistent, because of the key locks: a transaction fills an
// entry only while it holds the key's lock, and every commit drops the entries of the keys it
// wrote before it releases their locks (Store.update), so no one can read a key between its
// commit and the drop. Reads outside transactions (Store.Get, listings) hold no lock and
// neither use nor fill it. Keys written outside transactions (setSync) are dropped too.
type lockedReads struct {
	max int

	mu      sync.Mutex
	entries map[string][]byte // present records only; the slices are never modified
}

// defaultLockedReads bounds the cache: a few thousand records of well under a KiB each.
const defaultLockedReads = 4096

func newLockedReads(max int) *lockedReads {
	return &lockedReads{max: max, entries: make(map[string][]byte)}
}

func (c *lockedReads) get(key string) ([]byte, bool) {
	c.mu.Lock()
	v, ok := c.entries[key]
	c.mu.Unlock()
	return v, ok
}

// put remembers v, the committed value of key, read under its lock. A full cache drops an
// arbitrary entry: the hot records are read again at once and come back.
func (c *lockedReads) put(key string, v []byte) {
	c.mu.Lock()
	if len(c.entries) >= c.max {
		for k := range c.entries {
			delete(c.entries, k)
			break
		}
	}
	c.entries[key] = v
	c.mu.Unlock()
}

// drop forgets keys, which a commit has written (or may have written).
func (c *lockedReads) drop(keys []string) {
	c.mu.Lock()
	for _, k := range keys {
		delete(c.entries, k)
	}
	c.mu.Unlock()
}

// clear forgets everything: the store failed, or Pebble was reopened.
func (c *lockedReads) clear() {
	c.mu.Lock()
	clear(c.entries)
	c.mu.Unlock()
}
