package main

import (
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"syscall"
	"testing"
	"time"
)

// TestMain lets a test run this binary as hufud: with HUFUD_TEST_MAIN=1 the process is
// the daemon's main, not the test runner.
func TestMain(m *testing.M) {
	if os.Getenv("HUFUD_TEST_MAIN") == "1" {
		main()
		os.Exit(0)
	}
	os.Exit(m.Run())
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
	args := []string{"-development", "-data_dir", filepath.Join(dir, "data"), "-listen.grpc", "127.0.0.1:0", "-admin.listen", "127.0.0.1:0", "-log.format", "text"}
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
