package store

import (
	"context"
	"crypto/ecdsa"
	"crypto/sha256"
	"crypto/x509"
	"errors"
	"fmt"
	"sync/atomic"
	"time"

	"github.com/cockroachdb/pebble/v2"
	"google.golang.org/protobuf/proto"

	"github.com/hufu-hsm/hufu/store/storepb"
)

// Signer signs audit checkpoints.
type Signer interface {
	// SignDigest returns an ASN.1 DER ECDSA P-256 signature over a 32-byte SHA-256 digest.
	SignDigest(ctx context.Context, digest []byte) ([]byte, error)
	// PublicKey returns the key that verifies those signatures.
	PublicKey() *ecdsa.PublicKey
}

// errNothingToCheckpoint: every record is already covered by a checkpoint.
var errNothingToCheckpoint = errors.New("store: nothing to checkpoint")

// KeyID is the identifier of a checkpoint key: SHA-256 of its PKIX DER encoding.
func KeyID(pub *ecdsa.PublicKey) ([32]byte, error) {
	der, err := x509.MarshalPKIXPublicKey(pub)
	if err != nil {
		return [32]byte{}, fmt.Errorf("store: encode checkpoint key: %w", err)
	}
	return sha256.Sum256(der), nil
}

func recordFromPB(p *storepb.AuditRecord) (*Record, error) {
	r := &Record{
		Seq: p.GetSeq(), Time: p.GetTimeUnixNano(), Actor: p.GetActor(), Action: p.GetAction(),
		Subject: p.GetSubject(), Outcome: p.GetOutcome(),
	}
	if len(p.GetHash()) != hashSize {
		return nil, fmt.Errorf("%w: audit record %d: hash has %d bytes", ErrCorrupt, r.Seq, len(p.GetHash()))
	}
	copy(r.Hash[:], p.GetHash())
	if len(p.GetDetails()) > 0 {
		r.Details = make(map[string]string, len(p.GetDetails()))
		for _, d := range p.GetDetails() {
			r.Details[d.GetKey()] = d.GetValue()
		}
	}
	return r, nil
}

func decodeAuditRecord(v []byte) (*Record, error) {
	var p storepb.AuditRecord
	if err := proto.Unmarshal(v, &p); err != nil {
		return nil, fmt.Errorf("%w: audit record: %v", ErrCorrupt, err)
	}
	return recordFromPB(&p)
}

func checkpointFromPB(p *storepb.AuditCheckpoint) (*Checkpoint, error) {
	c := &Checkpoint{Size: p.GetSize(), Time: p.GetTimeUnixNano(), Signature: p.GetSignature()}
	if len(p.GetHead()) != hashSize || len(p.GetKeyId()) != 32 {
		return nil, fmt.Errorf("%w: checkpoint %d: bad head or key id length", ErrCorrupt, c.Size)
	}
	copy(c.Head[:], p.GetHead())
	copy(c.KeyID[:], p.GetKeyId())
	return c, nil
}

func decodeCheckpoint(v []byte) (*Checkpoint, error) {
	var p storepb.AuditCheckpoint
	if err := proto.Unmarshal(v, &p); err != nil {
		return nil, fmt.Errorf("%w: checkpoint: %v", ErrCorrupt, err)
	}
	return checkpointFromPB(&p)
}

// loadHead finds the last audit record: the chain continues from it. An empty log is head
// 0, also on a reload (Recover) after an append that set the head in memory and never
// reached the disk.
func (s *Store) loadHead() error {
	s.headSeq, s.headHash = 0, [hashSize]byte{}
	s.durableSeq.Store(0)
	it, err := s.db.NewIter(&pebble.IterOptions{
		LowerBound: []byte(auditRecordPfx), UpperBound: prefixEnd(auditRecordPfx),
	})
	if err != nil {
		return fmt.Errorf("store: audit head: %w", err)
	}
	defer it.Close()
	if !it.Last() {
		return it.Error()
	}
	r, err := decodeAuditRecord(it.Value())
	if err != nil {
		return fmt.Errorf("store: audit head at %q: %w", it.Key(), err)
	}
	if seq, ok := parseHex16(string(it.Key()[len(auditRecordPfx):])); !ok || seq != r.Seq {
		return fmt.Errorf("%w: audit head key %q holds record %d", ErrCorrupt, it.Key(), r.Seq)
	}
	s.headSeq, s.headHash = r.Seq, r.Hash
	s.durableSeq.Store(r.Seq) // what Open finds is what the WAL kept
	return nil
}

// Head returns the sequence number and hash of the last appended audit record (0 and
// zeros for an empty log).
func (s *Store) Head() (uint64, [32]byte) {
	s.auditMu.Lock()
	defer s.auditMu.Unlock()
	return s.headSeq, s.headHash
}

// AuditRecord reads audit record seq.
func (s *Store) AuditRecord(ctx context.Context, seq uint64) (*Record, error) {
	if err := s.enter(); err != nil {
		return nil, err
	}
	defer s.leave()
	v, ok, err := s.getRaw(auditRecordKey(seq))
	if err != nil {
		return nil, err
	}
	if !ok {
		return nil, fmt.Errorf("%w: audit record %d", ErrNotFound, seq)
	}
	return decodeAuditRecord(v)
}

