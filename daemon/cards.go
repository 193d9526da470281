package daemon

import "github.com/hufu-hsm/hufu/daemon/commerce/cards"

// buildCards builds the bank-card service (seed §1.8.5) over the accounts' verified
// identities and the identity provider's bank-card check.
func (d *Daemon) buildCards() error {
	var err error
	d.cards, err = cards.New(cards.Options{MaxCards: d.cfg.Support.MaxBankCards}, cards.Deps{
		Store: d.store, Keyring: d.keyring, Accounts: d.accounts, Verifier: d.providers.verifier,
		Clock: d.opts.Clock, Registry: d.opts.Registry,
	})
	return err
}
