package keys

import (
	"testing"

	"google.golang.org/protobuf/reflect/protoreflect"

	"github.com/hufu-hsm/hufu/store/storepb"
)

// TestShareStateViews: each field of the views superseded.go reads has the number, name,
// kind and cardinality of the record's own field, so a view reads what the record holds.
func TestShareStateViews(t *testing.T) {
	views := map[protoreflect.FullName]protoreflect.MessageDescriptor{
		(&storepb.SplitKeyShareState{}).ProtoReflect().Descriptor().FullName():    (&storepb.SplitKey{}).ProtoReflect().Descriptor(),
		(&storepb.DelegatedShareState{}).ProtoReflect().Descriptor().FullName():   (&storepb.DelegatedShare{}).ProtoReflect().Descriptor(),
		(&storepb.PendingRefreshVersion{}).ProtoReflect().Descriptor().FullName(): (&storepb.PendingRefresh{}).ProtoReflect().Descriptor(),
	}
	for _, view := range []protoreflect.MessageDescriptor{
		(&storepb.SplitKeyShareState{}).ProtoReflect().Descriptor(),
		(&storepb.DelegatedShareState{}).ProtoReflect().Descriptor(),
		(&storepb.PendingRefreshVersion{}).ProtoReflect().Descriptor(),
	} {
		record := views[view.FullName()]
		fields := view.Fields()
		for i := range fields.Len() {
			vf := fields.Get(i)
			rf := record.Fields().ByNumber(vf.Number())
			switch {
			case rf == nil:
				t.Errorf("%s.%s: %s has no field %d", view.Name(), vf.Name(), record.Name(), vf.Number())
			case rf.Name() != vf.Name() || rf.Kind() != vf.Kind() || rf.Cardinality() != vf.Cardinality():
				t.Errorf("%s.%s (%v %v) is %s.%s (%v %v) in the record", view.Name(), vf.Name(), vf.Cardinality(), vf.Kind(),
					record.Name(), rf.Name(), rf.Cardinality(), rf.Kind())
			case vf.Kind() == protoreflect.MessageKind && views[vf.Message().FullName()].FullName() != rf.Message().FullName():
				t.Errorf("%s.%s views %s, but the record's field is a %s", view.Name(), vf.Name(), vf.Message().Name(), rf.Message().Name())
			case vf.Kind() == protoreflect.EnumKind && vf.Enum().FullName() != rf.Enum().FullName():
				t.Errorf("%s.%s is a %s, the record's a %s", view.Name(), vf.Name(), vf.Enum().Name(), rf.Enum().Name())
			}
		}
	}
}
