package daemon

import (
	"context"

	"github.com/hufu-hsm/hufu/store"
	"github.com/hufu-hsm/hufu/store/storepb"
)

// UnpairForTest rewrites a certificate pair's records as certificates issued before pairs
// were: both lose their usage and link, and the order its encryption fields, so that a test
// can check that such certificates keep signing, decrypting and renewing as one key. It is
// the data an appliance upgraded from before pairs holds, not a fake of any part. Restart
// the daemon afterwards: the certificate service caches what keys may do.
func (d *Daemon) UnpairForTest(ctx context.Context, userID, signingSerial string) error {
	return d.store.Update(ctx, func(tx *store.Tx) error {
		sign := new(storepb.Certificate)
		if err := tx.Get("c/cert/"+userID+"/"+signingSerial, sign); err != nil {
			return err
		}
		enc := new(storepb.Certificate)
		if err := tx.Get("c/cert/"+userID+"/"+sign.PairSerial, enc); err != nil {
			return err
		}
		o := new(storepb.Order)
		if err := tx.Get("o/order/"+userID+"/"+sign.OrderId, o); err != nil {
			return err
		}
		o.EncryptionKeyId, o.EncryptionCsr, o.EncryptionSerial = "", nil, ""
		for _, c := range []*storepb.Certificate{sign, enc} {
			c.Usage, c.PairSerial, c.PairKeyId = 0, "", ""
			if err := tx.Put("c/cert/"+userID+"/"+c.Serial, c); err != nil {
				return err
			}
		}
		if err := tx.Put("o/order/"+userID+"/"+o.Id, o); err != nil {
			return err
		}
		return tx.Audit(store.Event{Actor: "test", Action: "test.unpair", Subject: "c/cert/" + userID + "/" + signingSerial, Outcome: store.OutcomeOK})
	})
}

// UnpairEnterpriseForTest rewrites an enterprise claimed with a certificate pair as one
// claimed before pairs: its certificates and order as UnpairForTest does, and the enterprise
// record without its encryption key, so that a test can check that such an enterprise still
// delegates, signs and decrypts with its one key. Restart the daemon afterwards.
func (d *Daemon) UnpairEnterpriseForTest(ctx context.Context, adminUserID, signingSerial, uscc string) error {
	if err := d.UnpairForTest(ctx, adminUserID, signingSerial); err != nil {
		return err
	}
	return d.store.Update(ctx, func(tx *store.Tx) error {
		e := new(storepb.Enterprise)
		if err := tx.Get("e/"+uscc+"/info", e); err != nil {
			return err
		}
		e.EncryptionKeyId = ""
		if err := tx.Put("e/"+uscc+"/info", e); err != nil {
			return err
		}
		return tx.Audit(store.Event{Actor: "test", Action: "test.unpair", Subject: "e/" + uscc + "/info", Outcome: store.OutcomeOK})
	})
}
