package daemon_test

import (
	"testing"

	"github.com/hufu-hsm/hufu/client"
	"github.com/hufu-hsm/hufu/daemon/accounts"
	"github.com/hufu-hsm/hufu/daemon/config"
	"github.com/hufu-hsm/hufu/daemon/daemontest"
	"github.com/hufu-hsm/hufu/softhsm/softhsmtest"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
)

func TestMain(m *testing.M) { softhsmtest.Main(m) }

// appliance is a daemon running in process (daemontest): real SoftHSM2, Pebble and TLS.
// The admin tests start their own daemon into the same fields (admin_e2e_test.go).
type appliance struct {
	t     testing.TB
	cfg   config.Config
	clock *daemontest.Clock
	addr  string
	stop  func()
	live  *daemontest.Appliance
}

// startAppliance starts an appliance with two platforms; mutate adjusts the configuration.
func startAppliance(t testing.TB, mutate func(*config.Config)) *appliance {
	t.Helper()
	live := daemontest.Start(t, func(c *config.Config) {
		c.Platforms = []config.Platform{{ID: "demo", Name: "示范平台", Region: "330000"}, {ID: "hangzhou", Name: "杭州平台", Region: "330100"}}
		if mutate != nil {
			mutate(c)
		}
	})
	return &appliance{t: t, cfg: live.Config, clock: live.Clock, addr: live.Addr, stop: live.Stop, live: live}
}

// restart stops the daemon and opens it again on the same data directory.
func (a *appliance) restart() {
	a.live.Restart()
	a.addr, a.stop = a.live.Addr, a.live.Stop
}

// dial connects as a phone with the given device id.
func (a *appliance) dial(device string) *client.Conn {
	return daemontest.Dial(a.t, a.addr, a.cfg, device)
}

// code reads the newest development SMS code for a number.
func (a *appliance) code(phone string, purpose accounts.Purpose) string {
	return daemontest.SMSCode(a.t, a.cfg, phone, purpose)
}

// wantCode fails the test unless err is a gRPC status with the code and, if field is not
// empty, a message naming the field.
func wantCode(t *testing.T, err error, code codes.Code, field string) {
	t.Helper()
	st, _ := status.FromError(err)
	if st.Code() != code {
		t.Fatalf("got %v (%q), want %v", st.Code(), st.Message(), code)
	}
	if field != "" && !hasPrefix(st.Message(), field+": ") {
		t.Fatalf("message %q does not name field %q", st.Message(), field)
	}
}

func hasPrefix(s, p string) bool { return len(s) >= len(p) && s[:len(p)] == p }
