package main

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/hufu-hsm/hufu/store"
)

// TestMain lets a test run this binary as hufud: with HUFUD_TEST_MAIN=1 the process is
// the daemon's main, not the test runner.
func TestMain(m *testing.M) {
	if os.Getenv("HUFUD_TEST_MAIN") == "1" {
		main()
		os.Exit(0)
	}
	if dir := os.Getenv("HUFUD_TEST_SERVE_THEN_OPEN"); dir != "" {
		serveThenOpen(dir)
	}
	os.Exit(m.Run())
}

// serveThenOpen is the child of TestServeExitsWhenAPortIsTaken: it runs hufud with its
// arguments in this process and, once run returns, opens the store serve used. Pebble
// refuses a second open of a store in one process, so the open succeeds only if serve
// closed the store before returning. It prints what it found and exits as hufud would.
func serveThenOpen(dataDir string) {
	err := run(os.Args[1:], os.Stdout, os.Stderr)
	if err != nil {
		fmt.Fprintln(os.Stderr, "hufud:", err)
	}
	st, oerr := store.Open(context.Background(), store.Options{Dir: filepath.Join(dataDir, "store")})
	if oerr != nil {
		fmt.Fprintln(os.Stderr, "store still held after serve returned:", oerr)
		os.Exit(3)
	}
	_ = st.Close(context.Background())
	fmt.Fprintln(os.Stderr, "store released")
	if err != nil {
		os.Exit(exitCode(err))
	}
	os.Exit(0)
}

// TestServeExitsWhenAPortIsTaken starts hufud serve with its gRPC, then its admin
// listener on a port another socket holds: serve must exit 1 within seconds, with a
// message naming the configuration key, the address and the cause, having closed the
// store (and the HSM) first.
func TestServeExitsWhenAPortIsTaken(t *testing.T) {
	dir := t.TempDir()
	data := filepath.Join(dir, "data")
	taken, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer taken.Close()
	busy := taken.Addr().String()
	common := []string{"-development", "-data_dir", data, "-log.format", "text"}
	init := exec.Command(os.Args[0], append([]string{"init"}, append(common, "-listen.grpc", "127.0.0.1:0", "-admin.listen", "127.0.0.1:0", "-listen.pki", "127.0.0.1:0")...)...)
	init.Env = append(os.Environ(), "HUFUD_TEST_MAIN=1")
	if out, err := init.CombinedOutput(); err != nil {
		t.Fatalf("hufud init: %v\n%s", err, out)
	}
	free := "127.0.0.1:0"
	for _, c := range []struct{ name, grpc, admin, pki, want string }{
		{"gRPC port taken", busy, free, free, "hufud: cannot listen: gRPC listener (listen.grpc " + busy + "): listen tcp " + busy + ": bind: address already in use"},
		{"admin port taken", free, busy, free, "hufud: cannot listen: admin listener (admin.listen " + busy + "): listen tcp " + busy + ": bind: address already in use"},
		{"PKI port taken", free, free, busy, "hufud: cannot listen: PKI listener (listen.pki " + busy + "): listen tcp " + busy + ": bind: address already in use"},
	} {
		t.Run(c.name, func(t *testing.T) {
			cmd := exec.Command(os.Args[0], append([]string{"serve"}, append(common, "-listen.grpc", c.grpc, "-admin.listen", c.admin, "-listen.pki", c.pki)...)...)
			cmd.Env = append(os.Environ(), "HUFUD_TEST_SERVE_THEN_OPEN="+data)
			var out bytes.Buffer
			cmd.Stdout, cmd.Stderr = &out, &out
			if err := cmd.Start(); err != nil {
				t.Fatal(err)
			}
			done := make(chan error, 1)
			go func() { done <- cmd.Wait() }()
			select {
			case err = <-done:
			case <-time.After(60 * time.Second):
				_ = cmd.Process.Kill()
				t.Fatalf("hufud serve still runs 60 s after failing to listen\n%s", out.String())
			}
			var exit *exec.ExitError
			if !errors.As(err, &exit) || exit.ExitCode() != exitFailure {
				t.Fatalf("hufud serve exited with %v, want exit code %d\n%s", err, exitFailure, out.String())
			}
			if !strings.Contains(out.String(), c.want) {
				t.Errorf("output lacks %q:\n%s", c.want, out.String())
			}
			if !strings.Contains(out.String(), "store released") {
				t.Errorf("serve returned with the store still open:\n%s", out.String())
			}
		})
	}
}

// TestServeNotifiesSystemd runs `hufud init` and `hufud serve` as child processes (a
// development appliance with its own SoftHSM2 token in a temporary data directory) under a
// fake systemd notification socket: serve must send READY=1 once it serves and STOPPING=1
// on SIGTERM, then exit 0.
func TestServeNotifiesSystemd(t *testing.T) {
	dir := t.TempDir()
	sock := filepath.Join(dir, "notify.sock")
	conn, err := net.ListenUnixgram("unixgram", &net.UnixAddr{Name: sock, Net: "unixgram"})
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	args := []string{"-development", "-data_dir", filepath.Join(dir, "data"), "-listen.grpc", "127.0.0.1:0", "-admin.listen", "127.0.0.1:0", "-listen.pki", "127.0.0.1:0", "-log.format", "text"}
	hufud := func(cmd string) *exec.Cmd {
		c := exec.Command(os.Args[0], append([]string{cmd}, args...)...)
		c.Env = append(os.Environ(), "HUFUD_TEST_MAIN=1", "NOTIFY_SOCKET="+sock)
		return c
	}
	if out, err := hufud("init").CombinedOutput(); err != nil {
		t.Fatalf("hufud init: %v\n%s", err, out)
	}
	serve := hufud("serve")
	logs, err := os.Create(filepath.Join(dir, "serve.log"))
	if err != nil {
		t.Fatal(err)
	}
	serve.Stdout, serve.Stderr = logs, logs
	if err := serve.Start(); err != nil {
		t.Fatal(err)
	}
	defer serve.Process.Kill()
	showLogs := func() string { b, _ := os.ReadFile(logs.Name()); return string(b) }
	expect := func(want string) {
		t.Helper()
		buf := make([]byte, 256)
		_ = conn.SetReadDeadline(time.Now().Add(60 * time.Second))
		n, err := conn.Read(buf)
		if err != nil || string(buf[:n]) != want {
			t.Fatalf("notification %q, %v; want %q\nlogs:\n%s", buf[:n], err, want, showLogs())
		}
	}
	expect("READY=1")
	// The process that serves started itself again, in place, with sysmon kept awake.
	environ, err := os.ReadFile(fmt.Sprintf("/proc/%d/environ", serve.Process.Pid))
	if err != nil || !slices.ContainsFunc(strings.Split(string(environ), "\x00"), func(kv string) bool {
		return strings.HasPrefix(kv, "GODEBUG=") && strings.HasSuffix(kv, sysmonGODEBUG)
	}) {
		t.Fatalf("the serving process's GODEBUG does not have %s (%v)\nlogs:\n%s", sysmonGODEBUG, err, showLogs())
	}
	if err := serve.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	expect("STOPPING=1")
	done := make(chan error, 1)
	go func() { done <- serve.Wait() }()
	select {
	case err := <-done:
		if err != nil {
			t.Fatalf("hufud serve exited with %v\nlogs:\n%s", err, showLogs())
		}
	case <-time.After(60 * time.Second):
		t.Fatalf("hufud serve does not stop after SIGTERM\nlogs:\n%s", showLogs())
	}
}
