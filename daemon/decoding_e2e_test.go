package daemon_test

import (
	"testing"

	hufuv1 "github.com/hufu-hsm/hufu/api/hufu/v1"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
	"google.golang.org/grpc/mem"
	"google.golang.org/protobuf/encoding/protowire"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/reflect/protoreflect"
)

// rawCodec sends a *rawBody as it is, so a test can put bytes on the wire that no protobuf
// library would encode.
type rawCodec struct{}

type rawBody []byte

func (rawCodec) Marshal(v any) (mem.BufferSlice, error) {
	return mem.BufferSlice{mem.SliceBuffer(*v.(*rawBody))}, nil
}
func (rawCodec) Unmarshal(mem.BufferSlice, any) error { return nil }
func (rawCodec) Name() string                         { return "proto" }

// stringField encodes field name of m as a length-delimited value.
func stringField(m proto.Message, name string, value []byte) []byte {
	fd := m.ProtoReflect().Descriptor().Fields().ByName(protoreflect.Name(name))
	b := protowire.AppendTag(nil, fd.Number(), protowire.BytesType)
	return protowire.AppendBytes(b, value)
}

func TestUndecodableRequests(t *testing.T) {
	a := startAppliance(t, nil)
	conn := a.dial("device-0001")
	notUTF8 := []byte{'1', '3', 0xff, 0xfe}
	device := stringField(&hufuv1.Device{}, "name", notUTF8)
	cases := []struct {
		name, method string
		body         []byte
		field        string
	}{
		{"string field not UTF-8", "/hufu.v1.AccountService/SendSmsCode", stringField(&hufuv1.SendSmsCodeRequest{}, "phone", notUTF8), "phone"},
		{"nested string field not UTF-8", "/hufu.v1.AccountService/SignInWithSmsCode", stringField(&hufuv1.SignInWithSmsCodeRequest{}, "device", device), "device.name"},
		{"not protobuf", "/hufu.v1.AccountService/SendSmsCode", []byte{0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x01}, "request"},
		{"not protobuf, a user method before sign-in", "/hufu.v1.KeyService/ChangePin", []byte("\x0a\x05abc"), ""},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			body := rawBody(c.body)
			err := conn.ClientConn().Invoke(bg, c.method, &body, new(rawBody), grpc.ForceCodecV2(rawCodec{}))
			if c.field == "" {
				// Authentication comes first: an anonymous caller learns nothing of the method.
				wantCode(t, err, codes.Unauthenticated, "")
				return
			}
			wantCode(t, err, codes.InvalidArgument, c.field)
		})
	}
	t.Run("stream", func(t *testing.T) {
		desc := &grpc.StreamDesc{ServerStreams: true}
		s, err := conn.ClientConn().NewStream(bg, desc, "/grpc.health.v1.Health/Watch", grpc.ForceCodecV2(rawCodec{}))
		must(t, err)
		body := rawBody(stringField(&healthpb.HealthCheckRequest{}, "service", notUTF8))
		must(t, s.SendMsg(&body))
		must(t, s.CloseSend())
		wantCode(t, s.RecvMsg(new(rawBody)), codes.InvalidArgument, "service")
	})
	// A server stream given two messages, the first undecodable: grpc-go decodes the second
	// into the same message to refuse it, and the note of the first must not stay behind
	// (it would pin the message: a leak any client could drive, before authentication).
	t.Run("stream with a second message", func(t *testing.T) {
		// ClientStreams only so that this client sends twice; the server's method takes one.
		desc := &grpc.StreamDesc{ServerStreams: true, ClientStreams: true}
		for range 3 {
			s, err := conn.ClientConn().NewStream(bg, desc, "/grpc.health.v1.Health/Watch", grpc.ForceCodecV2(rawCodec{}))
			must(t, err)
			bad := rawBody(stringField(&healthpb.HealthCheckRequest{}, "service", notUTF8))
			good := rawBody(stringField(&healthpb.HealthCheckRequest{}, "service", []byte("hufu")))
			must(t, s.SendMsg(&bad))
			must(t, s.SendMsg(&good))
			must(t, s.CloseSend())
			if err := s.RecvMsg(new(rawBody)); err == nil {
				t.Fatal("two messages on a server stream were accepted")
			}
		}
		if n := a.live.Daemon.UndecodableNotes(); n != 0 {
			t.Fatalf("%d notes of undecodable requests left behind", n)
		}
	})

	// A well-formed request still works after the refusals.
	if _, err := conn.Accounts.SendSmsCode(bg, &hufuv1.SendSmsCodeRequest{Phone: phone, Purpose: hufuv1.SmsPurpose_SMS_PURPOSE_SIGN_IN}); err != nil {
		t.Fatal(err)
	}
}
