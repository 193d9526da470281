package daemon

import "github.com/hufu-hsm/hufu/daemon/accounts"

// wireDeletion connects account deletion (seed §1.9.4) to the domains that answer its
// preconditions and erase their part of a deleted account's personal data.
func (d *Daemon) wireDeletion() {
	d.accounts.SetDeletion(accounts.Deletion{
		Cards: d.cards, Certificates: d.certs, Enterprises: d.enterprises, AfterSales: d.aftersales,
		Erasers: []accounts.Eraser{d.certs, d.invoices, d.enterprises, d.keys},
	})
}
