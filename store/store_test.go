package store

import (
	"context"
	"crypto/ecdsa"
	"errors"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/cockroachdb/pebble/v2"
	"google.golang.org/protobuf/proto"

	"github.com/hufu-hsm/hufu/store/storepb"
)

func TestOptionsValidation(t *testing.T) {
	tests := []struct {
		name string
		opts Options
		want error
	}{
		{"missing dir", Options{}, ErrInvalidOptions},
		{"negative checkpoint count", Options{Dir: "x", CheckpointEvery: -1}, ErrInvalidOptions},
		{"negative interval", Options{Dir: "x", CheckpointInterval: -time.Second}, ErrInvalidOptions},
		{"negative cache", Options{Dir: "x", CacheSize: -1}, ErrInvalidOptions},
		{"signer without key", Options{Dir: "x", Signer: nilKeySigner{}}, ErrInvalidOptions},
		{"defaults", Options{Dir: "x"}, nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := tt.opts.withDefaults()
			if !errors.Is(err, tt.want) {
				t.Fatalf("err = %v, want %v", err, tt.want)
			}
			if err == nil {
				if got.Clock == nil || got.FS == nil || got.Logger == nil ||
					got.CheckpointEvery != defaultCheckpointEvery || got.CheckpointInterval != defaultCheckpointInterval {
					t.Fatalf("defaults not applied: %+v", got)
				}
			}
		})
	}
}

type nilKeySigner struct{}

func (nilKeySigner) SignDigest(context.Context, []byte) ([]byte, error) { return nil, nil }
func (nilKeySigner) PublicKey() *ecdsa.PublicKey                        { return nil }

func TestKeySchema(t *testing.T) {
	tests := []struct {
		name  string
		kind  Kind
		parts []string
		want  string
		err   error
	}{
		{"user", KindUser, []string{"u1"}, "u/u1", nil},
		{"share", KindKey, []string{"k1", "share", "2"}, "k/k1/share/2", nil},
		{"unicode part", KindEnterprise, []string{"华为"}, "e/华为", nil},
		{"slash in part", KindUser, []string{"a/b"}, "", ErrInvalidKey},
		{"empty part", KindUser, []string{""}, "", ErrInvalidKey},
		{"control char", KindUser, []string{"a\x00"}, "", ErrInvalidKey},
		{"no parts", KindUser, nil, "", ErrInvalidKey},
		{"internal kind", kindAudit, []string{"r"}, "", ErrInvalidKey},
		{"long part", KindUser, []string{string(make([]byte, MaxPartLen+1))}, "", ErrInvalidKey},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := Key(tt.kind, tt.parts...)
			if !errors.Is(err, tt.err) || got != tt.want {
				t.Fatalf("Key = %q, %v; want %q, %v", got, err, tt.want, tt.err)
			}
		})
	}
}

func TestUpdate(t *testing.T) {
	ctx := context.Background()
	ts := openTest(t)
	putExample(t, ts.Store, "alice", &storepb.Example{Name: "Alice", Count: 1})

	tests := []struct {
		name    string
		fn      func(tx *Tx) error
		wantErr error
	}{
		{"write without audit is refused", func(tx *Tx) error {
			return examples.Put(tx, "bob", &storepb.Example{Name: "Bob"})
		}, ErrUnaudited},
		{"function error writes nothing", func(tx *Tx) error {
			if err := examples.Put(tx, "bob", &storepb.Example{Name: "Bob"}); err != nil {
				return err
			}
			if err := tx.Audit(Event{Action: "x", Outcome: OutcomeOK}); err != nil {
				return err
			}
			return errBoom
		}, errBoom},
		{"invalid event", func(tx *Tx) error {
			return tx.Audit(Event{Action: "x"})
		}, ErrInvalidEvent},
		{"wrong message type", func(tx *Tx) error {
			k, _ := examples.Key("alice")
			return tx.Get(k, &storepb.IndexEntry{})
		}, ErrCorrupt},
		{"missing record", func(tx *Tx) error {
			_, err := examples.Get(tx, "nobody")
			return err
		}, ErrNotFound},
		{"bad key", func(tx *Tx) error {
			return tx.Put("zz/1", &storepb.Example{})
		}, ErrInvalidKey},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			before, _ := ts.Head()
			err := ts.Update(ctx, tt.fn)
			if !errors.Is(err, tt.wantErr) {
				t.Fatalf("err = %v, want %v", err, tt.wantErr)
			}
			if after, _ := ts.Head(); after != before {
				t.Fatalf("audit head moved from %d to %d on a failed update", before, after)
			}
			if _, err := examples.Read(ctx, ts.Store, "bob"); !errors.Is(err, ErrNotFound) {
				t.Fatalf("bob exists after failed update: %v", err)
			}
		})
	}

	t.Run("read your own writes and delete", func(t *testing.T) {
		err := ts.Update(ctx, func(tx *Tx) error {
			if err := examples.Put(tx, "carol", &storepb.Example{Count: 7}); err != nil {
				return err
			}
			got, err := examples.Get(tx, "carol")
			if err != nil || got.Count != 7 {
				return fmt.Errorf("own write: %v %v", got, err)
			}
			if err := examples.Delete(tx, "alice"); err != nil {
				return err
			}
			if _, err := examples.Get(tx, "alice"); !errors.Is(err, ErrNotFound) {
				return fmt.Errorf("own delete not seen: %v", err)
			}
			return tx.Audit(Event{Actor: "t", Action: "swap", Outcome: OutcomeOK})
		})
		if err != nil {
			t.Fatal(err)
		}
		if _, err := examples.Read(ctx, ts.Store, "alice"); !errors.Is(err, ErrNotFound) {
			t.Fatalf("alice: %v", err)
		}
		if got, err := examples.Read(ctx, ts.Store, "carol"); err != nil || got.Count != 7 {
			t.Fatalf("carol: %v %v", got, err)
		}
	})
}

