package store

import (
	"context"
	"errors"
	"fmt"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"

	"github.com/cockroachdb/pebble/v2/vfs"
	"github.com/cockroachdb/pebble/v2/vfs/errorfs"

	"github.com/hufu-hsm/hufu/store/storepb"
)

// What Pebble (v2.1.7) does with I/O errors, and so what these tests can and cannot expect:
//
//   - WAL write and sync errors are not recoverable in process. The WAL's LogWriter keeps
//     the first error and fails every later sync with it; the batch whose sync failed is
//     already applied to the memtable; an error returned by the commit pipeline itself is
//     passed to Logger.Fatalf ("the commit pipeline will be horked"). The store therefore
//     turns the first such error into ErrFailed, refuses every later operation, and
//     recovers by Close + Open, which replays whatever reached the WAL: either the whole
//     batch (record + index + audit record) or none of it.
//   - Errors while writing sstables (flushes, compactions) are retried by Pebble in the
//     background and lose nothing; they are not visible to callers.
//   - Errors while writing a checkpoint directory (Store.Backup) are returned and Pebble
//     removes the partial directory; the store is unaffected.

// walFaults fails WAL operations of the selected kinds while on.
type walFaults struct {
	on    atomic.Bool
	hit   atomic.Int64
	match func(errorfs.OpKind) bool
}

func (w *walFaults) MaybeError(op errorfs.Op) error {
	if !w.on.Load() || !strings.HasSuffix(op.Path, ".log") || !w.match(op.Kind) {
		return nil
	}
	w.hit.Add(1)
	return errorfs.ErrInjected
}

func (w *walFaults) String() string { return "wal faults" }

func isSync(k errorfs.OpKind) bool {
	return k == errorfs.OpFileSync || k == errorfs.OpFileSyncData || k == errorfs.OpFileSyncTo
}

func TestWALFaultFailsClosedAndRecovers(t *testing.T) {
	tests := []struct {
		name  string
		match func(errorfs.OpKind) bool
	}{
		// Nothing of the batch reaches the file: after reopen it is absent.
		{"write and sync fail", func(k errorfs.OpKind) bool { return k.ReadOrWrite() == errorfs.OpIsWrite }},
		// The bytes reach the file (page cache) but fsync fails: after reopen the batch
		// is typically present. Either way it must be whole.
		{"only sync fails", isSync},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) { testWALFault(t, tt.match) })
	}
}

func testWALFault(t *testing.T, match func(errorfs.OpKind) bool) {
	ctx := context.Background()
	faults := &walFaults{match: match}
	fs := errorfs.Wrap(vfs.Default, faults)
	ts := openTest(t, func(o *Options) { o.FS = fs; o.CheckpointEvery = 2 })
	for i := range 5 {
		putExample(t, ts.Store, fmt.Sprintf("ok%d", i), &storepb.Example{Count: int64(i)})
	}
	headBefore, _ := ts.Head()

	faults.on.Store(true)
	err := ts.Update(ctx, func(tx *Tx) error {
		key, _ := examples.Key("doomed")
		if err := examples.Put(tx, "doomed", &storepb.Example{}); err != nil {
			return err
		}
		if err := tx.Claim("phone", "13900000000", key); err != nil {
			return err
		}
		return tx.Audit(Event{Action: "example.put", Subject: key, Outcome: OutcomeOK})
	})
	if !errors.Is(err, ErrFailed) || !errors.Is(err, errorfs.ErrInjected) {
		t.Fatalf("Update with failing WAL = %v; want ErrFailed wrapping the injected error", err)
	}
	if faults.hit.Load() == 0 {
		t.Fatal("no fault was injected")
	}
	if ts.Failed() == nil {
		t.Fatal("store not marked failed")
	}
	// Fail closed: nothing else goes through, reads included.
	if err := ts.Append(ctx, Event{Action: "a", Outcome: OutcomeOK}); !errors.Is(err, ErrFailed) {
		t.Fatalf("Append on failed store = %v", err)
	}
	if _, err := examples.Read(ctx, ts.Store, "ok1"); !errors.Is(err, ErrFailed) {
		t.Fatalf("Read on failed store = %v", err)
	}
	closeErr := ts.Close(ctx)
	t.Logf("Close after WAL failure: %v", closeErr)
	ts.Store = nil

	faults.on.Store(false)
	ts.Store = ts.open(t, func(o *Options) { o.FS = fs })
	for i := range 5 {
		if _, err := examples.Read(ctx, ts.Store, fmt.Sprintf("ok%d", i)); err != nil {
			t.Fatalf("acknowledged ok%d lost: %v", i, err)
		}
	}
	// All or nothing: the failed batch is either entirely there or entirely absent.
	_, recErr := examples.Read(ctx, ts.Store, "doomed")
	_, idxErr := ts.Lookup(ctx, "phone", "13900000000")
	head, _ := ts.Head()
	switch {
	case recErr == nil && idxErr == nil && head == headBefore+1:
		t.Log("failed batch reached the WAL before the fault: present, with its index entry and audit record")
	case errors.Is(recErr, ErrNotFound) && errors.Is(idxErr, ErrNotFound) && head == headBefore:
		t.Log("failed batch absent, with its index entry and audit record")
	default:
		t.Fatalf("partial state: record %v, index %v, head %d (was %d)", recErr, idxErr, head, headBefore)
	}
	putExample(t, ts.Store, "after", &storepb.Example{})
	if _, err := ts.Checkpoint(ctx); err != nil {
		t.Fatal(err)
	}
	if _, err := ts.VerifyAudit(ctx, ts.signer.PublicKey()); err != nil {
		t.Fatalf("chain after recovery: %v", err)
	}
}

// backupFaults fails writes under one directory (but lets Pebble clean it up).
type backupFaults struct{ dir string }

func (b backupFaults) MaybeError(op errorfs.Op) error {
	if strings.HasPrefix(op.Path, b.dir) && op.Kind.ReadOrWrite() == errorfs.OpIsWrite &&
		op.Kind != errorfs.OpMkdirAll && op.Kind != errorfs.OpRemove && op.Kind != errorfs.OpRemoveAll {
		return errorfs.ErrInjected
	}
	return nil
}

func (b backupFaults) String() string { return "backup faults" }

func TestBackupFaultLeavesNothing(t *testing.T) {
	ctx := context.Background()
	dest := filepath.Join(t.TempDir(), "backup")
	fs := errorfs.Wrap(vfs.Default, backupFaults{dir: dest})
	ts := openTest(t, func(o *Options) { o.FS = fs })
	putExample(t, ts.Store, "x", &storepb.Example{})
	err := ts.Backup(ctx, dest, "operator")
	if !errors.Is(err, errorfs.ErrInjected) {
		t.Fatalf("Backup = %v, want injected error", err)
	}
	if _, err := vfs.Default.Stat(dest); err == nil {
		t.Fatal("partial backup directory left behind")
	}
	// The store is fine, and its log records the attempt and the failure.
	putExample(t, ts.Store, "y", &storepb.Example{})
	head, _ := ts.Head()
	r, err := ts.AuditRecord(ctx, head-1)
	if err != nil || r.Action != "store.backup" || r.Outcome != OutcomeFailed {
		t.Fatalf("backup failure audit record: %+v %v", r, err)
	}
	if _, err := ts.Checkpoint(ctx); err != nil {
		t.Fatal(err)
	}
	if _, err := ts.VerifyAudit(ctx, ts.signer.PublicKey()); err != nil {
		t.Fatal(err)
	}
}
