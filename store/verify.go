package store

import (
	"bufio"
	"bytes"
	"context"
	"crypto/ecdsa"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"maps"
	"slices"
	"strconv"
	"strings"
	"time"
)

// ErrVerify is wrapped by every *VerifyError.
var ErrVerify = errors.New("store: audit log does not verify")

// Reason says why verification failed.
type Reason string

// Reasons for a failed verification.
const (
	// ReasonMalformed: a line is not valid export JSON (or the header is missing).
	ReasonMalformed Reason = "malformed"
	// ReasonEdited: a record's content does not match its hash, or the chain up to a
	// checkpoint does not match the signed head (records rewritten and rehashed).
	ReasonEdited Reason = "edited"
	// ReasonMissing: records are absent from the sequence.
	ReasonMissing Reason = "missing"
	// ReasonReordered: a record or checkpoint is out of sequence order.
	ReasonReordered Reason = "reordered"
	// ReasonBadSignature: a checkpoint signature does not verify under the given key.
	ReasonBadSignature Reason = "bad signature"
	// ReasonTruncated: the export ends before the range its header announces.
	ReasonTruncated Reason = "truncated"
	// ReasonUnanchored: no record is covered by a valid checkpoint, so nothing is proven.
	ReasonUnanchored Reason = "unanchored"
	// ReasonForked: a record pinned by a head the auditor saved earlier has another chain
	// hash in the export: it is another log with the same numbering (restored, rolled back
	// and written again, or replaced).
	ReasonForked Reason = "forked"
)

// Head names a record of the log and its chain hash. An auditor saves the head a
// verification prints ("N:HASH", hash in hex) and pins it in later verifications
// (VerifyExportPinned): any log that passes then contains exactly that record N, and so
// exactly the records 1..N seen before.
type Head struct {
	Seq  uint64
	Hash [hashSize]byte
}

// String formats h as "N:HASH".
func (h Head) String() string { return fmt.Sprintf("%d:%s", h.Seq, hex.EncodeToString(h.Hash[:])) }

// ParseHead parses "N:HASH" (N ≥ 1, HASH 64 hex digits).
func ParseHead(s string) (Head, error) {
	n, hx, ok := strings.Cut(s, ":")
	seq, err := strconv.ParseUint(n, 10, 64)
	if !ok || err != nil || seq == 0 {
		return Head{}, fmt.Errorf("head %q: want N:HASH with N a record number from 1", s)
	}
	hash, ok := decodeHash(strings.ToLower(hx))
	if !ok {
		return Head{}, fmt.Errorf("head %q: HASH must be %d hex digits", s, 2*hashSize)
	}
	return Head{Seq: seq, Hash: hash}, nil
}

// VerifyError names the first bad record (Seq; 0 if the problem is not one record) or
// the line of the export where verification stopped.
type VerifyError struct {
	Line   int
	Seq    uint64
	Reason Reason
	Detail string
}

func (e *VerifyError) Error() string {
	return fmt.Sprintf("audit log: record %d (line %d): %s: %s", e.Seq, e.Line, e.Reason, e.Detail)
}

// Unwrap makes errors.Is(err, ErrVerify) true.
func (e *VerifyError) Unwrap() error { return ErrVerify }

// VerifyResult summarises a verification that passed.
type VerifyResult struct {
	From, To        uint64 // first and last record seen (0, 0 if none)
	Records         int
	Checkpoints     int    // valid checkpoints seen
	VerifiedThrough uint64 // last record covered by a valid checkpoint; records after it are chained but unsigned
	// SignedHead is record VerifiedThrough and its hash: the head to save and pin later.
	SignedHead Head
}

// maxExportLine bounds one JSON line (a maximal record is well under this).
const maxExportLine = 1 << 20

