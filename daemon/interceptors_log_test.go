package daemon

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"log/slog"
	"strings"
	"testing"

	"github.com/hufu-hsm/hufu/daemon/authn"
	"github.com/hufu-hsm/hufu/store"
	"google.golang.org/grpc"
	"google.golang.org/grpc/metadata"
)

// TestGateLogsRequestIDOnInternalErrors: the handler sees the call's request id (the
// appliance's own, not the caller's) in its context, and the internal-error line and the
// access line both carry it; the access line also names the caller's id.
func TestGateLogsRequestIDOnInternalErrors(t *testing.T) {
	const method = "/hufu.v1.AccountService/SendSmsCode"
	g := testGate(authn.Policy{method: authn.Public})
	var buf bytes.Buffer
	g.log = slog.New(slog.NewJSONHandler(&buf, nil))
	ctx := withClientCert(metadata.NewIncomingContext(context.Background(), metadata.Pairs("x-request-id", "req-42")), "nobody")
	var seen string
	_, err := g.unary(ctx, nil, &grpc.UnaryServerInfo{FullMethod: method}, func(ctx context.Context, _ any) (any, error) {
		seen = store.RequestIDFrom(ctx)
		return nil, errors.New("disk on fire")
	})
	if err == nil || seen == "" || seen == "req-42" {
		t.Fatalf("err %v, handler saw request id %q: want a fresh id of the appliance's", err, seen)
	}
	want := map[string]string{"internal error": "ERROR", "rpc": "INFO"}
	for _, l := range strings.Split(strings.TrimSpace(buf.String()), "\n") {
		var m map[string]any
		if err := json.Unmarshal([]byte(l), &m); err != nil {
			t.Fatal(err)
		}
		msg, _ := m["msg"].(string)
		if level, ok := want[msg]; !ok || m["level"] != level || m["request_id"] != seen {
			t.Fatalf("unexpected line %s", l)
		}
		delete(want, msg)
		if msg == "rpc" && (m["code"] != "Internal" || m["caller"] != "anonymous" || m["peer"] != "10.0.0.9:4242" || m["caller_request_id"] != "req-42") {
			t.Fatalf("access line %s", l)
		}
	}
	if len(want) > 0 {
		t.Fatalf("missing lines %v in %s", want, buf.String())
	}
}
