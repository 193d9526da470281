package daemon

import (
	"github.com/hufu-hsm/hufu/daemon/commerce/payments"
)

// buildPayments builds the payment providers and the offline payments (daemon/commerce/
// payments) before the certificates, which take and book their payments through them.
func (d *Daemon) buildPayments() error {
	pc := d.cfg.Payments
	methods := map[string][]string{}
	for _, pm := range pc.Methods {
		methods[pm.Platform] = pm.Methods
	}
	a := d.cfg.OfflineAccountOrTransfer()
	deps := payments.Deps{
		Store: d.store, Clock: d.opts.Clock, Log: d.opts.Log, Registry: d.opts.Registry,
		Platform: func(id string) bool { _, ok := d.accounts.Platform(id); return ok },
	}
	if d.providers.payment != nil {
		deps.Gateway = d.providers.payment // the webhook gateway (providers.go)
	}
	var err error
	d.payments, err = payments.New(payments.Options{Methods: methods, Development: d.cfg.Development,
		Account: payments.ReceivingAccount{AccountName: a.AccountName, Bank: a.Bank, AccountNumber: a.AccountNumber, Note: a.Note}}, deps)
	return err
}
