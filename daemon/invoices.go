package daemon

import (
	"context"
	"errors"
	"fmt"

	hufuv1 "github.com/hufu-hsm/hufu/api/hufu/v1"
	"github.com/hufu-hsm/hufu/daemon/certs"
	"github.com/hufu-hsm/hufu/daemon/commerce/invoices"
	"github.com/hufu-hsm/hufu/store"
)

// buildInvoices builds invoicing over the certificate domain's paid orders (read only).
func (d *Daemon) buildInvoices() error {
	ic := d.cfg.Invoices.InvoicesEffective()
	opts := invoices.Options{HelpText: ic.HelpText, Categories: map[string]hufuv1.InvoiceCategory{},
		MaxOrdersPerInvoice: ic.MaxOrdersPerInvoice, MaxTitles: ic.MaxTitlesPerUser, MaxDocumentBytes: ic.MaxDocumentBytes}
	for _, name := range ic.Types {
		t, ok := invoices.Types[name]
		if !ok {
			return fmt.Errorf("invoices: unknown invoice type %q", name)
		}
		opts.Types = append(opts.Types, t)
	}
	for _, r := range ic.Categories {
		c, ok := invoices.Categories[r.Category]
		if !ok {
			return fmt.Errorf("invoices: unknown category %q", r.Category)
		}
		opts.Categories[r.OrderKind] = c
	}
	var err error
	d.invoices, err = invoices.New(opts, invoices.Deps{Store: d.store, Orders: invoiceOrders{d.certs}, Clock: d.opts.Clock, Registry: d.opts.Registry})
	return err
}

// invoiceOrders is the certificate domain's paid orders as invoicing reads them.
type invoiceOrders struct{ c *certs.Service }

var _ invoices.Orders = invoiceOrders{}

func (o invoiceOrders) PaidOrders(ctx context.Context, userID string) ([]invoices.Order, error) {
	paid, err := o.c.PaidOrders(ctx, userID)
	if err != nil {
		return nil, err
	}
	out := make([]invoices.Order, len(paid))
	for i, p := range paid {
		out[i] = invoiceOrder(p)
	}
	return out, nil
}

func (o invoiceOrders) PaidOrderIn(tx *store.Tx, userID, orderID string) (invoices.Order, error) {
	p, err := o.c.PaidOrderIn(tx, userID, orderID)
	if errors.Is(err, certs.ErrNotPaid) {
		return invoices.Order{}, invoices.ErrNotPaid
	}
	if err != nil {
		return invoices.Order{}, err
	}
	return invoiceOrder(p), nil
}

func invoiceOrder(p certs.PaidOrder) invoices.Order {
	return invoices.Order{ID: p.ID, Kind: p.Kind, AmountFen: p.AmountFen, PaidAt: p.PaidAt, Refunded: p.Refunded, Description: p.Description}
}
