// Package daemontest runs a real hufu appliance inside a test process: a SoftHSM2 token of
// its own (softhsmtest), a Pebble store in a temporary directory, real TLS on loopback ports,
// and a clock that moves only when the test says so. The daemon's, the SDK's and the CLI's
// end-to-end tests share it, so that "an appliance" means the same thing in all of them.
package daemontest

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
)

// Clock is the appliance's clock: time moves only with Advance.
type Clock struct {
	mu  sync.Mutex
	now time.Time
}

// Now returns the clock's time.
func (c *Clock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.now
}

// Advance moves the clock forward.
func (c *Clock) Advance(d time.Duration) {
	c.mu.Lock()
	c.now = c.now.Add(d)
	c.mu.Unlock()
}

// NewClock returns a clock standing at t.
func NewClock(t time.Time) *Clock { return &Clock{now: t} }

// Appliance is a running appliance.
type Appliance struct {
	T      testing.TB
	Config config.Config
	// Clock is the appliance's clock; nil for an appliance on the wall clock.
	Clock *Clock
	// Daemon and Addr (the gRPC address) change with every Restart.
	Daemon *daemon.Daemon
	Addr   string
	// Log receives the daemon's log, across restarts; nil discards it.
	Log *slog.Logger
	// IssuanceFault, if set before a Restart, is the daemon's fault-injection hook of
	// issuance (daemon.Options.IssuanceFault).
	IssuanceFault func(point string)
	stop          func()
}

// Start initialises (hufud init) and serves an appliance on the embedded development
// defaults, with loopback listeners on free ports and a Clock that starts at the real time
// (hufud init dates the CA certificates by the wall clock, and what the appliance issues
// must not predate them) and then moves only with Advance; mutate adjusts the configuration
// first. It stops when the test ends.
func Start(t testing.TB, mutate ...func(*config.Config)) *Appliance {
	t.Helper()
	return start(t, NewClock(time.Now().UTC().Truncate(time.Second)), nil, mutate)
}

// StartWithLog is Start with the daemon logging to log (Start discards the log), for tests
// of what the daemon logs.
func StartWithLog(t testing.TB, log *slog.Logger, mutate ...func(*config.Config)) *Appliance {
	t.Helper()
	return start(t, NewClock(time.Now().UTC().Truncate(time.Second)), log, mutate)
}

// StartOnWallClock is Start with the real time, for tests whose other side (a CLI checking
// certificate validity, say) reads the wall clock.
func StartOnWallClock(t testing.TB, mutate ...func(*config.Config)) *Appliance {
	t.Helper()
	return start(t, nil, nil, mutate)
}

func start(t testing.TB, clock *Clock, log *slog.Logger, mutate []func(*config.Config)) *Appliance {
	t.Helper()
	tok := softhsmtest.New(t)
	cfg := config.Development()
	cfg.DataDir = t.TempDir()
	cfg.Listen.GRPC, cfg.Listen.JSON, cfg.Admin.Listen, cfg.Listen.PKI = "127.0.0.1:0", "127.0.0.1:0", "127.0.0.1:0", "127.0.0.1:0"
	cfg.HSM.Module, cfg.HSM.TokenLabel, cfg.HSM.PINFile = tok.ModulePath, tok.Label, tok.PINFile
	for _, m := range mutate {
		m(&cfg)
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
	a := &Appliance{T: t, Config: cfg, Clock: clock, Log: log}
	a.serve()
	t.Cleanup(a.Stop)
	return a
}

func (a *Appliance) serve() {
	a.T.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	opts := daemon.Options{Log: a.Log, HealthInterval: 20 * time.Millisecond, IssuanceFault: a.IssuanceFault}
	if opts.Log == nil {
		opts.Log = slog.New(slog.NewTextHandler(io.Discard, nil))
	}
	if a.Clock != nil {
		opts.Clock = a.Clock
	}
	d, err := daemon.Open(ctx, a.Config, opts)
	if err != nil {
		cancel()
		a.T.Fatal(err)
	}
	addr, err := d.Listen()
	if err != nil {
		cancel()
		a.T.Fatal(err)
	}
	a.Daemon, a.Addr = d, addr.String()
	done := make(chan error, 1)
	go func() { done <- d.Serve(ctx, nil) }()
	var once sync.Once
	a.stop = func() {
		once.Do(func() {
			cancel()
			if err := <-done; err != nil {
				a.T.Errorf("serve: %v", err)
			}
		})
	}
}

// Stop stops the daemon gracefully; stopping twice is harmless.
func (a *Appliance) Stop() { a.stop() }

// Restart stops the daemon and opens it again on the same data directory and token.
func (a *Appliance) Restart() {
	a.Stop()
	a.serve()
}

// Dial connects as a phone with the given device id, trusting the development CA.
func (a *Appliance) Dial(device string) *client.Conn { return Dial(a.T, a.Addr, a.Config, device) }

// Dial connects to the appliance at addr whose configuration is cfg.
func Dial(t testing.TB, addr string, cfg config.Config, device string) *client.Conn {
	t.Helper()
	conn, err := client.Dial(client.Config{
		Addr: addr, CAFile: filepath.Join(cfg.DataDir, "tls", "ca.pem"), ServerName: "localhost", DeviceID: device,
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close() })
	return conn
}

// SMSCode reads the newest development SMS code sent to a number for a purpose.
func (a *Appliance) SMSCode(phone string, purpose accounts.Purpose) string {
	return SMSCode(a.T, a.Config, phone, purpose)
}

// SMSCode reads the newest code in cfg's development SMS outbox.
func SMSCode(t testing.TB, cfg config.Config, phone string, purpose accounts.Purpose) string {
	t.Helper()
	code, err := accounts.LatestDevCode(cfg.Account.DevOutbox, phone, purpose)
	if err != nil {
		t.Fatal(err)
	}
	return code
}

// JSONURL is the base URL of the JSON gateway (https://127.0.0.1:port), "" when it is off.
func (a *Appliance) JSONURL() string {
	addr := a.Daemon.JSONAddr()
	if addr == nil {
		return ""
	}
	return "https://" + addr.String()
}

// AdminURL is the base URL of the admin listener.
func (a *Appliance) AdminURL() string { return "http://" + a.Daemon.AdminAddr().String() }