var errBoom = errors.New("boom")

func TestReopenKeepsDataAndChain(t *testing.T) {
	ctx := context.Background()
	ts := openTest(t)
	for i := range 5 {
		putExample(t, ts.Store, fmt.Sprintf("id%d", i), &storepb.Example{Count: int64(i)})
	}
	seq, head := ts.Head()
	ts.reopen(t)
	if s2, h2 := ts.Head(); s2 != seq || h2 != head {
		t.Fatalf("head after reopen = %d %x, want %d %x", s2, h2, seq, head)
	}
	putExample(t, ts.Store, "id5", &storepb.Example{Count: 5})
	if got, err := examples.Read(ctx, ts.Store, "id3"); err != nil || got.Count != 3 {
		t.Fatalf("id3: %v %v", got, err)
	}
	res, err := ts.VerifyAudit(ctx, ts.signer.PublicKey())
	if err != nil {
		t.Fatal(err)
	}
	if res.Records != 6 || res.VerifiedThrough != 5 {
		t.Fatalf("verify = %+v, want 6 records, verified through 5 (the close checkpoint)", res)
	}
}

func TestOpenRefusesNewerSchema(t *testing.T) {
	ts := openTest(t)
	b, _ := proto.Marshal(&storepb.StoreMeta{SchemaVersion: SchemaVersion + 1})
	if err := ts.db.Set([]byte(metaKey), b, pebble.Sync); err != nil {
		t.Fatal(err)
	}
	if err := ts.Close(context.Background()); err != nil {
		t.Fatal(err)
	}
	ts.Store = nil
	if _, err := Open(context.Background(), ts.options()); !errors.Is(err, ErrSchema) {
		t.Fatalf("Open = %v, want ErrSchema", err)
	}
}

func TestClosedStore(t *testing.T) {
	ts := openTest(t)
	if err := ts.Close(context.Background()); err != nil {
		t.Fatal(err)
	}
	s := ts.Store
	ts.Store = nil
	if err := s.Append(context.Background(), Event{Action: "a", Outcome: "ok"}); !errors.Is(err, ErrClosed) {
		t.Fatalf("Append after close = %v", err)
	}
	if err := s.Close(context.Background()); !errors.Is(err, ErrClosed) {
		t.Fatalf("second Close = %v", err)
	}
}

// TestUniqueClaimRace: many goroutines race to claim the same phone number for different
// users; exactly one wins, the rest see ErrTaken, and the winner's record is consistent.
func TestUniqueClaimRace(t *testing.T) {
	ctx := context.Background()
	ts := openTest(t)
	const n = 32
	var wg sync.WaitGroup
	errs := make([]error, n)
	start := make(chan struct{})
	for i := range n {
		wg.Add(1)
		go func() {
			defer wg.Done()
			<-start
			id := fmt.Sprintf("user%02d", i)
			key, _ := examples.Key(id)
			errs[i] = ts.Update(ctx, func(tx *Tx) error {
				if err := tx.Claim("phone", "13800000000", key); err != nil {
					return err
				}
				if err := examples.Put(tx, id, &storepb.Example{Phone: "13800000000"}); err != nil {
					return err
				}
				return tx.Audit(Event{Actor: id, Action: "user.create", Subject: key, Outcome: OutcomeOK,
					Details: map[string]string{"phone": "138****0000"}})
			})
		}()
	}
	close(start)
	wg.Wait()
	winners := 0
	for i, err := range errs {
		switch {
		case err == nil:
			winners++
		case errors.Is(err, ErrTaken):
		default:
			t.Errorf("goroutine %d: %v", i, err)
		}
	}
	if winners != 1 {
		t.Fatalf("%d winners, want 1", winners)
	}
	owner, err := ts.Lookup(ctx, "phone", "13800000000")
	if err != nil {
		t.Fatal(err)
	}
	page, err := examples.List(ctx, ts.Store, "", ListOptions{}, nil)
	if err != nil {
		t.Fatal(err)
	}
	if len(page.Items) != 1 || page.Items[0].Key != owner {
		t.Fatalf("records %v, index owner %s", page.Items, owner)
	}
	if seq, _ := ts.Head(); seq != 1 {
		t.Fatalf("audit head %d, want 1 (only the winner's record)", seq)
	}
}

