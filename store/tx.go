package store

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"sort"
	"time"

	"github.com/cockroachdb/pebble/v2"
	"google.golang.org/protobuf/encoding/protowire"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/reflect/protoreflect"

	"github.com/hufu-hsm/hufu/store/storepb"
)

// errContended is returned by Tx methods when a key is held by another transaction and
// could not be taken without waiting. Update then releases everything, takes the whole
// key set in canonical order (waiting as needed) and runs the function again.
var errContended = errors.New("store: key contended, transaction will be retried")

// Tx is one read-modify-write transaction inside Store.Update. Every key it reads or
// writes is locked for the rest of the transaction, so what it read is still true when
// its writes commit. Writes are buffered and become visible, durable and audited together
// when the function returns nil. A Tx must not be used after its function returns.
type Tx struct {
	s      *Store
	now    time.Time
	held   map[string]bool
	writes map[string][]byte // nil: delete
	order  []string          // write order, for a deterministic batch
	events []Event
	retry  string
	// requestID is the request the transaction runs for (WithRequestID), added to each
	// audit event as RequestIDDetail.
	requestID string
}

// PutOption modifies a Put or Claim.
type PutOption func(*putOptions)

type putOptions struct {
	expires time.Time
}

// ExpiresAt makes the record invisible from t on and lets the sweeper delete it.
func ExpiresAt(t time.Time) PutOption { return func(o *putOptions) { o.expires = t } }

// Update runs fn as one transaction and commits its writes and audit events in one
// synced Pebble batch. fn may be called more than once (when a key it touches is held by
// another transaction it is rolled back and re-run with that key locked first), so it
// must have no effects outside tx. If fn returns an error nothing is written and Update
// returns that error, unless the error was made by Refuse. Writing records without appending an audit event is refused with
// ErrUnaudited.
func (s *Store) Update(ctx context.Context, fn func(tx *Tx) error) error {
	if err := s.enter(); err != nil {
		return err
	}
	err := func() error {
		defer s.leave() // also if fn panics: Close must not wait for it forever
		return s.update(ctx, fn)
	}()
	if err == nil {
		s.maybeCheckpointAfterAppend(ctx)
	}
	return err
}

func (s *Store) update(ctx context.Context, fn func(tx *Tx) error) error {
	var keys []string // to lock up front, sorted
	for {
		if s.failed.Load() {
			return s.failedErr()
		}
		if err := s.locks.lockAll(ctx, keys); err != nil {
			return fmt.Errorf("store: waiting for key locks: %w", err)
		}
		tx := &Tx{s: s, now: s.clock.Now(), held: make(map[string]bool, len(keys)+2), requestID: RequestIDFrom(ctx)}
		for _, k := range keys {
			tx.held[k] = true
		}
		err := runHoldingLocks(tx, fn)
		if tx.retry != "" {
			keys = append(tx.release(), tx.retry)
			sort.Strings(keys)
			continue
		}
		var refused *refusal
		switch {
		case err == nil:
			err = s.commit(tx)
		case errors.As(err, &refused):
			if err = s.commit(tx); err == nil {
				err = refused.err
			}
		}
		// Before the locks go (readcache.go). After a failed fn nothing was written, and
		// dropping its keys costs only their cache entries.
		s.reads.drop(tx.order)
		tx.release()
		return err
	}
}

// runHoldingLocks calls fn; if fn panics, the transaction's key locks are released before
// the panic goes on up (to the gRPC recovery interceptor, say), so that one broken request
// does not wedge every later transaction on the same keys.
func runHoldingLocks(tx *Tx, fn func(tx *Tx) error) error {
	returned := false
	defer func() {
		if !returned {
			tx.release()
		}
	}()
	err := fn(tx)
	returned = true
	return err
}

// Refuse wraps a denial so that Update commits the transaction's writes — typically a
// failure counter and the audit record of the denial — and then returns err. Without it a
// refused request could not leave a trace: an error from fn discards every write.
// Refuse(nil) is nil: refusing nothing is success.
func Refuse(err error) error {
	if err == nil {
		return nil
	}
	return &refusal{err: err}
}

