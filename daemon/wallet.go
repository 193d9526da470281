package daemon

import (
	"github.com/hufu-hsm/hufu/daemon/commerce/payments"
	"github.com/hufu-hsm/hufu/daemon/commerce/wallet"
	"github.com/hufu-hsm/hufu/daemon/scan"
)

var _ scan.Recognition = (*wallet.Service)(nil)

// buildWallet builds the mutual-recognition accounts (daemon/commerce/wallet) over the
// payment providers, and connects them to the scan sessions as their gate.
func (d *Daemon) buildWallet() error {
	wc := d.cfg.Wallet
	names := map[string]string{}
	var ids []string
	for _, p := range d.cfg.Platforms {
		names[p.ID] = p.Name
		ids = append(ids, p.ID)
	}
	planFor := func(platform string) (wallet.Plan, bool) {
		if _, ok := names[platform]; !ok {
			return wallet.Plan{}, false
		}
		p, ok := wc.WalletPlatformFor(platform)
		if !ok {
			return wallet.Plan{}, false
		}
		plan := wallet.Plan{Platform: platform, PlatformName: names[platform], PerUsePriceFen: p.PerUsePriceFen, TopUpsFen: p.TopUpsFen}
		for _, ps := range p.Passes {
			plan.Passes = append(plan.Passes, wallet.Pass{ID: ps.ID, Name: ps.Name, Days: ps.Days, PriceFen: ps.PriceFen})
		}
		return plan, true
	}
	var err error
	d.wallet, err = wallet.New(wallet.Options{CAs: wc.CAs, PlanFor: planFor, Platforms: ids}, wallet.Deps{
		Store: d.store, Payments: d.payments, Clearing: payments.ClearingAccount, Clock: d.opts.Clock, Log: d.opts.Log,
	})
	if err != nil {
		return err
	}
	d.scan.SetRecognition(d.wallet)
	d.payments.SetNotifiedOrders(d.wallet) // the gateway's notifications pay wallet orders too
	return nil
}
