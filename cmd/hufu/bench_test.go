package main

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/hufu-hsm/hufu/daemon/config"
	"github.com/hufu-hsm/hufu/daemon/daemontest"
)

// TestBenchSweep runs `hufu bench -c 1,2` briefly against an appliance in this process, with a
// metrics token: one report per point, each with the daemon's CPU split, WAL syncs and
// allocations per item read from /metrics, the measured sync cost and the overhead derived
// from them. The figures are not checked against any time (design §6), only that they were
// measured.
func TestBenchSweep(t *testing.T) {
	const token = "hufu_admin_benchsweeptesttokenbenchsweeptesttoken0000"
	sum := sha256.Sum256([]byte(token))
	d := daemontest.StartOnWallClock(t, func(c *config.Config) {
		c.Admin.Tokens = append(c.Admin.Tokens, config.AdminToken{Name: "bench", Role: config.RoleMetricsReader, SHA256: hex.EncodeToString(sum[:])})
		c.Keys.TicketUses = 1 << 30
	})
	tokenFile := filepath.Join(t.TempDir(), "token")
	if err := os.WriteFile(tokenFile, []byte(token+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	out := filepath.Join(t.TempDir(), "sweep.json")
	var stdout, errOut bytes.Buffer
	args := []string{"-addr", d.Addr, "-daemon-dir", d.Config.DataDir, "-home", t.TempDir(),
		"bench", "-op", "sign", "-c", "1,2", "-d", "1s", "-conns", "1", "-pid", strconv.Itoa(os.Getpid()),
		"-admin-url", d.AdminURL(), "-token-file", tokenFile, "-json", out}
	if err := run(args, strings.NewReader(""), &stdout, &errOut); err != nil {
		t.Fatalf("bench: %s\n%s", describe(err), errOut.String())
	}
	raw, err := os.ReadFile(out)
	if err != nil {
		t.Fatal(err)
	}
	var reports []benchReport
	if err := json.Unmarshal(raw, &reports); err != nil {
		t.Fatalf("%v: %s", err, raw)
	}
	if len(reports) != 2 || reports[0].Concurrency != 1 || reports[1].Concurrency != 2 {
		t.Fatalf("want points at -c 1 and 2:\n%s", raw)
	}
	for _, r := range reports {
		if r.Errors != 0 || r.Items == 0 || r.DaemonCPUPerItem <= 0 || r.DaemonUserPerItem <= 0 || r.RawStepCPU <= 0 || r.RawStepAllCoresCPU <= 0 || r.RatioAllCores <= 0 ||
			r.SyncsPerItem <= 0 || r.AllocsPerItem <= 0 || r.SyncCPU <= 0 || r.OverheadPerItem == 0 {
			t.Fatalf("a point lacks a measurement:\n%s\n%s", raw, errOut.String())
		}
	}
	if !strings.Contains(stdout.String(), "overhead") || strings.Count(stdout.String(), "\nsign ") != 2 {
		t.Fatalf("the sweep's table:\n%s", stdout.String())
	}
}

// TestBenchHealthFloor runs `hufu bench -op health`: the daemon's CPU for a call that does no
// work and writes nothing, all of it overhead, with no raw step beside it.
func TestBenchHealthFloor(t *testing.T) {
	const token = "hufu_admin_benchfloortesttokenbenchfloortesttoken000000"
	sum := sha256.Sum256([]byte(token))
	d := daemontest.StartOnWallClock(t, func(c *config.Config) {
		c.Admin.Tokens = append(c.Admin.Tokens, config.AdminToken{Name: "bench", Role: config.RoleMetricsReader, SHA256: hex.EncodeToString(sum[:])})
	})
	tokenFile := filepath.Join(t.TempDir(), "token")
	if err := os.WriteFile(tokenFile, []byte(token+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	var stdout, errOut bytes.Buffer
	args := []string{"-addr", d.Addr, "-daemon-dir", d.Config.DataDir, "-home", t.TempDir(),
		"bench", "-op", "health", "-c", "2", "-d", "1s", "-conns", "1", "-pid", strconv.Itoa(os.Getpid()),
		"-admin-url", d.AdminURL(), "-token-file", tokenFile}
	if err := run(args, strings.NewReader(""), &stdout, &errOut); err != nil {
		t.Fatalf("bench: %s\n%s", describe(err), errOut.String())
	}
	var r benchReport
	if err := json.Unmarshal(stdout.Bytes(), &r); err != nil {
		t.Fatalf("%v: %s", err, stdout.String())
	}
	if r.Operation != "health" || r.Errors != 0 || r.Items == 0 || r.DaemonCPUPerItem <= 0 || r.AllocsPerItem <= 0 {
		t.Fatalf("a measurement is missing:\n%s\n%s", stdout.String(), errOut.String())
	}
	// The appliance's own background writes may sync now and then, never once per call.
	if r.RawStepCPU != 0 || r.Ratio != 0 || r.SyncsPerItem > 0.01 || r.OverheadPerItem < 0.9*r.DaemonCPUPerItem {
		t.Fatalf("a health check has no step and writes nothing: its CPU is all overhead:\n%s", stdout.String())
	}
}

// TestDerive: the ratios need a raw step, the overhead needs the syncs read from /metrics
// (without them it would leave the sync's cost in).
func TestDerive(t *testing.T) {
	for _, c := range []struct {
		name                   string
		r                      benchReport
		ratio, ratioAll, extra float64
	}{
		{"sign", benchReport{DaemonCPUPerItem: 300, RawStepCPU: 75, RawStepAllCoresCPU: 100, SyncCPU: 150, SyncsPerItem: 0.5, metrics: true}, 4, 3, 150},
		{"no /metrics", benchReport{DaemonCPUPerItem: 300, RawStepCPU: 75, SyncCPU: 150}, 4, 0, 0},
		{"health: no step", benchReport{DaemonCPUPerItem: 40, SyncCPU: 150, metrics: true}, 0, 0, 40},
		{"no CPU", benchReport{RawStepCPU: 75, SyncCPU: 150, metrics: true}, 0, 0, 0},
	} {
		c.r.derive()
		if c.r.Ratio != c.ratio || c.r.RatioAllCores != c.ratioAll || c.r.OverheadPerItem != c.extra {
			t.Errorf("%s: ratio %v, ratio·all %v, overhead %v; want %v, %v, %v", c.name, c.r.Ratio, c.r.RatioAllCores, c.r.OverheadPerItem, c.ratio, c.ratioAll, c.extra)
		}
	}
}

// TestPaceQueues: calls due while every worker is busy wait for one, up to concurrency of
// them, instead of being dropped as a time.Ticker drops its ticks (which held the half-rate
// point to three quarters of its rate).
func TestPaceQueues(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	tokens := pace(ctx, 100000, 8)
	for deadline := time.Now().Add(10 * time.Second); len(tokens) < 8; time.Sleep(time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatalf("%d calls queued for busy workers, want 8", len(tokens))
		}
	}
}

func TestParseConcurrencies(t *testing.T) {
	if got, err := parseConcurrencies("1, 4,16,64"); err != nil || len(got) != 4 || got[3] != 64 {
		t.Fatalf("got %v, %v", got, err)
	}
	for _, bad := range []string{"", "0", "1,,2", "x", "5000"} {
		if _, err := parseConcurrencies(bad); err == nil {
			t.Errorf("parseConcurrencies(%q) accepted", bad)
		}
	}
}