type refusal struct{ err error }

func (r *refusal) Error() string { return r.err.Error() }
func (r *refusal) Unwrap() error { return r.err }

func (s *Store) failedErr() error {
	return fmt.Errorf("%w: %w", ErrFailed, s.Failed())
}

// release unlocks every held key and returns them.
func (tx *Tx) release() []string {
	keys := make([]string, 0, len(tx.held))
	for k := range tx.held {
		tx.s.locks.unlock(k)
		keys = append(keys, k)
	}
	tx.held = nil
	return keys
}

// lock takes key for the rest of the transaction without ever waiting: waiting here,
// in an order chosen by fn, could deadlock against another transaction.
func (tx *Tx) lock(key string) error {
	if tx.retry != "" {
		return errContended
	}
	if tx.held[key] {
		return nil
	}
	if tx.s.locks.tryLock(key) {
		tx.held[key] = true
		return nil
	}
	tx.retry = key
	return errContended
}

// Now is the transaction's time (from the store's clock), used for expiry decisions.
func (tx *Tx) Now() time.Time { return tx.now }

func (tx *Tx) read(key string) ([]byte, bool, error) {
	if err := tx.lock(key); err != nil {
		return nil, false, err
	}
	if v, ok := tx.writes[key]; ok {
		return v, v != nil, nil
	}
	if v, ok := tx.s.reads.get(key); ok {
		return v, true, nil
	}
	v, ok, err := tx.s.getRaw(key)
	if err == nil && ok {
		tx.s.reads.put(key, v) // under the key's lock: the committed value
	}
	return v, ok, err
}

func (tx *Tx) write(key string, v []byte) {
	if tx.writes == nil {
		tx.writes = make(map[string][]byte)
	}
	if _, ok := tx.writes[key]; !ok {
		tx.order = append(tx.order, key)
	}
	tx.writes[key] = v
}

// Get reads the live record at key into m. ErrNotFound if it is absent or expired.
func (tx *Tx) Get(key string, m proto.Message) error {
	return tx.get(key, m.ProtoReflect().Descriptor().FullName(), m, proto.UnmarshalOptions{})
}

// get reads the live record at key, which must hold a stored message, into m with opts.
func (tx *Tx) get(key string, stored protoreflect.FullName, m proto.Message, opts proto.UnmarshalOptions) error {
	v, ok, err := tx.read(key)
	if err != nil {
		return err
	}
	if !ok {
		return fmt.Errorf("%w: %s", ErrNotFound, key)
	}
	env, err := decodeEnvelope(v)
	if err != nil {
		return fmt.Errorf("%s: %w", key, err)
	}
	if !env.live(tx.now.UnixNano()) {
		return fmt.Errorf("%w: %s (expired)", ErrNotFound, key)
	}
	if err := env.intoAs(stored, m, opts); err != nil {
		return fmt.Errorf("%s: %w", key, err)
	}
	return nil
}

// Put writes m at key (a record key, see schema.go).
func (tx *Tx) Put(key string, m proto.Message, opts ...PutOption) error {
	if err := checkRecordKey(key); err != nil {
		return err
	}
	return tx.put(key, m, opts)
}

func (tx *Tx) put(key string, m proto.Message, opts []PutOption) error {
	var po putOptions
	for _, o := range opts {
		o(&po)
	}
	if err := tx.lock(key); err != nil {
		return err
	}
	hasExp := !po.expires.IsZero()
	exp := po.expires.UnixNano()
	v, err := encodeEnvelope(m, exp, hasExp)
	if err != nil {
		return err
	}
	tx.write(key, v)
	if hasExp {
		// A blind write: unique per (expiry, key), and the sweeper re-checks the record.
		tx.write(ttlKey(exp, key), []byte{})
	}
	return nil
}

