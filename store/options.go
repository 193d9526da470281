package store

import (
	"errors"
	"fmt"
	"log/slog"
	"time"

	"github.com/cockroachdb/pebble/v2/vfs"
)

// Sentinel errors. Callers test for them with errors.Is; every error returned by this
// package wraps one of them or an underlying I/O error with context.
var (
	// ErrNotFound: no live record at that key (absent, deleted or expired).
	ErrNotFound = errors.New("store: not found")
	// ErrTaken: a unique index value is already claimed by another owner.
	ErrTaken = errors.New("store: unique value already taken")
	// ErrInvalidKey: a key or key part breaks the rules in schema.go.
	ErrInvalidKey = errors.New("store: invalid key")
	// ErrInvalidOptions: Options failed validation.
	ErrInvalidOptions = errors.New("store: invalid options")
	// ErrInvalidEvent: an audit event is missing a field or has an oversized one.
	ErrInvalidEvent = errors.New("store: invalid audit event")
	// ErrUnaudited: an Update wrote records but appended no audit event.
	ErrUnaudited = errors.New("store: state change without audit record")
	// ErrCorrupt: stored bytes do not decode (bad envelope, wrong message type, bad key).
	ErrCorrupt = errors.New("store: corrupt record")
	// ErrFailed: an earlier commit failed after reaching Pebble's commit pipeline (for
	// example a WAL write or sync error). Pebble's WAL is then unusable, so the store
	// refuses every further operation (reads too: the memtable may hold the batch whose
	// sync failed); close it and open it again to recover. The outcome of the operation
	// that failed is unknown: after reopening, its batch is either wholly present (the
	// bytes reached the disk although the fsync reported an error) or wholly absent, so
	// callers retry with an idempotency key rather than assume either.
	ErrFailed = errors.New("store: failed, reopen required")
	// ErrNoSpace: the filesystem under the store has less free space than
	// Options.MinFreeBytes (the write is refused before it reaches Pebble and nothing
	// changes), or a write failed with ENOSPC (then the error also wraps ErrFailed, and
	// Recover reopens the store once space is freed). Open returns it too, at once, on a
	// disk too full to open on. The daemon maps it to ResourceExhausted.
	ErrNoSpace = errors.New("store: no space left on device")
	// ErrClosed: the store has been closed.
	ErrClosed = errors.New("store: closed")
	// ErrBadCursor: a listing cursor was not produced by a listing of the same prefix.
	ErrBadCursor = errors.New("store: bad cursor")
	// ErrSchema: the store on disk was written with a newer, unsupported schema.
	ErrSchema = errors.New("store: unsupported schema version")
	// ErrNoSigner: a checkpoint was requested but Options.Signer is nil.
	ErrNoSigner = errors.New("store: no checkpoint signer")
)

// Clock is where the store gets time: record expiry, audit timestamps, checkpoint times.
type Clock interface {
	Now() time.Time
}

// SystemClock is the wall clock.
type SystemClock struct{}

// Now returns time.Now().
func (SystemClock) Now() time.Time { return time.Now() }

// Options configure Open. The zero value of every field but Dir means "the default".
type Options struct {
	// Dir is the Pebble directory. Required.
	Dir string
	// Clock defaults to SystemClock.
	Clock Clock
	// Signer signs audit checkpoints. Optional: without one no checkpoints are written and
	// only the chain's internal consistency can be verified. The daemon always sets it.
	Signer Signer
	// Anchor, if set, is raised to every checkpoint once it is durable (anchor.go). The
	// daemon sets the HSM keyring.
	Anchor Anchor
	// CheckpointEvery writes a checkpoint once this many records are uncovered.
	// Default 1000.
	CheckpointEvery int
	// CheckpointInterval writes a checkpoint at the first append this long after the last
	// checkpoint (and MaybeCheckpoint writes one when idle). Default 60s.
	CheckpointInterval time.Duration
	// MustExist refuses a directory that holds no store, rather than creating one (an
	// offline tool opening a store it restored).
	MustExist bool
	// CacheSize is Pebble's block cache in bytes. Default 64 MiB.
	CacheSize int64
	// MinFreeBytes is the free space the filesystem must keep: below it writes are refused
	// with ErrNoSpace before they reach Pebble, health reports it, and Open and Recover
	// refuse to start. Pebble cannot survive a real ENOSPC in its WAL in process, and a
	// Pebble that opens on a full disk retries its first flush forever; the margin keeps
	// both from happening. Default 64 MiB.
	MinFreeBytes uint64
	// FS is the filesystem under Pebble; tests inject faults through it. Default vfs.Default.
	// Whatever it is, the store creates its files 0600 and directories 0700 on it.
	FS vfs.FS
	// Logger receives background errors (failed checkpoints, Pebble events). Default
	// slog.Default().
	Logger *slog.Logger
	// CommitObserver, if set, is told the duration of every commit that writes (batch,
	// audit append and WAL sync) and its error; the daemon feeds a latency histogram. It
	// runs on the commit path and must be cheap.
	CommitObserver func(elapsed time.Duration, err error)
	// CheckpointInBackground writes a checkpoint that an Update makes due on a goroutine of
	// its own, after Update returns, instead of inside Update. Signing, syncing and raising
	// the HSM anchor take milliseconds, and a caller that groups other callers' records
	// (daemon/keys' recorder) would hold all of them for as long. Close still waits for it.
	// The daemon sets it; by default Update returns with the checkpoint written.
	CheckpointInBackground bool
}

const (
	defaultCheckpointEvery    = 1000
	defaultCheckpointInterval = 60 * time.Second
	defaultCacheSize          = 64 << 20
	defaultMinFreeBytes       = 64 << 20
)

// withDefaults validates o and fills in defaults.
func (o Options) withDefaults() (Options, error) {
	if o.Dir == "" {
		return o, fmt.Errorf("%w: Dir is required", ErrInvalidOptions)
	}
	if o.CheckpointEvery < 0 || o.CheckpointInterval < 0 || o.CacheSize < 0 {
		return o, fmt.Errorf("%w: negative CheckpointEvery, CheckpointInterval or CacheSize", ErrInvalidOptions)
	}
	if o.Clock == nil {
		o.Clock = SystemClock{}
	}
	if o.CheckpointEvery == 0 {
		o.CheckpointEvery = defaultCheckpointEvery
	}
	if o.CheckpointInterval == 0 {
		o.CheckpointInterval = defaultCheckpointInterval
	}
	if o.CacheSize == 0 {
		o.CacheSize = defaultCacheSize
	}
	if o.MinFreeBytes == 0 {
		o.MinFreeBytes = defaultMinFreeBytes
	}
	if o.FS == nil {
		o.FS = vfs.Default
	}
	if o.Logger == nil {
		o.Logger = slog.Default()
	}
	if o.Signer != nil && o.Signer.PublicKey() == nil {
		return o, fmt.Errorf("%w: Signer has no public key", ErrInvalidOptions)
	}
	return o, nil
}