// ckptState tracks the last checkpoint; mu serialises checkpoint writers.
type ckptState struct {
	mu       chan struct{} // 1-slot: try-lockable
	keyID    [32]byte
	lastSize uint64 // under mu; also read under auditMu-free atomics below
	lastTime int64
	last     *Checkpoint
	// covered mirrors lastSize for readers that must not wait for a signature in progress
	// (a metrics scrape): written under mu, read without it.
	covered atomic.Uint64
}

func (s *Store) loadCheckpointState(ctx context.Context) error {
	if s.ckpt.mu == nil { // Recover reloads the state and keeps the lock it holds
		s.ckpt.mu = make(chan struct{}, 1)
	}
	if s.opts.Signer != nil {
		id, err := KeyID(s.opts.Signer.PublicKey())
		if err != nil {
			return err
		}
		s.ckpt.keyID = id
	}
	it, err := s.db.NewIter(&pebble.IterOptions{
		LowerBound: []byte(auditCheckpointP), UpperBound: prefixEnd(auditCheckpointP),
	})
	if err != nil {
		return fmt.Errorf("store: checkpoints: %w", err)
	}
	defer it.Close()
	if it.Last() {
		c, err := decodeCheckpoint(it.Value())
		if err != nil {
			return fmt.Errorf("store: last checkpoint: %w", err)
		}
		s.ckpt.last, s.ckpt.lastSize, s.ckpt.lastTime = c, c.Size, c.Time
		s.ckpt.covered.Store(c.Size)
	} else {
		// No checkpoint yet: count the interval from opening.
		s.ckpt.lastTime = s.clock.Now().UnixNano()
	}
	return it.Error()
}

func (s *Store) ckptDue(size uint64, now int64, lastSize uint64, lastTime int64) bool {
	if size <= lastSize {
		return false
	}
	return size-lastSize >= uint64(s.opts.CheckpointEvery) ||
		time.Duration(now-lastTime) >= s.opts.CheckpointInterval
}

// maybeCheckpointAfterAppend runs on the goroutine of a committed Update: if a checkpoint
// is due and nobody is writing one, write it. Failure does not fail the Update, which is
// already durable; it is logged and retried at the next append.
func (s *Store) maybeCheckpointAfterAppend(ctx context.Context) {
	if s.opts.Signer == nil {
		return
	}
	// Enter before taking ckpt.mu, never after: Close holds ops exclusively while it
	// waits for ckpt.mu to write the final checkpoint.
	if err := s.enter(); err != nil {
		return
	}
	select {
	case s.ckpt.mu <- struct{}{}:
	default:
		s.leave()
		return
	}
	size, _ := s.Head()
	if !s.ckptDue(size, s.clock.Now().UnixNano(), s.ckpt.lastSize, s.ckpt.lastTime) {
		<-s.ckpt.mu
		s.leave()
		return
	}
	write := func() {
		defer s.leave()
		defer func() { <-s.ckpt.mu }()
		if _, err := s.checkpointLocked(ctx); err != nil && !errors.Is(err, errNothingToCheckpoint) {
			s.log.Error("audit checkpoint failed", "err", err)
		}
	}
	if s.opts.CheckpointInBackground {
		// It holds ckpt.mu and its share of ops from here: the next due Update skips, and
		// Close waits for it.
		ctx = context.WithoutCancel(ctx)
		go write()
		return
	}
	write()
}

// MaybeCheckpoint writes a checkpoint if one is due by count or by time; the daemon calls
// it from a ticker so an idle log's tail gets covered. It returns the new checkpoint or
// nil if none was due.
func (s *Store) MaybeCheckpoint(ctx context.Context) (*Checkpoint, error) {
	if s.opts.Signer == nil {
		return nil, ErrNoSigner
	}
	if err := s.enter(); err != nil {
		return nil, err
	}
	defer s.leave()
	s.ckpt.mu <- struct{}{}
	defer func() { <-s.ckpt.mu }()
	size, _ := s.Head()
	if !s.ckptDue(size, s.clock.Now().UnixNano(), s.ckpt.lastSize, s.ckpt.lastTime) {
		return nil, nil
	}
	return s.checkpointLocked(ctx)
}

// Checkpoint writes a signed checkpoint over the whole log now, unless the last one
// already covers it (then it returns that one).
func (s *Store) Checkpoint(ctx context.Context) (*Checkpoint, error) {
	if err := s.enter(); err != nil {
		return nil, err
	}
	defer s.leave()
	return s.checkpoint(ctx)
}

func (s *Store) checkpoint(ctx context.Context) (*Checkpoint, error) {
	if s.opts.Signer == nil {
		return nil, ErrNoSigner
	}
	s.ckpt.mu <- struct{}{}
	defer func() { <-s.ckpt.mu }()
	c, err := s.checkpointLocked(ctx)
	if errors.Is(err, errNothingToCheckpoint) && s.ckpt.last != nil {
		return s.ckpt.last, nil
	}
	return c, err
}

