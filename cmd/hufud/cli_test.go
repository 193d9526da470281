package main

import (
	"bytes"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/urfave/cli/v2"
)

// TestHelpEverywhere: -h and --help print a command's usage and succeed, for every command
// and subcommand, and need no configuration.
func TestHelpEverywhere(t *testing.T) {
	var paths [][]string
	var walk func(prefix []string, cmds []*cli.Command)
	walk = func(prefix []string, cmds []*cli.Command) {
		for _, c := range cmds {
			p := append(append([]string(nil), prefix...), c.Name)
			paths = append(paths, p)
			walk(p, c.Subcommands)
		}
	}
	walk(nil, newApp(nil, nil).Commands)
	paths = append(paths, nil)
	for _, p := range paths {
		for _, h := range []string{"-h", "--help"} {
			var out, errOut bytes.Buffer
			if err := run(append(append([]string(nil), p...), h), &out, &errOut); err != nil {
				t.Errorf("hufud %v %s: %v", p, h, err)
			}
			if !strings.Contains(out.String(), "USAGE") && !strings.Contains(out.String(), "NAME") {
				t.Errorf("hufud %v %s printed no usage:\n%s", p, h, out.String())
			}
		}
	}
	var out bytes.Buffer
	_ = run([]string{"serve", "-h"}, &out, &out)
	for _, want := range []string{"-listen.grpc", "HUFU_LISTEN_GRPC", "-development", "-config"} {
		if !strings.Contains(out.String(), want) {
			t.Errorf("serve -h lacks %q", want)
		}
	}
}

// TestExitCodes runs hufud as a child process: usage errors exit 2, a configuration serve
// would refuse 78 (the systemd unit's RestartPreventExitStatus), other failures 1.
func TestExitCodes(t *testing.T) {
	bad := filepath.Join(t.TempDir(), "bad.yaml")
	if err := os.WriteFile(bad, []byte("listen:\n  grcp: x\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	cases := []struct {
		name   string
		args   []string
		code   int
		stderr string
	}{
		{"no command", nil, 2, "a command is required"},
		{"unknown command", []string{"start"}, 2, `unknown command "start"`},
		{"unknown flag", []string{"validate", "-listen.grcp", "x"}, 2, "flag provided but not defined: -listen.grcp"},
		{"extra argument", []string{"validate", "now"}, 2, "takes no arguments"},
		{"config without show", []string{"config"}, 2, "show"},
		{"missing required flag", []string{"admin-token", "-role", "auditor"}, 2, "-name is required"},
		{"production defaults", []string{"validate"}, 78, "configuration is invalid"},
		{"production defaults served", []string{"serve"}, 78, "hsm.module: must be set outside development"},
		{"unparsable file", []string{"serve", "-config", bad}, 78, "line 2: listen.grcp: unknown key"},
		{"malformed flag value", []string{"validate", "-hsm.max_sessions", "lots"}, 78, "flag -hsm.max_sessions"},
		{"version", []string{"version"}, 0, ""},
		{"completion script", []string{"completion", "bash"}, 0, "complete -o bashdefault -o default -F _hufud_complete hufud"},
		{"completion of an unknown shell", []string{"completion", "fish"}, 2, `completion "fish": want bash or zsh`},
		{"completion candidates", []string{"--generate-bash-completion"}, 0, "validate\nconfig\nserve"},
		{"flag candidates", []string{"serve", "-", "--generate-bash-completion"}, 0, "--listen.grpc"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			cmd := exec.Command(os.Args[0], c.args...)
			cmd.Env = []string{"HUFUD_TEST_MAIN=1", "PATH=" + os.Getenv("PATH")}
			cmd.Dir = t.TempDir()
			var stdout, stderr bytes.Buffer
			cmd.Stdout, cmd.Stderr = &stdout, &stderr
			err := cmd.Run()
			code := 0
			if ee, ok := err.(*exec.ExitError); ok {
				code = ee.ExitCode()
			} else if err != nil {
				t.Fatal(err)
			}
			if code != c.code || !strings.Contains(stderr.String()+stdout.String(), c.stderr) {
				t.Fatalf("exit %d, want %d; output lacks %q?\nstdout:\n%s\nstderr:\n%s", code, c.code, c.stderr, stdout.String(), stderr.String())
			}
		})
	}
}
