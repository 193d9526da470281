package store

import (
	"bytes"
	"context"
	"crypto/ecdsa"
	"crypto/rand"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"testing"

	"github.com/cockroachdb/pebble/v2"
	"google.golang.org/protobuf/proto"

	"github.com/hufu-hsm/hufu/store/storepb"
)

// auditFixture is a store with 12 audit records and checkpoints at 4, 8 and 12.
func auditFixture(t *testing.T) *testStore {
	t.Helper()
	ts := openTest(t, func(o *Options) { o.CheckpointEvery = 4 })
	for i := 1; i <= 12; i++ {
		putExample(t, ts.Store, fmt.Sprintf("r%02d", i), &storepb.Example{Count: int64(i)})
	}
	if c := ts.LastCheckpoint(); c == nil || c.Size != 12 {
		t.Fatalf("fixture checkpoint %+v", c)
	}
	return ts
}

func exportLines(t *testing.T, ts *testStore, from, to uint64) []string {
	t.Helper()
	var buf bytes.Buffer
	if err := ts.ExportAudit(context.Background(), &buf, from, to); err != nil {
		t.Fatal(err)
	}
	return strings.Split(strings.TrimSuffix(buf.String(), "\n"), "\n")
}

func lineOf(t *testing.T, lines []string, typ string, n uint64) int {
	t.Helper()
	for i, l := range lines {
		var el exportLine
		if err := json.Unmarshal([]byte(l), &el); err != nil {
			continue
		}
		if el.Type == typ && ((el.Seq != nil && *el.Seq == n) || (el.Size != nil && *el.Size == n)) {
			return i
		}
	}
	t.Fatalf("no %s %d in export", typ, n)
	return -1
}