type verifier struct {
	pub      *ecdsa.PublicKey
	keyID    [32]byte
	res      VerifyResult
	line     int
	expect   uint64 // next record seq
	prev     [hashSize]byte
	headerTo uint64
	sc       *bufio.Scanner
	pins     map[uint64][hashSize]byte // heads pinned by the caller, by record number
}

// VerifyExport checks an export (Store.ExportAudit) offline. With pub it also checks every
// checkpoint's signature and requires at least one valid checkpoint; with a nil pub it
// checks only the chain's internal consistency. The first problem is returned as a
// *VerifyError naming the record and the reason.
func VerifyExport(r io.Reader, pub *ecdsa.PublicKey) (VerifyResult, error) {
	return VerifyExportPinned(r, pub)
}

// VerifyExportPinned is VerifyExport that also requires the export to contain every pinned
// head: record Seq with exactly chain hash Hash (ReasonForked if it differs; a pinned
// record after the export's end is ReasonTruncated, one before its start ReasonMissing).
// Two logs numbered alike but different in a pinned record cannot both pass.
func VerifyExportPinned(r io.Reader, pub *ecdsa.PublicKey, pins ...Head) (VerifyResult, error) {
	v := &verifier{pub: pub, sc: bufio.NewScanner(r), pins: map[uint64][hashSize]byte{}}
	for _, p := range pins {
		if h, ok := v.pins[p.Seq]; ok && h != p.Hash {
			return VerifyResult{}, fmt.Errorf("two different heads pinned for record %d", p.Seq)
		}
		v.pins[p.Seq] = p.Hash
	}
	v.sc.Buffer(make([]byte, 0, 64<<10), maxExportLine)
	if pub != nil {
		id, err := KeyID(pub)
		if err != nil {
			return VerifyResult{}, err
		}
		v.keyID = id
	}
	return v.run()
}

func (v *verifier) fail(seq uint64, reason Reason, format string, args ...any) error {
	return &VerifyError{Line: v.line, Seq: seq, Reason: reason, Detail: fmt.Sprintf(format, args...)}
}

func parseLine(b []byte) (*exportLine, error) {
	dec := json.NewDecoder(bytes.NewReader(b))
	dec.DisallowUnknownFields()
	var l exportLine
	if err := dec.Decode(&l); err != nil {
		return nil, err
	}
	if dec.More() {
		return nil, errors.New("trailing data after JSON object")
	}
	return &l, nil
}

func decodeHash(s string) ([hashSize]byte, bool) {
	var h [hashSize]byte
	if len(s) != 2*hashSize {
		return h, false
	}
	_, err := hex.Decode(h[:], []byte(s))
	return h, err == nil
}

func parseTime(s string) (int64, bool) {
	t, err := time.Parse(time.RFC3339Nano, s)
	if err != nil {
		return 0, false
	}
	return t.UnixNano(), true
}

func (v *verifier) run() (VerifyResult, error) {
	if err := v.header(); err != nil {
		return VerifyResult{}, err
	}
	for v.sc.Scan() {
		v.line++
		l, err := parseLine(v.sc.Bytes())
		if err != nil {
			return VerifyResult{}, v.fail(v.expect, ReasonMalformed, "%v", err)
		}
		switch l.Type {
		case "record":
			err = v.record(l)
		case "checkpoint":
			err = v.checkpoint(l)
		default:
			err = v.fail(v.expect, ReasonMalformed, "unexpected line type %q", l.Type)
		}
		if err != nil {
			return VerifyResult{}, err
		}
	}
	if err := v.sc.Err(); err != nil {
		return VerifyResult{}, v.fail(v.expect, ReasonMalformed, "reading export: %v", err)
	}
	if v.headerTo != 0 && v.res.To < v.headerTo {
		return VerifyResult{}, v.fail(v.expect, ReasonTruncated,
			"export announces records through %d but ends after %d", v.headerTo, v.res.To)
	}
	if v.pub != nil && v.res.Records > 0 && v.res.Checkpoints == 0 {
		return VerifyResult{}, v.fail(v.res.From, ReasonUnanchored, "no checkpoint covers any record of the export")
	}
	// A pinned head the export did not reach: the lowest one names the failure.
	if len(v.pins) > 0 {
		seq := slices.Min(slices.Collect(maps.Keys(v.pins)))
		if seq > v.res.To {
			return VerifyResult{}, v.fail(seq, ReasonTruncated,
				"the export ends at record %d, before record %d of a head pinned earlier: the log was cut or rolled back", v.res.To, seq)
		}
		return VerifyResult{}, v.fail(seq, ReasonMissing,
			"the export starts after record %d of a head pinned earlier: export from record %d or earlier", seq, seq)
	}
	return v.res, nil
}

