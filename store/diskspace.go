package store

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/cockroachdb/pebble/v2"
	"github.com/cockroachdb/pebble/v2/vfs"
)

// Disk full. What Pebble (v2.1.7) does when the filesystem runs out of space, found on a
// real 8 MiB tmpfs:
//
//   - a WAL write fails with ENOSPC at once; the store turns that into ErrFailed as for any
//     WAL error (fault_test.go), and the memtable that could not be logged can no longer be
//     trusted;
//   - its flushes and compactions fail and are retried immediately, with no backoff
//     ("TODO: count consecutive flush errors and backoff"): one core at 100% and one
//     "background error" log line per millisecond;
//   - pebble.Open replays the WAL into a memtable and waits for that memtable's flush,
//     which on a full disk is retried forever: Open never returns, and a process waiting
//     in it ignores SIGTERM.
//
// So the store keeps Pebble away from ENOSPC and contains it when it happens anyway:
//
//   - every write (Update, Append, checkpoints) first checks the free space and is refused
//     with ErrNoSpace below Options.MinFreeBytes, before it reaches Pebble: nothing changes
//     and nothing needs repair; Health reports the same, so the daemon goes not-ready;
//   - an ENOSPC that happens anyway (another process filled the disk between the check and
//     the write) fails the store with an error that wraps both ErrFailed and ErrNoSpace;
//     Recover closes Pebble and opens it again once space is back;
//   - Open and Recover refuse to open Pebble unless MinFreeBytes plus the size of the WAL
//     (what the first flush writes) is free; if ENOSPC still happens while Pebble opens,
//     or ctx ends, they return at once and leave the abandoned open to finish or spin
//     alone (hufud exits on that error);
//   - the filesystem under Pebble is wrapped with vfs.OnDiskFull: each ENOSPC pauses
//     writers for diskFullBackoff, which turns Pebble's flush retry loop from a spin into a
//     few attempts a second, and Pebble's background errors are logged at most once per
//     backgroundLogEvery with a count of those left out.

const (
	// diskFullBackoff is how long writers pause after each ENOSPC.
	diskFullBackoff = 250 * time.Millisecond
	// backgroundLogEvery bounds Pebble's background-error log lines.
	backgroundLogEvery = 10 * time.Second
	// spaceRecheck is how long a passing free-space measurement is trusted by the write
	// guard: statfs costs about 12 µs here, 7% of a WAL sync, too much for every commit.
	// A failing measurement is never reused, so writes resume as soon as space is back.
	spaceRecheck = 250 * time.Millisecond
)

// spaceWatch is the store's free-space guard and its handling of Pebble's ENOSPC.
type spaceWatch struct {
	inner vfs.FS // Options.FS: free space is measured on it
	fs    vfs.FS // inner wrapped with vfs.OnDiskFull: what Pebble writes through
	dir   string
	min   uint64
	log   *slog.Logger

	recheck time.Duration // spaceRecheck; tests set 0

	// noWALReuse makes Pebble's filesystem refuse to recycle a log file (CompactAll).
	noWALReuse atomic.Bool

	mu         sync.Mutex
	passedAt   time.Time     // of the last passing guard measurement
	full       chan struct{} // closed (and replaced) at each ENOSPC
	lastLog    time.Time     // of a background error
	suppressed int           // background errors not logged since lastLog
}

func newSpaceWatch(opts Options) *spaceWatch {
	w := &spaceWatch{inner: opts.FS, dir: opts.Dir, min: opts.MinFreeBytes, log: opts.Logger, full: make(chan struct{}), recheck: spaceRecheck}
	w.fs = vfs.OnDiskFull(privateFS{FS: opts.FS, noReuse: &w.noWALReuse}, w.onDiskFull)
	return w
}

// onDiskFull runs when a Pebble file operation fails with ENOSPC; the operation is retried
// once after it returns, and new writes wait for it.
func (w *spaceWatch) onDiskFull() {
	w.mu.Lock()
	close(w.full)
	w.full = make(chan struct{})
	w.mu.Unlock()
	time.Sleep(diskFullBackoff) // a backoff Pebble's retry loops lack, not a wait for a state
}

