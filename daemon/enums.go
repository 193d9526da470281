package daemon

import (
	"sync"

	"github.com/hufu-hsm/hufu/daemon/apierr"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/reflect/protoreflect"
)

// Enum fields of requests (state filters of lists, purposes, kinds, ...) decode whatever
// number a caller sends: proto3 enums are open. A number the enum does not define is the
// caller's mistake and is refused here, for every request, with the field named, before
// any method sees it: a list filtered by an unknown state would otherwise answer with
// nothing, or with everything, and a switch over the value would fall to its default.

// undefinedEnum returns InvalidArgument for the first enum field of m (at any depth) whose
// value its enum does not define, or nil.
func undefinedEnum(m any) error {
	pm, ok := m.(proto.Message)
	if !ok {
		return nil
	}
	msg := pm.ProtoReflect()
	if !enumsIn(msg.Descriptor()) {
		return nil
	}
	if field, fd, n, found := findUndefinedEnum(msg, ""); found {
		return apierr.Invalidf(field, "%d is not a %s value", n, fd.Enum().FullName())
	}
	return nil
}

func findUndefinedEnum(msg protoreflect.Message, prefix string) (field string, fd protoreflect.FieldDescriptor, n protoreflect.EnumNumber, found bool) {
	msg.Range(func(f protoreflect.FieldDescriptor, v protoreflect.Value) bool {
		name := prefix + string(f.Name())
		switch {
		case f.IsMap():
			if f.MapValue().Kind() == protoreflect.EnumKind {
				v.Map().Range(func(_ protoreflect.MapKey, mv protoreflect.Value) bool {
					if !defined(f.MapValue(), mv.Enum()) {
						field, fd, n, found = name, f.MapValue(), mv.Enum(), true
					}
					return !found
				})
			} else if f.MapValue().Kind() == protoreflect.MessageKind && enumsIn(f.MapValue().Message()) {
				v.Map().Range(func(_ protoreflect.MapKey, mv protoreflect.Value) bool {
					field, fd, n, found = findUndefinedEnum(mv.Message(), name+".")
					return !found
				})
			}
		case f.Kind() == protoreflect.EnumKind && f.IsList():
			l := v.List()
			for i := 0; i < l.Len() && !found; i++ {
				if !defined(f, l.Get(i).Enum()) {
					field, fd, n, found = name, f, l.Get(i).Enum(), true
				}
			}
		case f.Kind() == protoreflect.EnumKind:
			if !defined(f, v.Enum()) {
				field, fd, n, found = name, f, v.Enum(), true
			}
		case f.Kind() == protoreflect.MessageKind && enumsIn(f.Message()):
			if f.IsList() {
				l := v.List()
				for i := 0; i < l.Len() && !found; i++ {
					field, fd, n, found = findUndefinedEnum(l.Get(i).Message(), name+".")
				}
			} else {
				field, fd, n, found = findUndefinedEnum(v.Message(), name+".")
			}
		}
		return !found
	})
	return field, fd, n, found
}

func defined(fd protoreflect.FieldDescriptor, n protoreflect.EnumNumber) bool {
	return fd.Enum().Values().ByNumber(n) != nil
}

// hasEnums caches, per message type, whether it has an enum field at any depth, so that
// the requests without one (most, and the hot cosign calls) are not walked.
var hasEnums sync.Map // protoreflect.FullName -> bool

func enumsIn(md protoreflect.MessageDescriptor) bool {
	if v, ok := hasEnums.Load(md.FullName()); ok {
		return v.(bool)
	}
	found := scanEnums(md, map[protoreflect.FullName]bool{})
	hasEnums.Store(md.FullName(), found)
	return found
}

func scanEnums(md protoreflect.MessageDescriptor, seen map[protoreflect.FullName]bool) bool {
	if seen[md.FullName()] {
		return false
	}
	seen[md.FullName()] = true
	fields := md.Fields()
	for i := 0; i < fields.Len(); i++ {
		f := fields.Get(i)
		if f.IsMap() {
			f = f.MapValue()
		}
		switch f.Kind() {
		case protoreflect.EnumKind:
			return true
		case protoreflect.MessageKind, protoreflect.GroupKind:
			if scanEnums(f.Message(), seen) {
				return true
			}
		}
	}
	return false
}
