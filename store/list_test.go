package store

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"testing"
	"time"

	"github.com/hufu-hsm/hufu/store/storepb"
)

func listAll(t *testing.T, ts *testStore, limit int, filter func(string, *storepb.Example) bool) ([]string, int) {
	t.Helper()
	var ids []string
	pages := 0
	cursor := ""
	for {
		page, err := examples.List(context.Background(), ts.Store, "", ListOptions{Cursor: cursor, Limit: limit}, filter)
		if err != nil {
			t.Fatal(err)
		}
		pages++
		for _, it := range page.Items {
			ids = append(ids, examples.ID(it.Key))
		}
		if page.Next == "" {
			return ids, pages
		}
		if len(page.Items) != limit {
			t.Fatalf("non-final page with %d items, limit %d", len(page.Items), limit)
		}
		cursor = page.Next
	}
}

func TestListPagination(t *testing.T) {
	ts := openTest(t)
	var want []string
	for i := range 10 {
		id := fmt.Sprintf("id%02d", i)
		want = append(want, id)
		putExample(t, ts.Store, id, &storepb.Example{Count: int64(i)})
	}
	// Another kind must never leak into the listing.
	if err := ts.Update(context.Background(), func(tx *Tx) error {
		k, _ := Key(KindOrder, "o1")
		if err := tx.Put(k, &storepb.Example{}); err != nil {
			return err
		}
		return tx.Audit(Event{Action: "o", Outcome: OutcomeOK})
	}); err != nil {
		t.Fatal(err)
	}
	even := func(_ string, m *storepb.Example) bool { return m.Count%2 == 0 }
	tests := []struct {
		name      string
		limit     int
		filter    func(string, *storepb.Example) bool
		want      []string
		wantPages int
	}{
		{"one page", 100, nil, want, 1},
		{"exact boundary", 10, nil, want, 1},
		{"limit one", 1, nil, want, 10},
		{"limit three", 3, nil, want, 4},
		{"filter", 2, even, []string{"id00", "id02", "id04", "id06", "id08"}, 3},
		{"filter matches nothing", 5, func(string, *storepb.Example) bool { return false }, nil, 1},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, pages := listAll(t, ts, tt.limit, tt.filter)
			if !slices.Equal(got, tt.want) || pages != tt.wantPages {
				t.Fatalf("got %v in %d pages, want %v in %d", got, pages, tt.want, tt.wantPages)
			}
		})
	}
}

func TestListCursorEdgeCases(t *testing.T) {
	ctx := context.Background()
	ts := openTest(t)
	for _, id := range []string{"b", "d", "f"} {
		putExample(t, ts.Store, id, &storepb.Example{})
	}
	page, err := examples.List(ctx, ts.Store, "", ListOptions{Limit: 2}, nil)
	if err != nil || len(page.Items) != 2 || page.Next == "" {
		t.Fatalf("first page: %+v %v", page, err)
	}
	// Writes behind and ahead of the cursor: the listing continues after "d", sees "e" and
	// "f", never "a" or "c", and repeats nothing.
	for _, id := range []string{"a", "c", "e"} {
		putExample(t, ts.Store, id, &storepb.Example{})
	}
	page2, err := examples.List(ctx, ts.Store, "", ListOptions{Limit: 2, Cursor: page.Next}, nil)
	if err != nil {
		t.Fatal(err)
	}
	var got []string
	for _, it := range page2.Items {
		got = append(got, examples.ID(it.Key))
	}
	if !slices.Equal(got, []string{"e", "f"}) || page2.Next != "" {
		t.Fatalf("second page %v next %q", got, page2.Next)
	}

	tests := []struct {
		name string
		opts ListOptions
		want error
	}{
		{"garbage cursor", ListOptions{Prefix: "u/", Cursor: "!!!"}, ErrBadCursor},
		{"cursor of another prefix", ListOptions{Prefix: "o/", Cursor: page.Next}, ErrBadCursor},
		{"audit prefix is not listable", ListOptions{Prefix: "a/"}, ErrInvalidKey},
		{"empty prefix", ListOptions{}, ErrInvalidKey},
		{"limit too large", ListOptions{Prefix: "u/", Limit: MaxListLimit + 1}, ErrInvalidOptions},
		{"negative limit", ListOptions{Prefix: "u/", Limit: -1}, ErrInvalidOptions},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := List(ctx, ts.Store, tt.opts, func() *storepb.Example { return new(storepb.Example) }, nil)
			if !errors.Is(err, tt.want) {
				t.Fatalf("err = %v, want %v", err, tt.want)
			}
		})
	}
}

