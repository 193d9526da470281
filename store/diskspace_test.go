package store

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/cockroachdb/pebble/v2/vfs"
	"github.com/cockroachdb/pebble/v2/vfs/errorfs"
	"golang.org/x/sys/unix"

	"github.com/hufu-hsm/hufu/store/storepb"
)

// Each disk-full test runs twice: on a real 8 MiB tmpfs (root only, where mount is
// permitted; CI runs as root), and on the fault-injecting filesystem below, which reports
// the free space the test sets and fails WAL and sstable writes with ENOSPC while "full".

// fullDisk is a filesystem the test can fill and free.
type fullDisk interface {
	// dir is where the store lives.
	dir() string
	// fs is what the store writes through.
	fs() vfs.FS
	// fill leaves about leave bytes free.
	fill(t *testing.T, leave uint64)
	// free undoes fill.
	free(t *testing.T)
}

// tmpfsDisk is a real, small tmpfs: ENOSPC and statfs are the kernel's.
type tmpfsDisk struct {
	mount  string
	filler string
}

func newTmpfsDisk(t *testing.T) *tmpfsDisk {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Skip("a real full disk needs root to mount a small tmpfs; the fault-injection variant runs instead")
	}
	mnt := filepath.Join(t.TempDir(), "fs")
	if err := os.Mkdir(mnt, 0o700); err != nil {
		t.Fatal(err)
	}
	if out, err := exec.Command("mount", "-t", "tmpfs", "-o", "size=8m,mode=0700", "tmpfs", mnt).CombinedOutput(); err != nil {
		t.Skipf("mount not permitted here (%v: %s); the fault-injection variant runs instead", err, strings.TrimSpace(string(out)))
	}
	t.Cleanup(func() {
		if out, err := exec.Command("umount", mnt).CombinedOutput(); err != nil {
			t.Errorf("umount %s: %v: %s", mnt, err, out)
		}
	})
	return &tmpfsDisk{mount: mnt, filler: filepath.Join(mnt, "filler")}
}

func (d *tmpfsDisk) dir() string { return filepath.Join(d.mount, "store") }
func (d *tmpfsDisk) fs() vfs.FS  { return vfs.Default }

func (d *tmpfsDisk) fill(t *testing.T, leave uint64) {
	t.Helper()
	var st unix.Statfs_t
	if err := unix.Statfs(d.mount, &st); err != nil {
		t.Fatal(err)
	}
	avail := st.Bavail * uint64(st.Bsize)
	if avail <= leave {
		return
	}
	f, err := os.OpenFile(d.filler, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o600)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	chunk := make([]byte, 64<<10)
	for n := avail - leave; n > 0; {
		c := chunk[:min(n, uint64(len(chunk)))]
		if _, err := f.Write(c); err != nil {
			if errors.Is(err, syscall.ENOSPC) {
				return
			}
			t.Fatal(err)
		}
		n -= uint64(len(c))
	}
}

func (d *tmpfsDisk) free(t *testing.T) {
	t.Helper()
	if err := os.Remove(d.filler); err != nil {
		t.Fatal(err)
	}
}

// injectedDisk is the fault-injecting fake: a real directory whose reported free space
// the test sets, and whose WAL and sstable writes fail with ENOSPC while it is "full".
type injectedDisk struct {
	root   string
	avail  atomic.Uint64
	enospc atomic.Bool
	inner  *errorfs.FS
}

func newInjectedDisk(t *testing.T) *injectedDisk {
	d := &injectedDisk{root: t.TempDir()}
	d.avail.Store(1 << 40)
	d.inner = errorfs.Wrap(vfs.Default, d)
	return d
}

// MaybeError is the errorfs injector: ENOSPC for writes to Pebble's data files.
func (d *injectedDisk) MaybeError(op errorfs.Op) error {
	if !d.enospc.Load() || op.Kind.ReadOrWrite() != errorfs.OpIsWrite {
		return nil
	}
	if !strings.HasSuffix(op.Path, ".log") && !strings.HasSuffix(op.Path, ".sst") {
		return nil
	}
	return &os.PathError{Op: "write", Path: op.Path, Err: syscall.ENOSPC}
}

func (d *injectedDisk) String() string { return "injected ENOSPC" }

type injectedDiskFS struct {
	vfs.FS
	d *injectedDisk
}

