package store

import (
	"bufio"
	"context"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"strconv"
	"time"

	"github.com/cockroachdb/pebble/v2"
)

const exportFormat = "hufu-audit-export/1"

// The JSON shapes of an export's lines (format in audit_format.go).
type exportLine struct {
	Type string `json:"type"`

	// header
	Format string  `json:"format,omitempty"`
	From   *uint64 `json:"from,omitempty"`
	To     *uint64 `json:"to,omitempty"`
	Prev   string  `json:"prev,omitempty"`

	// record
	Seq     *uint64           `json:"seq,omitempty"`
	Time    string            `json:"time,omitempty"`
	Actor   *string           `json:"actor,omitempty"`
	Action  *string           `json:"action,omitempty"`
	Subject *string           `json:"subject,omitempty"`
	Outcome *string           `json:"outcome,omitempty"`
	Details map[string]string `json:"details,omitempty"`
	Hash    string            `json:"hash,omitempty"`

	// checkpoint
	Size  *uint64 `json:"size,omitempty"`
	Head  string  `json:"head,omitempty"`
	KeyID string  `json:"key_id,omitempty"`
	Sig   string  `json:"sig,omitempty"`
}

func formatTime(ns int64) string { return time.Unix(0, ns).UTC().Format(time.RFC3339Nano) }

func recordLine(r *Record) exportLine {
	seq := r.Seq
	return exportLine{
		Type: "record", Seq: &seq, Time: formatTime(r.Time),
		Actor: &r.Actor, Action: &r.Action, Subject: &r.Subject, Outcome: &r.Outcome,
		Details: r.Details, Hash: hex.EncodeToString(r.Hash[:]),
	}
}

func checkpointLine(c *Checkpoint) exportLine {
	size := c.Size
	return exportLine{
		Type: "checkpoint", Size: &size, Head: hex.EncodeToString(c.Head[:]), Time: formatTime(c.Time),
		KeyID: hex.EncodeToString(c.KeyID[:]), Sig: base64.StdEncoding.EncodeToString(c.Signature),
	}
}

// ExportAudit writes audit records from..to (inclusive) and the checkpoints among them as
// JSON lines to w. from 0 means 1; to 0 means "everything": then, if a signer is
// configured, a checkpoint over the current head is written first so that the whole
// export can be verified.
func (s *Store) ExportAudit(ctx context.Context, w io.Writer, from, to uint64) error {
	if err := s.enter(); err != nil {
		return err
	}
	defer s.leave()
	if to == 0 && s.opts.Signer != nil && !s.failed.Load() {
		if _, err := s.checkpoint(ctx); err != nil && !errors.Is(err, errNothingToCheckpoint) {
			return fmt.Errorf("store: export: %w", err)
		}
	}
	return s.export(ctx, w, from, to)
}

