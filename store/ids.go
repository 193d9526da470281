package store

import (
	"crypto/rand"
	"encoding/binary"
	"encoding/hex"
	"fmt"
	"math"
	"sync/atomic"
	"time"
)

// idSeq orders ids made in the same nanosecond (one transaction, a coarse or test clock).
var idSeq atomic.Uint32

func init() {
	var r [4]byte
	_, _ = rand.Read(r[:])
	idSeq.Store(binary.BigEndian.Uint32(r[:])) // restarts within a nanosecond do not collide
}

// NewestFirstID returns 22 lower-case hex digits — 16 of inverted time t and 6 of an
// inverted sequence — so that a prefix listing of records keyed by these ids returns the
// newest first, also for ids made within one nanosecond.
func NewestFirstID(t time.Time) string {
	return fmt.Sprintf("%016x%06x", uint64(math.MaxInt64-t.UnixNano()), 0xffffff-(idSeq.Add(1)&0xffffff))
}

// RandomID returns n random bytes as lower-case hex: the id of a record whose key need not
// sort (sessions, openings, seals, enterprises), or a nonce.
func RandomID(n int) string {
	b := make([]byte, n)
	_, _ = rand.Read(b) // crypto/rand does not fail on supported platforms
	return hex.EncodeToString(b)
}

// ScopedValue is an index value of one owner's (a system client's name, say): the owner is
// length-prefixed, so that no owner's value ("a.b" + "." + x) reads as another's ("a" + "."
// + "b." + x).
func ScopedValue(owner, value string) string {
	return fmt.Sprintf("%d:%s.%s", len(owner), owner, value)
}
