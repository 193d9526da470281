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
	maxBytes int

	mu      sync.Mutex
	entries map[string][]byte // present records only; the slices are never modified
	bytes   int               // of keys and values in entries
}

const (
	// defaultLockedReadBytes bounds the cache: thousands of key records (a KiB or two each).
	defaultLockedReadBytes = 8 << 20
	// maxLockedRead is the largest record the cache keeps: the hot ones are small, and one
	// large record (an attachment) must not push them all out.
	maxLockedRead = 16 << 10
)

func newLockedReads(maxBytes int) *lockedReads {
	return &lockedReads{maxBytes: maxBytes, entries: make(map[string][]byte)}
}

func (c *lockedReads) get(key string) ([]byte, bool) {
	c.mu.Lock()
	v, ok := c.entries[key]
	c.mu.Unlock()
	return v, ok
}

// put remembers v, the committed value of key, read under its lock. A full cache drops
// arbitrary entries: the hot records are read again at once and come back.
func (c *lockedReads) put(key string, v []byte) {
	size := len(key) + len(v)
	if len(v) > maxLockedRead || size > c.maxBytes {
		return
	}
	c.mu.Lock()
	c.dropLocked(key)
	for k := range c.entries {
		if c.bytes+size <= c.maxBytes {
			break
		}
		c.dropLocked(k)
	}
	c.entries[key] = v
	c.bytes += size
	c.mu.Unlock()
}

// drop forgets keys, which a commit has written (or may have written).
func (c *lockedReads) drop(keys []string) {
	c.mu.Lock()
	for _, k := range keys {
		c.dropLocked(k)
	}
	c.mu.Unlock()
}

func (c *lockedReads) dropLocked(key string) {
	if v, ok := c.entries[key]; ok {
		delete(c.entries, key)
		c.bytes -= len(key) + len(v)
	}
}

// clear forgets everything: the store failed, or Pebble was reopened.
func (c *lockedReads) clear() {
	c.mu.Lock()
	clear(c.entries)
	c.bytes = 0
	c.mu.Unlock()
}
