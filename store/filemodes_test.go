package store

import (
	"context"
	"io/fs"
	"os"
	"path/filepath"
	"syscall"
	"testing"

	"github.com/hufu-hsm/hufu/store/storepb"
)

// wantPrivateTree fails unless every directory under root (root included) is 0700 and
// every file 0600.
func wantPrivateTree(t *testing.T, root string) {
	t.Helper()
	files := 0
	err := filepath.WalkDir(root, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		info, err := d.Info()
		if err != nil {
			return err
		}
		want := privateFileMode
		if d.IsDir() {
			want = privateDirMode
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
	if files == 0 {
		t.Fatalf("no files under %s", root)
	}
}

// TestStoreFilesArePrivate: under the usual umask 022, the store directory, Pebble's
// files and a backup are 0700 directories of 0600 files; a store written by an older build
// with wider modes is tightened when opened.
func TestStoreFilesArePrivate(t *testing.T) {
	old := syscall.Umask(0o022) // what a shell or an unconfigured service would give
	t.Cleanup(func() { syscall.Umask(old) })
	ctx := context.Background()
	ts := &testStore{clock: newFakeClock(), signer: newKeySigner(t), dir: filepath.Join(t.TempDir(), "data", "store")}
	ts.Store = ts.open(t)
	for i := range 20 {
		putExample(t, ts.Store, string(rune('a'+i)), &storepb.Example{Count: int64(i)})
	}
	if _, err := ts.Checkpoint(ctx); err != nil {
		t.Fatal(err)
	}
	backup := filepath.Join(t.TempDir(), "backup")
	if err := ts.Backup(ctx, backup, "test"); err != nil {
		t.Fatal(err)
	}
	if err := ts.Close(ctx); err != nil {
		t.Fatal(err)
	}
	ts.Store = nil
	wantPrivateTree(t, ts.dir)
	wantPrivateTree(t, backup)

	// An older build's store: 0755 and 0644.
	if err := os.Chmod(ts.dir, 0o755); err != nil {
		t.Fatal(err)
	}
	names, _ := filepath.Glob(filepath.Join(ts.dir, "*"))
	for _, n := range names {
		if err := os.Chmod(n, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	ts.Store = ts.open(t)
	wantPrivateTree(t, ts.dir)
	if err := ts.Close(ctx); err != nil {
		t.Fatal(err)
	}
	ts.Store = nil
}