func TestMultiIndex(t *testing.T) {
	ctx := context.Background()
	ts := openTest(t)
	err := ts.Update(ctx, func(tx *Tx) error {
		for _, o := range []string{"o1", "o2", "o3"} {
			k, _ := Key(KindOrder, o)
			if err := tx.Put(k, &storepb.Example{Name: o}); err != nil {
				return err
			}
			if err := tx.AddIndex("orders-by-user", "alice", k); err != nil {
				return err
			}
		}
		return tx.Audit(Event{Action: "orders", Outcome: OutcomeOK})
	})
	if err != nil {
		t.Fatal(err)
	}
	if err := ts.Update(ctx, func(tx *Tx) error {
		if err := tx.RemoveIndex("orders-by-user", "alice", "o/o2"); err != nil {
			return err
		}
		return tx.Audit(Event{Action: "unindex", Outcome: OutcomeOK})
	}); err != nil {
		t.Fatal(err)
	}
	owners, next, err := ts.ListIndex(ctx, "orders-by-user", "alice", ListOptions{})
	if err != nil || next != "" || !slices.Equal(owners, []string{"o/o1", "o/o3"}) {
		t.Fatalf("ListIndex = %v %q %v", owners, next, err)
	}
}

func TestExpiry(t *testing.T) {
	ctx := context.Background()
	ts := openTest(t)
	t0 := ts.clock.Now()
	put := func(id string, exp time.Time) {
		t.Helper()
		err := ts.Update(ctx, func(tx *Tx) error {
			var opts []PutOption
			if !exp.IsZero() {
				opts = append(opts, ExpiresAt(exp))
			}
			if err := examples.Put(tx, id, &storepb.Example{Name: id}, opts...); err != nil {
				return err
			}
			return tx.Audit(Event{Action: "put", Subject: id, Outcome: OutcomeOK})
		})
		if err != nil {
			t.Fatal(err)
		}
	}
	put("code", t0.Add(5*time.Minute))
	put("forever", time.Time{})
	put("renewed", t0.Add(time.Minute))
	put("renewed", t0.Add(time.Hour)) // the old expiry entry must not delete it

	visible := func(id string) bool {
		_, err := examples.Read(ctx, ts.Store, id)
		if err != nil && !errors.Is(err, ErrNotFound) {
			t.Fatal(err)
		}
		return err == nil
	}
	ts.clock.Advance(5*time.Minute - time.Nanosecond)
	if !visible("code") {
		t.Fatal("code invisible 1ns before expiry")
	}
	ts.clock.Advance(time.Nanosecond)
	if visible("code") {
		t.Fatal("code visible at its expiry instant (expiry is exclusive)")
	}
	if ids, _ := listAll(t, ts, 10, nil); !slices.Equal(ids, []string{"forever", "renewed"}) {
		t.Fatalf("listing shows %v before sweep", ids)
	}
	// Inside a transaction too, before the sweeper ran.
	if err := ts.Update(ctx, func(tx *Tx) error {
		_, err := examples.Get(tx, "code")
		return err
	}); !errors.Is(err, ErrNotFound) {
		t.Fatalf("tx sees expired record: %v", err)
	}

	n, err := ts.Sweep(ctx)
	if err != nil || n != 1 {
		t.Fatalf("Sweep = %d, %v; want 1 deleted", n, err)
	}
	if _, ok, _ := ts.getRaw("u/code"); ok {
		t.Fatal("swept record still stored")
	}
	if !visible("renewed") || !visible("forever") {
		t.Fatal("sweep deleted a live record")
	}
	if n, err := ts.Sweep(ctx); err != nil || n != 0 {
		t.Fatalf("second Sweep = %d, %v", n, err)
	}
	ts.clock.Advance(time.Hour)
	if n, err := ts.Sweep(ctx); err != nil || n != 1 {
		t.Fatalf("third Sweep = %d, %v; want renewed deleted", n, err)
	}
	rec, err := ts.AuditRecord(ctx, 5)
	if err != nil || rec.Action != "store.sweep" || rec.Details["deleted"] != "1" {
		t.Fatalf("sweep audit record: %+v %v", rec, err)
	}
}

