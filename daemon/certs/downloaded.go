package certs

import (
	"errors"

	"github.com/hufu-hsm/hufu/store"
	"github.com/hufu-hsm/hufu/store/storepb"
)

// markOrderDownloaded records, inside the transaction of a certificate's first download,
// that the order which issued it is downloaded (已完成 orders then stop offering 下载证书,
// §1.8.1.1.3). An order whose certificate was first downloaded before orders recorded it
// shows as not downloaded; the download itself still works.
func markOrderDownloaded(tx *store.Tx, c *storepb.Certificate) error {
	if c.OrderId == "" {
		return nil
	}
	key, err := tx.Lookup(indexOrder, c.OrderId)
	if errors.Is(err, store.ErrNotFound) {
		return nil
	}
	if err != nil {
		return err
	}
	o := new(storepb.Order)
	if err := tx.Get(key, o); err != nil {
		return err
	}
	if o.DownloadedUnixNano != 0 {
		return nil
	}
	o.DownloadedUnixNano = c.DownloadedUnixNano
	return tx.Put(key, o)
}
