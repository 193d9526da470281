package store

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"sync/atomic"
	"time"

	"github.com/cockroachdb/pebble/v2"
	"google.golang.org/protobuf/proto"

	"github.com/hufu-hsm/hufu/store/storepb"
)

// Store is an open hufu database. All methods are safe for concurrent use.
type Store struct {
	opts  Options
	db    *pebble.DB
	clock Clock
	log   *slog.Logger
	locks *lockTable
	// reads caches records read under their locks (readcache.go).
	reads *lockedReads
	// created: this Open made the store (there was none in the directory).
	created bool
	// createdAt is when the store was created (m/meta; zero for a store that predates it).
	createdAt time.Time

	// ops is held shared by every operation and exclusively by Close, so Close waits for
	// operations in flight and nothing starts after it.
	ops    sync.RWMutex
	closed bool // under ops

	// auditMu serialises audit appends: sequence assignment, chaining and the hand-off of
	// the batch to Pebble's commit pipeline (not the fsync, which is awaited outside it).
	auditMu  sync.Mutex
	headSeq  uint64
	headHash [hashSize]byte
	// durableSeq is the last audit record known to be synced to the WAL: readers that
	// ship records out of the process read no further (audit_stream.go).
	durableSeq atomic.Uint64
	failErr    error // first commit-pipeline failure; sticky

	failed atomic.Bool // mirrors failErr != nil for lock-free checks

	ckpt ckptState

	// space is the free-space guard and Pebble's disk-full handling (diskspace.go).
	space *spaceWatch
	// dbClosed: Recover closed db after a failure and has not opened it again. Under ops.
	dbClosed bool
}

// pebbleLogger routes Pebble's messages to slog. Pebble calls Fatalf when its commit
// pipeline cannot continue; a library must not exit the process, so it panics and the
// commit path turns that into ErrFailed.
type pebbleLogger struct{ l *slog.Logger }

func (p pebbleLogger) Infof(format string, args ...any) {
	p.l.Debug(fmt.Sprintf(format, args...), "component", "pebble")
}

func (p pebbleLogger) Errorf(format string, args ...any) {
	p.l.Error(fmt.Sprintf(format, args...), "component", "pebble")
}

func (p pebbleLogger) Fatalf(format string, args ...any) {
	msg := fmt.Sprintf(format, args...)
	p.l.Error(msg, "component", "pebble", "fatal", true)
	panic(fmt.Errorf("pebble fatal: %s", msg))
}

// Open opens (creating if needed) the store in opts.Dir. On a disk with less free space
// than opts.MinFreeBytes (plus what Pebble must flush from its WAL) it returns ErrNoSpace
// at once, and it gives up when ctx ends: Pebble itself would retry its first flush on a
// full disk forever.
func Open(ctx context.Context, opts Options) (*Store, error) {
	opts, err := opts.withDefaults()
	if err != nil {
		return nil, err
	}
	s := &Store{
		opts:  opts,
		clock: opts.Clock,
		log:   opts.Logger,
		locks: newLockTable(),
		reads: newLockedReads(defaultLockedReadBytes),
	}
	s.space = newSpaceWatch(opts)
	if s.db, err = s.openPebble(ctx); err != nil {
		return nil, err
	}
	if err := tightenModes(opts.Dir); err != nil {
		_ = s.db.Close()
		return nil, fmt.Errorf("store: making %s private (0700, files 0600): %w", opts.Dir, err)
	}
	if err := s.init(ctx); err != nil {
		_ = s.db.Close()
		return nil, err
	}
	return s, nil
}

// Created reports whether this Open made the store: the directory held none.
func (s *Store) Created() bool { return s.created }

// CreatedAt is when the store was created, by its clock (zero if it does not know).
func (s *Store) CreatedAt() time.Time { return s.createdAt }

func (s *Store) init(ctx context.Context) error {
	var meta storepb.StoreMeta
	v, closer, err := s.db.Get([]byte(metaKey))
	switch {
	case errors.Is(err, pebble.ErrNotFound):
		meta.SchemaVersion = SchemaVersion
		meta.CreatedUnixNano = s.clock.Now().UnixNano()
		b, err := proto.Marshal(&meta)
		if err != nil {
			return fmt.Errorf("store: marshal meta: %w", err)
		}
		if err := s.db.Set([]byte(metaKey), b, pebble.Sync); err != nil {
			return fmt.Errorf("store: write meta: %w", err)
		}
		s.created = true
	case err != nil:
		return fmt.Errorf("store: read meta: %w", err)
	default:
		err := proto.Unmarshal(v, &meta)
		_ = closer.Close()
		if err != nil {
			return fmt.Errorf("%w: meta: %v", ErrCorrupt, err)
		}
		if meta.SchemaVersion > SchemaVersion {
			return fmt.Errorf("%w: store has %d, this build knows %d", ErrSchema, meta.SchemaVersion, SchemaVersion)
		}
	}
	if meta.CreatedUnixNano != 0 {
		s.createdAt = time.Unix(0, meta.CreatedUnixNano).UTC()
	}
	if err := s.loadHead(); err != nil {
		return err
	}
	return s.loadCheckpointState(ctx)
}