func editLine(t *testing.T, line string, f func(*exportLine)) string {
	t.Helper()
	var el exportLine
	if err := json.Unmarshal([]byte(line), &el); err != nil {
		t.Fatal(err)
	}
	f(&el)
	b, err := json.Marshal(el)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

func remove(lines []string, idx ...int) []string {
	drop := map[int]bool{}
	for _, i := range idx {
		drop[i] = true
	}
	var out []string
	for i, l := range lines {
		if !drop[i] {
			out = append(out, l)
		}
	}
	return out
}

func resign(t *testing.T, key *ecdsa.PrivateKey, el *exportLine) {
	t.Helper()
	c := &Checkpoint{Size: *el.Size}
	c.Head, _ = decodeHash(el.Head)
	c.Time, _ = parseTime(el.Time)
	id, _ := KeyID(&key.PublicKey)
	c.KeyID = id
	sig, err := ecdsa.SignASN1(rand.Reader, key, checkpointDigest(c))
	if err != nil {
		t.Fatal(err)
	}
	el.KeyID = hex.EncodeToString(id[:])
	el.Sig = base64.StdEncoding.EncodeToString(sig)
}

func TestVerifyExportDetectsTampering(t *testing.T) {
	ts := auditFixture(t)
	pub := ts.signer.PublicKey()
	orig := exportLines(t, ts, 0, 0)
	other := newKeySigner(t)

	// rehashFrom edits record seq and recomputes every later stated hash, as an attacker
	// without the signing key would: only the signed checkpoint catches it.
	rehashFrom := func(lines []string, seq uint64) []string {
		out := append([]string(nil), lines...)
		var prev [hashSize]byte
		for i, l := range out {
			var el exportLine
			if json.Unmarshal([]byte(l), &el) != nil || el.Type != "record" {
				continue
			}
			if *el.Seq == seq {
				*el.Actor = "mallory"
			}
			tm, _ := parseTime(el.Time)
			r := &Record{Seq: *el.Seq, Time: tm, Actor: *el.Actor, Action: *el.Action, Subject: *el.Subject, Outcome: *el.Outcome, Details: el.Details}
			if *el.Seq >= seq {
				h := chainHash(prev, canonicalRecord(r))
				el.Hash = hex.EncodeToString(h[:])
			}
			prev, _ = decodeHash(el.Hash)
			b, _ := json.Marshal(el)
			out[i] = string(b)
		}
		return out
	}

	tests := []struct {
		name    string
		mutate  func(l []string) []string
		pub     *ecdsa.PublicKey
		reason  Reason
		seq     uint64
		wantRes *VerifyResult
	}{
		{"untouched", func(l []string) []string { return l }, pub, "", 0,
			&VerifyResult{From: 1, To: 12, Records: 12, Checkpoints: 3, VerifiedThrough: 12, SignedHead: Head{12, recordHash(t, ts, 12)}}},
		{"edited actor", func(l []string) []string {
			i := lineOf(t, l, "record", 6)
			l[i] = editLine(t, l[i], func(e *exportLine) { *e.Actor = "mallory" })
			return l
		}, pub, ReasonEdited, 6, nil},
		{"edited detail", func(l []string) []string {
			i := lineOf(t, l, "record", 2)
			l[i] = editLine(t, l[i], func(e *exportLine) { e.Details = map[string]string{"x": "y"} })
			return l
		}, pub, ReasonEdited, 2, nil},
		{"edited time", func(l []string) []string {
			i := lineOf(t, l, "record", 9)
			l[i] = editLine(t, l[i], func(e *exportLine) { e.Time = "2020-01-01T00:00:00Z" })
			return l
		}, pub, ReasonEdited, 9, nil},
		{"edited stated hash", func(l []string) []string {
			i := lineOf(t, l, "record", 3)
			l[i] = editLine(t, l[i], func(e *exportLine) { e.Hash = strings.Repeat("00", 32) })
			return l
		}, pub, ReasonEdited, 3, nil},
		{"edited and rehashed", func(l []string) []string { return rehashFrom(l, 6) }, pub, ReasonEdited, 5, nil},
		{"deleted record", func(l []string) []string { return remove(l, lineOf(t, l, "record", 6)) }, pub, ReasonMissing, 6, nil},
		{"deleted two records", func(l []string) []string {
			return remove(l, lineOf(t, l, "record", 6), lineOf(t, l, "record", 7))
		}, pub, ReasonMissing, 6, nil},
		{"swapped records", func(l []string) []string {
			i, j := lineOf(t, l, "record", 6), lineOf(t, l, "record", 7)
			l[i], l[j] = l[j], l[i]
			return l
		}, pub, ReasonReordered, 6, nil},
		{"record moved to the end", func(l []string) []string {
			i := lineOf(t, l, "record", 3)
			r := l[i]
			return append(remove(l, i), r)
		}, pub, ReasonReordered, 3, nil},
		{"duplicated record", func(l []string) []string {
			i := lineOf(t, l, "record", 5)
			return append(l[:i+1], append([]string{l[i]}, l[i+1:]...)...)
		}, pub, ReasonReordered, 5, nil},
		{"truncated tail", func(l []string) []string { return l[:len(l)-3] }, pub, ReasonTruncated, 11, nil},
		{"record deleted before its checkpoint", func(l []string) []string {
			return remove(l, lineOf(t, l, "record", 12))
		}, pub, ReasonMissing, 12, nil},
		{"bad signature", func(l []string) []string {
			i := lineOf(t, l, "checkpoint", 8)
			l[i] = editLine(t, l[i], func(e *exportLine) {
				sig, _ := base64.StdEncoding.DecodeString(e.Sig)
				sig[len(sig)-1] ^= 1
				e.Sig = base64.StdEncoding.EncodeToString(sig)
			})
			return l
		}, pub, ReasonBadSignature, 8, nil},
		{"checkpoint head edited", func(l []string) []string {
			i := lineOf(t, l, "checkpoint", 4)
			l[i] = editLine(t, l[i], func(e *exportLine) { e.Head = strings.Repeat("ab", 32) })
			return l
		}, pub, ReasonBadSignature, 4, nil},
		{"rehashed and re-signed by another key", func(l []string) []string {
			l = rehashFrom(l, 6)
			for _, size := range []uint64{8, 12} {
				i := lineOf(t, l, "checkpoint", size)
				var prevHead string
				l[i] = editLine(t, l[i], func(e *exportLine) {
					var r exportLine
					_ = json.Unmarshal([]byte(l[i-1]), &r)
					prevHead = r.Hash
					e.Head = prevHead
					resign(t, other.key, e)
				})
			}
			return l
		}, pub, ReasonBadSignature, 8, nil},
		{"checkpoints stripped", func(l []string) []string {
			return remove(l, lineOf(t, l, "checkpoint", 4), lineOf(t, l, "checkpoint", 8), lineOf(t, l, "checkpoint", 12))
		}, pub, ReasonUnanchored, 1, nil},
		{"checkpoints stripped, chain-only check", func(l []string) []string {
			return remove(l, lineOf(t, l, "checkpoint", 4), lineOf(t, l, "checkpoint", 8), lineOf(t, l, "checkpoint", 12))
		}, nil, "", 0, &VerifyResult{From: 1, To: 12, Records: 12}},
		{"checkpoint moved earlier", func(l []string) []string {
			i := lineOf(t, l, "checkpoint", 4)
			c := l[i]
			l = remove(l, i)
			return append(l[:2], append([]string{c}, l[2:]...)...)
		}, pub, ReasonMissing, 2, nil},
		{"header prev edited", func(l []string) []string {
			l[0] = editLine(t, l[0], func(e *exportLine) { e.Prev = strings.Repeat("11", 32) })
			return l
		}, pub, ReasonEdited, 1, nil},
		{"missing header", func(l []string) []string { return l[1:] }, pub, ReasonMalformed, 0, nil},
		{"garbage line", func(l []string) []string { l[3] = "{not json"; return l }, pub, ReasonMalformed, 3, nil},
		{"unknown field", func(l []string) []string {
			l[2] = strings.Replace(l[2], `{"type":"record"`, `{"type":"record","extra":1`, 1)
			return l
		}, pub, ReasonMalformed, 2, nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			lines := tt.mutate(append([]string(nil), orig...))
			res, err := VerifyExport(strings.NewReader(strings.Join(lines, "\n")+"\n"), tt.pub)
			if tt.reason == "" {
				if err != nil {
					t.Fatalf("VerifyExport: %v", err)
				}
				if res != *tt.wantRes {
					t.Fatalf("result %+v, want %+v", res, *tt.wantRes)
				}
				return
			}
			var ve *VerifyError
			if !errors.As(err, &ve) || !errors.Is(err, ErrVerify) {
				t.Fatalf("VerifyExport = %+v, %v; want a VerifyError", res, err)
			}
			if ve.Reason != tt.reason || ve.Seq != tt.seq {
				t.Fatalf("got %v; want reason %q at record %d", ve, tt.reason, tt.seq)
			}
		})
	}
}

