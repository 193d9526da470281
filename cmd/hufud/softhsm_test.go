package main

import (
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// TestServeRefusesMissingSoftHSMTokenDir: a development appliance whose SoftHSM2 token
// directory has gone (a lost disk, a bad restore) must not start on a freshly created,
// empty token: serve exits with an error naming the directory, and creates nothing.
func TestServeRefusesMissingSoftHSMTokenDir(t *testing.T) {
	dir := t.TempDir()
	data := filepath.Join(dir, "data")
	args := []string{"-development", "-data_dir", data, "-listen.grpc", "127.0.0.1:0", "-admin.listen", "127.0.0.1:0", "-listen.pki", "127.0.0.1:0", "-log.format", "text"}
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	hufud := func(cmd string) *exec.Cmd {
		c := exec.CommandContext(ctx, os.Args[0], append([]string{cmd}, args...)...)
		c.Env = append(os.Environ(), "HUFUD_TEST_MAIN=1")
		return c
	}
	if out, err := hufud("init").CombinedOutput(); err != nil {
		t.Fatalf("hufud init: %v\n%s", err, out)
	}
	tokens := filepath.Join(data, "softhsm", "tokens")
	if err := os.RemoveAll(tokens); err != nil {
		t.Fatal(err)
	}
	out, err := hufud("serve").CombinedOutput()
	if ctx.Err() != nil {
		t.Fatalf("hufud serve did not exit: %s", out)
	}
	if err == nil {
		t.Fatalf("hufud serve started without its token directory:\n%s", out)
	}
	if !strings.Contains(string(out), tokens+" (directories.tokendir of ") || !strings.Contains(string(out), "does not exist") {
		t.Fatalf("hufud serve's error does not name the missing token directory %s:\n%s", tokens, out)
	}
	if _, err := os.Stat(tokens); !os.IsNotExist(err) {
		t.Fatalf("serve recreated %s (%v): it would hold a fresh, empty token", tokens, err)
	}
}