// fullSignal returns a channel closed at the next ENOSPC.
func (w *spaceWatch) fullSignal() <-chan struct{} {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.full
}

// backgroundError logs Pebble's background errors (failed flushes and compactions, which
// Pebble retries), at most one line per backgroundLogEvery.
func (w *spaceWatch) backgroundError(err error) {
	now := time.Now()
	w.mu.Lock()
	if !w.lastLog.IsZero() && now.Sub(w.lastLog) < backgroundLogEvery {
		w.suppressed++
		w.mu.Unlock()
		return
	}
	suppressed := w.suppressed
	w.lastLog, w.suppressed = now, 0
	w.mu.Unlock()
	w.log.Error("pebble background error", "component", "pebble", "err", err,
		"suppressed_since_last", suppressed, "rate_limit", backgroundLogEvery.String())
}

// check returns ErrNoSpace if less than MinFreeBytes+extra is free under the store.
func (w *spaceWatch) check(extra uint64) error {
	dir := w.dir
	// Before the first Open the directory may not exist yet: measure where it will be.
	for {
		if _, err := w.inner.Stat(dir); err == nil || filepath.Dir(dir) == dir {
			break
		}
		dir = filepath.Dir(dir)
	}
	u, err := w.inner.GetDiskUsage(dir)
	if errors.Is(err, vfs.ErrUnsupported) {
		return nil // an in-memory filesystem in tests: nothing to guard
	}
	if err != nil {
		return fmt.Errorf("store: free space under %s: %w", dir, err)
	}
	if need := w.min + extra; u.AvailBytes < need {
		return fmt.Errorf("%w: %d bytes free under %s, %d required", ErrNoSpace, u.AvailBytes, dir, need)
	}
	return nil
}

// walBytes is the size of Pebble's WAL files in the store's directory: roughly what
// opening has to flush before it returns.
func (w *spaceWatch) walBytes() uint64 {
	names, err := w.inner.List(w.dir)
	if err != nil {
		return 0 // a new store
	}
	var n uint64
	for _, name := range names {
		if !strings.HasSuffix(name, ".log") {
			continue
		}
		if fi, err := w.inner.Stat(w.inner.PathJoin(w.dir, name)); err == nil && fi.Size() > 0 {
			n += uint64(fi.Size())
		}
	}
	return n
}

// abandonedOpens counts the opens openPebble gave up on that are still running; tests
// wait for them before their directory is removed.
var abandonedOpens sync.WaitGroup

// checkSpace is the guard in front of every write.
func (s *Store) checkSpace() error { return s.space.guard() }

// guard is check(0) for the write path, reusing a passing measurement for recheck.
func (w *spaceWatch) guard() error {
	w.mu.Lock()
	fresh := !w.passedAt.IsZero() && time.Since(w.passedAt) < w.recheck
	w.mu.Unlock()
	if fresh {
		return nil
	}
	return w.measure()
}

// measure is check(0), remembered for guard: a failing measurement (by Health, say)
// makes the next write measure again.
func (w *spaceWatch) measure() error {
	err := w.check(0)
	w.mu.Lock()
	if err == nil {
		w.passedAt = time.Now()
	} else {
		w.passedAt = time.Time{}
	}
	w.mu.Unlock()
	return err
}

// markNoSpace makes an ENOSPC from Pebble also match ErrNoSpace.
func markNoSpace(err error) error {
	if err != nil && vfs.IsNoSpaceError(err) && !errors.Is(err, ErrNoSpace) {
		return fmt.Errorf("%w: %w", ErrNoSpace, err)
	}
	return err
}