func (f injectedDiskFS) GetDiskUsage(string) (vfs.DiskUsage, error) {
	a := f.d.avail.Load()
	return vfs.DiskUsage{AvailBytes: a, TotalBytes: 8 << 20, UsedBytes: 0}, nil
}

func (d *injectedDisk) dir() string { return filepath.Join(d.root, "store") }
func (d *injectedDisk) fs() vfs.FS  { return injectedDiskFS{FS: d.inner, d: d} }
func (d *injectedDisk) fill(_ *testing.T, leave uint64) {
	d.avail.Store(leave)
	d.enospc.Store(true)
}
func (d *injectedDisk) free(*testing.T) {
	d.enospc.Store(false)
	d.avail.Store(1 << 40)
}

// forEachDisk runs fn on the real tmpfs (when permitted) and on the injected fake.
func forEachDisk(t *testing.T, fn func(t *testing.T, disk fullDisk)) {
	t.Run("tmpfs", func(t *testing.T) { fn(t, newTmpfsDisk(t)) })
	t.Run("injected", func(t *testing.T) { fn(t, newInjectedDisk(t)) })
}

const testMinFree = 1 << 20

func openOnDisk(t *testing.T, disk fullDisk, minFree uint64) *testStore {
	t.Helper()
	ts := &testStore{clock: newFakeClock(), signer: newKeySigner(t), dir: disk.dir()}
	ts.Store = ts.open(t, func(o *Options) { o.FS = disk.fs(); o.MinFreeBytes = minFree; o.CheckpointEvery = 4 })
	ts.space.recheck = 0 // the test fills the disk between writes: measure before each
	t.Cleanup(func() {
		if ts.Store != nil {
			_ = ts.Store.Close(context.Background())
		}
	})
	return ts
}

// putBlob writes an incompressible record of about size bytes, audited.
func putBlob(ctx context.Context, s *Store, id string, size int) error {
	raw := make([]byte, size/2)
	_, _ = rand.Read(raw)
	return s.Update(ctx, func(tx *Tx) error {
		if err := examples.Put(tx, id, &storepb.Example{Name: hex.EncodeToString(raw)}); err != nil {
			return err
		}
		return tx.Audit(Event{Action: "example.put", Subject: "u/" + id, Outcome: OutcomeOK})
	})
}

func verifyChain(t *testing.T, ts *testStore) {
	t.Helper()
	if _, err := ts.Checkpoint(context.Background()); err != nil {
		t.Fatalf("checkpoint: %v", err)
	}
	if _, err := ts.VerifyAudit(context.Background(), ts.signer.PublicKey()); err != nil {
		t.Fatalf("audit chain: %v", err)
	}
}

// TestDiskFullGuardRefusesWritesAndRecovers: below MinFreeBytes a write is refused before
// it reaches Pebble; reads and health keep answering, and writes resume when space is
// freed, with nothing to repair.
func TestDiskFullGuardRefusesWritesAndRecovers(t *testing.T) {
	forEachDisk(t, func(t *testing.T, disk fullDisk) {
		ctx := context.Background()
		ts := openOnDisk(t, disk, testMinFree)
		for i := range 3 {
			if err := putBlob(ctx, ts.Store, fmt.Sprintf("before%d", i), 4<<10); err != nil {
				t.Fatal(err)
			}
		}
		disk.fill(t, testMinFree/2)

		start := time.Now()
		err := putBlob(ctx, ts.Store, "refused", 4<<10)
		if !errors.Is(err, ErrNoSpace) || errors.Is(err, ErrFailed) {
			t.Fatalf("write on a full disk = %v; want ErrNoSpace without ErrFailed", err)
		}
		if d := time.Since(start); d > 2*time.Second {
			t.Fatalf("write on a full disk took %v to fail; want under 2s", d)
		}
		if err := ts.Append(ctx, Event{Action: "a", Outcome: OutcomeOK}); !errors.Is(err, ErrNoSpace) {
			t.Fatalf("Append on a full disk = %v; want ErrNoSpace", err)
		}
		if err := ts.Health(); !errors.Is(err, ErrNoSpace) {
			t.Fatalf("Health on a full disk = %v; want ErrNoSpace", err)
		}
		if ts.Failed() != nil {
			t.Fatalf("store failed although the guard refused the write first: %v", ts.Failed())
		}
		if _, err := examples.Read(ctx, ts.Store, "before1"); err != nil {
			t.Fatalf("read on a full disk: %v", err)
		}

		disk.free(t)
		if err := ts.Health(); err != nil {
			t.Fatalf("Health after freeing space = %v", err)
		}
		if err := putBlob(ctx, ts.Store, "after", 4<<10); err != nil {
			t.Fatalf("write after freeing space: %v", err)
		}
		if _, err := examples.Read(ctx, ts.Store, "refused"); !errors.Is(err, ErrNoSpace) && !errors.Is(err, ErrNotFound) {
			t.Fatalf("refused record: %v; want not found", err)
		}
		verifyChain(t, ts)
	})
}

