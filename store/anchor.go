package store

import (
	"context"
	"errors"
	"fmt"
)

// The store cannot prove by itself that it is the newest copy of the log: a backup
// restored over it, or a disk image rolled back, verifies with the same key as the
// original. The daemon therefore keeps the newest signed checkpoint's size and head
// outside the store, where a restore does not reach (the HSM's audit anchor), raises it
// after every checkpoint (Options.Anchor), and compares the store with it at start
// (CheckAnchor).

// Anchor is told of every signed checkpoint after the checkpoint is durable in the store,
// never before: an anchor ahead of the store's checkpoints would refuse a store that was
// never restored. hsm.Keyring implements it.
type Anchor interface {
	RaiseAuditAnchor(ctx context.Context, size uint64, head [32]byte) error
}

// Errors of CheckAnchor; both mean the store is not the log the anchor was raised by.
var (
	// ErrBehindAnchor: the store's log ends before the anchored checkpoint (restored from a
	// backup, or rolled back).
	ErrBehindAnchor = errors.New("store: audit log is behind the anchored checkpoint")
	// ErrForkedFromAnchor: the store holds the anchored record number with another chain
	// hash (another log, or a restore that was written to since).
	ErrForkedFromAnchor = errors.New("store: audit log differs from the anchored checkpoint")
)

// AnchorMismatch is the error of CheckAnchor: where the store's log stands and what the
// anchor says. It wraps ErrBehindAnchor or ErrForkedFromAnchor.
type AnchorMismatch struct {
	StoreHead  uint64   // the store's last audit record
	AnchorSize uint64   // the anchored checkpoint's size
	AnchorHead [32]byte // and its head
	Forked     bool     // true: record AnchorSize exists with another hash
}

func (e *AnchorMismatch) Error() string {
	if e.Forked {
		return fmt.Sprintf("audit log record %d differs from the anchored checkpoint %d (head %x…): this store is not the log the anchor was raised by",
			e.AnchorSize, e.AnchorSize, e.AnchorHead[:8])
	}
	return fmt.Sprintf("audit log ends at record %d, behind the anchored checkpoint %d: the store was restored from a backup or rolled back",
		e.StoreHead, e.AnchorSize)
}

// Unwrap returns ErrBehindAnchor or ErrForkedFromAnchor.
func (e *AnchorMismatch) Unwrap() error {
	if e.Forked {
		return ErrForkedFromAnchor
	}
	return ErrBehindAnchor
}

// CheckAnchor compares the log with an anchored checkpoint (size, head): nil if the log
// holds record size with exactly that hash (records after it are fine: they may not be
// anchored yet), an *AnchorMismatch otherwise. An anchor of size 0 matches every log.
func (s *Store) CheckAnchor(ctx context.Context, size uint64, head [32]byte) error {
	if err := s.enter(); err != nil {
		return err
	}
	defer s.leave()
	if size == 0 {
		return nil
	}
	storeHead, _ := s.Head()
	mismatch := &AnchorMismatch{StoreHead: storeHead, AnchorSize: size, AnchorHead: head}
	if storeHead < size {
		return mismatch
	}
	v, ok, err := s.getRaw(auditRecordKey(size))
	if err != nil {
		return err
	}
	if !ok {
		return fmt.Errorf("%w: audit record %d is missing below the head %d", ErrCorrupt, size, storeHead)
	}
	r, err := decodeAuditRecord(v)
	if err != nil {
		return err
	}
	if r.Hash != head {
		mismatch.Forked = true
		return mismatch
	}
	return nil
}

// raiseAnchor tells Options.Anchor of checkpoint c, which is durable. A failure is logged
// and not returned: the checkpoint stands, and the anchor follows at the next one.
func (s *Store) raiseAnchor(ctx context.Context, c *Checkpoint) {
	if s.opts.Anchor == nil {
		return
	}
	if err := s.opts.Anchor.RaiseAuditAnchor(ctx, c.Size, c.Head); err != nil {
		s.log.Error("raising the audit anchor failed; it follows at the next checkpoint", "checkpoint", c.Size, "err", err)
	}
}