// enter admits one operation; leave must follow. A failed store admits nothing: its
// memtable may hold a batch whose sync failed, and nobody may read or build on that.
func (s *Store) enter() error {
	s.ops.RLock()
	if s.closed {
		s.ops.RUnlock()
		return ErrClosed
	}
	if s.failed.Load() {
		s.ops.RUnlock()
		return s.failedErr()
	}
	return nil
}

func (s *Store) leave() { s.ops.RUnlock() }

// Close waits for operations in flight, writes a final checkpoint if records are
// uncovered and a signer is configured, and closes Pebble.
func (s *Store) Close(ctx context.Context) error {
	s.ops.Lock()
	defer s.ops.Unlock()
	if s.closed {
		return ErrClosed
	}
	s.closed = true
	var ckErr error
	if s.opts.Signer != nil && !s.failed.Load() {
		if _, err := s.checkpoint(ctx); err != nil && !errors.Is(err, errNothingToCheckpoint) {
			ckErr = fmt.Errorf("store: final checkpoint: %w", err)
		}
	}
	if s.dbClosed {
		return ckErr
	}
	err := s.closeDB()
	return errors.Join(ckErr, err)
}

// closeDB closes Pebble; after a fatal commit error Pebble may panic on close, which is
// reported as an error because the process is going to reopen the store anyway.
func (s *Store) closeDB() (err error) {
	defer func() {
		if r := recover(); r != nil {
			err = fmt.Errorf("store: close after failure: %v", r)
		}
	}()
	if err := s.db.Close(); err != nil {
		return fmt.Errorf("store: close: %w", err)
	}
	return nil
}

// Failed returns the error that put the store in the failed state, or nil. Health checks
// report it; the cure is to close and reopen.
func (s *Store) Failed() error {
	if !s.failed.Load() {
		return nil
	}
	s.auditMu.Lock()
	defer s.auditMu.Unlock()
	return s.failErr
}

// fail records the first commit-pipeline failure. Caller holds auditMu.
func (s *Store) failLocked(err error) {
	if s.failErr == nil {
		err = markNoSpace(err)
		s.failErr = err
		s.failed.Store(true)
		s.reads.clear()
		s.log.Error("store failed; writes refused until reopen", "err", err)
	}
}

// get reads the live envelope at key from the committed state.
func (s *Store) getRaw(key string) ([]byte, bool, error) {
	v, closer, err := s.db.Get([]byte(key))
	if errors.Is(err, pebble.ErrNotFound) {
		return nil, false, nil
	}
	if err != nil {
		return nil, false, fmt.Errorf("store: get %q: %w", key, err)
	}
	out := append([]byte(nil), v...)
	_ = closer.Close()
	return out, true, nil
}

// Get reads the live record at key into m from the latest committed state, without
// taking its lock (use Tx.Get for read-modify-write). ErrNotFound if absent or expired.
func (s *Store) Get(ctx context.Context, key string, m proto.Message) error {
	if err := s.enter(); err != nil {
		return err
	}
	defer s.leave()
	v, ok, err := s.getRaw(key)
	if err != nil {
		return err
	}
	return s.decodeLive(key, v, ok, m)
}

func (s *Store) decodeLive(key string, v []byte, ok bool, m proto.Message) error {
	if !ok {
		return fmt.Errorf("%w: %s", ErrNotFound, key)
	}
	env, err := decodeEnvelope(v)
	if err != nil {
		return fmt.Errorf("%s: %w", key, err)
	}
	if !env.live(s.clock.Now().UnixNano()) {
		return fmt.Errorf("%w: %s (expired)", ErrNotFound, key)
	}
	if err := env.into(m); err != nil {
		return fmt.Errorf("%s: %w", key, err)
	}
	return nil
}

// Lookup returns the owner key of a unique index value, from the latest committed state.
func (s *Store) Lookup(ctx context.Context, index, value string) (string, error) {
	k, err := uniqueIndexKey(index, value)
	if err != nil {
		return "", err
	}
	var e storepb.IndexEntry
	if err := s.Get(ctx, k, &e); err != nil {
		return "", indexError(index, err)
	}
	return e.GetOwner(), nil
}
