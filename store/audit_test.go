package store

import (
	"bytes"
	"context"
	"encoding/hex"
	"errors"
	"flag"
	"fmt"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/emmansun/gmsm/sm3"
	"google.golang.org/protobuf/proto"

	"github.com/hufu-hsm/hufu/store/storepb"
)

var update = flag.Bool("update", false, "rewrite golden files in testdata/")

// checkGolden compares got with testdata/name, or rewrites it under -update.
func checkGolden(t *testing.T, name string, got []byte) {
	t.Helper()
	path := filepath.Join("testdata", name)
	if *update {
		if err := os.MkdirAll("testdata", 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(path, got, 0o644); err != nil {
			t.Fatal(err)
		}
		return
	}
	want, err := os.ReadFile(path)
	if err != nil {
		t.Fatalf("%v (run with -update to create)", err)
	}
	if !bytes.Equal(got, want) {
		t.Fatalf("%s differs from golden file:\ngot:\n%s\nwant:\n%s", name, got, want)
	}
}

var goldenTime = time.Date(2026, 11, 30, 8, 0, 0, 123456789, time.UTC).UnixNano()

// TestCanonicalRecordGolden pins the canonical record layout and the chain hash: a change
// here breaks every verifier in the field, so it must be deliberate (-update).
func TestCanonicalRecordGolden(t *testing.T) {
	chain := []*Record{
		{Seq: 1, Time: goldenTime, Action: "store.init", Outcome: OutcomeOK},
		{Seq: 2, Time: goldenTime + 1, Actor: "user:u-1", Action: "user.create", Subject: "u/u-1", Outcome: OutcomeOK,
			Details: map[string]string{"phone": "138****0000", "id_hmac": "9f86d081884c7d65", "name": "张*"}},
		{Seq: 3, Time: goldenTime + 2, Actor: "operator:li", Action: "cert.revoke", Subject: "c/00ff", Outcome: OutcomeDenied,
			Details: map[string]string{"reason": "pin locked\nafter 5 tries"}},
	}
	var out bytes.Buffer
	var prev [hashSize]byte
	for _, r := range chain {
		canon := canonicalRecord(r)
		prev = chainHash(prev, canon)
		fmt.Fprintf(&out, "record %d\ncanonical: %s\nhash: %s\n", r.Seq, hex.EncodeToString(canon), hex.EncodeToString(prev[:]))

		back, err := decodeCanonicalRecord(canon)
		if err != nil {
			t.Fatalf("decode record %d: %v", r.Seq, err)
		}
		if !reflect.DeepEqual(back, r) {
			t.Fatalf("round trip of record %d: %+v != %+v", r.Seq, back, r)
		}
	}
	checkGolden(t, "audit_canonical_chain.golden", out.Bytes())
}

func TestCanonicalCheckpointGolden(t *testing.T) {
	c := &Checkpoint{Size: 3, Time: goldenTime}
	for i := range c.Head {
		c.Head[i] = byte(i)
		c.KeyID[i] = byte(0xff - i)
	}
	canon := canonicalCheckpoint(c)
	if len(canon) != checkpointLen {
		t.Fatalf("checkpoint bytes %d, want %d", len(canon), checkpointLen)
	}
	out := fmt.Sprintf("canonical: %s\nsha256: %s\n", hex.EncodeToString(canon), hex.EncodeToString(checkpointDigest(c)))
	checkGolden(t, "audit_checkpoint.golden", []byte(out))
}

// TestCanonicalEncodingIsInjective: field boundaries are length-prefixed, so moving bytes
// between fields changes the encoding.
func TestCanonicalEncodingIsInjective(t *testing.T) {
	tests := []struct {
		name string
		a, b Record
	}{
		{"actor/action boundary", Record{Actor: "ab", Action: "c"}, Record{Actor: "a", Action: "bc"}},
		{"detail key/value boundary", Record{Details: map[string]string{"ab": "c"}}, Record{Details: map[string]string{"a": "bc"}}},
		{"empty detail vs none", Record{Details: map[string]string{"": ""}}, Record{}},
		{"seq", Record{Seq: 1}, Record{Seq: 2}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if bytes.Equal(canonicalRecord(&tt.a), canonicalRecord(&tt.b)) {
				t.Fatal("distinct records encode equal")
			}
		})
	}
}

