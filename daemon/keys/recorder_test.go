package keys

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/hufu-hsm/hufu/daemon/apierr"
	"github.com/hufu-hsm/hufu/store"
	"github.com/hufu-hsm/hufu/store/storepb"
)

type fixedClock struct{}

func (fixedClock) Now() time.Time { return time.Date(2026, 3, 1, 9, 0, 0, 0, time.UTC) }

func openRecorderStore(t *testing.T) *store.Store {
	t.Helper()
	st, err := store.Open(context.Background(), store.Options{Dir: t.TempDir(), Clock: fixedClock{}})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = st.Close(context.Background()) })
	return st
}

// putUsage is one record's write: a usage record under its own id, with its audit record.
func putUsage(id string) func(tx *store.Tx) error {
	return func(tx *store.Tx) error {
		if err := usage.Put(tx, id, &storepb.UsageRecord{Operation: "sign", Digest: id}); err != nil {
			return err
		}
		return tx.Audit(store.Event{Actor: "test", Action: "key.sign", Subject: "k/" + id, Outcome: store.OutcomeOK})
	}
}

// TestRecorderCommitsEveryRecordOnce: 64 concurrent callers, some of which give up waiting
// (their context ended before they called), all get their records committed exactly once — a
// caller that stops waiting still passes the lead on — and the audit log holds one record per
// call. Then the recorder refuses records once Run's context has ended.
func TestRecorderCommitsEveryRecordOnce(t *testing.T) {
	st := openRecorderStore(t)
	r := newRecorder(st)
	const callers, each = 64, 20
	headBefore, _ := st.Head()
	var wg sync.WaitGroup
	errs := make(chan error, callers*each)
	for c := range callers {
		wg.Go(func() {
			for i := range each {
				ctx := context.Background()
				var cancel context.CancelFunc = func() {}
				if (c+i)%7 == 0 { // gives up at once: the record may still be committed
					ctx, cancel = context.WithCancel(ctx)
					cancel()
				}
				err := r.record(ctx, putUsage(fmt.Sprintf("rec-%02d-%02d", c, i)))
				cancel()
				if err != nil && !errors.Is(err, context.Canceled) {
					errs <- err
				}
			}
		})
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Fatal(err)
	}
	// A caller that gave up returned before its record was committed; the record is still
	// queued, and groups commit in order, so once a last record is committed every earlier
	// one is.
	if err := r.record(context.Background(), putUsage("last")); err != nil {
		t.Fatal(err)
	}
	for c := range callers {
		for i := range each {
			if _, err := usage.Read(context.Background(), st, fmt.Sprintf("rec-%02d-%02d", c, i)); err != nil {
				t.Fatalf("record %d/%d: %v", c, i, err)
			}
		}
	}
	if head, _ := st.Head(); head-headBefore != callers*each+1 {
		t.Fatalf("%d audit records for %d calls", head-headBefore, callers*each+1)
	}

	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { r.run(ctx); close(done) }()
	cancel()
	<-done
	var ae *apierr.Error
	if err := r.record(context.Background(), putUsage("after-stop")); !errors.As(err, &ae) || ae.Kind != apierr.Unavailable {
		t.Fatalf("a record after Run's context ended: %v, want Unavailable", err)
	}
}

// TestRecorderSurvivesAPanickingCommit: a commit that panics on the leader's goroutine (which
// the gRPC recovery interceptor would catch) answers its group with an error and passes the
// lead on, so later records still commit instead of queueing forever.
func TestRecorderSurvivesAPanickingCommit(t *testing.T) {
	st := openRecorderStore(t)
	r := newRecorder(st)
	func() {
		defer func() {
			if recover() == nil {
				t.Fatal("the panicking write did not panic")
			}
		}()
		_ = r.record(context.Background(), func(tx *store.Tx) error { panic("injected: a write that panics") })
	}()
	if err := r.record(context.Background(), putUsage("after-panic")); err != nil {
		t.Fatalf("a record after a panicking commit: %v", err)
	}
	if _, err := usage.Read(context.Background(), st, "after-panic"); err != nil {
		t.Fatal(err)
	}
}