func TestExportRange(t *testing.T) {
	ts := auditFixture(t)
	pub := ts.signer.PublicKey()
	tests := []struct {
		name     string
		from, to uint64
		want     VerifyResult
	}{
		{"middle with a checkpoint", 5, 9, VerifyResult{From: 5, To: 9, Records: 5, Checkpoints: 1, VerifiedThrough: 8, SignedHead: Head{8, recordHash(t, ts, 8)}}},
		{"one record at a checkpoint", 4, 4, VerifyResult{From: 4, To: 4, Records: 1, Checkpoints: 1, VerifiedThrough: 4, SignedHead: Head{4, recordHash(t, ts, 4)}}},
		{"to the end", 11, 0, VerifyResult{From: 11, To: 12, Records: 2, Checkpoints: 1, VerifiedThrough: 12, SignedHead: Head{12, recordHash(t, ts, 12)}}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			lines := exportLines(t, ts, tt.from, tt.to)
			res, err := VerifyExport(strings.NewReader(strings.Join(lines, "\n")), pub)
			if err != nil || res != tt.want {
				t.Fatalf("VerifyExport = %+v, %v; want %+v", res, err, tt.want)
			}
		})
	}
	t.Run("range without checkpoint is unanchored", func(t *testing.T) {
		lines := exportLines(t, ts, 5, 6)
		_, err := VerifyExport(strings.NewReader(strings.Join(lines, "\n")), pub)
		var ve *VerifyError
		if !errors.As(err, &ve) || ve.Reason != ReasonUnanchored {
			t.Fatalf("err = %v", err)
		}
	})
}

