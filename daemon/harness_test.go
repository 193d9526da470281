package daemon_test

import (
	"context"
	"io"
	"log/slog"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/hufu-hsm/hufu/client"
	"github.com/hufu-hsm/hufu/daemon"
	"github.com/hufu-hsm/hufu/daemon/accounts"
	"github.com/hufu-hsm/hufu/daemon/config"
	"github.com/hufu-hsm/hufu/softhsm/softhsmtest"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
)

func TestMain(m *testing.M) { softhsmtest.Main(m) }

// fakeClock is the daemon's clock in tests: time moves only when the test says so.
type fakeClock struct {
	mu  sync.Mutex
	now time.Time
}

func (c *fakeClock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.now
}

func (c *fakeClock) Advance(d time.Duration) {
	c.mu.Lock()
	c.now = c.now.Add(d)
	c.mu.Unlock()
}

// appliance is a daemon running in process on a loopback port, with a real SoftHSM2 token,
// a real Pebble store in a temporary directory and real TLS.
type appliance struct {
	t     testing.TB
	cfg   config.Config
	clock *fakeClock
	addr  string
	stop  func()
}

func startAppliance(t testing.TB, mutate func(*config.Config)) *appliance {
	t.Helper()
	tok := softhsmtest.New(t)
	cfg := config.Default()
	cfg.DataDir = t.TempDir()
	cfg.Listen.GRPC = "127.0.0.1:0"
	cfg.HSM.Module, cfg.HSM.TokenLabel, cfg.HSM.PINFile = tok.ModulePath, tok.Label, tok.PINFile
	cfg.Platforms = []config.Platform{{ID: "demo", Name: "示范平台", Region: "330000"}, {ID: "hangzhou", Name: "杭州平台", Region: "330100"}}
	if mutate != nil {
		mutate(&cfg)
	}
	if err := cfg.Validate(); err != nil {
		t.Fatal(err)
	}
	cfg, err := daemon.Resolve(cfg)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := daemon.Init(context.Background(), cfg, time.Now()); err != nil {
		t.Fatal(err)
	}
	a := &appliance{t: t, cfg: cfg, clock: &fakeClock{now: time.Date(2026, 11, 30, 9, 0, 0, 0, time.UTC)}}
	a.start()
	t.Cleanup(func() { a.stop() })
	return a
}

// start opens and serves the daemon on the appliance's data directory.
func (a *appliance) start() {
	a.t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	d, err := daemon.Open(ctx, a.cfg, daemon.Options{
		Clock: a.clock, Log: slog.New(slog.NewTextHandler(io.Discard, nil)), HealthInterval: 50 * time.Millisecond,
	})
	if err != nil {
		cancel()
		a.t.Fatal(err)
	}
	addr, err := d.Listen()
	if err != nil {
		cancel()
		a.t.Fatal(err)
	}
	a.addr = addr.String()
	done := make(chan error, 1)
	go func() { done <- d.Serve(ctx, nil) }()
	var once sync.Once
	a.stop = func() {
		once.Do(func() {
			cancel()
			if err := <-done; err != nil {
				a.t.Errorf("serve: %v", err)
			}
		})
	}
}

// restart stops the daemon and opens it again on the same data directory.
func (a *appliance) restart() {
	a.stop()
	a.start()
}

// dial connects as a phone with the given device id.
func (a *appliance) dial(device string) *client.Conn {
	a.t.Helper()
	conn, err := client.Dial(client.Config{
		Addr: a.addr, CAFile: filepath.Join(a.cfg.DataDir, "tls", "ca.pem"), ServerName: "localhost", DeviceID: device,
	})
	if err != nil {
		a.t.Fatal(err)
	}
	a.t.Cleanup(func() { conn.Close() })
	return conn
}

// code reads the newest development SMS code for a number.
func (a *appliance) code(phone string, purpose accounts.Purpose) string {
	a.t.Helper()
	code, err := accounts.LatestDevCode(a.cfg.Account.DevOutbox, phone, purpose)
	if err != nil {
		a.t.Fatal(err)
	}
	return code
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