// TestENOSPCPastTheGuardFailsAndRecovers: when the WAL write itself hits ENOSPC (the disk
// filled between the guard and the write), the store fails with ErrNoSpace and ErrFailed,
// Recover refuses at once while the disk is full instead of hanging in Pebble's open, and
// brings the store back, its audit chain intact, once space is freed.
func TestENOSPCPastTheGuardFailsAndRecovers(t *testing.T) {
	forEachDisk(t, func(t *testing.T, disk fullDisk) {
		ctx := context.Background()
		// A guard of one page: the writes below outgrow the free space with the guard's
		// consent, so their WAL write meets the real ENOSPC.
		const minFree = 4 << 10
		ts := openOnDisk(t, disk, minFree)
		for i := range 3 {
			if err := putBlob(ctx, ts.Store, fmt.Sprintf("before%d", i), 4<<10); err != nil {
				t.Fatal(err)
			}
		}
		disk.fill(t, 256<<10)
		// Records stay under Pebble's first memtable (256 KiB): a larger batch makes Pebble
		// rotate its WAL, and a rotation whose close of the old WAL meets ENOSPC panics
		// inside Pebble with its mutex released, a fatal error nobody can recover from.
		// On tmpfs the WAL's preallocated extent absorbs the first records.
		var (
			err        error
			headBefore uint64
			doomed     string
			elapsed    time.Duration
		)
		for i := 0; err == nil && i < 400; i++ {
			headBefore, _ = ts.Head()
			doomed = fmt.Sprintf("doomed%d", i)
			start := time.Now()
			err = putBlob(ctx, ts.Store, doomed, 48<<10)
			elapsed = time.Since(start)
		}
		if !errors.Is(err, ErrNoSpace) || !errors.Is(err, ErrFailed) {
			t.Fatalf("write past the guard = %v; want ErrNoSpace and ErrFailed", err)
		}
		if elapsed > 2*time.Second {
			t.Fatalf("write took %v to fail; want under 2s", elapsed)
		}
		if err := ts.Health(); !errors.Is(err, ErrNoSpace) {
			t.Fatalf("Health after ENOSPC = %v; want ErrNoSpace", err)
		}

		disk.fill(t, 0)
		start := time.Now()
		if err := ts.Recover(ctx); !errors.Is(err, ErrNoSpace) {
			t.Fatalf("Recover on a full disk = %v; want ErrNoSpace", err)
		}
		if d := time.Since(start); d > 2*time.Second {
			t.Fatalf("Recover on a full disk took %v; want a prompt refusal", d)
		}
		if err := putBlob(ctx, ts.Store, "still-full", 1<<10); !errors.Is(err, ErrFailed) {
			t.Fatalf("write before recovery = %v; want ErrFailed", err)
		}

		disk.free(t)
		if err := ts.Recover(ctx); err != nil {
			t.Fatalf("Recover after freeing space: %v", err)
		}
		if err := ts.Health(); err != nil {
			t.Fatalf("Health after recovery = %v", err)
		}
		for i := range 3 {
			if _, err := examples.Read(ctx, ts.Store, fmt.Sprintf("before%d", i)); err != nil {
				t.Fatalf("acknowledged before%d lost: %v", i, err)
			}
		}
		_, recErr := examples.Read(ctx, ts.Store, doomed)
		head, _ := ts.Head()
		switch {
		case recErr == nil && head == headBefore+1:
		case errors.Is(recErr, ErrNotFound) && head == headBefore:
		default:
			t.Fatalf("partial state after recovery: record %v, head %d (was %d)", recErr, head, headBefore)
		}
		if err := putBlob(ctx, ts.Store, "after", 4<<10); err != nil {
			t.Fatalf("write after recovery: %v", err)
		}
		verifyChain(t, ts)
	})
}