// TestCounterReadModifyWrite: concurrent increments of shared counters lose nothing, and
// each increment has its audit record.
func TestCounterReadModifyWrite(t *testing.T) {
	ctx := context.Background()
	ts := openTest(t)
	const workers, perWorker, counters = 8, 25, 3
	var wg sync.WaitGroup
	for w := range workers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range perWorker {
				// Each increment touches two counters in an order that differs per worker,
				// which would deadlock without canonical lock ordering.
				a := fmt.Sprintf("ctr%d", (w+i)%counters)
				b := fmt.Sprintf("ctr%d", (w+i+1)%counters)
				err := ts.Update(ctx, func(tx *Tx) error {
					for _, id := range []string{a, b} {
						c, err := examples.Get(tx, id)
						if err != nil && !errors.Is(err, ErrNotFound) {
							return err
						}
						c.Count++
						if err := examples.Put(tx, id, c); err != nil {
							return err
						}
					}
					return tx.Audit(Event{Actor: "w", Action: "counter.inc", Subject: a + "," + b, Outcome: OutcomeOK})
				})
				if err != nil {
					t.Error(err)
					return
				}
			}
		}()
	}
	wg.Wait()
	var total int64
	for c := range counters {
		got, err := examples.Read(ctx, ts.Store, fmt.Sprintf("ctr%d", c))
		if err != nil {
			t.Fatal(err)
		}
		total += got.Count
	}
	if want := int64(workers * perWorker * 2); total != want {
		t.Fatalf("sum of counters = %d, want %d", total, want)
	}
	if seq, _ := ts.Head(); seq != workers*perWorker {
		t.Fatalf("audit records = %d, want %d", seq, workers*perWorker)
	}
	if _, err := ts.Checkpoint(ctx); err != nil {
		t.Fatal(err)
	}
	if _, err := ts.VerifyAudit(ctx, ts.signer.PublicKey()); err != nil {
		t.Fatal(err)
	}
}

// TestDisjointKeysDoNotBlock: a transaction holding key A does not delay one on key B,
// while a second transaction on A waits for the first.
func TestDisjointKeysDoNotBlock(t *testing.T) {
	ctx := context.Background()
	ts := openTest(t)
	holding := make(chan struct{})
	release := make(chan struct{})
	firstDone := make(chan error, 1)
	go func() {
		firstDone <- ts.Update(ctx, func(tx *Tx) error {
			if _, err := examples.Get(tx, "A"); err != nil && !errors.Is(err, ErrNotFound) {
				return err
			}
			select {
			case <-holding:
			default:
				close(holding)
			}
			<-release
			if err := examples.Put(tx, "A", &storepb.Example{Count: 1}); err != nil {
				return err
			}
			return tx.Audit(Event{Action: "a", Outcome: OutcomeOK})
		})
	}()
	<-holding
	putExample(t, ts.Store, "B", &storepb.Example{Count: 2}) // must not wait for A

	waitCtx, cancel := context.WithCancel(ctx)
	secondDone := make(chan error, 1)
	go func() {
		secondDone <- ts.Update(waitCtx, func(tx *Tx) error {
			_, err := examples.Get(tx, "A")
			return err
		})
	}()
	select {
	case err := <-secondDone:
		t.Fatalf("second update on A finished while A was held: %v", err)
	default:
	}
	cancel() // a waiter can give up
	if err := <-secondDone; !errors.Is(err, context.Canceled) {
		t.Fatalf("cancelled waiter: %v", err)
	}
	close(release)
	if err := <-firstDone; err != nil {
		t.Fatal(err)
	}
}

// TestCloseDuringWrites: Close waits for operations in flight (checkpointing ones
// included), writes its final checkpoint, and later operations get ErrClosed.
func TestCloseDuringWrites(t *testing.T) {
	ctx := context.Background()
	ts := openTest(t, func(o *Options) { o.CheckpointEvery = 1 })
	var wg sync.WaitGroup
	started := make(chan struct{}, 8)
	for w := range 8 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := 0; ; i++ {
				err := ts.Append(ctx, Event{Actor: fmt.Sprint(w), Action: "a", Outcome: OutcomeOK})
				if i == 0 {
					started <- struct{}{}
				}
				if errors.Is(err, ErrClosed) {
					return
				}
				if err != nil {
					t.Error(err)
					return
				}
			}
		}()
	}
	for range 8 {
		<-started
	}
	if err := ts.Close(ctx); err != nil {
		t.Fatal(err)
	}
	wg.Wait()
	ts.Store = ts.open(t)
	res, err := ts.VerifyAudit(ctx, ts.signer.PublicKey())
	if err != nil || res.VerifiedThrough != res.To {
		t.Fatalf("after close under load: %+v, %v", res, err)
	}
}
