package store

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"strings"
	"sync/atomic"
	"testing"

	"github.com/cockroachdb/pebble/v2/vfs"
	"github.com/cockroachdb/pebble/v2/vfs/errorfs"
)

func TestAuditRecordsRange(t *testing.T) {
	ts := openTest(t)
	ctx := context.Background()
	for i := range 7 {
		if err := ts.Append(ctx, Event{Actor: "test", Action: "range.test", Subject: fmt.Sprint(i), Outcome: OutcomeOK,
			Details: map[string]string{"i": fmt.Sprint(i)}}); err != nil {
			t.Fatal(err)
		}
	}
	for _, tc := range []struct {
		name        string
		from        uint64
		limit       int
		first, last uint64 // 0, 0: none
	}{
		{"from zero means one", 0, 3, 1, 3},
		{"middle", 3, 2, 3, 4},
		{"limit beyond the head", 5, 100, 5, 7},
		{"at the head", 7, 10, 7, 7},
		{"past the head", 8, 10, 0, 0},
	} {
		t.Run(tc.name, func(t *testing.T) {
			recs, err := ts.AuditRecords(ctx, tc.from, tc.limit)
			if err != nil {
				t.Fatal(err)
			}
			if tc.first == 0 {
				if len(recs) != 0 {
					t.Fatalf("got %d records, want none", len(recs))
				}
				return
			}
			if len(recs) != int(tc.last-tc.first+1) || recs[0].Seq != tc.first || recs[len(recs)-1].Seq != tc.last {
				t.Fatalf("got %d records from %d, want %d..%d", len(recs), recs[0].Seq, tc.first, tc.last)
			}
			for _, r := range recs {
				want, err := ts.AuditRecord(ctx, r.Seq)
				if err != nil {
					t.Fatal(err)
				}
				if r.Hash != want.Hash || r.Details["i"] != want.Details["i"] {
					t.Fatalf("record %d differs from AuditRecord", r.Seq)
				}
			}
		})
	}
	for _, limit := range []int{0, -1, MaxAuditRange + 1} {
		if _, err := ts.AuditRecords(ctx, 1, limit); !errors.Is(err, ErrInvalidOptions) {
			t.Errorf("limit %d: err = %v, want ErrInvalidOptions", limit, err)
		}
	}
}

// TestAuditRecordJSONIsTheExportLine: a sink ships what an export holds, byte for byte.
func TestAuditRecordJSONIsTheExportLine(t *testing.T) {
	ts := openTest(t)
	ctx := context.Background()
	if err := ts.Append(ctx, Event{Actor: "u1", Action: "json.test", Subject: "k/1", Outcome: OutcomeDenied,
		Details: map[string]string{"why": "<quoted \"and\" escaped>"}}); err != nil {
		t.Fatal(err)
	}
	var export bytes.Buffer
	if err := ts.export(ctx, &export, 1, 1); err != nil {
		t.Fatal(err)
	}
	lines := strings.Split(strings.TrimSpace(export.String()), "\n")
	r, err := ts.AuditRecord(ctx, 1)
	if err != nil {
		t.Fatal(err)
	}
	got, err := AuditRecordJSON(r)
	if err != nil {
		t.Fatal(err)
	}
	// The record line is the export's second line, after the header.
	if len(lines) != 2 {
		t.Fatalf("export has %d lines", len(lines))
	}
	if !bytes.Equal(got, []byte(lines[1])) {
		t.Fatalf("AuditRecordJSON\n%s\nexport line\n%s", got, lines[1])
	}
}

func TestSinkCursorPersists(t *testing.T) {
	ts := openTest(t)
	ctx := context.Background()
	c, err := ts.SinkCursor(ctx, "siem")
	if err != nil || c != (SinkCursor{}) {
		t.Fatalf("fresh cursor = %+v, %v; want zero", c, err)
	}
	want := SinkCursor{Seq: 42, Time: 1234567890}
	want.Hash[0], want.Hash[31] = 0xab, 0xcd
	if err := ts.SetSinkCursor(ctx, "siem", want); err != nil {
		t.Fatal(err)
	}
	ts.reopen(t)
	if c, err = ts.SinkCursor(ctx, "siem"); err != nil || c != want {
		t.Fatalf("after reopen cursor = %+v, %v; want %+v", c, err, want)
	}
	if c, err = ts.SinkCursor(ctx, "other"); err != nil || c != (SinkCursor{}) {
		t.Fatalf("another sink's cursor = %+v, %v; want zero", c, err)
	}
	if head, _ := ts.Head(); head != 0 {
		t.Fatalf("writing a cursor appended %d audit records; it is bookkeeping outside the chain", head)
	}
	for _, bad := range []string{"", "a/b", strings.Repeat("x", MaxPartLen+1)} {
		if err := ts.SetSinkCursor(ctx, bad, want); !errors.Is(err, ErrInvalidKey) {
			t.Errorf("name %q: err = %v, want ErrInvalidKey", bad, err)
		}
	}
}

// syncGate holds WAL syncs while closed: a fault injector for the window between a record
// becoming readable and becoming durable, which a real disk leaves too short to observe.
type syncGate struct {
	held    atomic.Bool
	waiting chan struct{} // signalled when a sync is being held
	release chan struct{}
}

func (g *syncGate) MaybeError(op errorfs.Op) error {
	if g.held.Load() && strings.HasSuffix(op.Path, ".log") && isSync(op.Kind) {
		select {
		case g.waiting <- struct{}{}:
		default:
		}
		<-g.release
	}
	return nil
}

func (g *syncGate) String() string { return "sync gate" }

// TestAuditRecordsStopsAtTheDurableHead: a record whose WAL sync has not returned is not
// handed to a sink, whose receiver would otherwise keep a record that a crash can take back.
func TestAuditRecordsStopsAtTheDurableHead(t *testing.T) {
	gate := &syncGate{waiting: make(chan struct{}, 1), release: make(chan struct{})}
	ts := openTest(t, func(o *Options) { o.FS = errorfs.Wrap(vfs.Default, gate) })
	ctx := context.Background()
	if err := ts.Append(ctx, Event{Actor: "test", Action: "durable.test", Outcome: OutcomeOK}); err != nil {
		t.Fatal(err)
	}
	gate.held.Store(true)
	done := make(chan error, 1)
	go func() { done <- ts.Append(ctx, Event{Actor: "test", Action: "durable.test", Outcome: OutcomeOK}) }()
	<-gate.waiting
	if head, _ := ts.Head(); head != 2 || ts.DurableHead() != 1 {
		t.Fatalf("while the sync is held: head %d, durable head %d; want 2 and 1", head, ts.DurableHead())
	}
	recs, err := ts.AuditRecords(ctx, 1, 10)
	if err != nil || len(recs) != 1 {
		t.Fatalf("AuditRecords while record 2 is not durable: %d records, %v; want only record 1", len(recs), err)
	}
	gate.held.Store(false)
	close(gate.release)
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	if ts.DurableHead() != 2 {
		t.Fatalf("durable head %d after the sync, want 2", ts.DurableHead())
	}
	if recs, err = ts.AuditRecords(ctx, 2, 10); err != nil || len(recs) != 1 || recs[0].Seq != 2 {
		t.Fatalf("AuditRecords after the sync: %v, %v", recs, err)
	}
}

// TestCreated: the Open that makes a store says so; a reopen of it does not.
func TestCreated(t *testing.T) {
	ts := openTest(t)
	if !ts.Created() {
		t.Fatal("a new store does not report that it was created")
	}
	ts.reopen(t)
	if ts.Created() {
		t.Fatal("a reopened store reports that it was created")
	}
}