// TestOpenOnFullDiskFailsFast: a start on a full disk returns ErrNoSpace at once (Pebble
// alone would wait forever for its first flush), and the same store opens, intact, once
// space is freed.
func TestOpenOnFullDiskFailsFast(t *testing.T) {
	forEachDisk(t, func(t *testing.T, disk fullDisk) {
		ctx := context.Background()
		ts := openOnDisk(t, disk, testMinFree)
		for i := range 3 {
			if err := putBlob(ctx, ts.Store, fmt.Sprintf("before%d", i), 16<<10); err != nil {
				t.Fatal(err)
			}
		}
		if err := ts.Close(ctx); err != nil {
			t.Fatal(err)
		}
		ts.Store = nil
		disk.fill(t, testMinFree/2)

		start := time.Now()
		s, err := Open(ctx, ts.options(func(o *Options) { o.FS = disk.fs(); o.MinFreeBytes = testMinFree }))
		if err == nil {
			_ = s.Close(ctx)
		}
		if !errors.Is(err, ErrNoSpace) || !strings.Contains(err.Error(), "no space left on device") {
			t.Fatalf("Open on a full disk = %v; want ErrNoSpace", err)
		}
		if d := time.Since(start); d > 2*time.Second {
			t.Fatalf("Open on a full disk took %v; want a prompt refusal", d)
		}

		disk.free(t)
		ts.Store = ts.open(t, func(o *Options) { o.FS = disk.fs(); o.MinFreeBytes = testMinFree })
		for i := range 3 {
			if _, err := examples.Read(ctx, ts.Store, fmt.Sprintf("before%d", i)); err != nil {
				t.Fatalf("before%d after reopening: %v", i, err)
			}
		}
		verifyChain(t, ts)
	})
}

// TestOpenGivesUpWhenContextEnds: an open that Pebble cannot finish (ENOSPC while it
// flushes the WAL it replayed) returns when ctx ends, so SIGTERM stops a starting hufud.
// Fault injection only: the guard keeps a real disk from getting there.
func TestOpenGivesUpWhenContextEnds(t *testing.T) {
	disk := newInjectedDisk(t)
	ctx := context.Background()
	ts := openOnDisk(t, disk, testMinFree)
	if err := putBlob(ctx, ts.Store, "unflushed", 16<<10); err != nil {
		t.Fatal(err)
	}
	if err := ts.Close(ctx); err != nil {
		t.Fatal(err)
	}
	ts.Store = nil
	disk.enospc.Store(true) // free space reported as plenty, yet every data write fails
	t.Cleanup(func() {
		// The abandoned open finishes once the disk works, and closes what it opened.
		disk.enospc.Store(false)
		abandonedOpens.Wait()
	})

	openCtx, cancel := context.WithCancel(ctx)
	cancel()
	_, err := Open(openCtx, ts.options(func(o *Options) { o.FS = disk.fs(); o.MinFreeBytes = testMinFree }))
	if !errors.Is(err, context.Canceled) && !errors.Is(err, ErrNoSpace) {
		t.Fatalf("Open with ENOSPC in its flush and a cancelled ctx = %v; want context.Canceled or ErrNoSpace", err)
	}
}

// TestBackgroundErrorsAreRateLimited: Pebble retries a failing flush without pause; its
// background errors reach the log once per backgroundLogEvery, not once per retry.
func TestBackgroundErrorsAreRateLimited(t *testing.T) {
	var buf strings.Builder
	w := newSpaceWatch(Options{Dir: t.TempDir(), FS: vfs.Default, Logger: slog.New(slog.NewTextHandler(&buf, nil))})
	injected := &os.PathError{Op: "write", Path: "000009.sst", Err: syscall.ENOSPC}
	for range 1000 {
		w.backgroundError(injected)
	}
	if n := strings.Count(buf.String(), "pebble background error"); n != 1 {
		t.Fatalf("1000 background errors in a burst logged %d lines; want 1:\n%s", n, buf.String())
	}
	w.mu.Lock()
	suppressed := w.suppressed
	w.lastLog = w.lastLog.Add(-backgroundLogEvery) // the next window (no sleeping in tests)
	w.mu.Unlock()
	if suppressed != 999 {
		t.Fatalf("suppressed = %d; want 999", suppressed)
	}
	w.backgroundError(injected)
	if !strings.Contains(buf.String(), "suppressed_since_last=999") {
		t.Fatalf("the next window's line does not count the 999 left out:\n%s", buf.String())
	}
}
