package daemon_test

import (
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/hufu-hsm/hufu/daemon/config"
)

// readAuditFile reads a file sink's JSON lines and checks they are records 1, 2, 3, ...
// with none twice; it returns their actions.
func readAuditFile(t *testing.T, path string) []string {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil && !os.IsNotExist(err) {
		t.Fatal(err)
	}
	var actions []string
	for i, line := range strings.Split(strings.TrimSuffix(string(b), "\n"), "\n") {
		if line == "" {
			continue
		}
		var r struct {
			Type   string `json:"type"`
			Seq    uint64 `json:"seq"`
			Action string `json:"action"`
			Hash   string `json:"hash"`
		}
		if err := json.Unmarshal([]byte(line), &r); err != nil {
			t.Fatalf("line %d: %v", i+1, err)
		}
		if r.Type != "record" || r.Seq != uint64(i+1) || len(r.Hash) != 64 {
			t.Fatalf("line %d is %s record %d; want record %d (no gap, nothing twice)", i+1, r.Type, r.Seq, i+1)
		}
		actions = append(actions, r.Action)
	}
	return actions
}

func waitForAction(t *testing.T, path, action string, after int) []string {
	t.Helper()
	deadline := time.Now().Add(20 * time.Second)
	for {
		actions := readAuditFile(t, path)
		for _, a := range actions[min(after, len(actions)):] {
			if a == action {
				return actions
			}
		}
		if time.Now().After(deadline) {
			t.Fatalf("no %s record after line %d; the file has %d", action, after, len(actions))
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// TestAuditFileSinkFollowsTheDaemonAcrossARestart: audit.sinks is wired into hufud: what the
// services audit reaches the file, and a restart of hufud resumes where it stopped.
func TestAuditFileSinkFollowsTheDaemonAcrossARestart(t *testing.T) {
	path := filepath.Join(t.TempDir(), "audit.jsonl")
	a := startAppliance(t, func(c *config.Config) {
		c.Audit.Sinks = []config.AuditSink{{Name: "archive", Kind: config.AuditSinkFile, Path: path,
			PollInterval: config.Duration(10 * time.Millisecond)}}
	})
	conn := a.dial("device-0001")
	a.signIn(conn, phone, "device-0001")
	before := waitForAction(t, path, "account.session.open", 0)

	a.restart()
	conn = a.dial("device-0002")
	a.signIn(conn, "13900139000", "device-0002")
	after := waitForAction(t, path, "account.session.open", len(before))
	if len(after) <= len(before) {
		t.Fatalf("nothing shipped after the restart")
	}
}
