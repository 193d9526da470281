package store

import (
	"testing"

	"github.com/hufu-hsm/hufu/store/storepb"
)

// TestWALSyncsCountsCommits: every committed Update waits for a WAL sync, so sequential
// commits add at least one sync each, and the syncs take time; a closed store reports zero.
func TestWALSyncsCountsCommits(t *testing.T) {
	ts := openTest(t)
	before, beforeTime := ts.WALSyncs()
	const commits = 5
	for i := range commits {
		putExample(t, ts.Store, "ex-"+string(rune('a'+i)), &storepb.Example{Name: "sync"})
	}
	after, afterTime := ts.WALSyncs()
	if after-before < commits {
		t.Fatalf("WALSyncs after %d sequential commits: %d → %d, want at least %d more", commits, before, after, commits)
	}
	if afterTime <= beforeTime {
		t.Fatalf("WALSyncs time did not grow: %v → %v", beforeTime, afterTime)
	}
	if err := ts.Store.Close(t.Context()); err != nil {
		t.Fatal(err)
	}
	if n, d := ts.Store.WALSyncs(); n != 0 || d != 0 {
		t.Fatalf("closed store: WALSyncs = %d, %v; want 0, 0", n, d)
	}
	ts.Store = nil
}
