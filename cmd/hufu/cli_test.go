package main

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"

	urfave "github.com/urfave/cli/v2"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
)

// walk calls f with the path of every command in the tree.
func walk(cmds []*urfave.Command, path []string, f func([]string)) {
	for _, c := range cmds {
		if c.Name == "help" {
			continue
		}
		p := append(append([]string(nil), path...), c.Name)
		f(p)
		walk(c.Subcommands, p, f)
	}
}

// TestHelpEverywhere: -h and --help exit 0 with the command's help, for every command in the
// tree, with no daemon, CA or state file.
func TestHelpEverywhere(t *testing.T) {
	home, noDaemon := t.TempDir(), t.TempDir()
	var paths [][]string
	walk((&cli{}).commands(), nil, func(p []string) { paths = append(paths, p) })
	if len(paths) < 90 {
		t.Fatalf("only %d commands in the tree", len(paths))
	}
	for _, p := range append(paths, nil) {
		for _, h := range []string{"-h", "--help"} {
			var out bytes.Buffer
			args := append(append([]string{"-addr", "127.0.0.1:1", "-daemon-dir", noDaemon, "-home", home}, p...), h)
			err := run(args, strings.NewReader(""), &out, &out)
			if err != nil || exitCode(err) != 0 {
				t.Errorf("hufu %s %s: %v", strings.Join(p, " "), h, err)
				continue
			}
			want := strings.TrimSpace("hufu " + strings.Join(p, " "))
			if !strings.Contains(out.String(), want) || !strings.Contains(out.String(), "USAGE:") {
				t.Errorf("hufu %s %s printed %q", strings.Join(p, " "), h, out.String())
			}
		}
	}
	if entries, _ := os.ReadDir(home); len(entries) != 0 {
		t.Errorf("help wrote %v into HOME", entries)
	}
}

// TestUsageErrors: unknown flags, unexpected arguments, missing arguments and unknown
// commands are usage errors (exit 2), before any connection.
func TestUsageErrors(t *testing.T) {
	home := t.TempDir()
	for _, args := range [][]string{
		{"-bogus"},
		{"bogus"},
		{"whoami", "-bogus"},
		{"whoami", "extra"},
		{"key", "list", "extra"},
		{"key", "show"},
		{"key", "show", "K", "-bogus"},
		{"key", "show", "A", "B"},
		{"key", "nope"},
		{"cert", "revoke", "S", "extra"},
		{"cert", "orders", "-nope"},
		{"enterprise", "show"},
		{"enterprise", "members", "A", "B"},
		{"seal", "authorise", "only-one"},
		{"opening", "show", "A", "B"},
		{"opening", "list", "-o", "yaml"},
		{"rp", "bindings", "extra"},
		{"scan", "bindings", "extra"},
		{"audit", "verify", "-nope"},
		{"verify", "extra"},
		{"help", "bogus"},
		{"completion"},
		{"completion", "fish"},
		{"version", "extra"},
		{"-cert", "c.pem", "review", "list"},
		{"-key", "k.pem", "review", "list"},
	} {
		var out bytes.Buffer
		err := run(append([]string{"-addr", "127.0.0.1:1", "-daemon-dir", t.TempDir(), "-home", home}, args...), strings.NewReader(""), &out, &out)
		if code := exitCode(err); code != exitUsage {
			t.Errorf("hufu %s: exit %d (%v), want %d", strings.Join(args, " "), code, err, exitUsage)
		}
	}
}

func TestExitCodes(t *testing.T) {
	for _, c := range []struct {
		err  error
		want int
	}{
		{nil, 0},
		{errors.New("disk full"), 1},
		{usagef("bad"), 2},
		{fmt.Errorf("client: open key: %w", status.Error(codes.Unauthenticated, "x")), 3},
		{status.Error(codes.PermissionDenied, "x"), 3},
		{status.Error(codes.NotFound, "x"), 4},
		{status.Error(codes.FailedPrecondition, "x"), 5},
		{status.Error(codes.AlreadyExists, "x"), 5},
		{status.Error(codes.Aborted, "x"), 5},
		{status.Error(codes.Unavailable, "x"), 6},
		{status.Error(codes.DeadlineExceeded, "x"), 6},
		{status.Error(codes.ResourceExhausted, "x"), 6},
		{status.Error(codes.InvalidArgument, "x"), 7},
		{status.Error(codes.OutOfRange, "x"), 7},
		{status.Error(codes.Internal, "x"), 1},
	} {
		if got := exitCode(c.err); got != c.want {
			t.Errorf("exitCode(%v) = %d, want %d", c.err, got, c.want)
		}
	}
}

// TestCompletion: the scripts, and the candidates urfave prints for them.
func TestCompletion(t *testing.T) {
	for shell, want := range map[string]string{"bash": "complete -o bashdefault", "zsh": "#compdef hufu"} {
		var out bytes.Buffer
		if err := run([]string{"completion", shell}, strings.NewReader(""), &out, &out); err != nil || !strings.Contains(out.String(), want) ||
			!strings.Contains(out.String(), "--generate-bash-completion") {
			t.Fatalf("completion %s: %v\n%s", shell, err, out.String())
		}
	}
	saved := os.Args
	defer func() { os.Args = saved }()
	os.Args = []string{"hufu"} // urfave reads the word being completed from os.Args
	var out bytes.Buffer
	if err := run([]string{"key", "--generate-bash-completion"}, strings.NewReader(""), &out, &out); err != nil ||
		!strings.Contains(out.String(), "refresh") || !strings.Contains(out.String(), "show") {
		t.Fatalf("key completion: %v\n%s", err, out.String())
	}
}

