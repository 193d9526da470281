package store

import (
	"context"
	"fmt"
	"strconv"

	"github.com/hufu-hsm/hufu/store/storepb"
	"google.golang.org/protobuf/proto"
)

// Schema versions (recorded in m/meta, see schema.go):
//
//	1  the first layout
//	2  records found by a phone number are keyed by its HSM fingerprint, not the number
//	   (daemon/accounts moves a version-1 store's entries at start)
//	3  an embedded CA's revocation list is one record per entry (c/revoked/...) and its CRLs
//	   are records of their own (c/crl/...), no longer inside c/ca/<ca id>
//	   (daemon/ca.MigrateRevocations moves them at start)
//
// A version-1 store opens; whoever owns the layout change calls UpgradeSchema before it
// writes the new layout, so that from then on an older build refuses the store (ErrSchema)
// instead of misreading it.

// UpgradeSchema records SchemaVersion in m/meta of a store created by an older build, in
// one audited batch (action "store.schema.upgrade", details from and to), and returns the
// version the store had. A store already at SchemaVersion is not written to.
func (s *Store) UpgradeSchema(ctx context.Context) (from uint32, err error) {
	err = s.Update(ctx, func(tx *Tx) error {
		v, ok, err := tx.read(metaKey)
		if err != nil {
			return err
		}
		if !ok {
			return fmt.Errorf("%w: no %s", ErrCorrupt, metaKey)
		}
		var meta storepb.StoreMeta
		if err := proto.Unmarshal(v, &meta); err != nil {
			return fmt.Errorf("%w: meta: %v", ErrCorrupt, err)
		}
		from = meta.SchemaVersion
		if from >= SchemaVersion {
			return nil
		}
		meta.SchemaVersion = SchemaVersion
		b, err := proto.Marshal(&meta)
		if err != nil {
			return fmt.Errorf("store: marshal meta: %w", err)
		}
		tx.write(metaKey, b)
		return tx.Audit(Event{Actor: "store", Action: "store.schema.upgrade", Outcome: OutcomeOK,
			Details: map[string]string{"from": strconv.FormatUint(uint64(from), 10), "to": strconv.FormatUint(uint64(SchemaVersion), 10)}})
	})
	if err != nil {
		return 0, fmt.Errorf("store: schema upgrade: %w", err)
	}
	return from, nil
}