// TestCheckpointTriggers, with the checkpoint written inside Update and in the background
// (LastCheckpoint waits for one being written, so the same assertions hold).
func TestCheckpointTriggers(t *testing.T) {
	for _, background := range []bool{false, true} {
		t.Run(fmt.Sprintf("background=%v", background), func(t *testing.T) { testCheckpointTriggers(t, background) })
	}
}

func testCheckpointTriggers(t *testing.T, background bool) {
	ctx := context.Background()
	ts := openTest(t, func(o *Options) {
		o.CheckpointEvery = 5
		o.CheckpointInterval = time.Minute
		o.CheckpointInBackground = background
	})
	appendN := func(n int) {
		for range n {
			if err := ts.Append(ctx, Event{Actor: "t", Action: "tick", Outcome: OutcomeOK}); err != nil {
				t.Fatal(err)
			}
		}
	}
	appendN(4)
	if c := ts.LastCheckpoint(); c != nil {
		t.Fatalf("checkpoint after 4 records: %+v", c)
	}
	appendN(1)
	if c := ts.LastCheckpoint(); c == nil || c.Size != 5 {
		t.Fatalf("after 5 records: %+v, want checkpoint at 5", c)
	}
	appendN(2)
	ts.clock.Advance(time.Minute)
	if c, err := ts.MaybeCheckpoint(ctx); err != nil || c == nil || c.Size != 7 {
		t.Fatalf("MaybeCheckpoint after interval = %+v, %v; want size 7", c, err)
	}
	if c, err := ts.MaybeCheckpoint(ctx); err != nil || c != nil {
		t.Fatalf("MaybeCheckpoint with nothing new = %+v, %v", c, err)
	}
	ts.clock.Advance(2 * time.Minute)
	appendN(1) // the interval has passed: this append writes one
	if c := ts.LastCheckpoint(); c == nil || c.Size != 8 || c.Time != ts.clock.Now().UnixNano() {
		t.Fatalf("after interval append: %+v", c)
	}
	res, err := ts.VerifyAudit(ctx, ts.signer.PublicKey())
	if err != nil || res.Checkpoints != 3 || res.VerifiedThrough != 8 {
		t.Fatalf("VerifyAudit = %+v, %v", res, err)
	}
}

// TestSignerFailureDoesNotFailAppend: checkpoints are signed after the records they cover
// are durable; a failing HSM is reported by Checkpoint, and appends go on (the records are
// already chained and will be covered by the next checkpoint).
func TestSignerFailure(t *testing.T) {
	ctx := context.Background()
	ts := openTest(t, func(o *Options) { o.CheckpointEvery = 1 })
	ts.signer.fail = errors.New("token removed")
	if err := ts.Append(ctx, Event{Action: "a", Outcome: OutcomeOK}); err != nil {
		t.Fatalf("append with failing signer: %v", err)
	}
	if _, err := ts.Checkpoint(ctx); err == nil || !strings.Contains(err.Error(), "token removed") {
		t.Fatalf("Checkpoint = %v", err)
	}
	ts.signer.fail = nil
	if c, err := ts.Checkpoint(ctx); err != nil || c.Size != 1 {
		t.Fatalf("Checkpoint after recovery = %+v, %v", c, err)
	}
}

func TestAuditRecordFields(t *testing.T) {
	ctx := context.Background()
	ts := openTest(t)
	ev := Event{Actor: "user:u1", Action: "login", Subject: "u/u1", Outcome: OutcomeDenied,
		Details: map[string]string{"ip": "10.0.0.1", "reason": "bad pin"}}
	if err := ts.Append(ctx, ev, Event{Action: "second", Outcome: OutcomeOK}); err != nil {
		t.Fatal(err)
	}
	r, err := ts.AuditRecord(ctx, 1)
	if err != nil {
		t.Fatal(err)
	}
	want := &Record{Seq: 1, Time: ts.clock.Now().UnixNano(), Actor: ev.Actor, Action: ev.Action,
		Subject: ev.Subject, Outcome: ev.Outcome, Details: ev.Details}
	want.Hash = chainHash([hashSize]byte{}, canonicalRecord(want))
	if !reflect.DeepEqual(r, want) {
		t.Fatalf("record 1 = %+v\nwant %+v", r, want)
	}
	r2, err := ts.AuditRecord(ctx, 2)
	if err != nil || r2.Hash != chainHash(r.Hash, canonicalRecord(&Record{Seq: 2, Time: r.Time, Action: "second", Outcome: OutcomeOK})) {
		t.Fatalf("record 2 does not chain: %+v %v", r2, err)
	}
}