// Delete removes the record at key, and the expiry entry of its current version (expiry
// entries name the record's key, which may hold personal data such as a phone number);
// deleting an absent record is not an error. Entries of earlier versions written with
// another expiry stay until they fall due and the sweeper drops them.
func (tx *Tx) Delete(key string) error {
	if err := checkRecordKey(key); err != nil {
		return err
	}
	v, ok, err := tx.read(key)
	if err != nil {
		return err
	}
	if ok {
		if env, err := decodeEnvelope(v); err == nil && env.hasExp {
			tx.write(ttlKey(env.expires, key), nil)
		}
	}
	tx.write(key, nil)
	return nil
}

// Claim makes owner (a record key) the holder of value in the unique index. It fails with
// ErrTaken if another owner holds a live claim. Claiming a value one already holds is a
// no-op apart from refreshing its expiry.
func (tx *Tx) Claim(index, value, owner string, opts ...PutOption) error {
	k, err := uniqueIndexKey(index, value)
	if err != nil {
		return err
	}
	cur, err := tx.Lookup(index, value)
	switch {
	case errors.Is(err, ErrNotFound):
	case err != nil:
		return err
	case cur != owner:
		return fmt.Errorf("%w: %s", ErrTaken, index)
	}
	return tx.put(k, &storepb.IndexEntry{Owner: owner}, opts)
}

// Unclaim releases value in the unique index if owner holds it.
func (tx *Tx) Unclaim(index, value, owner string) error {
	k, err := uniqueIndexKey(index, value)
	if err != nil {
		return err
	}
	cur, err := tx.Lookup(index, value)
	if errors.Is(err, ErrNotFound) || (err == nil && cur != owner) {
		return nil
	}
	if err != nil {
		return err
	}
	if err := tx.lock(k); err != nil {
		return err
	}
	tx.write(k, nil)
	return nil
}

// Lookup returns the owner of value in the unique index (ErrNotFound if unclaimed), and
// locks the index entry so the answer holds until commit.
func (tx *Tx) Lookup(index, value string) (string, error) {
	k, err := uniqueIndexKey(index, value)
	if err != nil {
		return "", err
	}
	var e storepb.IndexEntry
	if err := tx.Get(k, &e); err != nil {
		return "", indexError(index, err)
	}
	return e.GetOwner(), nil
}

// indexError reports a failed index read by index name only: index values are often
// personal data (phone numbers) and errors end up in logs.
func indexError(index string, err error) error {
	for _, sentinel := range []error{ErrNotFound, ErrCorrupt, errContended, ErrFailed, ErrClosed} {
		if errors.Is(err, sentinel) {
			return fmt.Errorf("%w: index %s", sentinel, index)
		}
	}
	return fmt.Errorf("store: index %s: read failed", index)
}

// AddIndex adds owner under value in a multi-valued index (list them with
// Store.ListIndex).
func (tx *Tx) AddIndex(index, value, owner string) error {
	p, err := multiIndexPrefix(index, value)
	if err != nil {
		return err
	}
	if err := checkRecordKey(owner); err != nil {
		return err
	}
	return tx.put(p+owner, &storepb.IndexEntry{Owner: owner}, nil)
}

// RemoveIndex removes owner from value in a multi-valued index.
func (tx *Tx) RemoveIndex(index, value, owner string) error {
	p, err := multiIndexPrefix(index, value)
	if err != nil {
		return err
	}
	if err := tx.lock(p + owner); err != nil {
		return err
	}
	tx.write(p+owner, nil)
	return nil
}

// Audit appends ev to the audit log as part of this transaction: it is committed in the
// same batch as the transaction's writes, or not at all.
func (tx *Tx) Audit(ev Event) error {
	d := make(map[string]string, len(ev.Details)+1)
	for k, v := range ev.Details {
		d[k] = v
	}
	added := false
	if _, set := d[RequestIDDetail]; tx.requestID != "" && !set && len(d) < maxDetails {
		d[RequestIDDetail], added = tx.requestID, true
	}
	ev.Details = d
	if err := ev.validate(); err != nil {
		if !added {
			return err
		}
		// The event was valid without the request id: record it without, rather than
		// failing the operation over a detail it did not ask for.
		delete(d, RequestIDDetail)
		if err := ev.validate(); err != nil {
			return err
		}
	}
	tx.events = append(tx.events, ev)
	return nil
}

