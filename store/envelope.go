package store

import (
	"encoding/binary"
	"fmt"

	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/reflect/protoreflect"
)

// The record envelope: the bytes stored as the value of every record and index key.
//
//	offset  size  field
//	0       1     envelope version, 0x01
//	1       1     flags: bit 0 = has expiry; other bits must be zero
//	2       8     expiry, Unix nanoseconds, big-endian int64 (only if bit 0 is set)
//	.       1     length n of the message type name (1..255)
//	.       n     protobuf full name of the message (e.g. "hufu.store.v1.Example")
//	.       rest  the message, protobuf binary encoding
//
// The type name lets a read with the wrong message type fail loudly (ErrCorrupt) instead of
// decoding garbage; the expiry lives outside the message so that any message can expire
// and the store can hide expired records without knowing their type.

const envelopeV1 = 0x01

const flagExpiry = 0x01

type envelope struct {
	expires  int64 // Unix nanos; meaningful only if hasExpiry
	hasExp   bool
	typeName string
	payload  []byte
}

func encodeEnvelope(m proto.Message, expires int64, hasExp bool) ([]byte, error) {
	name := string(m.ProtoReflect().Descriptor().FullName())
	if len(name) == 0 || len(name) > 255 {
		return nil, fmt.Errorf("store: message type name %q unusable", name)
	}
	n := 3 + len(name)
	if hasExp {
		n += 8
	}
	buf := make([]byte, 0, n+proto.Size(m))
	flags := byte(0)
	if hasExp {
		flags |= flagExpiry
	}
	buf = append(buf, envelopeV1, flags)
	if hasExp {
		buf = binary.BigEndian.AppendUint64(buf, uint64(expires))
	}
	buf = append(buf, byte(len(name)))
	buf = append(buf, name...)
	buf, err := proto.MarshalOptions{Deterministic: true}.MarshalAppend(buf, m)
	if err != nil {
		return nil, fmt.Errorf("store: marshal %s: %w", name, err)
	}
	return buf, nil
}

// decodeEnvelope parses stored (untrusted) bytes. The payload aliases b.
func decodeEnvelope(b []byte) (envelope, error) {
	var e envelope
	if len(b) < 3 {
		return e, fmt.Errorf("%w: envelope too short", ErrCorrupt)
	}
	if b[0] != envelopeV1 {
		return e, fmt.Errorf("%w: envelope version %d", ErrCorrupt, b[0])
	}
	flags := b[1]
	if flags&^flagExpiry != 0 {
		return e, fmt.Errorf("%w: unknown envelope flags %#x", ErrCorrupt, flags)
	}
	b = b[2:]
	if flags&flagExpiry != 0 {
		if len(b) < 8 {
			return e, fmt.Errorf("%w: truncated expiry", ErrCorrupt)
		}
		e.hasExp = true
		e.expires = int64(binary.BigEndian.Uint64(b))
		b = b[8:]
	}
	if len(b) < 1 {
		return e, fmt.Errorf("%w: missing type name", ErrCorrupt)
	}
	n := int(b[0])
	b = b[1:]
	if n == 0 || len(b) < n {
		return e, fmt.Errorf("%w: bad type name length", ErrCorrupt)
	}
	e.typeName = string(b[:n])
	if !protoreflect.FullName(e.typeName).IsValid() {
		return e, fmt.Errorf("%w: bad type name %q", ErrCorrupt, e.typeName)
	}
	e.payload = b[n:]
	return e, nil
}

// live reports whether the record is visible at nowUnixNano: expiry is exclusive.
func (e envelope) live(nowUnixNano int64) bool {
	return !e.hasExp || nowUnixNano < e.expires
}

// into unmarshals the payload into m after checking the type name.
func (e envelope) into(m proto.Message) error {
	return e.intoAs(m.ProtoReflect().Descriptor().FullName(), m, proto.UnmarshalOptions{})
}

// intoAs decodes the payload, which must be a stored message, into m with opts: m is that
// message, or a view of it (Collection.View).
func (e envelope) intoAs(stored protoreflect.FullName, m proto.Message, opts proto.UnmarshalOptions) error {
	if e.typeName != string(stored) {
		return fmt.Errorf("%w: stored %s, read as %s", ErrCorrupt, e.typeName, stored)
	}
	if err := opts.Unmarshal(e.payload, m); err != nil {
		return fmt.Errorf("%w: %s: %v", ErrCorrupt, stored, err)
	}
	return nil
}
