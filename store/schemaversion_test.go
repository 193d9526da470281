package store

import (
	"context"
	"strconv"
	"testing"

	"github.com/cockroachdb/pebble/v2"
	"github.com/hufu-hsm/hufu/store/storepb"
	"google.golang.org/protobuf/proto"
)

// TestUpgradeSchemaFromVersion1: a store an older build created opens, UpgradeSchema
// records the current version with one audit record, and a second call writes nothing.
func TestUpgradeSchemaFromVersion1(t *testing.T) {
	ctx := context.Background()
	ts := openTest(t)
	b, _ := proto.Marshal(&storepb.StoreMeta{SchemaVersion: 1, CreatedUnixNano: 42})
	if err := ts.db.Set([]byte(metaKey), b, pebble.Sync); err != nil {
		t.Fatal(err)
	}
	ts.reopen(t)
	readMeta := func() *storepb.StoreMeta {
		t.Helper()
		v, ok, err := ts.getRaw(metaKey)
		if err != nil || !ok {
			t.Fatalf("meta: %v %v", ok, err)
		}
		var m storepb.StoreMeta
		if err := proto.Unmarshal(v, &m); err != nil {
			t.Fatal(err)
		}
		return &m
	}
	from, err := ts.UpgradeSchema(ctx)
	if err != nil || from != 1 {
		t.Fatalf("UpgradeSchema = %d, %v; want from 1", from, err)
	}
	if m := readMeta(); m.SchemaVersion != SchemaVersion || m.CreatedUnixNano != 42 {
		t.Fatalf("meta after the upgrade: %+v", m)
	}
	head, _ := ts.Head()
	rec, err := ts.AuditRecord(ctx, head)
	if err != nil || rec.Action != "store.schema.upgrade" || rec.Details["from"] != "1" || rec.Details["to"] != strconv.Itoa(SchemaVersion) {
		t.Fatalf("audit record %d: %+v %v", head, rec, err)
	}
	if from, err := ts.UpgradeSchema(ctx); err != nil || from != SchemaVersion {
		t.Fatalf("second UpgradeSchema = %d, %v", from, err)
	}
	if again, _ := ts.Head(); again != head {
		t.Fatalf("a second upgrade wrote %d audit records", again-head)
	}
	ts.reopen(t)
	if m := readMeta(); m.SchemaVersion != SchemaVersion {
		t.Fatalf("meta after reopening: %+v", m)
	}
}
