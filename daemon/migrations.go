package daemon

import (
	"context"
	"fmt"

	"github.com/hufu-hsm/hufu/daemon/ca"
	"github.com/hufu-hsm/hufu/store"
)

// migrateStore brings a store an older build wrote to this build's layout before serving
// (store/schemaversion.go lists the versions). The schema version is raised first, so that
// from then on an older build refuses the store instead of misreading it — also when a
// migration below is interrupted; each migration is idempotent, audited and resumable, and
// the next start finishes what a crash left.
func (d *Daemon) migrateStore(ctx context.Context) error {
	from, err := d.store.UpgradeSchema(ctx)
	if err != nil {
		return err
	}
	// Version 2: no phone number in a store key.
	n, err := d.accounts.MigratePhoneKeys(ctx)
	if err != nil {
		return fmt.Errorf("moving phone numbers out of store keys (%d entries moved; the next start continues): %w", n, err)
	}
	// Version 3: revocation entries and CRLs out of the CA records.
	r, err := ca.MigrateRevocations(ctx, d.store)
	if err != nil {
		return fmt.Errorf("moving revocation entries out of the CA records (%d entries moved; the next start continues): %w", r, err)
	}
	if from < store.SchemaVersion || n > 0 || r > 0 {
		d.opts.Log.Info("store migrated", "schema_from", from, "phone_key_entries_moved", n, "revocation_entries_moved", r)
	}
	return nil
}
