package store

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"strings"
	"testing"

	"github.com/hufu-hsm/hufu/store/storepb"
)

// TestVerifyPinnedHead: a head saved from one verification pins the log. A fork (a backup
// restored and written to again, so records are numbered alike but differ) verifies on its
// own under the same key, and is rejected with the pinned head.
func TestVerifyPinnedHead(t *testing.T) {
	ctx := context.Background()
	original := auditFixture(t) // 12 records, checkpoints at 4, 8, 12
	backup := t.TempDir() + "/backup"
	if err := original.Backup(ctx, backup, "test"); err != nil { // record 13, checkpoint 13
		t.Fatal(err)
	}
	for i := 14; i <= 16; i++ {
		putExample(t, original.Store, fmt.Sprintf("a%02d", i), &storepb.Example{Count: int64(i)})
	}
	var exported bytes.Buffer
	if err := original.ExportAudit(ctx, &exported, 0, 0); err != nil {
		t.Fatal(err)
	}
	res, err := VerifyExport(bytes.NewReader(exported.Bytes()), original.signer.PublicKey())
	if err != nil {
		t.Fatal(err)
	}
	saved := res.SignedHead
	if saved.Seq != 16 {
		t.Fatalf("signed head %v, want record 16", saved)
	}
	if parsed, err := ParseHead(saved.String()); err != nil || parsed != saved {
		t.Fatalf("ParseHead(%q) = %v, %v", saved, parsed, err)
	}

	// The restored copy, written to again, under the same signing key.
	forked := &testStore{clock: original.clock, signer: original.signer, dir: backup}
	forked.Store = forked.open(t)
	t.Cleanup(func() { _ = forked.Store.Close(ctx) })
	for i := 14; i <= 17; i++ {
		putExample(t, forked.Store, fmt.Sprintf("b%02d", i), &storepb.Example{Count: int64(100 + i)})
	}
	var forkExport bytes.Buffer
	if err := forked.ExportAudit(ctx, &forkExport, 0, 0); err != nil {
		t.Fatal(err)
	}
	if _, err := VerifyExport(bytes.NewReader(forkExport.Bytes()), original.signer.PublicKey()); err != nil {
		t.Fatalf("the fork should verify without a pinned head (that is the problem): %v", err)
	}
	var rangeExport bytes.Buffer
	if err := original.ExportAudit(ctx, &rangeExport, 13, 16); err != nil {
		t.Fatal(err)
	}

	tests := []struct {
		name   string
		export []byte
		pins   []Head
		reason Reason
		seq    uint64
	}{
		{"original with its head", exported.Bytes(), []Head{saved}, "", 0},
		{"original with an older head", exported.Bytes(), []Head{{Seq: 13, Hash: recordHash(t, original, 13)}}, "", 0},
		{"fork with the saved head", forkExport.Bytes(), []Head{saved}, ReasonForked, 16},
		{"range continuing from a pinned record", rangeExport.Bytes(), []Head{{Seq: 12, Hash: recordHash(t, original, 12)}}, "", 0},
		{"range from after a pinned record", rangeExport.Bytes(), []Head{{Seq: 3, Hash: recordHash(t, original, 3)}}, ReasonMissing, 3},
		{"export ending before the pin", exported.Bytes(), []Head{{Seq: 40, Hash: saved.Hash}}, ReasonTruncated, 40},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := VerifyExportPinned(bytes.NewReader(tt.export), original.signer.PublicKey(), tt.pins...)
			if tt.reason == "" {
				if err != nil {
					t.Fatal(err)
				}
				return
			}
			var ve *VerifyError
			if !errors.As(err, &ve) || ve.Reason != tt.reason || ve.Seq != tt.seq {
				t.Fatalf("got %v, want %s at record %d", err, tt.reason, tt.seq)
			}
			if tt.reason == ReasonForked && !strings.Contains(ve.Detail, "another log") {
				t.Fatalf("detail %q does not say it is another log", ve.Detail)
			}
		})
	}
}

func TestParseHeadRejects(t *testing.T) {
	for _, s := range []string{"", "12", "0:" + strings.Repeat("ab", 32), "x:" + strings.Repeat("ab", 32), "3:abcd", "3:" + strings.Repeat("zz", 32)} {
		if _, err := ParseHead(s); err == nil {
			t.Errorf("ParseHead(%q) accepted", s)
		}
	}
}

func recordHash(t *testing.T, ts *testStore, seq uint64) [32]byte {
	t.Helper()
	r, err := ts.AuditRecord(context.Background(), seq)
	if err != nil {
		t.Fatal(err)
	}
	return r.Hash
}
