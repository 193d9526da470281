package ledger

import (
	"errors"

	"github.com/hufu-hsm/hufu/daemon/apierr"
	"github.com/hufu-hsm/hufu/store"
	"github.com/hufu-hsm/hufu/store/storepb"
)

// BalanceIn returns an account's totals read inside tx (zero if it has no entries), so that
// a check of the balance and the entry that spends it commit together.
func BalanceIn(tx *store.Tx, account string) (*storepb.LedgerBalance, error) {
	if !ValidAccount(account) {
		return nil, apierr.Invalidf("account", "%q is not a ledger account", account)
	}
	b, err := balances.Get(tx, "balance/"+account)
	if errors.Is(err, store.ErrNotFound) {
		return &storepb.LedgerBalance{Account: account}, nil
	}
	return b, err
}
