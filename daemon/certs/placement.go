package certs

import (
	"context"
	"errors"

	hufuv1 "github.com/hufu-hsm/hufu/api/hufu/v1"
	"github.com/hufu-hsm/hufu/daemon/apierr"
	"github.com/hufu-hsm/hufu/daemon/authn"
	"github.com/hufu-hsm/hufu/store/storepb"
)

// KeyPlacements says, per key of the given certificates, whether the calling device holds
// it (生效中 is per device, seed §1.7.1): the key is the caller's and was generated on (or
// moved to) this device. Any other key — on another device of the person, or no longer the
// caller's — is held elsewhere.
func (s *Service) KeyPlacements(ctx context.Context, caller authn.Caller, cs []*storepb.Certificate) (map[string]hufuv1.KeyPlacement, error) {
	out := map[string]hufuv1.KeyPlacement{}
	for _, c := range cs {
		if _, done := out[c.KeyId]; done {
			continue
		}
		out[c.KeyId] = hufuv1.KeyPlacement_KEY_PLACEMENT_OTHER_DEVICE
		key, err := s.deps.Keys.OwnedKey(ctx, caller, c.KeyId)
		var e *apierr.Error
		if errors.As(err, &e) && e.Kind == apierr.NotFound {
			continue
		}
		if err != nil {
			return nil, err
		}
		if key.DeviceId == caller.DeviceID {
			out[c.KeyId] = hufuv1.KeyPlacement_KEY_PLACEMENT_THIS_DEVICE
		}
	}
	return out, nil
}
