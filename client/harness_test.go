package client_test

import (
	"context"
	"io"
	"log/slog"
	"path/filepath"
	"sync"
	"testing"
	"time"

	hufuv1 "github.com/hufu-hsm/hufu/api/hufu/v1"
	"github.com/hufu-hsm/hufu/client"
	"github.com/hufu-hsm/hufu/client/keystore"
	"github.com/hufu-hsm/hufu/daemon"
	"github.com/hufu-hsm/hufu/daemon/accounts"
	"github.com/hufu-hsm/hufu/daemon/config"
	"github.com/hufu-hsm/hufu/softhsm/softhsmtest"
)

// The harness is the one of package daemon's tests, trimmed: an appliance in process on a
// loopback port with a real SoftHSM2 token, a real Pebble store and real TLS.

func TestMain(m *testing.M) { softhsmtest.Main(m) }

var bg = context.Background()

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

type appliance struct {
	t     *testing.T
	cfg   config.Config
	clock *fakeClock
	addr  string
	stop  func()
}

func startAppliance(t *testing.T, mutate func(*config.Config)) *appliance {
	t.Helper()
	tok := softhsmtest.New(t)
	cfg := config.Default()
	cfg.DataDir = t.TempDir()
	cfg.Listen.GRPC = "127.0.0.1:0"
	cfg.Admin.Listen = "127.0.0.1:0"
	cfg.HSM.Module, cfg.HSM.TokenLabel, cfg.HSM.PINFile = tok.ModulePath, tok.Label, tok.PINFile
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
	if _, err := daemon.Init(bg, cfg, time.Now()); err != nil {
		t.Fatal(err)
	}
	a := &appliance{t: t, cfg: cfg, clock: &fakeClock{now: time.Date(2026, 11, 30, 9, 0, 0, 0, time.UTC)}}
	a.start()
	t.Cleanup(func() { a.stop() })
	return a
}

func (a *appliance) start() {
	a.t.Helper()
	ctx, cancel := context.WithCancel(bg)
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

// restart stops the daemon and opens it again on the same data directory and token.
func (a *appliance) restart() {
	a.stop()
	a.start()
}

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

func (a *appliance) code(phone string, purpose accounts.Purpose) string {
	a.t.Helper()
	code, err := accounts.LatestDevCode(a.cfg.Account.DevOutbox, phone, purpose)
	if err != nil {
		a.t.Fatal(err)
	}
	return code
}

// phone is a signed-in, identity-verified user on one device, with a keystore.
type phone struct {
	conn           *client.Conn
	ks             *keystore.Store
	number, device string
	token          string
}

// redial connects the phone again (after a restart the appliance listens on a new port).
func (a *appliance) redial(p *phone) {
	a.t.Helper()
	p.conn = a.dial(p.device)
	p.conn.SetAccessToken(p.token)
}

// newPhone registers number on device, verifies the identity and opens a keystore.
func (a *appliance) newPhone(number, device string) *phone {
	a.t.Helper()
	conn := a.dial(device)
	if _, err := conn.Accounts.SendSmsCode(bg, &hufuv1.SendSmsCodeRequest{Phone: number, Purpose: hufuv1.SmsPurpose_SMS_PURPOSE_SIGN_IN}); err != nil {
		a.t.Fatalf("send code: %v", err)
	}
	resp, err := conn.Accounts.SignInWithSmsCode(bg, &hufuv1.SignInWithSmsCodeRequest{
		Phone: number, Code: a.code(number, accounts.PurposeSignIn), Device: &hufuv1.Device{Id: device, Name: "test phone"},
	})
	if err != nil {
		a.t.Fatalf("sign in: %v", err)
	}
	conn.SetAccessToken(resp.Session.AccessToken)
	if _, err := conn.Identity.VerifyWithCfca(bg, &hufuv1.VerifyWithCfcaRequest{Name: "张三", IdNumber: "11010519491231002X"}); err != nil {
		a.t.Fatalf("verify identity: %v", err)
	}
	dir := a.t.TempDir()
	ks, err := keystore.Open(filepath.Join(dir, "keys"), filepath.Join(dir, "device.key"))
	if err != nil {
		a.t.Fatal(err)
	}
	return &phone{conn: conn, ks: ks, number: number, device: device, token: resp.Session.AccessToken}
}
