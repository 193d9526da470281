package store

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/hufu-hsm/hufu/store/storepb"
)

// TestView: a view decodes the fields it declares of a live record of the collection's type
// and nothing else; an absent or expired record is ErrNotFound, a record of another type
// ErrCorrupt.
func TestView(t *testing.T) {
	ctx := context.Background()
	ts := openTest(t)
	putExample(t, ts.Store, "alice", &storepb.Example{Name: "Alice", Phone: "13800000000", Count: 7})
	err := ts.Update(ctx, func(tx *Tx) error {
		if err := examples.Put(tx, "brief", &storepb.Example{Name: "Brief"}, ExpiresAt(tx.Now().Add(time.Minute))); err != nil {
			return err
		}
		return tx.Audit(Event{Actor: "t", Action: "example.put", Subject: "brief", Outcome: OutcomeOK})
	})
	if err != nil {
		t.Fatal(err)
	}
	ts.clock.Advance(2 * time.Minute)
	// IndexEntry's only field, owner = 1, is a string like Example's name = 1: a view of it.
	asIndex := NewCollection(KindUser, func() *storepb.IndexEntry { return new(storepb.IndexEntry) })
	tests := []struct {
		name    string
		read    func(tx *Tx, view *storepb.IndexEntry) error
		want    string
		wantErr error
	}{
		{"live record", func(tx *Tx, v *storepb.IndexEntry) error { return examples.View(tx, "alice", v) }, "Alice", nil},
		{"absent", func(tx *Tx, v *storepb.IndexEntry) error { return examples.View(tx, "nobody", v) }, "", ErrNotFound},
		{"expired", func(tx *Tx, v *storepb.IndexEntry) error { return examples.View(tx, "brief", v) }, "", ErrNotFound},
		{"another type", func(tx *Tx, v *storepb.IndexEntry) error { return asIndex.View(tx, "alice", v) }, "", ErrCorrupt},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var view storepb.IndexEntry
			err := ts.Update(ctx, func(tx *Tx) error { return tt.read(tx, &view) })
			if !errors.Is(err, tt.wantErr) || view.Owner != tt.want {
				t.Fatalf("View = %q, %v; want %q, %v", view.Owner, err, tt.want, tt.wantErr)
			}
			if len(view.ProtoReflect().GetUnknown()) != 0 {
				t.Fatal("the fields the view does not declare were kept")
			}
		})
	}
}
