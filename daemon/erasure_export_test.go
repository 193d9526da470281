package daemon

import (
	"context"

	"github.com/hufu-hsm/hufu/store/storepb"
)

// WrappedShare returns the stored wrapped server share of a key (nil once revoked), for the
// erasure test to search the store's files for its bytes.
func (d *Daemon) WrappedShare(ctx context.Context, keyID string) ([]byte, error) {
	var rec storepb.SplitKey
	if err := d.store.Get(ctx, "k/"+keyID, &rec); err != nil {
		return nil, err
	}
	return rec.ShareWrapped, nil
}