// TestOutputJSON: -o json (and --output json) print the response as JSON, for read commands
// against the daemon.
func TestOutputJSON(t *testing.T) {
	addr, dataDir := startDaemon(t)
	home := t.TempDir()
	hufu := func(args ...string) string {
		t.Helper()
		var out, errOut bytes.Buffer
		if err := run(append([]string{"-addr", addr, "-daemon-dir", dataDir, "-home", home}, args...), strings.NewReader(""), &out, &errOut); err != nil {
			t.Fatalf("hufu %s: %s\n%s", strings.Join(args, " "), describe(err), errOut.String())
		}
		return out.String()
	}
	hufu("login", "-phone", "13800138001")
	hufu("verify-identity", "cfca", "-name", "张三", "-id", "11010519491231002X")
	t.Setenv("HUFU_PIN", "135790")
	hufu("key", "new", "-pin", "135790")
	for _, args := range [][]string{
		{"whoami", "-o", "json"},
		{"whoami", "--output", "json"},
		{"platform", "list", "-o", "json"},
		{"platform", "current", "-o", "json"},
		{"key", "list", "-o", "json"},
		{"cert", "orders", "-o", "json"},
		{"cert", "list", "-o", "json"},
		{"cert", "messages", "-o", "json"},
		{"enterprise", "list", "-o", "json"},
		{"enterprise", "transfers", "-o", "json"},
		{"seal", "list", "-o", "json"},
		{"scan", "bindings", "-o", "json"},
	} {
		out := hufu(args...)
		var v map[string]any
		if err := json.Unmarshal([]byte(out), &v); err != nil {
			t.Errorf("hufu %s: not JSON: %v\n%s", strings.Join(args, " "), err, out)
		}
	}
	// A system client's read commands.
	sys := []string{"-tls-cert", filepath.Join(dataDir, "tls", "cli.pem"), "-tls-key", filepath.Join(dataDir, "tls", "cli-key.pem")}
	for _, args := range [][]string{
		{"review", "list", "-o", "json"},
		{"reconcile", "list", "-o", "json"},
		{"rp", "bindings", "-o", "json"},
		{"opening", "list", "-o", "json"},
	} {
		out := hufu(append(sys, args...)...)
		var v map[string]any
		if err := json.Unmarshal([]byte(out), &v); err != nil {
			t.Errorf("hufu %s: not JSON: %v\n%s", strings.Join(args, " "), err, out)
		}
	}
	out := hufu("whoami", "-o", "json")
	if !strings.Contains(out, `"phone_masked"`) {
		t.Errorf("whoami -o json: want proto field names, got %s", out)
	}
	var keys struct {
		Keys []struct {
			ID string `json:"id"`
		} `json:"keys"`
	}
	if err := json.Unmarshal([]byte(hufu("key", "list", "-o", "json")), &keys); err != nil || len(keys.Keys) != 1 {
		t.Fatalf("key list -o json: %v %+v", err, keys)
	}
	for _, args := range [][]string{{"key", "show", keys.Keys[0].ID, "-o", "json"}, {"usage", "-key", keys.Keys[0].ID, "-o", "json"}} {
		var v map[string]any
		if err := json.Unmarshal([]byte(hufu(args...)), &v); err != nil {
			t.Errorf("hufu %s: not JSON: %v", strings.Join(args, " "), err)
		}
	}

	// HUFU_CERT and HUFU_KEY, the variables of the flags before -tls-cert and -tls-key, are
	// honoured with a warning.
	t.Setenv("HUFU_CERT", filepath.Join(dataDir, "tls", "cli.pem"))
	t.Setenv("HUFU_KEY", filepath.Join(dataDir, "tls", "cli-key.pem"))
	var stdout, stderr bytes.Buffer
	if err := run([]string{"-addr", addr, "-daemon-dir", dataDir, "-home", home, "review", "list"}, strings.NewReader(""), &stdout, &stderr); err != nil ||
		!strings.Contains(stderr.String(), "HUFU_KEY is deprecated: rename it HUFU_TLS_KEY") {
		t.Fatalf("review list with HUFU_CERT, HUFU_KEY: %v\n%s", err, stderr.String())
	}
}

// TestBatchFailedKeepsTheCommonCode: a batch whose failures share a gRPC code exits as one
// such failure would; mixed or local failures exit 1.
func TestBatchFailedKeepsTheCommonCode(t *testing.T) {
	pre := status.Error(codes.FailedPrecondition, "opens at …")
	cases := []struct {
		errs []error
		want int
	}{
		{[]error{pre}, exitConflict},
		{[]error{nil, pre, pre}, exitConflict},
		{[]error{pre, status.Error(codes.Unavailable, "x")}, exitError},
		{[]error{errors.New("local")}, exitError},
	}
	for i, c := range cases {
		err := batchFailed("n of m files not decrypted", c.errs)
		if got := exitCode(err); got != c.want {
			t.Errorf("case %d: exit %d, want %d (%v)", i, got, c.want, err)
		}
		if describe(err) != "n of m files not decrypted" && !strings.HasSuffix(describe(err), ": n of m files not decrypted") {
			t.Errorf("case %d: %q", i, describe(err))
		}
	}
}
