package keys

import (
	"context"
	"crypto/rand"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/hufu-hsm/hufu/cosign"
	"github.com/hufu-hsm/hufu/store/storepb"
)

type countingObserver struct{ hits, misses atomic.Int64 }

func (c *countingObserver) hit()  { c.hits.Add(1) }
func (c *countingObserver) miss() { c.misses.Add(1) }

func newTestKey(t *testing.T, id string) *loadedKey {
	t.Helper()
	_, server, err := cosign.NewLocalPair(rand.Reader, []byte(id))
	if err != nil {
		t.Fatal(err)
	}
	return &loadedKey{rec: &storepb.SplitKey{Id: id}, state: cosign.ServerKey{Share: server.Share}}
}

func zeroed(k *loadedKey) bool {
	b, _ := k.state.Share.MarshalBinary()
	for _, c := range b {
		if c != 0 {
			return false
		}
	}
	return true
}

func TestShareCache(t *testing.T) {
	ctx := context.Background()
	now := time.Unix(0, 0)
	clock := func() time.Time { return now }
	obs := &countingObserver{}
	c := newShareCache(2, time.Minute, clock, obs)
	loads := map[string]*loadedKey{}
	loader := func(id string) func(context.Context) (*loadedKey, error) {
		return func(context.Context) (*loadedKey, error) {
			k := newTestKey(t, id)
			loads[id] = k
			return k, nil
		}
	}

	a, err := c.acquire(ctx, "a", loader("a"))
	if err != nil {
		t.Fatal(err)
	}
	c.release(a)
	again, _ := c.acquire(ctx, "a", loader("a"))
	c.release(again)
	if again != a || obs.hits.Load() != 1 || obs.misses.Load() != 1 {
		t.Fatalf("second acquire: hits %d misses %d", obs.hits.Load(), obs.misses.Load())
	}

	// The bound evicts the least recently used and zeroes it, unless someone holds it.
	held, _ := c.acquire(ctx, "a", loader("a"))
	b, _ := c.acquire(ctx, "b", loader("b"))
	c.release(b)
	x, _ := c.acquire(ctx, "c", loader("c")) // evicts a (least recently used) while held
	c.release(x)
	if c.len() != 2 || zeroed(loads["a"]) {
		t.Fatalf("len %d, a zeroed while held: %v", c.len(), zeroed(loads["a"]))
	}
	c.release(held)
	if !zeroed(loads["a"]) {
		t.Fatal("an evicted share must be zeroed when its last user releases it")
	}

	// Invalidation drops and zeroes at once when nobody holds the entry.
	c.invalidate("b")
	if !zeroed(loads["b"]) {
		t.Fatal("invalidated share not zeroed")
	}

	// The TTL reloads.
	cc, _ := c.acquire(ctx, "c", loader("c"))
	c.release(cc)
	first := loads["c"]
	now = now.Add(2 * time.Minute)
	cc, _ = c.acquire(ctx, "c", loader("c"))
	c.release(cc)
	if loads["c"] == first || !zeroed(first) {
		t.Fatal("an expired entry must be reloaded and the old share zeroed")
	}
}

func TestShareCacheLoadsOncePerMissAndNeverCachesAStaleLoad(t *testing.T) {
	ctx := context.Background()
	c := newShareCache(10, time.Minute, time.Now, &countingObserver{})
	var loadsStarted atomic.Int64
	release := make(chan struct{})
	slow := func(context.Context) (*loadedKey, error) {
		loadsStarted.Add(1)
		<-release
		return newTestKey(t, "k"), nil
	}
	var wg sync.WaitGroup
	for range 16 {
		wg.Go(func() {
			e, err := c.acquire(ctx, "k", slow)
			if err != nil {
				t.Error(err)
				return
			}
			c.release(e)
		})
	}
	for loadsStarted.Load() == 0 {
		time.Sleep(time.Millisecond)
	}
	close(release)
	wg.Wait()
	if n := loadsStarted.Load(); n != 1 {
		t.Fatalf("%d loads for one key, want 1", n)
	}

	// A load that an invalidation overtakes (a refresh committed while it read the old
	// record) must not be cached: the next acquire loads again.
	c.invalidate("k")
	gate := make(chan struct{})
	var mu sync.Mutex
	var loaded []*loadedKey
	loader := func(context.Context) (*loadedKey, error) {
		<-gate
		k := newTestKey(t, "k")
		mu.Lock()
		loaded = append(loaded, k)
		mu.Unlock()
		return k, nil
	}
	done := make(chan *loadedKey)
	go func() {
		e, err := c.acquire(ctx, "k", loader)
		if err != nil {
			t.Error(err)
			done <- nil
			return
		}
		done <- e.key
		c.release(e)
	}()
	for {
		c.mu.Lock()
		_, loading := c.loading["k"]
		c.mu.Unlock()
		if loading {
			break
		}
		time.Sleep(time.Millisecond)
	}
	c.invalidate("k") // overtakes the load in flight
	close(gate)
	served := <-done
	mu.Lock()
	defer mu.Unlock()
	if len(loaded) != 2 || served != loaded[1] {
		t.Fatalf("%d loads; the caller must get the load made after the invalidation", len(loaded))
	}
	if !zeroed(loaded[0]) {
		t.Fatal("the overtaken load must be zeroed")
	}
}
