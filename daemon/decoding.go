package daemon

import (
	"context"
	"fmt"
	"sync"
	"unicode/utf8"

	"github.com/hufu-hsm/hufu/daemon/apierr"
	"google.golang.org/grpc"
	"google.golang.org/grpc/encoding"
	"google.golang.org/grpc/mem"
	"google.golang.org/protobuf/encoding/protowire"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/reflect/protoreflect"
)

// Request bodies that do not decode (not protobuf at all, or a string field that is not
// UTF-8) are the caller's mistake, to be answered InvalidArgument naming the field. grpc-go
// answers a codec's error itself, as Internal, and writes that status at once, before any
// interceptor runs; so the codec does not return one. Instead:
//
//   - requestCodec, the server's codec, resets the message, notes what was wrong with it
//     (which string field is not UTF-8, or that the body is not a protobuf encoding of the
//     request message) under the message's address, and reports success;
//   - decodingRegistrar registers every service with handlers that look the message up
//     right after it is received (and check its enum fields, enums.go): a unary call then reaches the gate with a handler that
//     answers the refusal instead of running the method (so it is authenticated, counted,
//     logged and mapped by apierr like any other), and a stream's RecvMsg returns it.
//
// Every service must be registered through the registrar, or its undecodable requests
// would reach its methods as empty messages and their notes would stay behind:
// buildServer checks that it was.

// undecodable holds the refusals of messages that did not decode, by message address,
// from the codec to the handler that received the message.
type undecodable struct{ byMessage sync.Map }

// take returns and forgets the refusal noted for message m, if any.
func (u *undecodable) take(m any) error {
	if err, ok := u.byMessage.LoadAndDelete(m); ok {
		return err.(error)
	}
	return nil
}

// requestCodec is the standard protobuf codec, whose decoding failures are noted in
// failures instead of being returned.
type requestCodec struct {
	encoding.CodecV2
	failures *undecodable
}

func newRequestCodec(failures *undecodable) requestCodec {
	return requestCodec{CodecV2: encoding.GetCodecV2("proto"), failures: failures}
}

func (c requestCodec) Unmarshal(data mem.BufferSlice, v any) error {
	err := c.CodecV2.Unmarshal(data, v)
	m, ok := v.(proto.Message)
	if err == nil || !ok {
		return err
	}
	proto.Reset(m) // nothing half-decoded goes further
	md := m.ProtoReflect().Descriptor()
	refusal := apierr.Invalidf("request", "the body is not a protobuf encoding of %s", md.FullName())
	if field, found := notUTF8Field(data.Materialize(), md, ""); found {
		refusal = apierr.Invalidf(field, "not valid UTF-8")
	}
	c.failures.byMessage.Store(v, refusal)
	return nil
}

// notUTF8Field walks the wire encoding b of a message of type md and returns the path of
// the first string field whose value is not UTF-8 ("device.name"), if any.
func notUTF8Field(b []byte, md protoreflect.MessageDescriptor, prefix string) (string, bool) {
	for len(b) > 0 {
		num, typ, n := protowire.ConsumeTag(b)
		if n < 0 {
			return "", false
		}
		b = b[n:]
		if typ != protowire.BytesType {
			if n = protowire.ConsumeFieldValue(num, typ, b); n < 0 {
				return "", false
			}
			b = b[n:]
			continue
		}
		v, n := protowire.ConsumeBytes(b)
		if n < 0 {
			return "", false
		}
		b = b[n:]
		fd := md.Fields().ByNumber(num)
		if fd == nil {
			continue
		}
		name := prefix + string(fd.Name())
		switch fd.Kind() {
		case protoreflect.StringKind:
			if !utf8.Valid(v) {
				return name, true
			}
		case protoreflect.MessageKind:
			if f, ok := notUTF8Field(v, fd.Message(), name+"."); ok {
				return f, true
			}
		}
	}
	return "", false
}

// decodingRegistrar registers services on the server with their handlers wrapped to
// answer the refusals requestCodec noted, and remembers which services it registered.
type decodingRegistrar struct {
	*grpc.Server
	failures   *undecodable
	registered map[string]bool
}

func newDecodingRegistrar(s *grpc.Server, failures *undecodable) *decodingRegistrar {
	return &decodingRegistrar{Server: s, failures: failures, registered: map[string]bool{}}
}

func (r *decodingRegistrar) RegisterService(desc *grpc.ServiceDesc, impl any) {
	d := *desc
	d.Methods = make([]grpc.MethodDesc, len(desc.Methods))
	for i, m := range desc.Methods {
		m.Handler = r.unary(m.Handler)
		d.Methods[i] = m
	}
	d.Streams = make([]grpc.StreamDesc, len(desc.Streams))
	for i, s := range desc.Streams {
		h := s.Handler
		s.Handler = func(srv any, ss grpc.ServerStream) error { return h(srv, decodingStream{ss, r.failures}) }
		d.Streams[i] = s
	}
	r.Server.RegisterService(&d, impl)
	r.registered[d.ServiceName] = true
}

// checkAll fails unless every service the server serves was registered through r.
func (r *decodingRegistrar) checkAll() error {
	for name := range r.Server.GetServiceInfo() {
		if !r.registered[name] {
			return fmt.Errorf("grpc service %s was registered without the decoding registrar", name)
		}
	}
	return nil
}

func (r *decodingRegistrar) unary(h grpc.MethodHandler) grpc.MethodHandler {
	return func(srv any, ctx context.Context, dec func(any) error, interceptor grpc.UnaryServerInterceptor) (any, error) {
		var refusal error
		decode := func(v any) error {
			if err := dec(v); err != nil {
				return err
			}
			if refusal = r.failures.take(v); refusal == nil {
				refusal = undefinedEnum(v) // enums.go
			}
			return nil
		}
		gated := func(ctx context.Context, req any, info *grpc.UnaryServerInfo, handler grpc.UnaryHandler) (any, error) {
			if refusal != nil {
				handler = func(context.Context, any) (any, error) { return nil, refusal }
			}
			if interceptor == nil {
				return handler(ctx, req)
			}
			return interceptor(ctx, req, info, handler)
		}
		return h(srv, ctx, decode, gated)
	}
}

type decodingStream struct {
	grpc.ServerStream
	failures *undecodable
}

func (s decodingStream) RecvMsg(m any) error {
	// The note is taken whatever RecvMsg returns: grpc-go decodes a server stream's second
	// message into m to refuse it (cardinality) after the codec noted it, and a note left
	// behind would pin m in the map for ever — a leak any client could drive.
	err := s.ServerStream.RecvMsg(m)
	refusal := s.failures.take(m)
	switch {
	case err != nil:
		return err
	case refusal != nil:
		return refusal
	}
	return undefinedEnum(m)
}
