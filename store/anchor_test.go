package store

import (
	"context"
	"errors"
	"fmt"
	"testing"
)

// recordingAnchor is an in-memory Anchor (the HSM keyring is the real one, tested in
// package hsm and end to end in package daemon). It checks, when raised, that the
// checkpoint is already in the store.
type recordingAnchor struct {
	s      **Store
	raised []uint64
	err    error
}

func (a *recordingAnchor) RaiseAuditAnchor(_ context.Context, size uint64, head [32]byte) error {
	if _, ok, err := (*a.s).getRaw(auditCheckpointKey(size)); err != nil || !ok {
		a.err = fmt.Errorf("anchor raised to %d before the checkpoint was stored (%v)", size, err)
	}
	a.raised = append(a.raised, size)
	return nil
}

func TestAnchorRaisedAfterEachCheckpoint(t *testing.T) {
	ctx := context.Background()
	var s *Store
	anchor := &recordingAnchor{s: &s}
	ts := openTest(t, func(o *Options) { o.Anchor = anchor; o.CheckpointEvery = 3 })
	s = ts.Store
	for range 7 {
		if err := ts.Append(ctx, Event{Action: "tick", Outcome: OutcomeOK}); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := ts.Checkpoint(ctx); err != nil {
		t.Fatal(err)
	}
	if anchor.err != nil {
		t.Fatal(anchor.err)
	}
	if want := []uint64{3, 6, 7}; fmt.Sprint(anchor.raised) != fmt.Sprint(want) {
		t.Fatalf("anchor raised to %v, want %v", anchor.raised, want)
	}
}

func TestCheckAnchor(t *testing.T) {
	ctx := context.Background()
	ts := openTest(t)
	for range 5 {
		if err := ts.Append(ctx, Event{Action: "tick", Outcome: OutcomeOK}); err != nil {
			t.Fatal(err)
		}
	}
	r3, err := ts.AuditRecord(ctx, 3)
	if err != nil {
		t.Fatal(err)
	}
	_, head := ts.Head()
	other := r3.Hash
	other[0] ^= 1
	tests := []struct {
		name   string
		size   uint64
		head   [32]byte
		want   error
		forked bool
	}{
		{"no anchor yet", 0, [32]byte{}, nil, false},
		{"anchor inside the log", 3, r3.Hash, nil, false},
		{"anchor at the head", 5, head, nil, false},
		{"log behind the anchor", 6, head, ErrBehindAnchor, false},
		{"same number, other record", 3, other, ErrForkedFromAnchor, true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := ts.CheckAnchor(ctx, tt.size, tt.head)
			if !errors.Is(err, tt.want) || (tt.want == nil) != (err == nil) {
				t.Fatalf("got %v, want %v", err, tt.want)
			}
			var m *AnchorMismatch
			if tt.want != nil && (!errors.As(err, &m) || m.StoreHead != 5 || m.AnchorSize != tt.size || m.Forked != tt.forked) {
				t.Fatalf("mismatch %+v", m)
			}
		})
	}
}
