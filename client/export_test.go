package client

import (
	"context"

	hufuv1 "github.com/hufu-hsm/hufu/api/hufu/v1"
	"github.com/hufu-hsm/hufu/client/keystore"
)

// ErrRefreshStopped is what RefreshStoppingAfter returns when it stopped.
var ErrRefreshStopped = errRefreshStopped

// RefreshStoppingAfter runs a refresh that stops after the named step, as a crash there
// would: "begin", "accept", "confirm" or "commit".
func RefreshStoppingAfter(ctx context.Context, conn *Conn, ks *keystore.Store, keyID string, cred *hufuv1.Credential, step string) (*keystore.Entry, error) {
	return refresh(ctx, conn, ks, keyID, cred, nil, step)
}
