package store

import (
	"context"
	"fmt"
	"path/filepath"
	"testing"

	"github.com/hufu-hsm/hufu/store/storepb"
)

func TestBackup(t *testing.T) {
	ctx := context.Background()
	ts := openTest(t, func(o *Options) { o.CheckpointEvery = 3 })
	for i := range 7 {
		putExample(t, ts.Store, fmt.Sprintf("b%d", i), &storepb.Example{Count: int64(i)})
	}
	dir := filepath.Join(t.TempDir(), "backup")
	if err := ts.Backup(ctx, dir, "operator:li"); err != nil {
		t.Fatal(err)
	}
	headAtBackup, hashAtBackup := ts.Head()
	putExample(t, ts.Store, "after", &storepb.Example{}) // not in the backup

	if err := ts.Backup(ctx, dir, "operator:li"); err == nil {
		t.Fatal("backup over an existing directory succeeded")
	}

	b, err := Open(ctx, Options{Dir: dir, Clock: ts.clock, Signer: ts.signer})
	if err != nil {
		t.Fatal(err)
	}
	defer b.Close(ctx)
	if seq, h := b.Head(); seq != headAtBackup || h != hashAtBackup {
		t.Fatalf("backup head %d, want %d", seq, headAtBackup)
	}
	for i := range 7 {
		got, err := examples.Read(ctx, b, fmt.Sprintf("b%d", i))
		if err != nil || got.Count != int64(i) {
			t.Fatalf("b%d in backup: %v %v", i, got, err)
		}
	}
	if _, err := examples.Read(ctx, b, "after"); err == nil {
		t.Fatal("record written after the backup is in it")
	}
	res, err := b.VerifyAudit(ctx, ts.signer.PublicKey())
	if err != nil || res.VerifiedThrough != headAtBackup {
		t.Fatalf("backup VerifyAudit = %+v, %v; want verified through %d", res, err, headAtBackup)
	}
	last, err := b.AuditRecord(ctx, headAtBackup)
	if err != nil || last.Action != "store.backup" || last.Actor != "operator:li" {
		t.Fatalf("backup's own audit record: %+v %v", last, err)
	}
}