func TestEventValidation(t *testing.T) {
	long := strings.Repeat("x", maxFieldLen+1)
	tests := []struct {
		name string
		ev   Event
		ok   bool
	}{
		{"minimal", Event{Action: "a", Outcome: "ok"}, true},
		{"no action", Event{Outcome: "ok"}, false},
		{"no outcome", Event{Action: "a"}, false},
		{"long actor", Event{Actor: long, Action: "a", Outcome: "ok"}, false},
		{"bad utf8", Event{Action: "a\xff", Outcome: "ok"}, false},
		{"empty detail key", Event{Action: "a", Outcome: "ok", Details: map[string]string{"": "v"}}, false},
		{"huge details", Event{Action: "a", Outcome: "ok", Details: map[string]string{"k": strings.Repeat("v", maxDetailsLen)}}, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := tt.ev.validate()
			if (err == nil) != tt.ok || (err != nil && !errors.Is(err, ErrInvalidEvent)) {
				t.Fatalf("validate = %v, ok want %v", err, tt.ok)
			}
		})
	}
}

// TestPreparedRecordMatchesGeneratedCode: the hand-encoded stored AuditRecord decodes, with
// the generated code, to exactly the message proto.Marshal would have written.
func TestPreparedRecordMatchesGeneratedCode(t *testing.T) {
	tests := []struct {
		name string
		ev   Event
	}{
		{"minimal", Event{Action: "a", Outcome: "ok"}},
		{"all fields", Event{Actor: "user:1", Action: "a.b", Subject: "u/1", Outcome: "denied",
			Details: map[string]string{"z": "1", "a": "2", "m": "中文"}}},
		{"empty detail value", Event{Action: "a", Outcome: "ok", Details: map[string]string{"k": ""}}},
		{"long field", Event{Actor: strings.Repeat("x", maxFieldLen), Action: "a", Outcome: "ok"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			p := prepareEvent(&tt.ev)
			var h [hashSize]byte
			h[0] = 0xaa
			b := p.finish(1<<40, -5, &h)
			var got storepb.AuditRecord
			if err := proto.Unmarshal(b, &got); err != nil {
				t.Fatal(err)
			}
			want := &storepb.AuditRecord{Seq: 1 << 40, TimeUnixNano: -5, Actor: tt.ev.Actor, Action: tt.ev.Action,
				Subject: tt.ev.Subject, Outcome: tt.ev.Outcome, Hash: h[:]}
			for _, k := range sortedDetailKeys(tt.ev.Details) {
				want.Details = append(want.Details, &storepb.AuditDetail{Key: k, Value: tt.ev.Details[k]})
			}
			if !proto.Equal(&got, want) {
				t.Fatalf("decoded %v\nwant    %v", &got, want)
			}
			canon := canonicalRecord(&Record{Actor: tt.ev.Actor, Action: tt.ev.Action, Subject: tt.ev.Subject,
				Outcome: tt.ev.Outcome, Details: tt.ev.Details})
			if !bytes.Equal(p.canonical, canon) {
				t.Fatal("prepared canonical bytes differ from canonicalRecord")
			}
		})
	}
}

// TestSM3KnownAnswer pins the hash the chain is built on (GB/T 32905-2016, example 1).
func TestSM3KnownAnswer(t *testing.T) {
	h := sm3.Sum([]byte("abc"))
	if got := hex.EncodeToString(h[:]); got != "66c7f0f462eeedd9d1f2d46bdc10e4e24167c4875cf2f7a2297da02b8f4ba8e0" {
		t.Fatalf("SM3(abc) = %s", got)
	}
}
