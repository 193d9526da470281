package daemon

import (
	"context"
	"fmt"
	"io"

	"github.com/hufu-hsm/hufu/backup"
	"github.com/hufu-hsm/hufu/daemon/config"
	"github.com/hufu-hsm/hufu/hsm"
	"github.com/hufu-hsm/hufu/softhsm"
)

var _ backup.KeyWrapper = (*hsm.Keyring)(nil)

// Restore restores a backup (POST /backup, package backup) read from in into cfg's data
// directory, whose store must be absent or empty, with hufud stopped: it opens the HSM
// keyring of cfg to unwrap the backup's data key and extracts the store (backup.Restore).
// cfg must be resolved. The KEK that wrapped the backup must still be on the token.
func Restore(ctx context.Context, cfg config.Config, in io.Reader) (backup.Stats, error) {
	if usesDevSoftHSM(cfg) {
		if _, err := softhsm.Provision(softhsm.Options{Dir: softhsmDir(cfg), Label: cfg.HSM.TokenLabel, ModulePath: cfg.HSM.Module}); err != nil {
			return backup.Stats{}, err
		}
	}
	kr, err := hsm.Open(ctx, hsmConfig(cfg, nil))
	if err != nil {
		return backup.Stats{}, fmt.Errorf("opening the HSM to decrypt the backup: %w", err)
	}
	defer kr.Close()
	return backup.Restore(ctx, in, kr, cfg.DataDir)
}
