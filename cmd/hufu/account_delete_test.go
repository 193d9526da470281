package main

import (
	"strings"
	"testing"

	"github.com/hufu-hsm/hufu/daemon/daemontest"
)

// TestAccountDelete: the CLI lists the preconditions that fail, asks for confirmation
// unless -yes, and after the deletion the local session is gone.
func TestAccountDelete(t *testing.T) {
	a := daemontest.StartOnWallClock(t)
	const phone = "13800138021"
	hufu := cliRunner(t, a, t.TempDir())
	step := func(args ...string) string {
		t.Helper()
		out, err := hufu(args...)
		if err != nil {
			t.Fatalf("hufu %v: %v\n%s", args, err, out)
		}
		return out
	}
	step("login", "-phone", phone)
	step("verify-identity", "cfca", "-name", "张三", "-id", "11010519491231002X")
	step("card", "bind", "-reserved-phone", phone, "-number", "6222020200112233446")

	out, err := hufu("account", "delete", "-phone", phone, "-yes")
	if err == nil || !strings.Contains(out, "bank_cards: unbind every bank card first") {
		t.Fatalf("delete with a bound card: %v\n%s", err, out)
	}
	list := step("card", "list")
	id, _, _ := strings.Cut(list, " ")
	step("card", "unbind", id)

	// No -yes and no answer on standard input: not confirmed, nothing deleted.
	if out, err := hufu("account", "delete", "-phone", phone); err == nil || !strings.Contains(err.Error(), "reading") && !strings.Contains(err.Error(), "not confirmed") {
		t.Fatalf("delete without confirmation: %v\n%s", err, out)
	}
	step("whoami")

	out = step("account", "delete", "-phone", phone, "-yes")
	if !strings.Contains(out, "account deleted") {
		t.Fatalf("delete: %s", out)
	}
	if out, err := hufu("whoami"); err == nil {
		t.Fatalf("whoami after deletion: %s", out)
	}
	if out := step("login", "-phone", phone); !strings.Contains(out, "registered and signed in") {
		t.Fatalf("the number does not register again: %s", out)
	}
}
