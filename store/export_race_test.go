package store

import (
	"context"
	"sync"
	"testing"
)

// TestExportUnderConcurrentWritesVerifies: an export taken while writers append must end
// where its snapshot ends, or the verifier reports a truncation that did not happen.
func TestExportUnderConcurrentWritesVerifies(t *testing.T) {
	ts := openTest(t)
	ctx := context.Background()
	if err := ts.Append(ctx, Event{Actor: "t", Action: "test.append", Outcome: OutcomeOK}); err != nil {
		t.Fatal(err)
	}
	if _, err := ts.Checkpoint(ctx); err != nil {
		t.Fatal(err)
	}
	// Writers append a bounded number of records while exports are verified, so the log
	// (and each verification) stays small even under the race detector.
	var wg sync.WaitGroup
	for range 4 {
		wg.Go(func() {
			for range 40 {
				if err := ts.Append(ctx, Event{Actor: "t", Action: "test.append", Outcome: OutcomeOK}); err != nil {
					t.Error(err)
					return
				}
			}
		})
	}
	done := make(chan struct{})
	go func() { wg.Wait(); close(done) }()
	for i := 0; ; i++ {
		if _, err := ts.VerifyAudit(ctx, ts.signer.PublicKey()); err != nil {
			<-done
			t.Fatalf("run %d: %v", i, err)
		}
		select {
		case <-done:
			return
		default:
		}
	}
}
