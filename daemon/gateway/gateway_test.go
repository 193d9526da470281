package gateway

import (
	"testing"

	_ "github.com/hufu-hsm/hufu/api/hufu/v1"
	"google.golang.org/protobuf/reflect/protoreflect"
	"google.golang.org/protobuf/reflect/protoregistry"
)

// TestEveryServiceIsRegistered: a hufu.v1 service added to the protos is reachable over
// JSON only if New registers it.
func TestEveryServiceIsRegistered(t *testing.T) {
	seen := 0
	protoregistry.GlobalFiles.RangeFilesByPackage("hufu.v1", func(fd protoreflect.FileDescriptor) bool {
		for i := range fd.Services().Len() {
			name := string(fd.Services().Get(i).FullName())
			seen++
			if registrations[name] == nil {
				t.Errorf("%s is not registered with the JSON gateway (registrations)", name)
			}
		}
		return true
	})
	if seen != len(registrations) {
		t.Errorf("the protos have %d services, the gateway registers %d", seen, len(registrations))
	}
}

func TestIncomingHeaders(t *testing.T) {
	for _, c := range []struct {
		header, want string
	}{
		{"Hufu-Device-Id", "hufu-device-id"},
		{"hufu-device-id", "hufu-device-id"},
		{"X-Request-Id", "x-request-id"},
		// Authorization is forwarded by grpc-gateway itself, once; a second route would
		// let a header of another name add a token ahead of it.
		{"Authorization", ""},
		{"Grpc-Metadata-Authorization", ""},
		{"Grpc-Metadata-Hufu-Device-Id", ""},
		{"X-Forwarded-Client-Cert", ""},
		{"X-Ssl-Client-S-Dn", ""},
		{"Cookie", ""},
	} {
		got, ok := IncomingHeaders(c.header)
		if got != c.want || ok != (c.want != "") {
			t.Errorf("IncomingHeaders(%q) = %q, %v; want %q", c.header, got, ok, c.want)
		}
	}
}