// checkpointLocked signs the current head. The head is read under auditMu but signing
// (an HSM round trip) happens outside it, so appends are never stalled by the signer. The
// checkpoint's batch enters the WAL after every record it covers, so it can never survive
// a crash that those records do not.
func (s *Store) checkpointLocked(ctx context.Context) (*Checkpoint, error) {
	s.auditMu.Lock()
	size, head, failErr := s.headSeq, s.headHash, s.failErr
	s.auditMu.Unlock()
	if failErr != nil {
		return nil, s.failedErr()
	}
	if size == 0 || size <= s.ckpt.lastSize {
		return nil, errNothingToCheckpoint
	}
	c := &Checkpoint{Size: size, Head: head, Time: s.clock.Now().UnixNano(), KeyID: s.ckpt.keyID}
	digest := checkpointDigest(c)
	sig, err := s.opts.Signer.SignDigest(ctx, digest)
	if err != nil {
		return nil, fmt.Errorf("store: sign checkpoint %d: %w", size, err)
	}
	// A signer that returns garbage must be caught now, not by an auditor in a year.
	if !ecdsa.VerifyASN1(s.opts.Signer.PublicKey(), digest, sig) {
		return nil, fmt.Errorf("store: checkpoint %d: signer returned a signature that does not verify", size)
	}
	c.Signature = sig
	b, err := proto.Marshal(&storepb.AuditCheckpoint{
		Size: c.Size, Head: c.Head[:], TimeUnixNano: c.Time, KeyId: c.KeyID[:], Signature: sig,
	})
	if err != nil {
		return nil, fmt.Errorf("store: marshal checkpoint: %w", err)
	}
	if err := s.setSync(auditCheckpointKey(size), b); err != nil {
		return nil, err
	}
	s.ckpt.last, s.ckpt.lastSize, s.ckpt.lastTime = c, c.Size, c.Time
	s.ckpt.covered.Store(c.Size)
	// Only now, with the checkpoint synced: the anchor must never be ahead of the store.
	s.raiseAnchor(ctx, c)
	return c, nil
}

// setSync writes one bookkeeping key outside the audit chain (checkpoints, sink cursors).
func (s *Store) setSync(key string, v []byte) (err error) {
	defer func() {
		if r := recover(); r != nil {
			err = fmt.Errorf("store: write %s: pebble: %v", key, r)
		}
	}()
	if err := s.checkSpace(); err != nil {
		return fmt.Errorf("store: write %s: %w", key, err)
	}
	s.reads.drop([]string{key}) // not a record key, but the cache must never outlive a write
	if err := s.db.Set([]byte(key), v, pebble.Sync); err != nil {
		err = markNoSpace(err)
		s.auditMu.Lock()
		s.failLocked(err)
		s.auditMu.Unlock()
		return fmt.Errorf("store: write %s: %w", key, errors.Join(ErrFailed, err))
	}
	return nil
}

// LastCheckpoint returns the newest checkpoint, or nil if there is none.
func (s *Store) LastCheckpoint() *Checkpoint {
	s.ckpt.mu <- struct{}{}
	defer func() { <-s.ckpt.mu }()
	return s.ckpt.last
}

// Backlog is the part of the audit log that no signed checkpoint covers yet.
type Backlog struct {
	// Records is how many records follow the last checkpoint (0: the log is covered).
	Records uint64
	// Oldest is the time of the first of them, as written in the record; zero when
	// Records is 0.
	Oldest time.Time
}

// AuditBacklog reports the records not yet covered by a signed checkpoint. It does not
// wait for a checkpoint being signed. An idle, healthy log has an empty backlog however
// long it stays idle; a backlog whose oldest record keeps ageing past the checkpoint
// interval means checkpoints are not being written (the signer fails, or no checkpointer
// runs).
func (s *Store) AuditBacklog(ctx context.Context) (Backlog, error) {
	if err := s.enter(); err != nil {
		return Backlog{}, err
	}
	defer s.leave()
	for {
		covered := s.ckpt.covered.Load()
		head, _ := s.Head()
		if head <= covered {
			return Backlog{}, nil
		}
		v, ok, err := s.getRaw(auditRecordKey(covered + 1))
		if err != nil {
			return Backlog{}, err
		}
		if !ok {
			return Backlog{}, fmt.Errorf("%w: audit record %d is missing below the head %d", ErrCorrupt, covered+1, head)
		}
		r, err := decodeAuditRecord(v)
		if err != nil {
			return Backlog{}, err
		}
		// A checkpoint written meanwhile moved the boundary: read again at the new one.
		if s.ckpt.covered.Load() != covered {
			continue
		}
		return Backlog{Records: head - covered, Oldest: time.Unix(0, r.Time)}, nil
	}
}

// RunCheckpointer calls MaybeCheckpoint every interval until ctx is done, so that the tail
// of an idle log is covered within about CheckpointInterval. Errors are logged; the next
// round retries.
func (s *Store) RunCheckpointer(ctx context.Context, every time.Duration) {
	t := time.NewTicker(every)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
			if _, err := s.MaybeCheckpoint(ctx); err != nil {
				s.log.Error("audit checkpoint failed", "err", err)
			}
		}
	}
}
