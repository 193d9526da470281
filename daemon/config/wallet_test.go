package config

import (
	"errors"
	"strings"
	"testing"
)

func TestWalletValidation(t *testing.T) {
	plan := func(p WalletPlatform) func(*Config) {
		return func(c *Config) { c.Wallet = Wallet{CAs: []string{"hufu-ca"}, Platforms: []WalletPlatform{p}} }
	}
	pass := WalletPass{ID: "day-1", Name: "1天畅行包", Days: 1, PriceFen: 500}
	for _, tc := range []struct {
		name string
		edit func(*Config)
		path string // "" for valid
	}{
		{"development defaults", func(*Config) {}, ""},
		{"none", func(c *Config) { c.Wallet = Wallet{} }, ""},
		{"per use only", plan(WalletPlatform{Platform: "demo", PerUsePriceFen: 200, TopUpsFen: []int64{1000}}), ""},
		{"day passes only", plan(WalletPlatform{Platform: "*", Passes: []WalletPass{pass}}), ""},
		{"unknown CA", func(c *Config) { c.Wallet.CAs = []string{"cfca"} }, "wallet.cas[0]"},
		{"CA twice", func(c *Config) { c.Wallet.CAs = []string{"hufu-ca", "hufu-ca"} }, "wallet.cas[1]"},
		{"platforms without CAs", func(c *Config) { c.Wallet.CAs = nil }, "wallet.cas"},
		{"unknown platform", plan(WalletPlatform{Platform: "nowhere", Passes: []WalletPass{pass}}), "wallet.platforms[0].platform"},
		{"platform twice", func(c *Config) {
			p := WalletPlatform{Platform: "demo", Passes: []WalletPass{pass}}
			c.Wallet = Wallet{CAs: []string{"hufu-ca"}, Platforms: []WalletPlatform{p, p}}
		}, "wallet.platforms[1].platform"},
		{"nothing offered", plan(WalletPlatform{Platform: "demo"}), "wallet.platforms[0]"},
		{"negative price", plan(WalletPlatform{Platform: "demo", PerUsePriceFen: -1, Passes: []WalletPass{pass}}), "wallet.platforms[0].per_use_price_fen"},
		{"per use without top-ups", plan(WalletPlatform{Platform: "demo", PerUsePriceFen: 200}), "wallet.platforms[0].top_ups_fen"},
		{"top-ups without a price", plan(WalletPlatform{Platform: "demo", TopUpsFen: []int64{1000}, Passes: []WalletPass{pass}}), "wallet.platforms[0].top_ups_fen"},
		{"zero top-up", plan(WalletPlatform{Platform: "demo", PerUsePriceFen: 200, TopUpsFen: []int64{0}}), "wallet.platforms[0].top_ups_fen[0]"},
		{"top-up twice", plan(WalletPlatform{Platform: "demo", PerUsePriceFen: 200, TopUpsFen: []int64{1000, 1000}}), "wallet.platforms[0].top_ups_fen[1]"},
		{"pass id", plan(WalletPlatform{Platform: "demo", Passes: []WalletPass{{ID: "Day 1", Name: "x", Days: 1, PriceFen: 1}}}), "wallet.platforms[0].passes[0].id"},
		{"pass twice", plan(WalletPlatform{Platform: "demo", Passes: []WalletPass{pass, pass}}), "wallet.platforms[0].passes[1].id"},
		{"pass without days", plan(WalletPlatform{Platform: "demo", Passes: []WalletPass{{ID: "d", Name: "x", PriceFen: 1}}}), "wallet.platforms[0].passes[0].days"},
		{"free pass", plan(WalletPlatform{Platform: "demo", Passes: []WalletPass{{ID: "d", Name: "x", Days: 1}}}), "wallet.platforms[0].passes[0].price_fen"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c := Development()
			tc.edit(&c)
			err := c.Validate()
			var ps Problems
			errors.As(err, &ps)
			found := false
			for _, p := range ps {
				found = found || p.Path == tc.path
				if tc.path != "" && p.Path != tc.path && strings.HasPrefix(p.Path, "wallet") {
					t.Errorf("unexpected %v", p)
				}
			}
			if tc.path == "" && err != nil {
				t.Fatalf("want valid: %v", err)
			}
			if tc.path != "" && !found {
				t.Fatalf("want a problem at %s, got %v", tc.path, err)
			}
		})
	}
}

func TestWalletPlatformFor(t *testing.T) {
	w := Wallet{Platforms: []WalletPlatform{{Platform: "demo", PerUsePriceFen: 100}, {Platform: "*", PerUsePriceFen: 300}}}
	if p, ok := w.WalletPlatformFor("demo"); !ok || p.PerUsePriceFen != 100 {
		t.Fatalf("demo: %+v %v", p, ok)
	}
	if p, ok := w.WalletPlatformFor("hangzhou"); !ok || p.PerUsePriceFen != 300 || p.Platform != "hangzhou" {
		t.Fatalf("hangzhou through *: %+v %v", p, ok)
	}
	if _, ok := (Wallet{}).WalletPlatformFor("demo"); ok {
		t.Fatal("an empty catalogue admits a platform")
	}
	// Production starts with none.
	if d := Default(); len(d.Wallet.CAs) != 0 || len(d.Wallet.Platforms) != 0 {
		t.Fatalf("production defaults: %+v", d.Wallet)
	}
}
