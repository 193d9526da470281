package config

import (
	"errors"
	"testing"
)

func TestPaymentsValidation(t *testing.T) {
	for _, tc := range []struct {
		name string
		edit func(*Config)
		path string // "" for valid
	}{
		{"development defaults", func(*Config) {}, ""},
		{"offline and dev per platform", func(c *Config) {
			c.Payments.Methods = []PlatformMethods{{Platform: "demo", Methods: []string{"offline"}}, {Platform: "*", Methods: []string{"dev"}}}
		}, ""},
		{"unknown platform", func(c *Config) {
			c.Payments.Methods = []PlatformMethods{{Platform: "nowhere", Methods: []string{"dev"}}}
		}, "payments.methods[0].platform"},
		{"platform twice", func(c *Config) {
			c.Payments.Methods = []PlatformMethods{{Platform: "*", Methods: []string{"dev"}}, {Platform: "*", Methods: []string{"offline"}}}
		}, "payments.methods[1].platform"},
		{"bad method id", func(c *Config) {
			c.Payments.Methods = []PlatformMethods{{Platform: "*", Methods: []string{"WeChat Pay"}}}
		}, "payments.methods[0].methods[0]"},
		{"method twice", func(c *Config) {
			c.Payments.Methods = []PlatformMethods{{Platform: "*", Methods: []string{"dev", "dev"}}}
		}, "payments.methods[0].methods[1]"},
		{"gateway method without a gateway", func(c *Config) {
			c.Payments.Methods = []PlatformMethods{{Platform: "*", Methods: []string{"gateway"}}}
		}, "payments.methods[0].methods[0]"},
		{"dev listed outside development", func(c *Config) {
			c.Development = false
			c.Payments.Methods = []PlatformMethods{{Platform: "*", Methods: []string{"dev"}}}
		}, "payments.methods[0].methods[0]"},
		{"account number", func(c *Config) { c.Payments.Offline.AccountNumber = "62-22" }, "payments.offline.account_number"},
		{"long note", func(c *Config) { c.Payments.Offline.Note = string(make([]byte, 513)) }, "payments.offline.note"},
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
				if tc.path != "" && p.Path != tc.path && p.Path[:8] == "payments" {
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

func TestOfflineAccountDefaultsToTheTransferAccount(t *testing.T) {
	c := Development()
	c.Payments.Offline.Note = "柜台 9:00-17:00"
	a := c.OfflineAccountOrTransfer()
	if a.AccountNumber != c.Enterprises.Transfer.AccountNumber || a.Bank == "" || a.Note == "" {
		t.Fatalf("%+v", a)
	}
}

// TestProductionNeedsAPaymentGatewayOnlyForOnlineMethods: a centre that takes only offline
// payments runs without providers.payment; one that lists a gateway method, or lists no
// methods at all (every method goes to the gateway), needs it; offline needs an account.
func TestProductionNeedsAPaymentGatewayOnlyForOnlineMethods(t *testing.T) {
	problems := func(edit func(*Config)) map[string]bool {
		t.Helper()
		c := Development()
		c.Development = false
		edit(&c)
		got := map[string]bool{}
		var ps Problems
		if errors.As(c.Validate(), &ps) {
			for _, p := range ps {
				got[p.Path] = true
			}
		}
		return got
	}
	if got := problems(func(*Config) {}); !got["providers.payment"] {
		t.Error("production with no methods listed and no gateway is accepted")
	}
	offlineOnly := func(c *Config) {
		c.Payments.Methods = []PlatformMethods{{Platform: "*", Methods: []string{"offline"}}}
	}
	if got := problems(offlineOnly); got["providers.payment"] || got["payments.methods[0].methods[0]"] || got["payments.offline.account_number"] {
		t.Errorf("offline only, with the transfer account: %v", got)
	}
	if got := problems(func(c *Config) {
		offlineOnly(c)
		c.Enterprises.Transfer.AccountNumber = ""
	}); !got["payments.offline.account_number"] {
		t.Errorf("offline without a receiving account: %v", got)
	}
	if got := problems(func(c *Config) {
		c.Payments.Methods = []PlatformMethods{{Platform: "*", Methods: []string{"offline", "wechat"}}}
	}); !got["payments.methods[0].methods[1]"] || got["providers.payment"] {
		t.Errorf("a gateway method without a gateway: %v", got)
	}
}