// export writes the range as stored, without signing anything. to 0 means up to the head
// or the newest checkpoint, whichever is further (a checkpoint beyond the last stored
// record is evidence of deleted records and must be shown).
func (s *Store) export(ctx context.Context, w io.Writer, from, to uint64) error {
	if from == 0 {
		from = 1
	}
	snap := s.db.NewSnapshot()
	defer snap.Close()
	if to == 0 {
		// The end comes from the snapshot itself, not from the head counters: a commit that
		// lands after the snapshot would otherwise announce records the export cannot
		// contain, and the verifier would cry "truncated".
		var err error
		if to, err = lastSeq(ctx, snap, auditRecordPfx); err != nil {
			return fmt.Errorf("store: export: %w", err)
		}
		ck, err := lastSeq(ctx, snap, auditCheckpointP)
		if err != nil {
			return fmt.Errorf("store: export: %w", err)
		}
		to = max(to, ck)
	}
	if to < from && to != 0 {
		return fmt.Errorf("%w: export range %d..%d", ErrInvalidOptions, from, to)
	}
	var prev [hashSize]byte
	if from > 1 {
		v, closer, err := snap.Get([]byte(auditRecordKey(from - 1)))
		if err != nil {
			return fmt.Errorf("store: export: record %d before the range: %w", from-1, err)
		}
		r, err := decodeAuditRecord(v)
		_ = closer.Close()
		if err != nil {
			return fmt.Errorf("store: export: %w", err)
		}
		prev = r.Hash
	}
	bw := bufio.NewWriterSize(w, 64<<10)
	enc := json.NewEncoder(bw)
	enc.SetEscapeHTML(false)
	f, t := from, to
	if err := enc.Encode(exportLine{Type: "header", Format: exportFormat, From: &f, To: &t, Prev: hex.EncodeToString(prev[:])}); err != nil {
		return fmt.Errorf("store: export: %w", err)
	}
	recs, err := snap.NewIterWithContext(ctx, &pebble.IterOptions{
		LowerBound: []byte(auditRecordKey(from)), UpperBound: []byte(auditRecordKey(to + 1)),
	})
	if err != nil {
		return fmt.Errorf("store: export: %w", err)
	}
	defer recs.Close()
	cks, err := snap.NewIterWithContext(ctx, &pebble.IterOptions{
		LowerBound: []byte(auditCheckpointKey(from)), UpperBound: []byte(auditCheckpointKey(to + 1)),
	})
	if err != nil {
		return fmt.Errorf("store: export: %w", err)
	}
	defer cks.Close()

	ckOK := cks.First()
	nextCk := func() (*Checkpoint, error) {
		c, err := decodeCheckpoint(cks.Value())
		if err != nil {
			return nil, fmt.Errorf("store: export: at %q: %w", cks.Key(), err)
		}
		ckOK = cks.Next()
		return c, nil
	}
	for ok := recs.First(); ok; ok = recs.Next() {
		r, err := decodeAuditRecord(recs.Value())
		if err != nil {
			return fmt.Errorf("store: export: at %q: %w", recs.Key(), err)
		}
		// Checkpoints go right after the record they end at, by stored key order.
		for ckOK {
			size, _ := parseHex16(string(cks.Key()[len(auditCheckpointP):]))
			keySeq, _ := parseHex16(string(recs.Key()[len(auditRecordPfx):]))
			if size >= keySeq {
				break
			}
			c, err := nextCk()
			if err != nil {
				return err
			}
			if err := enc.Encode(checkpointLine(c)); err != nil {
				return fmt.Errorf("store: export: %w", err)
			}
		}
		if err := enc.Encode(recordLine(r)); err != nil {
			return fmt.Errorf("store: export: %w", err)
		}
	}
	if err := recs.Error(); err != nil {
		return fmt.Errorf("store: export: %w", err)
	}
	for ckOK {
		c, err := nextCk()
		if err != nil {
			return err
		}
		if err := enc.Encode(checkpointLine(c)); err != nil {
			return fmt.Errorf("store: export: %w", err)
		}
	}
	if err := cks.Error(); err != nil {
		return fmt.Errorf("store: export: %w", err)
	}
	if err := bw.Flush(); err != nil {
		return fmt.Errorf("store: export: %w", err)
	}
	return nil
}

// lastSeq returns the number in the last key under prefix (a/r/<seq> or a/c/<size>, 16 hex
// digits) in snap, or 0 if there is none.
func lastSeq(ctx context.Context, snap *pebble.Snapshot, prefix string) (uint64, error) {
	it, err := snap.NewIterWithContext(ctx, &pebble.IterOptions{LowerBound: []byte(prefix), UpperBound: prefixEnd(prefix)})
	if err != nil {
		return 0, err
	}
	defer it.Close()
	if !it.Last() {
		return 0, it.Error()
	}
	n, err := strconv.ParseUint(string(it.Key()[len(prefix):]), 16, 64)
	if err != nil {
		return 0, fmt.Errorf("%w: audit key %q", ErrCorrupt, it.Key())
	}
	return n, nil
}
