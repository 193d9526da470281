package store

import (
	"crypto/rand"
	"encoding/binary"
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
