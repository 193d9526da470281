package store

import (
	"context"
	"errors"
	"testing"
	"time"
)

// TestAuditBacklog: the backlog is the records after the last signed checkpoint and the
// time of the first of them; an idle, covered log has none however much time passes; a
// failing signer lets it grow; it survives a reopen.
func TestAuditBacklog(t *testing.T) {
	ctx := context.Background()
	ts := openTest(t, func(o *Options) { o.CheckpointEvery = 100; o.CheckpointInterval = time.Minute })
	backlog := func() Backlog {
		t.Helper()
		b, err := ts.AuditBacklog(ctx)
		if err != nil {
			t.Fatalf("AuditBacklog: %v", err)
		}
		return b
	}
	appendOne := func() {
		t.Helper()
		if err := ts.Append(ctx, Event{Actor: "t", Action: "tick", Outcome: OutcomeOK}); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := ts.Checkpoint(ctx); err != nil && !errors.Is(err, errNothingToCheckpoint) {
		t.Fatalf("Checkpoint: %v", err)
	}
	if b := backlog(); b != (Backlog{}) {
		t.Fatalf("covered log: backlog %+v, want none", b)
	}
	ts.clock.Advance(72 * time.Hour)
	if b := backlog(); b != (Backlog{}) {
		t.Fatalf("idle covered log after 72h: backlog %+v, want none", b)
	}

	// The first record after the idle spell is checkpointed by its own append (the
	// interval since the last checkpoint has passed); the next ones wait for the interval.
	appendOne()
	if b := backlog(); b != (Backlog{}) {
		t.Fatalf("first append after idle: backlog %+v, want none", b)
	}
	ts.clock.Advance(10 * time.Second)
	first := ts.clock.Now()
	appendOne()
	ts.clock.Advance(10 * time.Second)
	appendOne()
	if b := backlog(); b.Records != 2 || !b.Oldest.Equal(first) {
		t.Fatalf("two uncovered records: %+v, want 2 from %v", b, first)
	}
	ts.clock.Advance(time.Minute)
	if c, err := ts.MaybeCheckpoint(ctx); err != nil || c == nil {
		t.Fatalf("MaybeCheckpoint = %+v, %v", c, err)
	}
	if b := backlog(); b != (Backlog{}) {
		t.Fatalf("after the checkpoint: backlog %+v, want none", b)
	}

	// The HSM stops signing: records pile up from the first one on.
	ts.signer.fail = errors.New("token removed")
	first = ts.clock.Now()
	appendOne()
	for range 3 {
		ts.clock.Advance(time.Minute)
		appendOne() // each append tries a checkpoint, which fails
	}
	if b := backlog(); b.Records != 4 || !b.Oldest.Equal(first) {
		t.Fatalf("failing signer: %+v, want 4 from %v", b, first)
	}
	ts.signer.fail = nil
	ts.reopen(t, func(o *Options) { o.CheckpointEvery = 100; o.CheckpointInterval = time.Minute })
	// Close wrote a final checkpoint now that the signer works again.
	if b := backlog(); b != (Backlog{}) {
		t.Fatalf("after reopen: backlog %+v, want none", b)
	}
	appendOne()
	if b := backlog(); b.Records != 1 || !b.Oldest.Equal(ts.clock.Now()) {
		t.Fatalf("after reopen and one append: %+v", b)
	}
}
