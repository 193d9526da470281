package main

import (
	"bytes"
	"context"
	"errors"
	"io"
	"log/slog"
	"net"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/hufu-hsm/hufu/admin"
)

func TestSDNotify(t *testing.T) {
	for _, tc := range []struct{ name, addr, env string }{
		{"path", filepath.Join(t.TempDir(), "notify.sock"), ""},
		{"abstract", "\x00hufu-test-notify-" + t.Name(), "@hufu-test-notify-" + t.Name()},
	} {
		t.Run(tc.name, func(t *testing.T) {
			conn, err := net.ListenUnixgram("unixgram", &net.UnixAddr{Name: tc.addr, Net: "unixgram"})
			if err != nil {
				t.Fatal(err)
			}
			defer conn.Close()
			env := tc.env
			if env == "" {
				env = tc.addr
			}
			t.Setenv("NOTIFY_SOCKET", env)
			for _, state := range []string{"READY=1", "STOPPING=1"} {
				if err := sdNotify(state); err != nil {
					t.Fatal(err)
				}
				buf := make([]byte, 64)
				_ = conn.SetReadDeadline(time.Now().Add(5 * time.Second))
				n, err := conn.Read(buf)
				if err != nil || string(buf[:n]) != state {
					t.Fatalf("received %q, %v; want %q", buf[:n], err, state)
				}
			}
		})
	}
	t.Run("no socket", func(t *testing.T) {
		t.Setenv("NOTIFY_SOCKET", "")
		if err := sdNotify("READY=1"); err != nil {
			t.Fatalf("without NOTIFY_SOCKET: %v", err)
		}
	})
}

func TestAdminTokenPrintsATokenAndItsHash(t *testing.T) {
	var out, errOut bytes.Buffer
	if err := run([]string{"admin-token", "-role", "auditor", "-name", "alice"}, &out, &errOut); err != nil {
		t.Fatal(err, errOut.String())
	}
	var token, hash string
	for _, line := range strings.Split(out.String(), "\n") {
		line = strings.TrimSpace(line)
		if strings.HasPrefix(line, "hufu_admin_") {
			token = line
		}
		if h, ok := strings.CutPrefix(line, "sha256: "); ok {
			hash = h
		}
	}
	if token == "" || hash != admin.HashToken(token) || !strings.Contains(out.String(), "role: auditor") {
		t.Fatalf("output:\n%s", out.String())
	}
	for _, args := range [][]string{{"-role", "root", "-name", "a"}, {"-role", "auditor", "-name", "two words"}, {"-role", "auditor"}} {
		if err := run(append([]string{"admin-token"}, args...), &out, &errOut); err == nil {
			t.Errorf("admin-token %v: accepted", args)
		}
	}
}

// TestWatchdogFedOnlyWhileHealthy drives the watchdog with a fault-injecting fake health
// check (the daemon's real one needs an HSM that fails and comes back, which SoftHSM2
// cannot do): WATCHDOG=1 arrives while healthy, stops while not, and resumes.
func TestWatchdogFedOnlyWhileHealthy(t *testing.T) {
	sock := filepath.Join(t.TempDir(), "notify.sock")
	conn, err := net.ListenUnixgram("unixgram", &net.UnixAddr{Name: sock, Net: "unixgram"})
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	t.Setenv("NOTIFY_SOCKET", sock)
	t.Setenv("WATCHDOG_USEC", "40000") // fed every 20ms
	var down atomic.Bool
	check := func(context.Context) error {
		if down.Load() {
			return errors.New("injected: HSM unreachable")
		}
		return nil
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { watchdog(ctx, check, slog.New(slog.NewTextHandler(io.Discard, nil))); close(done) }()
	defer func() { cancel(); <-done }()

	read := func(wait time.Duration) (string, bool) {
		buf := make([]byte, 64)
		_ = conn.SetReadDeadline(time.Now().Add(wait))
		n, err := conn.Read(buf)
		return string(buf[:n]), err == nil
	}
	if got, ok := read(5 * time.Second); !ok || got != "WATCHDOG=1" {
		t.Fatalf("healthy: got %q, %v", got, ok)
	}
	down.Store(true)
	for { // drain what was sent before the fault
		if _, ok := read(100 * time.Millisecond); !ok {
			break
		}
	}
	if got, ok := read(200 * time.Millisecond); ok {
		t.Fatalf("unhealthy: the watchdog was fed (%q)", got)
	}
	down.Store(false)
	if got, ok := read(5 * time.Second); !ok || got != "WATCHDOG=1" {
		t.Fatalf("healthy again: got %q, %v", got, ok)
	}
}
