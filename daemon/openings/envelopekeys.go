package openings

import (
	"context"
	"errors"
	"sync"
	"time"

	"github.com/hufu-hsm/hufu/store"
)

// maxEnvelopeKeys bounds the keys envelopeKeys holds (about 100 bytes each). Past it, every
// Decrypt looks its key up in the store again, as before the set existed.
const maxEnvelopeKeys = 1 << 20

var errTooManyEnvelopeKeys = errors.New("openings: more keys with envelopes than the set holds")

// envelopeKeysRetry spaces the loads after one fails (a store that cannot be read), so that
// every Decrypt does not walk the whole index again.
const envelopeKeysRetry = 30 * time.Second

// envelopeKeys is the set of keys with an envelope in some opening, kept so that the
// decryption guard answers a key with none (any key outside bid openings) without scanning
// the opening-key index on every Decrypt.
//
// Once loaded it holds every key the store has filed, and perhaps more: RegisterEnvelopes
// adds its keys before its transaction commits, whether or not that commits, and nothing
// is ever taken out (the index is only added to). So a key the loaded set lacks has no
// envelope, and a key it holds is checked in the store as before. Until the set is loaded
// (the first Decrypt loads it; after a failed load, one tries again envelopeKeysRetry
// later), or once it has overflowed, every key is checked in the store.
type envelopeKeys struct {
	loading sync.Mutex // one load at a time; a Decrypt that finds one under way does not wait
	retryAt time.Time  // under loading: no load before, after one failed

	limit    int
	mu       sync.RWMutex
	keys     map[string]struct{}
	loaded   bool
	overflow bool // more than limit keys: kept no more, every key is looked up
}

func newEnvelopeKeys(limit int) *envelopeKeys {
	return &envelopeKeys{limit: limit, keys: map[string]struct{}{}}
}

// add records keys about to be filed, before the transaction that files them commits.
func (k *envelopeKeys) add(keyIDs ...string) {
	k.mu.Lock()
	defer k.mu.Unlock()
	for _, id := range keyIDs {
		if k.overflow {
			break
		}
		k.keys[id] = struct{}{}
		k.overflow = len(k.keys) > k.limit
	}
	if k.overflow {
		k.keys = nil
	}
}

// size is the number of keys held, or -1 while every key is looked up in the store (the set
// not loaded, or overflowed): the gauge hufu_opening_guard_keys.
func (k *envelopeKeys) size() float64 {
	k.mu.RLock()
	defer k.mu.RUnlock()
	if !k.loaded || k.overflow {
		return -1
	}
	return float64(len(k.keys))
}

// mayHave tells whether keyID may have envelopes, so that the guard must look in the store:
// false only when the loaded set proves it has none. Until the set is loaded the answer is
// true, and this call loads it unless another is loading it or a load failed lately.
func (k *envelopeKeys) mayHave(ctx context.Context, st *store.Store, now time.Time, keyID string) bool {
	k.mu.RLock()
	loaded, overflow := k.loaded, k.overflow
	_, in := k.keys[keyID]
	k.mu.RUnlock()
	if !loaded {
		k.load(ctx, st, now)
		return true
	}
	return in || overflow
}

// load reads every key of the opening-key index into the set, merging with the keys added
// meanwhile: a registration that commits after the load's snapshot added its keys before.
func (k *envelopeKeys) load(ctx context.Context, st *store.Store, now time.Time) {
	if !k.loading.TryLock() {
		return
	}
	defer k.loading.Unlock()
	k.mu.RLock()
	loaded := k.loaded
	k.mu.RUnlock()
	if loaded || now.Before(k.retryAt) {
		return
	}
	var filed []string
	err := st.IndexValues(ctx, indexKey, func(keyID string) error {
		if filed = append(filed, keyID); len(filed) > k.limit {
			return errTooManyEnvelopeKeys // add overflows with these
		}
		return nil
	})
	if err != nil && !errors.Is(err, errTooManyEnvelopeKeys) {
		k.retryAt = now.Add(envelopeKeysRetry) // until a load succeeds, every key is looked up
		return
	}
	k.add(filed...)
	k.mu.Lock()
	k.loaded = true
	k.mu.Unlock()
}