// Append writes audit events that record no state change (a denied request, a failed
// login), each fail-closed: the call returns nil only once they are durable.
func (s *Store) Append(ctx context.Context, events ...Event) error {
	return s.Update(ctx, func(tx *Tx) error {
		for _, ev := range events {
			if err := tx.Audit(ev); err != nil {
				return err
			}
		}
		return nil
	})
}

// preparedEvent is an audit record encoded as far as possible without its sequence
// number, time and hash, so that the work under the append lock is minimal.
type preparedEvent struct {
	canonical []byte // canonical bytes with seq and time zero
	pb        []byte // AuditRecord protobuf without fields 1, 2 and 8, with room for them
}

// finishRoom is the most that finish appends: two varint fields and the hash.
const finishRoom = 2*(1+binaryMaxVarintLen64) + 2 + hashSize

const binaryMaxVarintLen64 = 10

// prepareEvent encodes ev. The stored AuditRecord is written with protowire directly (the
// message is flat and this is the hot path of every operation); tests check that it
// decodes with the generated code to the same record.
func prepareEvent(ev *Event) preparedEvent {
	var arr [maxDetails]string
	keys := arr[:0]
	for k := range ev.Details {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	r := Record{Actor: ev.Actor, Action: ev.Action, Subject: ev.Subject, Outcome: ev.Outcome, Details: ev.Details}

	n := finishRoom
	for _, f := range []string{ev.Actor, ev.Action, ev.Subject, ev.Outcome} {
		n += 1 + binaryMaxVarintLen64 + len(f)
	}
	for _, k := range keys {
		n += 3*(1+binaryMaxVarintLen64) + len(k) + len(ev.Details[k])
	}
	pb := make([]byte, 0, n)
	for i, f := range []string{ev.Actor, ev.Action, ev.Subject, ev.Outcome} {
		if f != "" {
			pb = protowire.AppendTag(pb, protowire.Number(3+i), protowire.BytesType)
			pb = protowire.AppendString(pb, f)
		}
	}
	for _, k := range keys {
		v := ev.Details[k]
		size := 1 + protowire.SizeBytes(len(k))
		if v != "" {
			size += 1 + protowire.SizeBytes(len(v))
		}
		pb = protowire.AppendTag(pb, 7, protowire.BytesType)
		pb = protowire.AppendVarint(pb, uint64(size))
		pb = protowire.AppendTag(pb, 1, protowire.BytesType)
		pb = protowire.AppendString(pb, k)
		if v != "" {
			pb = protowire.AppendTag(pb, 2, protowire.BytesType)
			pb = protowire.AppendString(pb, v)
		}
	}
	return preparedEvent{canonical: appendCanonicalRecord(nil, &r, keys), pb: pb}
}

// finish completes the stored AuditRecord: protobuf allows fields in any order, so seq,
// time and hash are appended to the pre-encoded rest (in the room reserved for them).
func (p *preparedEvent) finish(seq uint64, t int64, h *[hashSize]byte) []byte {
	b := p.pb
	b = protowire.AppendTag(b, 1, protowire.VarintType)
	b = protowire.AppendVarint(b, seq)
	b = protowire.AppendTag(b, 2, protowire.VarintType)
	b = protowire.AppendVarint(b, uint64(t))
	b = protowire.AppendTag(b, 8, protowire.BytesType)
	b = protowire.AppendBytes(b, h[:])
	return b
}

// commit writes the transaction's batch. The audit records get their sequence numbers and
// hashes under auditMu, and the batch enters Pebble's commit pipeline (WAL append and
// memtable) under the same lock, so WAL order equals sequence order and a crash can only
// lose a suffix of the chain. The fsync is awaited after the lock is released: batches of
// many writers queue behind one WAL sync (group commit). Key locks are held until the sync
// returns, so nobody reads a value that might not survive a crash.
func (s *Store) commit(tx *Tx) (err error) {
	if len(tx.writes) == 0 && len(tx.events) == 0 {
		return nil
	}
	if observe := s.opts.CommitObserver; observe != nil {
		start := time.Now()
		defer func() { observe(time.Since(start), err) }()
	}
	if len(tx.events) == 0 {
		return ErrUnaudited
	}
	// Refused here, a write on a nearly full disk changes nothing; let through, its ENOSPC
	// in the WAL would fail the store until Recover.
	if err := s.checkSpace(); err != nil {
		return err
	}
	prepared := make([]preparedEvent, len(tx.events))
	for i := range tx.events {
		prepared[i] = prepareEvent(&tx.events[i])
	}
	b := s.db.NewBatch()
	for _, k := range tx.order {
		var err error
		if v := tx.writes[k]; v != nil {
			err = b.Set([]byte(k), v, nil)
		} else {
			err = b.Delete([]byte(k), nil)
		}
		if err != nil {
			_ = b.Close()
			return fmt.Errorf("store: batch: %w", err)
		}
	}
	return s.appendAndCommit(b, prepared)
}

func (s *Store) appendAndCommit(b *pebble.Batch, prepared []preparedEvent) error {
	s.auditMu.Lock()
	if s.failErr != nil {
		s.auditMu.Unlock()
		_ = b.Close()
		return s.failedErr()
	}
	seq, h := s.headSeq, s.headHash
	now := s.clock.Now().UnixNano()
	for i := range prepared {
		p := &prepared[i]
		seq++
		setCanonicalSeqTime(p.canonical, seq, now)
		h = chainHash(h, p.canonical)
		if err := b.Set([]byte(auditRecordKey(seq)), p.finish(seq, now, &h), nil); err != nil {
			s.auditMu.Unlock()
			_ = b.Close()
			return fmt.Errorf("store: audit batch: %w", err)
		}
	}
	if err := s.applyNoSyncWait(b); err != nil {
		// The batch may or may not be in the pipeline: refuse everything from now on.
		err = markNoSpace(err)
		s.failLocked(err)
		s.auditMu.Unlock()
		return fmt.Errorf("store: commit: %w", errors.Join(ErrFailed, err))
	}
	s.headSeq, s.headHash = seq, h
	s.auditMu.Unlock()

	if err := b.SyncWait(); err != nil {
		// The batch is in the memtable but not known to be durable, and Pebble's WAL
		// keeps failing after an error: the only safe state is failed-until-reopen.
		err = markNoSpace(err)
		s.auditMu.Lock()
		s.failLocked(err)
		s.auditMu.Unlock()
		return fmt.Errorf("store: commit sync: %w", errors.Join(ErrFailed, err))
	}
	s.noteDurable(seq)
	_ = b.Close()
	return nil
}

// applyNoSyncWait hands b to Pebble's commit pipeline without waiting for the fsync.
// Pebble reports pipeline failures through Logger.Fatalf, which our logger turns into a
// panic; it is recovered here and becomes an error.
func (s *Store) applyNoSyncWait(b *pebble.Batch) (err error) {
	defer func() {
		if r := recover(); r != nil {
			err = fmt.Errorf("pebble commit pipeline: %v", r)
		}
	}()
	return s.db.ApplyNoSyncWait(b, pebble.Sync)
}

// UpdateInBatches runs fn over ids in batches of size, each batch in its own transaction
// (a KEK rotation's rewrap, say), and returns the sum of what fn reports changed. fn audits
// its own changes; a batch whose fn changed nothing should write nothing. progress, if not
// nil, is called after each batch with the ids done and their number.
func (s *Store) UpdateInBatches(ctx context.Context, ids []string, size int, fn func(tx *Tx, batch []string) (int, error), progress func(done, total int)) (int, error) {
	changed := 0
	for start := 0; start < len(ids); start += size {
		batch := ids[start:min(start+size, len(ids))]
		n := 0
		err := s.Update(ctx, func(tx *Tx) error {
			var err error
			n, err = fn(tx, batch)
			return err
		})
		if err != nil {
			return changed, err
		}
		changed += n
		if progress != nil {
			progress(start+len(batch), len(ids))
		}
	}
	return changed, nil
}
