package keys

import (
	"context"

	"github.com/hufu-hsm/hufu/cosign"
	"github.com/hufu-hsm/hufu/daemon/authn"
)

// DecryptGuard binds decryption to bid openings (design §3: because the server sees C1 it
// can bind the request). The bid-opening domain implements it.
type DecryptGuard interface {
	// CheckDecrypt returns nil for a C1 that no opening registered, or one the caller may
	// decrypt now (its holder's own copy, inside the window); otherwise the refusal
	// (FailedPrecondition naming the opening time), which the guard has recorded.
	CheckDecrypt(ctx context.Context, caller authn.Caller, keyID string, c1 *cosign.Point) error
}

// SetDecryptGuard installs the bid-opening check of Decrypt and DecryptBatch. Call it while
// wiring, before serving.
func (s *Service) SetDecryptGuard(g DecryptGuard) { s.guard = g }

func (s *Service) checkDecrypt(ctx context.Context, caller authn.Caller, keyID string, c1 *cosign.Point) error {
	if s.guard == nil {
		return nil
	}
	return s.guard.CheckDecrypt(ctx, caller, keyID, c1)
}

// ReleaseShare is the server share of the pair a bidder consented with, for a bid opening's
// release (cosign.ServerShare.Release): the key's primary pair for its holder, or the
// member's delegated pair. holder is the account and device that consented. The share stays
// in the cache until done is called; the release audits its own use.
func (s *Service) ReleaseShare(ctx context.Context, holder authn.Caller, keyID string) (share *cosign.ServerShare, done func(), err error) {
	holder = authn.Caller{UserID: holder.UserID, DeviceID: holder.DeviceID}
	e, err := s.use(ctx, holder, keyID)
	if err != nil {
		return nil, nil, err
	}
	if e.key.pendingPair() {
		s.cache.release(e)
		return nil, nil, errAcceptFirst
	}
	return e.key.state.Share, func() { s.cache.release(e) }, nil
}