func TestExpiringClaim(t *testing.T) {
	ctx := context.Background()
	ts := openTest(t)
	claim := func(owner string) error {
		return ts.Update(ctx, func(tx *Tx) error {
			if err := tx.Claim("sms-code", "13800000000", owner, ExpiresAt(ts.clock.Now().Add(time.Minute))); err != nil {
				return err
			}
			return tx.Audit(Event{Action: "sms.send", Outcome: OutcomeOK})
		})
	}
	if err := claim("v/a"); err != nil {
		t.Fatal(err)
	}
	if err := claim("v/b"); !errors.Is(err, ErrTaken) {
		t.Fatalf("second claim while live: %v", err)
	}
	ts.clock.Advance(time.Minute)
	if err := claim("v/b"); err != nil {
		t.Fatalf("claim after expiry: %v", err)
	}
	if owner, err := ts.Lookup(ctx, "sms-code", "13800000000"); err != nil || owner != "v/b" {
		t.Fatalf("Lookup = %q %v", owner, err)
	}
}

func TestIndexValues(t *testing.T) {
	ctx := context.Background()
	ts := openTest(t)
	index := func(index, value, owner string, add bool) {
		t.Helper()
		err := ts.Update(ctx, func(tx *Tx) error {
			var err error
			if add {
				err = tx.AddIndex(index, value, owner)
			} else {
				err = tx.RemoveIndex(index, value, owner)
			}
			if err != nil {
				return err
			}
			return tx.Audit(Event{Action: "index", Outcome: OutcomeOK})
		})
		if err != nil {
			t.Fatal(err)
		}
	}
	for _, o := range []string{"o/o1", "o/o2", "o/o3"} {
		index("orders-by-user", "alice", o, true)
	}
	index("orders-by-user", "bob", "o/o4", true)
	index("orders-by-user", "carol", "o/o5", true)
	index("orders-by-user", "carol", "o/o5", false) // carol has no owner left
	index("orders-by-user", "dave", "o/o6", true)
	index("orders-by-userx", "eve", "o/o7", true) // another index sharing the name's prefix
	index("orders-by-use", "fay", "o/o8", true)

	var got []string
	if err := ts.IndexValues(ctx, "orders-by-user", func(v string) error { got = append(got, v); return nil }); err != nil {
		t.Fatal(err)
	}
	if want := []string{"alice", "bob", "dave"}; !slices.Equal(got, want) {
		t.Fatalf("IndexValues = %v, want %v: each value with an owner, once", got, want)
	}
	stop := errors.New("stop")
	got = nil
	err := ts.IndexValues(ctx, "orders-by-user", func(v string) error { got = append(got, v); return stop })
	if !errors.Is(err, stop) || len(got) != 1 {
		t.Fatalf("fn's error: %v after %v, want it returned after the first value", err, got)
	}
	if err := ts.IndexValues(ctx, "bad/index", func(string) error { return nil }); !errors.Is(err, ErrInvalidKey) {
		t.Fatalf("an invalid index name: %v, want ErrInvalidKey", err)
	}
}
