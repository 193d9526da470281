package daemon

import (
	"fmt"

	hufuv1 "github.com/hufu-hsm/hufu/api/hufu/v1"
	"github.com/hufu-hsm/hufu/daemon/commerce/aftersales"
	"github.com/hufu-hsm/hufu/daemon/commerce/invoices"
)

// buildAfterSales builds after-sales (退款/售后) over the certificate orders, the payments
// that refund them and invoicing's claims on them, from the configuration's aftersales
// section.
func (d *Daemon) buildAfterSales() error {
	ac := d.cfg.AfterSales
	opts := aftersales.Options{Labels: map[hufuv1.AfterSalesReason]string{}, MaxTextRunes: ac.MaxTextChars,
		MaxAttachments: ac.MaxAttachments, MaxAttachmentBytes: ac.MaxAttachmentBytes}
	for _, rl := range ac.Reasons {
		r, ok := aftersales.ReasonsByName[rl.Reason]
		if !ok {
			return fmt.Errorf("aftersales: unknown reason %q", rl.Reason)
		}
		opts.Labels[r] = rl.Label
	}
	var err error
	d.aftersales, err = aftersales.New(opts, aftersales.Deps{
		Store: d.store, Attachments: d.attachments, Orders: d.certs, Payments: d.payments, Accounts: d.accounts,
		InvoiceOf: invoices.OrderInvoiceIn, Clock: d.opts.Clock, Registry: d.opts.Registry,
	})
	return err
}
