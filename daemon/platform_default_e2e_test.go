package daemon_test

import (
	"testing"

	hufuv1 "github.com/hufu-hsm/hufu/api/hufu/v1"
	"github.com/hufu-hsm/hufu/daemon/config"
)

// TestNewAccountStartsOnTheDefaultPlatform (seed §1.3): a new account is on the configured
// default platform at once, or on the only platform when one is configured; with several
// and no default it has none until the person chooses.
func TestNewAccountStartsOnTheDefaultPlatform(t *testing.T) {
	for _, tc := range []struct {
		name      string
		platforms []config.Platform
		def       string
		want      string
	}{
		{"configured default", []config.Platform{{ID: "demo", Name: "示范平台", Region: "330000"}, {ID: "hangzhou", Name: "杭州平台", Region: "330100"}}, "hangzhou", "hangzhou"},
		{"the only platform", []config.Platform{{ID: "demo", Name: "示范平台", Region: "330000"}}, "", "demo"},
		{"several, no default", []config.Platform{{ID: "demo", Name: "示范平台", Region: "330000"}, {ID: "hangzhou", Name: "杭州平台", Region: "330100"}}, "", ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			a := startAppliance(t, func(c *config.Config) { c.Platforms, c.Account.DefaultPlatform = tc.platforms, tc.def })
			conn := a.dial("device-0001")
			resp := a.signIn(conn, phone, "device-0001")
			if !resp.Registered || resp.Account.CurrentPlatformId != tc.want {
				t.Fatalf("new account: registered %v, platform %q, want %q", resp.Registered, resp.Account.CurrentPlatformId, tc.want)
			}
			cur, err := conn.Platforms.GetCurrentPlatform(bg, &hufuv1.GetCurrentPlatformRequest{})
			if err != nil || cur.GetPlatform().GetId() != tc.want {
				t.Fatalf("current platform: %v %v", cur, err)
			}
		})
	}
}