// openPebble opens Pebble in the store's directory, refusing a disk too full to open on
// and giving up when ctx ends or the disk fills while Pebble opens (see the top of this
// file for why it cannot simply wait).
func (s *Store) openPebble(ctx context.Context) (*pebble.DB, error) {
	if err := s.space.check(s.space.walBytes()); err != nil {
		return nil, fmt.Errorf("store: open %s: %w", s.opts.Dir, err)
	}
	events := pebble.MakeLoggingEventListener(pebbleLogger{s.log})
	events.BackgroundError = s.space.backgroundError
	type opened struct {
		db  *pebble.DB
		err error
	}
	done := make(chan opened, 1)
	diskFull := s.space.fullSignal()
	go func() {
		cache := pebble.NewCache(s.opts.CacheSize)
		defer cache.Unref() // the DB holds its own reference
		db, err := pebble.Open(s.opts.Dir, &pebble.Options{
			FS:                 s.space.fs,
			Cache:              cache,
			Logger:             pebbleLogger{s.log},
			EventListener:      &events,
			FormatMajorVersion: pebble.FormatNewest,
			ErrorIfNotExists:   s.opts.MustExist,
		})
		done <- opened{db, err}
	}()
	var why error
	select {
	case r := <-done:
		if r.err != nil {
			return nil, fmt.Errorf("store: open %s: %w", s.opts.Dir, markNoSpace(r.err))
		}
		return r.db, nil
	case <-diskFull:
		why = fmt.Errorf("%w (while opening, Pebble flushes its log)", ErrNoSpace)
	case <-ctx.Done():
		why = ctx.Err()
	}
	// Abandoned: if Pebble ever finishes opening, close it again so the directory lock
	// is released for the next attempt.
	abandonedOpens.Add(1)
	go func() {
		defer abandonedOpens.Done()
		if r := <-done; r.err == nil {
			_ = r.db.Close()
		}
	}()
	return nil, fmt.Errorf("store: open %s: %w", s.opts.Dir, why)
}

// Health is the store's readiness: the failure that stopped it (see Failed), or
// ErrNoSpace while the free space is below Options.MinFreeBytes and writes are refused.
// Reads go on working in the second case.
func (s *Store) Health() error {
	if s.failed.Load() {
		return s.failedErr()
	}
	return s.space.measure()
}

// Recover brings a failed store back without restarting the process: it closes Pebble,
// and, once MinFreeBytes plus the WAL's size is free, opens it again, reloads the audit
// head and checkpoint state from what reached the disk and admits operations again. Of
// the operation whose commit failed, the WAL holds all or nothing (ErrFailed). It is a
// no-op on a healthy store; while space is still short it returns ErrNoSpace and may be
// called again. Operations wait while it runs.
func (s *Store) Recover(ctx context.Context) error {
	if !s.failed.Load() {
		return nil
	}
	s.ops.Lock()
	defer s.ops.Unlock()
	if s.closed {
		return ErrClosed
	}
	if !s.failed.Load() {
		return nil // another Recover got here first
	}
	if !s.dbClosed {
		// Closing also stops Pebble's retries of flushes that cannot succeed.
		if err := s.closeDB(); err != nil {
			s.log.Warn("store: closing after failure", "err", err)
		}
		s.dbClosed = true
	}
	db, err := s.openPebble(ctx)
	if err != nil {
		return fmt.Errorf("store: recover: %w", err)
	}
	// LastCheckpoint and Head do not enter: hold their locks while their state reloads.
	s.ckpt.mu <- struct{}{}
	s.auditMu.Lock()
	s.db = db
	// A transaction that ran while the store was failing may have cached a value of the
	// batch whose sync failed, which the reopened store may not hold. None runs now (ops).
	s.reads.clear()
	err = s.init(ctx)
	if err == nil {
		s.failErr = nil
		s.failed.Store(false)
	}
	s.auditMu.Unlock()
	<-s.ckpt.mu
	if err != nil {
		_ = db.Close()
		return fmt.Errorf("store: recover: %w", err)
	}
	s.dbClosed = false
	head, _ := s.Head()
	s.log.Info("store recovered: reopened, writes admitted again", "audit_head", head)
	return nil
}