func (v *verifier) header() error {
	if !v.sc.Scan() {
		v.line = 1
		if err := v.sc.Err(); err != nil {
			return v.fail(0, ReasonMalformed, "reading export: %v", err)
		}
		return v.fail(0, ReasonMalformed, "empty export")
	}
	v.line = 1
	l, err := parseLine(v.sc.Bytes())
	if err != nil {
		return v.fail(0, ReasonMalformed, "header: %v", err)
	}
	if l.Type != "header" || l.Format != exportFormat || l.From == nil || *l.From == 0 || l.To == nil {
		return v.fail(0, ReasonMalformed, "first line is not a %s header", exportFormat)
	}
	prev, ok := decodeHash(l.Prev)
	if !ok {
		return v.fail(0, ReasonMalformed, "header: bad prev hash")
	}
	if *l.From == 1 && prev != ([hashSize]byte{}) {
		return v.fail(1, ReasonEdited, "header: the chain starts from zeros, not %s", l.Prev)
	}
	v.expect, v.prev, v.headerTo = *l.From, prev, *l.To
	if want, ok := v.pins[*l.From-1]; ok {
		if prev != want {
			return v.fail(*l.From-1, ReasonForked, "the export continues from record %d with hash %x…, but the head pinned for it is %x…: this is another log",
				*l.From-1, prev[:8], want[:8])
		}
		delete(v.pins, *l.From-1)
	}
	return nil
}

func (v *verifier) record(l *exportLine) error {
	if l.Seq == nil || l.Actor == nil || l.Action == nil || l.Subject == nil || l.Outcome == nil {
		return v.fail(v.expect, ReasonMalformed, "record line misses a field")
	}
	seq := *l.Seq
	if seq != v.expect {
		return v.outOfOrder(seq)
	}
	t, ok := parseTime(l.Time)
	if !ok {
		return v.fail(seq, ReasonMalformed, "bad time %q", l.Time)
	}
	stated, ok := decodeHash(l.Hash)
	if !ok {
		return v.fail(seq, ReasonMalformed, "bad hash")
	}
	r := &Record{Seq: seq, Time: t, Actor: *l.Actor, Action: *l.Action, Subject: *l.Subject, Outcome: *l.Outcome, Details: l.Details}
	if h := chainHash(v.prev, canonicalRecord(r)); h != stated {
		return v.fail(seq, ReasonEdited, "record content does not match its hash")
	}
	if want, ok := v.pins[seq]; ok {
		if stated != want {
			return v.fail(seq, ReasonForked, "record %d has chain hash %x…, but the head pinned for it is %x…: this is another log with the same numbering",
				seq, stated[:8], want[:8])
		}
		delete(v.pins, seq)
	}
	v.prev = stated
	v.expect++
	if v.res.Records == 0 {
		v.res.From = seq
	}
	v.res.Records++
	v.res.To = seq
	return nil
}

