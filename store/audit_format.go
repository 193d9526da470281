package store

import (
	"crypto/sha256"
	"encoding/binary"
	"fmt"
	"slices"
	"sort"
	"unicode/utf8"

	"github.com/emmansun/gmsm/sm3"
)

// Audit formats. Three byte layouts are defined here; all integers are big-endian, every
// variable-length field is a 4-byte length followed by that many bytes, strings are UTF-8.
//
// # Canonical record bytes (what the chain hashes)
//
//	offset  size  field
//	0       1     format version, 0x01
//	1       8     seq (uint64), first record is 1
//	9       8     time, Unix nanoseconds (int64)
//	17      4+n   actor
//	.       4+n   action
//	.       4+n   subject
//	.       4+n   outcome
//	.       4     number of details d
//	.       d *   (4+n key, 4+n value), sorted by key (bytewise), keys unique
//
// The chain: h_0 = 32 zero bytes; h_i = SM3(h_{i-1} || canonical bytes of record i).
// This layout is the contract with offline verifiers; the protobuf encoding of
// AuditRecord (what is stored at a/r/<seq>) is never hashed, so a change in protobuf's
// serialisation cannot break old chains. testdata/audit_canonical_*.golden pins it.
//
// # Canonical checkpoint bytes (what the signer signs)
//
//	offset  size  field
//	0       16    ASCII "hufu-audit-ckpt1"
//	16      8     size: number of records covered (records 1..size)
//	24      32    head: h_size
//	56      8     time, Unix nanoseconds (int64)
//	64      32    key id: SHA-256 of the signer's public key, PKIX DER
//
// The signature is ASN.1 DER ECDSA P-256 over SHA-256 of these 96 bytes, made by
// [Signer.SignDigest] (an HSM-resident key in production).
//
// # Export (JSON lines)
//
// One JSON object per line, written by Store.ExportAudit and read by VerifyExport:
//
//	{"type":"header","format":"hufu-audit-export/1","from":F,"to":T,"prev":"<hex h_{F-1}>"}
//	{"type":"record","seq":S,"time":"<RFC 3339, nanoseconds, UTC>","actor":"...","action":"...",
//	 "subject":"...","outcome":"...","details":{"k":"v",...},"hash":"<hex h_S>"}
//	{"type":"checkpoint","size":N,"head":"<hex>","time":"<RFC 3339>","key_id":"<hex>","sig":"<base64 DER>"}
//
// The header comes first; records follow in sequence order; a checkpoint of size N comes
// right after record N. Unknown fields are rejected.

const (
	canonicalVersion = 0x01
	hashSize         = 32
	checkpointTag    = "hufu-audit-ckpt1"
	checkpointLen    = 16 + 8 + 32 + 8 + 32

	// Limits on what an audit event may carry, so one record stays small.
	maxFieldLen   = 1024
	maxDetails    = 32
	maxDetailsLen = 8192
)

// Event is what domain code appends to the audit log. Details must already have personal
// data (phone numbers, ID numbers, bank cards) masked or HMAC'd: the log is exported to
// auditors and kept forever.
type Event struct {
	Actor   string // who: a user id, a system name, "operator:<name>"
	Action  string // what: "user.create", "cosign.sign", ... Required.
	Subject string // on what: usually a record key
	Outcome string // "ok", "denied", "failed", ... Required.
	Details map[string]string
}

// Outcome values used by the store itself and recommended to callers.
const (
	OutcomeOK     = "ok"
	OutcomeDenied = "denied"
	OutcomeFailed = "failed"
)

// Record is one audit record as read back or exported.
type Record struct {
	Seq     uint64
	Time    int64 // Unix nanoseconds
	Actor   string
	Action  string
	Subject string
	Outcome string
	Details map[string]string
	Hash    [hashSize]byte
}

func (e *Event) validate() error {
	if e.Action == "" || e.Outcome == "" {
		return fmt.Errorf("%w: action and outcome are required", ErrInvalidEvent)
	}
	for _, f := range []string{e.Actor, e.Action, e.Subject, e.Outcome} {
		if len(f) > maxFieldLen || !utf8.ValidString(f) {
			return fmt.Errorf("%w: field longer than %d bytes or not UTF-8", ErrInvalidEvent, maxFieldLen)
		}
	}
	if len(e.Details) > maxDetails {
		return fmt.Errorf("%w: more than %d details", ErrInvalidEvent, maxDetails)
	}
	total := 0
	for k, v := range e.Details {
		if k == "" || !utf8.ValidString(k) || !utf8.ValidString(v) {
			return fmt.Errorf("%w: detail keys must be non-empty UTF-8", ErrInvalidEvent)
		}
		total += len(k) + len(v)
	}
	if total > maxDetailsLen {
		return fmt.Errorf("%w: details longer than %d bytes", ErrInvalidEvent, maxDetailsLen)
	}
	return nil
}

