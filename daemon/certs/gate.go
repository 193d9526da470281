package certs

import (
	"context"
	"sync"
	"time"

	"github.com/hufu-hsm/hufu/daemon/apierr"
	"github.com/hufu-hsm/hufu/daemon/ca"
	"github.com/hufu-hsm/hufu/store"
	"github.com/hufu-hsm/hufu/store/storepb"
)

// keyGate answers, on the cosign hot path, whether a key's certificates allow it to be used:
// a key with no certificate yet may cosign (it signs its own CSR); a key with certificates
// needs one that is active and not expired. Answers are cached per key and dropped whenever
// this service changes one of the key's certificates (the only writer).
type keyGate struct {
	mu sync.Mutex
	m  map[string]gateEntry
}

type gateEntry struct {
	certified   bool
	activeUntil time.Time // latest not-after of an active certificate
	// signingOf: the key is the signing key of a certificate pair, whose encryption key
	// this is; it does not decrypt (KeyDecrypts).
	signingOf string
}

const maxGateEntries = 100000

// gateEntry returns the key's cached answer, loading it on a miss.
func (s *Service) gateEntry(ctx context.Context, keyID string) (gateEntry, error) {
	s.gate.mu.Lock()
	e, ok := s.gate.m[keyID]
	s.gate.mu.Unlock()
	if ok {
		return e, nil
	}
	e, err := s.loadGate(ctx, keyID)
	if err != nil {
		return e, err
	}
	s.gate.mu.Lock()
	if len(s.gate.m) >= maxGateEntries {
		clear(s.gate.m)
	}
	s.gate.m[keyID] = e
	s.gate.mu.Unlock()
	return e, nil
}

func (g *keyGate) forget(keyID string) {
	g.mu.Lock()
	delete(g.m, keyID)
	g.mu.Unlock()
}

// KeyUsable implements keys.CertificateGate.
func (s *Service) KeyUsable(ctx context.Context, keyID string) error {
	e, err := s.gateEntry(ctx, keyID)
	if err != nil {
		return err
	}
	if !e.certified || s.deps.Clock.Now().Before(e.activeUntil) {
		return nil
	}
	return apierr.New(apierr.FailedPrecondition, "the key's certificate has expired or is disabled: renew it (续期) before using the key")
}

// KeyDecrypts implements keys.DecryptionGate: the signing key of a certificate pair refuses
// to decrypt, so nothing meant for the encryption certificate is ever answered with it.
func (s *Service) KeyDecrypts(ctx context.Context, keyID string) error {
	e, err := s.gateEntry(ctx, keyID)
	if err != nil {
		return err
	}
	if e.signingOf != "" {
		return apierr.Invalidf("key_id", "key %s is the signing key of a certificate pair and does not decrypt: decrypt with its encryption key %s", keyID, e.signingOf)
	}
	return nil
}

func (s *Service) loadGate(ctx context.Context, keyID string) (gateEntry, error) {
	var e gateEntry
	cursor := ""
	for {
		owners, next, err := s.deps.Store.ListIndex(ctx, indexKeyCert, keyID, store.ListOptions{Cursor: cursor, Limit: store.MaxListLimit})
		if err != nil {
			return e, err
		}
		for _, key := range owners {
			var c storepb.Certificate
			if err := s.deps.Store.Get(ctx, key, &c); err != nil {
				return e, err
			}
			e.certified = true
			if ca.Usage(c.Usage) == ca.UsageSigning && c.PairKeyId != "" {
				e.signingOf = c.PairKeyId
			}
			if na := time.Unix(0, c.NotAfterUnixNano); c.Status == certActive && na.After(e.activeUntil) {
				e.activeUntil = na
			}
		}
		if next == "" {
			return e, nil
		}
		cursor = next
	}
}