// outOfOrder decides between "reordered" and "missing" by looking for the expected record
// further on; it consumes the rest of the input, which is fine because verification stops.
func (v *verifier) outOfOrder(seq uint64) error {
	want := v.expect
	if seq < want {
		return v.fail(seq, ReasonReordered, "record %d appears after record %d", seq, want-1)
	}
	line := v.line
	for v.sc.Scan() {
		var probe struct {
			Type string  `json:"type"`
			Seq  *uint64 `json:"seq"`
		}
		if json.Unmarshal(v.sc.Bytes(), &probe) == nil && probe.Type == "record" && probe.Seq != nil && *probe.Seq == want {
			v.line = line
			return v.fail(want, ReasonReordered, "record %d appears after record %d", want, seq)
		}
	}
	v.line = line
	if seq == want+1 {
		return v.fail(want, ReasonMissing, "record %d is missing (next is %d)", want, seq)
	}
	return v.fail(want, ReasonMissing, "records %d..%d are missing", want, seq-1)
}

func (v *verifier) checkpoint(l *exportLine) error {
	if l.Size == nil {
		return v.fail(v.expect, ReasonMalformed, "checkpoint without size")
	}
	c := &Checkpoint{Size: *l.Size}
	var ok bool
	if c.Head, ok = decodeHash(l.Head); !ok {
		return v.fail(c.Size, ReasonMalformed, "checkpoint %d: bad head", c.Size)
	}
	if c.Time, ok = parseTime(l.Time); !ok {
		return v.fail(c.Size, ReasonMalformed, "checkpoint %d: bad time", c.Size)
	}
	if id, err := hex.DecodeString(l.KeyID); err != nil || len(id) != 32 {
		return v.fail(c.Size, ReasonMalformed, "checkpoint %d: bad key id", c.Size)
	} else {
		copy(c.KeyID[:], id)
	}
	sig, err := base64.StdEncoding.DecodeString(l.Sig)
	if err != nil {
		return v.fail(c.Size, ReasonMalformed, "checkpoint %d: bad signature encoding", c.Size)
	}
	c.Signature = sig
	if v.pub != nil {
		if c.KeyID != v.keyID {
			return v.fail(c.Size, ReasonBadSignature, "checkpoint %d is signed by key %x, not the given key", c.Size, c.KeyID[:8])
		}
		if !ecdsa.VerifyASN1(v.pub, checkpointDigest(c), c.Signature) {
			return v.fail(c.Size, ReasonBadSignature, "checkpoint %d: signature does not verify", c.Size)
		}
	}
	last := v.expect - 1
	switch {
	case c.Size > last:
		// A signed checkpoint proves records up to its size existed.
		return v.fail(v.expect, ReasonMissing, "checkpoint %d follows record %d: records %d..%d are missing", c.Size, last, v.expect, c.Size)
	case c.Size < last:
		return v.fail(c.Size, ReasonReordered, "checkpoint %d appears after record %d", c.Size, last)
	}
	if c.Head != v.prev {
		first := v.res.VerifiedThrough + 1
		if first < v.res.From {
			first = v.res.From
		}
		return v.fail(first, ReasonEdited,
			"chain head at %d does not match signed checkpoint %d: a record in %d..%d was altered and the chain rehashed",
			last, c.Size, first, c.Size)
	}
	v.res.Checkpoints++
	v.res.VerifiedThrough = c.Size
	v.res.SignedHead = Head{Seq: c.Size, Hash: c.Head}
	return nil
}

// VerifyAudit verifies the stored audit log against pub (nil: chain consistency only),
// exactly as an auditor would verify a full export.
func (s *Store) VerifyAudit(ctx context.Context, pub *ecdsa.PublicKey) (VerifyResult, error) {
	if err := s.enter(); err != nil {
		return VerifyResult{}, err
	}
	defer s.leave()
	pr, pw := io.Pipe()
	done := make(chan struct{})
	go func() {
		defer close(done)
		pw.CloseWithError(s.export(ctx, pw, 1, 0))
	}()
	res, err := VerifyExport(pr, pub)
	// Stop the exporter if verification ended early, and wait so that it never outlives
	// this call (Close must not race with it).
	_ = pr.CloseWithError(errors.New("verification finished"))
	<-done
	return res, err
}
