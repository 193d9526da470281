package completion

import (
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
)

// TestBashCompletion sources the script in a real bash and completes against a stand-in
// program that answers --generate-bash-completion as urfave/cli does, echoing what it was
// asked: the candidates reach COMPREPLY, filtered by the word at the cursor, and a flag at
// the cursor is passed on.
func TestBashCompletion(t *testing.T) {
	bash, err := exec.LookPath("bash")
	if err != nil {
		t.Skip("no bash")
	}
	dir := t.TempDir()
	prog := filepath.Join(dir, "demo-prog")
	stub := "#!/bin/sh\n" +
		`echo "$*" > "$(dirname "$0")/asked"` + "\n" +
		`case "$*" in *-*--generate-bash-completion) printf -- '--tls-key\n--addr\n';; *) printf 'key\nkeys\ncert\n';; esac` + "\n"
	if err := os.WriteFile(prog, []byte(stub), 0o755); err != nil {
		t.Fatal(err)
	}
	script, err := Script("bash", "demo-prog")
	if err != nil {
		t.Fatal(err)
	}
	complete := func(words ...string) (reply, asked string) {
		t.Helper()
		cmd := exec.Command(bash, "--norc", "-c", script+`
COMP_WORDS=("$@"); COMP_CWORD=$(( $# - 1 ))
_demo_prog_complete
printf '%s\n' "${COMPREPLY[@]}"`, "bash")
		cmd.Args = append(cmd.Args, words...)
		cmd.Env = append(os.Environ(), "PATH="+dir+":"+os.Getenv("PATH"))
		out, err := cmd.CombinedOutput()
		if err != nil {
			t.Fatalf("bash: %v\n%s", err, out)
		}
		a, _ := os.ReadFile(filepath.Join(dir, "asked"))
		return strings.TrimSpace(string(out)), strings.TrimSpace(string(a))
	}
	if reply, asked := complete("demo-prog", "ke"); reply != "key\nkeys" || asked != "--generate-bash-completion" {
		t.Errorf("completing a command: %q (asked %q)", reply, asked)
	}
	if reply, asked := complete("demo-prog", "key", "--t"); reply != "--tls-key" || asked != "key --t --generate-bash-completion" {
		t.Errorf("completing a flag: %q (asked %q)", reply, asked)
	}
}

func TestScripts(t *testing.T) {
	for _, shell := range Shells {
		s, err := Script(shell, "hufud")
		if err != nil || !strings.Contains(s, "--generate-bash-completion") || strings.Contains(s, "PROG") {
			t.Errorf("%s: %v\n%s", shell, err, s)
		}
	}
	if _, err := Script("fish", "hufu"); err == nil {
		t.Error("fish accepted")
	}
	if _, err := Script("bash", "hufu; rm -rf /"); err == nil {
		t.Error("a program name that is no name accepted")
	}
	if zsh, err := exec.LookPath("zsh"); err == nil {
		s, _ := Script("zsh", "hufu")
		if out, err := exec.Command(zsh, "-n", "-c", s).CombinedOutput(); err != nil {
			t.Errorf("zsh -n: %v\n%s", err, out)
		}
	}
	if out, err := exec.Command("bash", "-n", "-c", mustScript(t, "bash")).CombinedOutput(); err != nil {
		t.Errorf("bash -n: %v\n%s", err, out)
	}
}

func mustScript(t *testing.T, shell string) string {
	s, err := Script(shell, "hufu")
	if err != nil {
		t.Fatal(err)
	}
	return s
}
