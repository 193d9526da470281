package main

import (
	"bytes"
	"fmt"
	"strings"
	"testing"

	"github.com/hufu-hsm/hufu/daemon"
	"github.com/hufu-hsm/hufu/store"
)

// TestRestoredStoreExitCode: serve's refusal of a restored store exits 65, which the systemd
// unit does not restart on; acknowledge-restore needs to know who acknowledges. (The
// refusal and the acknowledgement themselves: TestRestoredStoreIsRefusedUntilAcknowledged
// in package daemon.)
func TestRestoredStoreExitCode(t *testing.T) {
	refused := fmt.Errorf("%w: %w", daemon.ErrRestoredStore, &store.AnchorMismatch{StoreHead: 3, AnchorSize: 9})
	if got := exitCode(refused); got != exitRestored || exitRestored != 65 {
		t.Fatalf("exit code %d, want 65", got)
	}
	var out, errOut bytes.Buffer
	err := run([]string{"acknowledge-restore", "-development"}, &out, &errOut)
	if exitCode(err) != exitUsage || err == nil || !strings.Contains(err.Error(), "-operator") {
		t.Fatalf("acknowledge-restore without -operator: %v", err)
	}
}
