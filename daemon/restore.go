package daemon

import (
	"context"
	"errors"
	"fmt"
	"io"
	"strconv"

	"github.com/hufu-hsm/hufu/backup"
	"github.com/hufu-hsm/hufu/daemon/config"
	"github.com/hufu-hsm/hufu/hsm"
	"github.com/hufu-hsm/hufu/softhsm"
	"github.com/hufu-hsm/hufu/store"
)

var _ backup.KeyWrapper = (*hsm.Keyring)(nil)

// Restore restores a backup (POST /backup, package backup) read from in into cfg's data
// directory, whose store must be absent or empty, with hufud stopped: it opens the HSM
// keyring of cfg to unwrap the backup's data key and extracts the store (backup.Restore).
// cfg must be resolved. The KEK that wrapped the backup must still be on the token. The
// restore is recorded in the restored store's audit log (store.restore, by actor) before
// the store is renamed into place: extracted files that are not a store are refused.
func Restore(ctx context.Context, cfg config.Config, in io.Reader, actor string) (backup.Stats, error) {
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
	return backup.Restore(ctx, in, kr, cfg.DataDir, func(dir string, st backup.Stats) error {
		return recordRestore(ctx, dir, actor, st)
	})
}

// recordRestore appends store.restore to the audit log of the store in dir, offline (no
// signer: the daemon's next checkpoint covers it).
func recordRestore(ctx context.Context, dir, actor string, st backup.Stats) error {
	s, err := store.Open(ctx, store.Options{Dir: dir, MustExist: true})
	if err != nil {
		return err
	}
	head, _ := s.Head()
	err = s.Append(ctx, store.Event{Actor: actor, Action: "store.restore", Subject: st.Name, Outcome: store.OutcomeOK,
		Details: map[string]string{
			"files": strconv.Itoa(st.Files), "bytes": strconv.FormatInt(st.Bytes, 10), "kek": st.KEK,
			"restored_head": strconv.FormatUint(head, 10),
			"note":          fmt.Sprintf("restored offline with hufud restore; the backup's log ends at record %d", head),
		}})
	return errors.Join(err, s.Close(ctx))
}
