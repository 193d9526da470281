package daemon_test

import (
	"bytes"
	"context"
	"errors"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"

	"github.com/hufu-hsm/hufu/daemon"
	"github.com/hufu-hsm/hufu/daemon/config"
	"github.com/hufu-hsm/hufu/hsm"
	"github.com/hufu-hsm/hufu/store"
)

// TestRestoredStoreIsRefusedUntilAcknowledged: the HSM's audit anchor follows the signed
// checkpoints; a store put back from an older copy is refused at start (real SoftHSM2,
// real Pebble) until the operator's acknowledgement, which the log then shows, and the
// log still verifies.
func TestRestoredStoreIsRefusedUntilAcknowledged(t *testing.T) {
	a := startAdminAppliance(t, nil)
	ctx := context.Background()
	storeDir := filepath.Join(a.cfg.DataDir, "store")

	// A cold copy of the store (the daemon stopped): the "backup".
	a.stop()
	backup := filepath.Join(t.TempDir(), "store")
	copyDir(t, storeDir, backup)
	a.start()
	conn, userID := a.verifiedUser(phone, "device-0001")
	createKey(t, conn, userID, "key-restore-1", "123456")
	a.stop() // the final checkpoint raises the anchor past the copy

	if err := os.RemoveAll(storeDir); err != nil {
		t.Fatal(err)
	}
	copyDir(t, backup, storeDir)
	var logged bytes.Buffer
	_, err := daemon.Open(ctx, a.cfg, daemon.Options{Clock: a.clock, Log: slog.New(slog.NewTextHandler(&logged, nil))})
	var m *store.AnchorMismatch
	if !errors.Is(err, daemon.ErrRestoredStore) || !errors.Is(err, store.ErrBehindAnchor) || !errors.As(err, &m) {
		t.Fatalf("a restored store opened: %v", err)
	}
	if !bytes.Contains(logged.Bytes(), []byte("hufud acknowledge-restore")) {
		t.Fatalf("the log does not say what to do:\n%s", logged.Bytes())
	}

	ack, err := daemon.AcknowledgeRestore(ctx, a.cfg, "operator:olga")
	if err != nil {
		t.Fatal(err)
	}
	if !ack.Needed || ack.StoreHead != m.StoreHead || ack.AnchorSize != m.AnchorSize || ack.Record != m.StoreHead+1 || ack.Anchor != ack.Record {
		t.Fatalf("acknowledgement %+v after mismatch %+v", ack, m)
	}
	again, err := daemon.AcknowledgeRestore(ctx, a.cfg, "operator:olga")
	if err != nil || again.Needed {
		t.Fatalf("a second acknowledgement: %+v, %v; want nothing to do", again, err)
	}

	a.start()
	res, err := store.VerifyExport(bytes.NewReader(a.export()), a.auditKey())
	if err != nil {
		t.Fatalf("the acknowledged log does not verify: %v", err)
	}
	if res.VerifiedThrough != res.To {
		t.Fatalf("verified through %d of %d", res.VerifiedThrough, res.To)
	}
	var found bool
	for _, r := range records(t, a.export()) {
		if r["action"] == "store.restore.acknowledge" {
			d := r["details"].(map[string]any)
			want := "restored from backup at record " + strconv.FormatUint(m.StoreHead, 10) + " (HSM anchor was " + strconv.FormatUint(m.AnchorSize, 10) + ")"
			if r["actor"] != "operator:olga" || d["note"] != want || r["seq"].(float64) != float64(ack.Record) {
				t.Fatalf("acknowledgement record %v; want note %q", r, want)
			}
			found = true
		}
	}
	if !found {
		t.Fatal("no store.restore.acknowledge record in the log")
	}
}

