package config

import (
	"fmt"
	"regexp"
	"slices"
	"strings"
)

// Payments configures the payment methods each platform offers and the account offline
// payments go to (daemon/commerce/payments).
type Payments struct {
	// Methods lists, per platform, the method ids the phone is offered, in order: "dev" (the
	// development provider, development only), "offline" (bank transfer or cash confirmed at
	// the payment desk) and any other id, which is a method of the payment gateway
	// (providers.payment; the id is passed to it, e.g. "gateway", "wechat"). Platform "*"
	// is every platform not listed. Empty: development offers dev and offline, production
	// the gateway's methods (any id the phone sends goes to the gateway, as before methods
	// were configuration); offline is offered in production only where it is listed.
	Methods []PlatformMethods `yaml:"methods"`
	// Offline is the receiving account of offline payments; unset fields are those of
	// enterprises.transfer.
	Offline OfflineAccount `yaml:"offline"`
}

// PlatformMethods are the payment methods of one platform.
type PlatformMethods struct {
	Platform string   `yaml:"platform"`
	Methods  []string `yaml:"methods"`
}

// OfflineAccount is where offline payments go, shown to the payer with the reference.
type OfflineAccount struct {
	AccountName   string `yaml:"account_name"`
	Bank          string `yaml:"bank"`
	AccountNumber string `yaml:"account_number"`
	// Note is shown with the instructions: the counter's address and opening hours, say.
	Note string `yaml:"note"`
}

var paymentMethodRE = regexp.MustCompile(`^[a-z0-9_-]{1,32}$`)

// OfflineAccountOrTransfer is the offline receiving account with enterprises.transfer's
// details where it names none.
func (c *Config) OfflineAccountOrTransfer() OfflineAccount {
	a, t := c.Payments.Offline, c.Enterprises.Transfer
	if a.AccountName == "" {
		a.AccountName = t.AccountName
	}
	if a.Bank == "" {
		a.Bank = t.Bank
	}
	if a.AccountNumber == "" {
		a.AccountNumber = t.AccountNumber
	}
	return a
}

func (c *Config) validatePayments(bad func(path, format string, args ...any)) {
	p := c.Payments
	platforms := map[string]bool{"*": true}
	for _, pl := range c.Platforms {
		platforms[pl.ID] = true
	}
	seen := map[string]bool{}
	for i, pm := range p.Methods {
		path := fmt.Sprintf("payments.methods[%d]", i)
		if !platforms[pm.Platform] {
			bad(path+".platform", "%q is neither \"*\" nor a configured platform", pm.Platform)
		} else if seen[pm.Platform] {
			bad(path+".platform", "%q is listed twice", pm.Platform)
		}
		seen[pm.Platform] = true
		for j, m := range pm.Methods {
			mpath := fmt.Sprintf("%s.methods[%d]", path, j)
			switch {
			case !paymentMethodRE.MatchString(m):
				bad(mpath, "%q: want 1 to 32 of a-z, 0-9, '_', '-'", m)
			case slices.Index(pm.Methods, m) != j:
				bad(mpath, "%q is listed twice", m)
			case m == "dev" && !c.Development:
				bad(mpath, "the development provider is for development only")
			case m != "dev" && m != "offline" && c.Providers.Payment == nil:
				bad(mpath, "%q is a gateway method: set providers.payment", m)
			}
		}
	}
	if !c.Development && slices.ContainsFunc(p.Methods, func(pm PlatformMethods) bool { return slices.Contains(pm.Methods, "offline") }) &&
		c.OfflineAccountOrTransfer().AccountNumber == "" {
		bad("payments.offline.account_number", "offline payment is offered: set the receiving account (or enterprises.transfer's)")
	}
	a := p.Offline
	for path, v := range map[string]string{"payments.offline.account_name": a.AccountName, "payments.offline.bank": a.Bank} {
		if len(strings.TrimSpace(v)) != len(v) || len(v) > 128 {
			bad(path, "at most 128 bytes, no surrounding spaces (shown to payers)")
		}
	}
	if a.AccountNumber != "" && !accountNumberRE.MatchString(a.AccountNumber) {
		bad("payments.offline.account_number", "want 8 to 32 digits")
	}
	if len(a.Note) > 512 {
		bad("payments.offline.note", "at most 512 bytes")
	}
}
