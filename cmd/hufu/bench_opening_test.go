package main

import (
	"bytes"
	"encoding/json"
	"os"
	"strconv"
	"strings"
	"testing"

	"github.com/hufu-hsm/hufu/daemon/daemontest"
)

// TestBenchOpening runs `hufu bench -op opening` small against an appliance: every bidder
// consents, every envelope is released with the key that was encrypted, and the report
// verifies. The figures themselves are not checked (design §6: no timed assertions).
func TestBenchOpening(t *testing.T) {
	d := daemontest.StartOnWallClock(t) // the default configuration allows the CLI certificate the desk, scans and openings
	var out, errOut bytes.Buffer
	args := []string{"-addr", d.Addr, "-daemon-dir", d.Config.DataDir, "-home", t.TempDir(),
		"bench", "-op", "opening", "-bidders", "3", "-envelopes", "2", "-concurrency", "2", "-accounts", "2", "-lead", "4s",
		"-pid", strconv.Itoa(os.Getpid())} // the daemon runs in this process
	if err := run(args, strings.NewReader(""), &out, &errOut); err != nil {
		t.Fatalf("bench: %s\n%s", describe(err), errOut.String())
	}
	var r openingBenchReport
	if err := json.Unmarshal(out.Bytes(), &r); err != nil {
		t.Fatalf("%v: %s", err, out.String())
	}
	if r.Errors != 0 || r.Envelopes != 6 || r.Accounts != 2 || r.Consent.Completed != 3 || r.Release.Released != 6 ||
		r.Release.Mismatches != 0 || r.Release.Missing != 0 || !r.Report.Verified || !r.Report.SHA256Matches ||
		r.Report.Consents != 3 || r.Report.Releases != 6 || r.Release.RawStepCPU <= 0 || r.Release.RSSAfterKB <= 0 {
		t.Fatalf("report:\n%s\n%s", out.String(), errOut.String())
	}
}

func TestParseProcMemory(t *testing.T) {
	for _, tc := range []struct {
		name     string
		status   string
		rss, hwm int64
		ok       bool
	}{
		{"both", "Name:\thufud\nVmHWM:\t  81234 kB\nVmRSS:\t   70000 kB\nThreads:\t9\n", 70000, 81234, true},
		{"no hwm", "VmRSS:\t 1 kB\n", 0, 0, false},
		{"not a number", "VmRSS:\t x kB\nVmHWM:\t 2 kB\n", 0, 0, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			rss, hwm, err := parseProcMemory([]byte(tc.status))
			if (err == nil) != tc.ok || rss != tc.rss || hwm != tc.hwm {
				t.Fatalf("got %d %d %v", rss, hwm, err)
			}
		})
	}
}

func TestParseHostCPU(t *testing.T) {
	stat := "cpu  100 20 30 4000 50 6 7 8 0 0\ncpu0 50 10 15 2000 25 3 3 4 0 0\n"
	if got := parseHostCPU([]byte(stat)); got != 1.71 { // (100+20+30+6+7+8) / 100
		t.Fatalf("got %v", got)
	}
	if got := parseHostCPU([]byte("intr 1 2 3\n")); got != 0 {
		t.Fatalf("got %v", got)
	}
}
