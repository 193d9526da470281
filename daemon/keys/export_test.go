package keys

import (
	"context"
	"strings"

	"github.com/hufu-hsm/hufu/daemon/authn"
)

// HoldSnapshot plays the first half of an operation for the tests of package keys_test: it
// takes caller's snapshot of keyID as Sign does (use) and returns the second half, which
// commits a sign operation's records with that snapshot (as Sign does after computing) and
// lets the snapshot go.
func (s *Service) HoldSnapshot(ctx context.Context, caller authn.Caller, keyID string) (finish func() error, err error) {
	e, err := s.use(ctx, caller, keyID)
	if err != nil {
		return nil, err
	}
	return func() error {
		defer s.cache.release(e)
		return s.record(ctx, caller, e.key, e.key.state.Version, keyID, "sign", strings.Repeat("00", 32), nil)
	}, nil
}

// CachedKeys is the number of snapshots in the share cache.
func (s *Service) CachedKeys() int { return s.cache.len() }