// TestVerifyStoredTampering tampers with the database itself (as someone with disk access
// would) and checks that the store's own verification names the record.
func TestVerifyStoredTampering(t *testing.T) {
	ctx := context.Background()
	rawRecord := func(t *testing.T, ts *testStore, seq uint64) *storepb.AuditRecord {
		v, ok, err := ts.getRaw(auditRecordKey(seq))
		if err != nil || !ok {
			t.Fatalf("record %d: %v", seq, err)
		}
		var p storepb.AuditRecord
		if err := proto.Unmarshal(v, &p); err != nil {
			t.Fatal(err)
		}
		return &p
	}
	set := func(t *testing.T, ts *testStore, seq uint64, p *storepb.AuditRecord) {
		b, _ := proto.Marshal(p)
		if err := ts.db.Set([]byte(auditRecordKey(seq)), b, pebble.Sync); err != nil {
			t.Fatal(err)
		}
	}
	del := func(t *testing.T, ts *testStore, key string) {
		if err := ts.db.Delete([]byte(key), pebble.Sync); err != nil {
			t.Fatal(err)
		}
	}
	tests := []struct {
		name   string
		tamper func(t *testing.T, ts *testStore)
		reason Reason
		seq    uint64
	}{
		{"edited", func(t *testing.T, ts *testStore) {
			p := rawRecord(t, ts, 6)
			p.Outcome = OutcomeDenied
			set(t, ts, 6, p)
		}, ReasonEdited, 6},
		{"deleted", func(t *testing.T, ts *testStore) { del(t, ts, auditRecordKey(6)) }, ReasonMissing, 6},
		{"swapped", func(t *testing.T, ts *testStore) {
			a, b := rawRecord(t, ts, 6), rawRecord(t, ts, 7)
			set(t, ts, 6, b)
			set(t, ts, 7, a)
		}, ReasonReordered, 6},
		{"checkpoint signature corrupted", func(t *testing.T, ts *testStore) {
			v, _, _ := ts.getRaw(auditCheckpointKey(8))
			var c storepb.AuditCheckpoint
			if err := proto.Unmarshal(v, &c); err != nil {
				t.Fatal(err)
			}
			c.Signature[len(c.Signature)/2] ^= 0x40
			b, _ := proto.Marshal(&c)
			if err := ts.db.Set([]byte(auditCheckpointKey(8)), b, pebble.Sync); err != nil {
				t.Fatal(err)
			}
		}, ReasonBadSignature, 8},
		{"truncated", func(t *testing.T, ts *testStore) {
			del(t, ts, auditRecordKey(11))
			del(t, ts, auditRecordKey(12))
		}, ReasonMissing, 11},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			ts := auditFixture(t)
			tt.tamper(t, ts)
			ts.reopen(t)
			_, err := ts.VerifyAudit(ctx, ts.signer.PublicKey())
			var ve *VerifyError
			if !errors.As(err, &ve) || ve.Reason != tt.reason || ve.Seq != tt.seq {
				t.Fatalf("VerifyAudit = %v; want %q at record %d", err, tt.reason, tt.seq)
			}
		})
	}
}
