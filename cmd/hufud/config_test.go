package main

import (
	"bytes"
	"os"
	"os/exec"
	"path/filepath"
	"reflect"
	"strings"
	"testing"

	"github.com/hufu-hsm/hufu/daemon/config"
)

// TestConfigShow runs `hufud config show` as a child process with a file, a flag and
// environment variables: the output is the effective configuration (flag over environment
// over file over defaults, as config.Load applies them), it parses back strictly, the
// admin token hash is redacted, and an unknown HUFU_* variable is warned about by name,
// with the key it is probably a typo of, never by value.
func TestConfigShow(t *testing.T) {
	const hash = "9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08"
	file := filepath.Join(t.TempDir(), "hufu.yaml")
	doc := "log:\n  level: warn\n  format: text\nhsm:\n  pin_file: /etc/hufu/hsm.pin\n" +
		"platforms:\n  - {id: p1, name: P1, region: \"110000\"}\n" +
		"admin:\n  tokens:\n    - {name: ops, role: operator, sha256: " + hash + "}\n"
	if err := os.WriteFile(file, []byte(doc), 0o600); err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(os.Args[0], "config", "show", "-development", "-config", file, "-log.level", "debug", "-hsm.max_sessions", "4")
	cmd.Env = []string{"HUFUD_TEST_MAIN=1", "PATH=" + os.Getenv("PATH"),
		"HUFU_LOG_LEVEL=error", "HUFU_LISTEN_GRCP=typo-value-1", "HUFU_NOT_A_KEY=secret-value-2", "HUFU_HOME=/home/x"}
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	if err := cmd.Run(); err != nil {
		t.Fatalf("hufud config show: %v\n%s", err, stderr.String())
	}
	var shown config.Config
	if err := shown.Parse(bytes.NewReader(stdout.Bytes())); err != nil {
		t.Fatalf("output does not parse strictly: %v\n%s", err, stdout.String())
	}
	checks := []struct {
		name      string
		got, want any
	}{
		{"flag over environment over file", shown.Log.Level, "debug"},
		{"flag over default", shown.HSM.MaxSessions, 4},
		{"file over default", shown.Log.Format, "text"},
		{"default", shown.HSM.TokenLabel, "hufu"},
		{"path to a secret shown", shown.HSM.PINFile, "/etc/hufu/hsm.pin"},
		{"token hash redacted", shown.Admin.Tokens[0].SHA256, config.Redacted},
		{"token name shown", shown.Admin.Tokens[0].Name, "ops"},
	}
	for _, ch := range checks {
		if !reflect.DeepEqual(ch.got, ch.want) {
			t.Errorf("%s: got %v, want %v", ch.name, ch.got, ch.want)
		}
	}
	if strings.Contains(stdout.String(), hash) {
		t.Errorf("the token hash is shown:\n%s", stdout.String())
	}
	warnings := stderr.String()
	for _, want := range []string{"HUFU_LISTEN_GRCP", "did you mean HUFU_LISTEN_GRPC?", "HUFU_NOT_A_KEY"} {
		if !strings.Contains(warnings, want) {
			t.Errorf("stderr lacks %q:\n%s", want, warnings)
		}
	}
	for _, never := range []string{"typo-value-1", "secret-value-2", "HUFU_HOME", "HUFU_LOG_LEVEL"} {
		if strings.Contains(warnings, never) {
			t.Errorf("stderr mentions %q:\n%s", never, warnings)
		}
	}
	if n := strings.Count(warnings, "\n"); n != 2 {
		t.Errorf("%d lines on stderr, want 2 (one per unknown variable):\n%s", n, warnings)
	}
}

// TestConfigShowUsage: "hufud config" needs its subcommand.
func TestConfigShowUsage(t *testing.T) {
	var out, errOut bytes.Buffer
	for _, args := range [][]string{{"config"}, {"config", "print"}} {
		if err := run(args, &out, &errOut); err == nil || !strings.Contains(err.Error(), "show") {
			t.Errorf("hufud %v: %v", args, err)
		}
	}
}
