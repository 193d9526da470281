package keys

import (
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"strings"
	"sync"
	"time"

	"github.com/hufu-hsm/hufu/daemon/apierr"
)

// tickets are the cosign tickets a verified PIN opens: bound to one key and one holder (the
// account and device whose PIN opened it: the key's holder or a member with a delegated
// pair), expiring, and good for a limited number of operations. They live in memory only: a restart
// asks for the PIN again, which is the safe direction. Only their SHA-256 is kept.
type tickets struct {
	now func() time.Time

	mu sync.Mutex
	m  map[[32]byte]*ticket
}

type ticket struct {
	keyID, userID, deviceID string
	expires                 time.Time
	uses                    int
}

const ticketPrefix = "hct_"

// maxTickets bounds memory; the oldest are dropped first when it is reached.
const maxTickets = 100_000

func newTickets(now func() time.Time) *tickets {
	return &tickets{now: now, m: map[[32]byte]*ticket{}}
}

func (t *tickets) open(keyID, userID, deviceID string, ttl time.Duration, uses int) (string, time.Time) {
	var b [32]byte
	rand.Read(b[:])
	token := ticketPrefix + base64.RawURLEncoding.EncodeToString(b[:])
	expires := t.now().Add(ttl)
	t.mu.Lock()
	defer t.mu.Unlock()
	if len(t.m) >= maxTickets {
		t.pruneLocked()
	}
	t.m[sha256.Sum256([]byte(token))] = &ticket{keyID: keyID, userID: userID, deviceID: deviceID, expires: expires, uses: uses}
	return token, expires
}

// use spends n operations of a ticket for keyID by userID on deviceID.
func (t *tickets) use(token, keyID, userID, deviceID string, n int) error {
	if !strings.HasPrefix(token, ticketPrefix) || len(token) > 128 {
		return apierr.Invalidf("credential.ticket", "not a cosign ticket")
	}
	h := sha256.Sum256([]byte(token))
	t.mu.Lock()
	defer t.mu.Unlock()
	tk, ok := t.m[h]
	switch {
	case !ok || !t.now().Before(tk.expires):
		delete(t.m, h)
		return apierr.New(apierr.Unauthenticated, "the cosign ticket expired or is unknown; open a new one with the PIN")
	case tk.keyID != keyID || tk.userID != userID || tk.deviceID != deviceID:
		return apierr.New(apierr.PermissionDenied, "the cosign ticket is for another key or device")
	case tk.uses < n:
		return apierr.New(apierr.Unauthenticated, "the cosign ticket has %d uses left, %d needed; open a new one", tk.uses, n)
	}
	tk.uses -= n
	return nil
}

// revokeKey drops every ticket of a key (revocation, promotion). A refresh keeps them: a
// ticket authorises a holder's device, not one share version.
func (t *tickets) revokeKey(keyID string) {
	t.mu.Lock()
	defer t.mu.Unlock()
	for h, tk := range t.m {
		if tk.keyID == keyID {
			delete(t.m, h)
		}
	}
}

// revokeHolder drops the tickets of one holder of a key (its PIN changed or was reset, it
// locked, its delegated pair was recalled); the other holders' tickets stay.
func (t *tickets) revokeHolder(keyID, userID, deviceID string) {
	t.mu.Lock()
	defer t.mu.Unlock()
	for h, tk := range t.m {
		if tk.keyID == keyID && tk.userID == userID && tk.deviceID == deviceID {
			delete(t.m, h)
		}
	}
}

func (t *tickets) pruneLocked() {
	now := t.now()
	var oldest [32]byte
	var oldestExp time.Time
	for h, tk := range t.m {
		if !now.Before(tk.expires) {
			delete(t.m, h)
			continue
		}
		if oldestExp.IsZero() || tk.expires.Before(oldestExp) {
			oldest, oldestExp = h, tk.expires
		}
	}
	if len(t.m) >= maxTickets {
		delete(t.m, oldest)
	}
}

// decryptLimits is a token bucket per key: decryption outside a bid opening is rate-limited
// so a stolen phone share with a session cannot drain the server as a d2⁻¹ oracle.
type decryptLimits struct {
	perMinute int
	now       func() time.Time

	mu      sync.Mutex
	buckets map[string]*bucket
}

type bucket struct {
	tokens float64
	last   time.Time
}

func newDecryptLimits(perMinute int, now func() time.Time) *decryptLimits {
	return &decryptLimits{perMinute: perMinute, now: now, buckets: map[string]*bucket{}}
}

func (l *decryptLimits) take(keyID string, n int) error {
	now := l.now()
	rate := float64(l.perMinute) / 60
	l.mu.Lock()
	defer l.mu.Unlock()
	b, ok := l.buckets[keyID]
	if !ok {
		if len(l.buckets) > maxTickets {
			l.pruneLocked(now, rate)
		}
		b = &bucket{tokens: float64(l.perMinute), last: now}
		l.buckets[keyID] = b
	}
	b.tokens = min(float64(l.perMinute), b.tokens+now.Sub(b.last).Seconds()*rate)
	b.last = now
	if b.tokens < float64(n) {
		wait := time.Duration((float64(n) - b.tokens) / rate * float64(time.Second))
		return apierr.Exhausted(wait, "decryption rate limit of %d per minute for this key reached; retry in %v", l.perMinute, wait.Round(time.Second))
	}
	b.tokens -= float64(n)
	return nil
}

// pruneLocked drops the buckets that have refilled completely: they carry no information (a
// new bucket starts full). Clearing them all would hand a fresh allowance to keys that are
// being drained right now.
func (l *decryptLimits) pruneLocked(now time.Time, rate float64) {
	for id, b := range l.buckets {
		if b.tokens+now.Sub(b.last).Seconds()*rate >= float64(l.perMinute) {
			delete(l.buckets, id)
		}
	}
}
