package keys

import (
	"context"

	"github.com/hufu-hsm/hufu/cosign"
	"github.com/hufu-hsm/hufu/daemon/authn"
)

// DecryptGuard binds decryption to bid openings (design §3: because the server sees C1 it
// can bind the request). The bid-opening domain implements it.
type DecryptGuard interface {
	// CheckDecrypt is asked, after the rate limit, whether the server may answer each C1 for
	// the key: refusals[i] is nil for a C1 it may answer, else the refusal
	// (FailedPrecondition naming the opening time), recorded by the guard. err is a failure
	// of the guard itself: nothing is answered.
	CheckDecrypt(ctx context.Context, caller authn.Caller, keyID string, c1s []cosign.Point) (refusals []error, err error)
}

// SetDecryptGuard installs the bid-opening check of Decrypt and DecryptBatch. Call it while
// wiring, before serving.
func (s *Service) SetDecryptGuard(g DecryptGuard) { s.guard = g }

func (s *Service) checkDecrypt(ctx context.Context, caller authn.Caller, keyID string, c1s []cosign.Point) ([]error, error) {
	if s.guard == nil {
		return make([]error, len(c1s)), nil
	}
	return s.guard.CheckDecrypt(ctx, caller, keyID, c1s)
}

// ReleaseShare is the server share of the pair a bidder consented with, for a bid opening's
// release (cosign.ServerShare.Release), and its version: the key's primary pair for its
// holder, or the member's delegated pair. holder is the account and device that consented.
// The share stays in the cache until done is called; the release audits its own use.
func (s *Service) ReleaseShare(ctx context.Context, holder authn.Caller, keyID string) (share *cosign.ServerShare, version uint32, done func(), err error) {
	holder = authn.Caller{UserID: holder.UserID, DeviceID: holder.DeviceID}
	e, err := s.use(ctx, holder, keyID)
	if err != nil {
		return nil, 0, nil, err
	}
	if e.key.pendingPair() {
		s.cache.release(e)
		return nil, 0, nil, errAcceptFirst
	}
	if err := s.certificateDecrypts(ctx, keyID); err != nil {
		s.cache.release(e)
		return nil, 0, nil, err
	}
	return e.key.state.Share, e.key.state.Version, func() { s.cache.release(e) }, nil
}
