package store

import (
	"bytes"
	"context"
	"encoding/binary"
	"encoding/json"
	"fmt"

	"github.com/cockroachdb/pebble/v2"
)

// This file is what an audit sink (daemon/auditsink) needs to tail the log: records read
// in ranges, each record in the export's JSON shape, and a delivery cursor per sink.
//
// A sink cursor is bookkeeping outside the audit chain, like a checkpoint, and for the same
// reason: auditing each advance would append a record that must itself be shipped, so a
// sink would never be idle. Losing or rewinding a cursor only makes a sink ship again what
// a receiver already has (receivers deduplicate by sequence number); it never changes the
// log.

// DurableHead is the sequence number of the last audit record known to be synced to the
// WAL. Head may be ahead of it while a commit waits for its fsync: such a record is already
// readable, but a crash could still take it back and give its sequence number to another
// record, so nothing that leaves the process (a sink) may read past DurableHead.
func (s *Store) DurableHead() uint64 { return s.durableSeq.Load() }

// noteDurable records that the audit records up to seq are synced. The WAL is written in
// sequence order and a sync covers everything written before it, so a commit whose sync
// returns makes every earlier record durable too; commits finish out of order, hence the
// maximum.
func (s *Store) noteDurable(seq uint64) {
	for {
		d := s.durableSeq.Load()
		if seq <= d || s.durableSeq.CompareAndSwap(d, seq) {
			return
		}
	}
}

// MaxAuditRange bounds one AuditRecords read.
const MaxAuditRange = 10000

// AuditRecords returns up to limit audit records with sequence numbers from..DurableHead,
// oldest first (fewer, or none, when the durable log ends sooner). from 0 means 1. limit is
// 1..MaxAuditRange.
func (s *Store) AuditRecords(ctx context.Context, from uint64, limit int) ([]*Record, error) {
	if limit < 1 || limit > MaxAuditRange {
		return nil, fmt.Errorf("%w: limit %d outside 1..%d", ErrInvalidOptions, limit, MaxAuditRange)
	}
	if from == 0 {
		from = 1
	}
	if err := s.enter(); err != nil {
		return nil, err
	}
	defer s.leave()
	durable := s.DurableHead()
	if from > durable {
		return nil, nil
	}
	it, err := s.db.NewIterWithContext(ctx, &pebble.IterOptions{
		LowerBound: []byte(auditRecordKey(from)), UpperBound: []byte(auditRecordKey(durable + 1)),
	})
	if err != nil {
		return nil, fmt.Errorf("store: audit records: %w", err)
	}
	defer it.Close()
	var out []*Record
	want := from
	for ok := it.First(); ok && len(out) < limit; ok = it.Next() {
		r, err := decodeAuditRecord(it.Value())
		if err != nil {
			return nil, fmt.Errorf("store: audit records: at %q: %w", it.Key(), err)
		}
		// A gap would make a sink skip records silently; the chain forbids one.
		if r.Seq != want {
			return nil, fmt.Errorf("%w: audit record %d found where %d belongs", ErrCorrupt, r.Seq, want)
		}
		out = append(out, r)
		want++
	}
	if err := it.Error(); err != nil {
		return nil, fmt.Errorf("store: audit records: %w", err)
	}
	return out, nil
}

// AuditRecordJSON is r as one line of an export (audit_format.go: the "record" line, without
// the trailing newline), so that what a sink ships reads exactly like what an export holds.
func AuditRecordJSON(r *Record) ([]byte, error) {
	var b bytes.Buffer
	enc := json.NewEncoder(&b)
	enc.SetEscapeHTML(false) // as the export writes it
	if err := enc.Encode(recordLine(r)); err != nil {
		return nil, fmt.Errorf("store: audit record %d as JSON: %w", r.Seq, err)
	}
	return bytes.TrimSuffix(b.Bytes(), []byte("\n")), nil
}

// SinkCursor is how far an audit sink has shipped the log: every record up to and
// including Seq was delivered. The zero value means nothing was.
type SinkCursor struct {
	Seq  uint64
	Hash [hashSize]byte // h_Seq: lets a sink notice a log that is not the one it shipped
	Time int64          // when the cursor was written, Unix nanoseconds
}

// sinkCursorLen is the stored form of a SinkCursor (schema.go): version 0x01, seq, hash,
// time, all big-endian.
const sinkCursorLen = 1 + 8 + hashSize + 8

func sinkCursorKey(name string) (string, error) {
	if err := ValidPart(name); err != nil {
		return "", err
	}
	return string(kindSinkCursor) + "/" + name, nil
}

// SinkCursor returns the cursor of the sink called name, or the zero cursor if it has
// none yet.
func (s *Store) SinkCursor(ctx context.Context, name string) (SinkCursor, error) {
	key, err := sinkCursorKey(name)
	if err != nil {
		return SinkCursor{}, err
	}
	if err := s.enter(); err != nil {
		return SinkCursor{}, err
	}
	defer s.leave()
	v, ok, err := s.getRaw(key)
	if err != nil || !ok {
		return SinkCursor{}, err
	}
	if len(v) != sinkCursorLen || v[0] != 0x01 {
		return SinkCursor{}, fmt.Errorf("%w: sink cursor %q: %d bytes", ErrCorrupt, name, len(v))
	}
	c := SinkCursor{Seq: binary.BigEndian.Uint64(v[1:9]), Time: int64(binary.BigEndian.Uint64(v[9+hashSize:]))}
	copy(c.Hash[:], v[9:9+hashSize])
	return c, nil
}

// SetSinkCursor durably records the cursor of the sink called name (synced before it
// returns, so a sink that crashes after this call does not ship those records again).
func (s *Store) SetSinkCursor(ctx context.Context, name string, c SinkCursor) error {
	key, err := sinkCursorKey(name)
	if err != nil {
		return err
	}
	if err := s.enter(); err != nil {
		return err
	}
	defer s.leave()
	v := make([]byte, sinkCursorLen)
	v[0] = 0x01
	binary.BigEndian.PutUint64(v[1:9], c.Seq)
	copy(v[9:9+hashSize], c.Hash[:])
	binary.BigEndian.PutUint64(v[9+hashSize:], uint64(c.Time))
	return s.setSync(key, v)
}