// TestAnchorBehindTheStoreIsCaughtUp: a crash between signing a checkpoint and raising the
// anchor leaves the anchor behind the store (made here by putting back an older anchor, on
// the real token); the next start must not refuse, and raises the anchor to the store's
// newest checkpoint.
func TestAnchorBehindTheStoreIsCaughtUp(t *testing.T) {
	a := startAdminAppliance(t, nil)
	ctx := context.Background()
	a.stop()
	older := readAnchor(t, a.cfg)
	a.start()
	conn, userID := a.verifiedUser(phone, "device-0001")
	createKey(t, conn, userID, "key-anchor-1", "123456")
	a.stop()
	newer := readAnchor(t, a.cfg)
	if newer.Size <= older.Size {
		t.Fatalf("the anchor did not follow the checkpoints: %d then %d", older.Size, newer.Size)
	}
	kr, err := hsm.Open(ctx, hsm.Config{ModulePath: a.cfg.HSM.Module, TokenLabel: a.cfg.HSM.TokenLabel, PINFile: a.cfg.HSM.PINFile})
	if err != nil {
		t.Fatal(err)
	}
	if err := kr.ResetAuditAnchor(ctx, older.Size, older.Head); err != nil {
		t.Fatal(err)
	}
	kr.Close()

	a.start() // fails the test if refused
	var starts []map[string]any
	for _, r := range records(t, a.export()) {
		if r["action"] == "daemon.start" {
			starts = append(starts, r["details"].(map[string]any))
		}
	}
	if len(starts) != 3 || starts[2]["audit_anchor"] != strconv.FormatUint(newer.Size, 10) {
		t.Fatalf("start records %v: the last should report the anchor caught up to %d", starts, newer.Size)
	}
	// hufud init made the store and its anchor: even the first start found one.
	if _, ok := starts[0]["audit_anchor_created"]; ok {
		t.Fatalf("the first start created the anchor that init should have: %v", starts[0])
	}
}

func readAnchor(t *testing.T, cfg config.Config) hsm.AuditAnchor {
	t.Helper()
	kr, err := hsm.Open(context.Background(), hsm.Config{ModulePath: cfg.HSM.Module, TokenLabel: cfg.HSM.TokenLabel, PINFile: cfg.HSM.PINFile})
	if err != nil {
		t.Fatal(err)
	}
	defer kr.Close()
	anchor, found, err := kr.AuditAnchor(context.Background())
	if err != nil || !found {
		t.Fatalf("audit anchor: found %v, %v", found, err)
	}
	return anchor
}

// TestLifecycleIsAudited: start, clean stop and a SIGHUP reload are audit records; the
// reload names the configuration keys that changed, never their values.
func TestLifecycleIsAudited(t *testing.T) {
	a := startAdminAppliance(t, nil)
	next := a.cfg
	next.Log.Level = "debug"
	next.Admin.Tokens = append([]config.AdminToken(nil), next.Admin.Tokens...)
	next.Admin.Tokens[0].SHA256 = strings.Repeat("5a", 32)
	if err := a.d.Reload(context.Background(), &next, nil); err != nil {
		t.Fatal(err)
	}
	a.restart()
	var actions []string
	var reload, start map[string]any
	for _, r := range records(t, a.export()) {
		switch r["action"] {
		case "daemon.start", "daemon.stop", "daemon.reload":
			actions = append(actions, r["action"].(string))
			if r["actor"] != "hufud" {
				t.Fatalf("record %v: actor is not hufud", r)
			}
		}
		switch r["action"] {
		case "daemon.reload":
			reload = r["details"].(map[string]any)
		case "daemon.start":
			start = r["details"].(map[string]any)
		}
	}
	if want := "[daemon.start daemon.reload daemon.stop daemon.start]"; "["+strings.Join(actions, " ")+"]" != want {
		t.Fatalf("lifecycle records %v, want %s", actions, want)
	}
	if reload["config_changed"] != "log.level,admin.tokens" || reload["tls"] != "reloaded" {
		t.Fatalf("reload details %v", reload)
	}
	if bytes.Contains(a.export(), []byte(strings.Repeat("5a", 32))) {
		t.Fatal("a token hash reached the audit log")
	}
	if _, ok := start["audit_anchor_created"]; ok {
		t.Fatalf("the second start created the anchor again: %v", start)
	}
	if start["config_admin_tokens"] == nil || !bytes.Contains([]byte(start["config_admin_tokens"].(string)), []byte("alice:auditor")) {
		t.Fatalf("start details %v: no configured admin tokens", start)
	}
}

func copyDir(t *testing.T, from, to string) {
	t.Helper()
	err := filepath.WalkDir(from, func(p string, e os.DirEntry, err error) error {
		if err != nil {
			return err
		}
		rel, _ := filepath.Rel(from, p)
		dst := filepath.Join(to, rel)
		if e.IsDir() {
			return os.MkdirAll(dst, 0o700)
		}
		in, err := os.Open(p)
		if err != nil {
			return err
		}
		defer in.Close()
		out, err := os.OpenFile(dst, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o600)
		if err != nil {
			return err
		}
		if _, err := io.Copy(out, in); err != nil {
			out.Close()
			return err
		}
		return out.Close()
	})
	if err != nil {
		t.Fatal(err)
	}
}
