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
	stop := make(chan struct{})
	var wg sync.WaitGroup
	for range 8 {
		wg.Go(func() {
			for {
				select {
				case <-stop:
					return
				default:
				}
				if err := ts.Append(ctx, Event{Actor: "t", Action: "test.append", Outcome: OutcomeOK}); err != nil {
					t.Error(err)
					return
				}
			}
		})
	}
	for i := range 100 {
		if _, err := ts.VerifyAudit(ctx, ts.signer.PublicKey()); err != nil {
			close(stop)
			wg.Wait()
			t.Fatalf("run %d: %v", i, err)
		}
	}
	close(stop)
	wg.Wait()
}
