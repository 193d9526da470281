package store

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	"os"
	"path/filepath"
	"testing"

	"github.com/hufu-hsm/hufu/store/storepb"
)

// filesHolding lists the files in dir whose bytes contain any 8-byte piece of needle:
// tables are compressed, and a compressor may replace part of a value by a reference to
// equal bytes elsewhere, so searching for the whole value could miss a copy.
func filesHolding(t *testing.T, dir string, needle []byte) []string {
	t.Helper()
	entries, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	var out []string
	for _, e := range entries {
		if !e.Type().IsRegular() {
			continue
		}
		b, err := os.ReadFile(filepath.Join(dir, e.Name()))
		if os.IsNotExist(err) {
			continue // deleted by Pebble meanwhile
		}
		if err != nil {
			t.Fatal(err)
		}
		for i := 0; i+8 <= len(needle); i++ {
			if bytes.Contains(b, needle[i:i+8]) {
				out = append(out, e.Name())
				break
			}
		}
	}
	return out
}

func randomSecret(t *testing.T) string {
	t.Helper()
	b := make([]byte, 24)
	if _, err := rand.Read(b); err != nil {
		t.Fatal(err)
	}
	return hex.EncodeToString(b)
}

// TestCompactAllLeavesNoDeletedValueInFiles: a value overwritten and one deleted, which sit
// in tables and in write-ahead logs (live and kept for recycling) before, are in no file of
// the store's directory after CompactAll, while a live value still is.
func TestCompactAllLeavesNoDeletedValueInFiles(t *testing.T) {
	ts := openTest(t)
	ctx := context.Background()
	overwritten, deleted, live := randomSecret(t), randomSecret(t), randomSecret(t)

	// The log open at Open is never recycled; the next ones are.
	if err := ts.db.Flush(); err != nil {
		t.Fatal(err)
	}
	putExample(t, ts.Store, "a", &storepb.Example{Name: overwritten})
	putExample(t, ts.Store, "b", &storepb.Example{Name: deleted})
	// Into a table, and the log that held them into the recycler.
	if err := ts.db.Flush(); err != nil {
		t.Fatal(err)
	}
	putExample(t, ts.Store, "a", &storepb.Example{Name: "replacement"})
	if err := ts.Update(ctx, func(tx *Tx) error {
		if err := examples.Delete(tx, "b"); err != nil {
			return err
		}
		return tx.Audit(Event{Actor: "test", Action: "example.delete", Subject: "b", Outcome: OutcomeOK})
	}); err != nil {
		t.Fatal(err)
	}
	putExample(t, ts.Store, "c", &storepb.Example{Name: live})
	if err := ts.db.Flush(); err != nil {
		t.Fatal(err)
	}
	// The test can fail: before CompactAll both old values are still on disk, in a table
	// and in a log kept for recycling.
	for _, v := range []string{overwritten, deleted} {
		t.Logf("before CompactAll: %v", filesHolding(t, ts.dir, []byte(v)))
		if len(filesHolding(t, ts.dir, []byte(v))) == 0 {
			t.Fatalf("before CompactAll no file holds %s: the test proves nothing", v[:10])
		}
	}

	if err := ts.CompactAll(ctx); err != nil {
		t.Fatalf("CompactAll: %v", err)
	}
	for _, v := range []string{overwritten, deleted} {
		if f := filesHolding(t, ts.dir, []byte(v)); len(f) > 0 {
			t.Errorf("after CompactAll a deleted value is still in %v", f)
		}
	}
	if len(filesHolding(t, ts.dir, []byte(live))) == 0 {
		t.Error("after CompactAll the live value is in no file")
	}
	if got, err := examples.Read(ctx, ts.Store, "c"); err != nil || got.Name != live {
		t.Errorf("live record after CompactAll: %v", err)
	}
	// Writes go on, and the store reopens with its data.
	putExample(t, ts.Store, "d", &storepb.Example{Name: "after"})
	ts.reopen(t)
	for _, v := range []string{overwritten, deleted} {
		if f := filesHolding(t, ts.dir, []byte(v)); len(f) > 0 {
			t.Errorf("after reopening a deleted value is in %v", f)
		}
	}
}
