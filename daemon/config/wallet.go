package config

import (
	"fmt"
	"regexp"
	"slices"
)

// Wallet is the catalogue of mutual-recognition accounts (互认账户, seed manual §1.8.2,
// daemon/commerce/wallet): which CAs' certificates belong to the national mutual-
// recognition system (全国CA互认), and, per platform that admits them, the plans: per-use
// (按次: the price of one use and the top-up amounts offered) and per-day (畅行包: packages
// with their validity in days and price). All amounts are integer fen. Production starts
// with none: no certificate is admitted outside its own platforms.
type Wallet struct {
	// CAs are the ids of the CAs (certificates.cas) whose certificates belong to the
	// national mutual-recognition system.
	CAs []string `yaml:"cas"`
	// Platforms are the mutual-recognition platforms and their plans; platform "*" is
	// every configured platform not listed.
	Platforms []WalletPlatform `yaml:"platforms"`
}

// WalletPlatform is one mutual-recognition platform's plans; it offers per-use, day
// passes, or both.
type WalletPlatform struct {
	Platform string `yaml:"platform"`
	// PerUsePriceFen is the price of one use (one scan session); 0: no per-use service.
	PerUsePriceFen int64 `yaml:"per_use_price_fen"`
	// TopUpsFen are the top-up amounts offered (去充值).
	TopUpsFen []int64 `yaml:"top_ups_fen"`
	// Passes are the day-pass packages.
	Passes []WalletPass `yaml:"passes"`
}

// WalletPass is a day-pass package (畅行包).
type WalletPass struct {
	ID       string `yaml:"id"`
	Name     string `yaml:"name"`
	Days     int    `yaml:"days"`
	PriceFen int64  `yaml:"price_fen"`
}

// Bounds of the catalogue: prices at most 100 000 yuan, passes at most a year.
const (
	maxWalletFen  = 10_000_000
	maxWalletDays = 366
)

var walletPassIDRE = regexp.MustCompile(`^[a-z0-9][a-z0-9-]{0,31}$`)

// WalletPlatformFor returns the plans of a platform: its own entry, else "*"'s.
func (w Wallet) WalletPlatformFor(platform string) (WalletPlatform, bool) {
	star := -1
	for i, p := range w.Platforms {
		if p.Platform == platform {
			return p, true
		}
		if p.Platform == "*" {
			star = i
		}
	}
	if star < 0 {
		return WalletPlatform{}, false
	}
	p := w.Platforms[star]
	p.Platform = platform
	return p, true
}

// fillDevelopment gives development a catalogue when it names none: every configured CA
// is of the national system, and every platform offers 2 yuan a use (top-ups of 10, 50
// and 100 yuan) and passes of 1, 7 and 30 days.
func (w *Wallet) fillDevelopment(cas []CertificateAuthority) {
	if len(w.CAs) == 0 && len(w.Platforms) == 0 {
		for _, ca := range cas {
			w.CAs = append(w.CAs, ca.ID)
		}
		w.Platforms = []WalletPlatform{{Platform: "*", PerUsePriceFen: 200, TopUpsFen: []int64{1000, 5000, 10000},
			Passes: []WalletPass{{ID: "day-1", Name: "1天畅行包", Days: 1, PriceFen: 500}, {ID: "day-7", Name: "7天畅行包", Days: 7, PriceFen: 2000},
				{ID: "day-30", Name: "30天畅行包", Days: 30, PriceFen: 6000}}}}
	}
}

func (c *Config) validateWallet(bad func(path, format string, args ...any)) {
	w := c.Wallet
	cas := map[string]bool{}
	for _, ca := range c.Certificates.CAs {
		cas[ca.ID] = true
	}
	for i, id := range w.CAs {
		path := fmt.Sprintf("wallet.cas[%d]", i)
		if !cas[id] {
			bad(path, "%q is not a configured CA (certificates.cas)", id)
		} else if slices.Index(w.CAs, id) != i {
			bad(path, "%q is listed twice", id)
		}
	}
	platforms := map[string]bool{"*": true}
	for _, pl := range c.Platforms {
		platforms[pl.ID] = true
	}
	seen := map[string]bool{}
	for i, p := range w.Platforms {
		path := fmt.Sprintf("wallet.platforms[%d]", i)
		if !platforms[p.Platform] {
			bad(path+".platform", "%q is neither \"*\" nor a configured platform", p.Platform)
		} else if seen[p.Platform] {
			bad(path+".platform", "%q is listed twice", p.Platform)
		}
		seen[p.Platform] = true
		if p.PerUsePriceFen < 0 || p.PerUsePriceFen > maxWalletFen {
			bad(path+".per_use_price_fen", "%d: want 0..%d fen", p.PerUsePriceFen, maxWalletFen)
		}
		if p.PerUsePriceFen == 0 && len(p.TopUpsFen) > 0 {
			bad(path+".top_ups_fen", "top-ups need a per-use price (per_use_price_fen)")
		}
		if p.PerUsePriceFen > 0 && len(p.TopUpsFen) == 0 {
			bad(path+".top_ups_fen", "a per-use service needs at least one top-up amount")
		}
		for j, a := range p.TopUpsFen {
			switch {
			case a <= 0 || a > maxWalletFen:
				bad(fmt.Sprintf("%s.top_ups_fen[%d]", path, j), "%d: want 1..%d fen", a, maxWalletFen)
			case slices.Index(p.TopUpsFen, a) != j:
				bad(fmt.Sprintf("%s.top_ups_fen[%d]", path, j), "%d is listed twice", a)
			}
		}
		if p.PerUsePriceFen == 0 && len(p.Passes) == 0 {
			bad(path, "offers neither a per-use price nor a day pass")
		}
		ids := map[string]bool{}
		for j, ps := range p.Passes {
			ppath := fmt.Sprintf("%s.passes[%d]", path, j)
			switch {
			case !walletPassIDRE.MatchString(ps.ID):
				bad(ppath+".id", "%q: want 1 to 32 of a-z, 0-9, '-'", ps.ID)
			case ids[ps.ID]:
				bad(ppath+".id", "%q is listed twice", ps.ID)
			}
			ids[ps.ID] = true
			if ps.Name == "" || len(ps.Name) > 64 {
				bad(ppath+".name", "1 to 64 bytes, shown to people")
			}
			if ps.Days < 1 || ps.Days > maxWalletDays {
				bad(ppath+".days", "%d: want 1..%d", ps.Days, maxWalletDays)
			}
			if ps.PriceFen <= 0 || ps.PriceFen > maxWalletFen {
				bad(ppath+".price_fen", "%d: want 1..%d fen", ps.PriceFen, maxWalletFen)
			}
		}
	}
	if len(w.Platforms) > 0 && len(w.CAs) == 0 {
		bad("wallet.cas", "mutual-recognition platforms without a CA of the national system admit no certificate")
	}
}
