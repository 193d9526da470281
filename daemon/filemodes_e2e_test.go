package daemon_test

import (
	"io/fs"
	"net/http"
	"os"
	"path/filepath"
	"syscall"
	"testing"

	"github.com/hufu-hsm/hufu/admin"
	"github.com/hufu-hsm/hufu/daemon/config"
)

// TestDataDirIsPrivate runs an appliance under umask 022 (hufud itself sets 077; the
// daemon must not depend on it) in a data directory made 0755 beforehand, as systemd's
// StateDirectory= or mkdir would: after init, calls that write, a checkpoint, a backup and
// a stop, every directory under it is 0700 and every file 0600.
func TestDataDirIsPrivate(t *testing.T) {
	old := syscall.Umask(0o022)
	t.Cleanup(func() { syscall.Umask(old) })
	dataDir := filepath.Join(t.TempDir(), "hufu")
	if err := os.Mkdir(dataDir, 0o755); err != nil {
		t.Fatal(err)
	}
	a := startAdminAppliance(t, func(c *config.Config) { c.DataDir = dataDir })
	conn, userID := a.verifiedUser(phone, "device-0001")
	createKey(t, conn, userID, "key-modes-1", "123456")
	if code, body := a.call("POST", "/backup", admin.SecurityOfficer); code != http.StatusOK || len(body) == 0 {
		t.Fatalf("backup: %d (%d bytes)", code, len(body))
	}
	a.export()
	a.stop()

	files := 0
	err := filepath.WalkDir(dataDir, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		info, err := d.Info()
		if err != nil {
			return err
		}
		want := fs.FileMode(0o600)
		if d.IsDir() {
			want = 0o700
		} else {
			files++
		}
		if got := info.Mode().Perm(); got != want {
			t.Errorf("%s: mode %v, want %v", p, got, want)
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	if files < 5 {
		t.Fatalf("only %d files under %s: the appliance wrote less than expected", files, dataDir)
	}
}