func sortedDetailKeys(d map[string]string) []string {
	keys := make([]string, 0, len(d))
	for k := range d {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	return keys
}

func appendField(b []byte, s string) []byte {
	b = binary.BigEndian.AppendUint32(b, uint32(len(s)))
	return append(b, s...)
}

// canonicalRecord returns the canonical bytes of r (seq and time at fixed offsets 1 and 9,
// so the committer can fill them in under the append lock).
func canonicalRecord(r *Record) []byte {
	return appendCanonicalRecord(nil, r, sortedDetailKeys(r.Details))
}

// appendCanonicalRecord appends the canonical bytes of r; keys are r.Details' keys, sorted.
func appendCanonicalRecord(b []byte, r *Record, keys []string) []byte {
	n := 1 + 8 + 8 + 4*5 + len(r.Actor) + len(r.Action) + len(r.Subject) + len(r.Outcome)
	for k, v := range r.Details {
		n += 8 + len(k) + len(v)
	}
	b = slices.Grow(b, n)
	b = append(b, canonicalVersion)
	b = binary.BigEndian.AppendUint64(b, r.Seq)
	b = binary.BigEndian.AppendUint64(b, uint64(r.Time))
	b = appendField(b, r.Actor)
	b = appendField(b, r.Action)
	b = appendField(b, r.Subject)
	b = appendField(b, r.Outcome)
	b = binary.BigEndian.AppendUint32(b, uint32(len(r.Details)))
	for _, k := range keys {
		b = appendField(b, k)
		b = appendField(b, r.Details[k])
	}
	return b
}

// setCanonicalSeqTime patches seq and time into bytes made by canonicalRecord.
func setCanonicalSeqTime(b []byte, seq uint64, t int64) {
	binary.BigEndian.PutUint64(b[1:9], seq)
	binary.BigEndian.PutUint64(b[9:17], uint64(t))
}

// chainHash computes h_i from h_{i-1} and the canonical bytes of record i.
func chainHash(prev [hashSize]byte, canonical []byte) [hashSize]byte {
	h := sm3.New()
	h.Write(prev[:])
	h.Write(canonical)
	var out [hashSize]byte
	h.Sum(out[:0])
	return out
}

// decodeCanonicalRecord parses canonical record bytes; it is strict (sorted unique detail
// keys, no trailing bytes) so that exactly one byte string encodes each record.
func decodeCanonicalRecord(b []byte) (*Record, error) {
	if len(b) < 17 || b[0] != canonicalVersion {
		return nil, fmt.Errorf("%w: bad canonical record header", ErrCorrupt)
	}
	r := &Record{Seq: binary.BigEndian.Uint64(b[1:9]), Time: int64(binary.BigEndian.Uint64(b[9:17]))}
	b = b[17:]
	field := func() (string, error) {
		if len(b) < 4 {
			return "", fmt.Errorf("%w: truncated canonical record", ErrCorrupt)
		}
		n := binary.BigEndian.Uint32(b)
		if uint64(len(b)-4) < uint64(n) {
			return "", fmt.Errorf("%w: truncated canonical field", ErrCorrupt)
		}
		s := string(b[4 : 4+n])
		b = b[4+n:]
		return s, nil
	}
	var err error
	for _, p := range []*string{&r.Actor, &r.Action, &r.Subject, &r.Outcome} {
		if *p, err = field(); err != nil {
			return nil, err
		}
	}
	if len(b) < 4 {
		return nil, fmt.Errorf("%w: truncated detail count", ErrCorrupt)
	}
	d := binary.BigEndian.Uint32(b)
	b = b[4:]
	if d > maxDetails {
		return nil, fmt.Errorf("%w: %d details", ErrCorrupt, d)
	}
	if d > 0 {
		r.Details = make(map[string]string, d)
	}
	last := ""
	for i := uint32(0); i < d; i++ {
		k, err := field()
		if err != nil {
			return nil, err
		}
		v, err := field()
		if err != nil {
			return nil, err
		}
		if i > 0 && k <= last {
			return nil, fmt.Errorf("%w: detail keys not sorted and unique", ErrCorrupt)
		}
		last = k
		r.Details[k] = v
	}
	if len(b) != 0 {
		return nil, fmt.Errorf("%w: %d trailing bytes", ErrCorrupt, len(b))
	}
	return r, nil
}

// Checkpoint is a signed statement about the log: it had Size records and head hash Head.
type Checkpoint struct {
	Size      uint64
	Head      [hashSize]byte
	Time      int64 // Unix nanoseconds
	KeyID     [32]byte
	Signature []byte
}

func canonicalCheckpoint(c *Checkpoint) []byte {
	b := make([]byte, 0, checkpointLen)
	b = append(b, checkpointTag...)
	b = binary.BigEndian.AppendUint64(b, c.Size)
	b = append(b, c.Head[:]...)
	b = binary.BigEndian.AppendUint64(b, uint64(c.Time))
	b = append(b, c.KeyID[:]...)
	return b
}

// checkpointDigest is what the Signer signs.
func checkpointDigest(c *Checkpoint) []byte {
	d := sha256.Sum256(canonicalCheckpoint(c))
	return d[:]
}
