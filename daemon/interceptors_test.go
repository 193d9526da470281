package daemon

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"io"
	"log/slog"
	"net"
	"testing"
	"time"

	"github.com/hufu-hsm/hufu/daemon/authn"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/peer"
	"google.golang.org/grpc/status"
)

func testGate(policy authn.Policy) *gate {
	return &gate{
		policy:      policy,
		systems:     map[string]map[string]bool{"bid-opening": {"hufu.v1.OpeningService": true}},
		maxDeadline: time.Second,
		metrics:     newRPCMetrics(prometheus.NewRegistry()),
		log:         slog.New(slog.NewTextHandler(io.Discard, nil)),
	}
}

// withClientCert is the context of a call whose TLS peer presented a verified certificate.
func withClientCert(ctx context.Context, cn string) context.Context {
	cert := &x509.Certificate{Subject: pkix.Name{CommonName: cn}}
	return peer.NewContext(ctx, &peer.Peer{
		Addr:     &net.TCPAddr{IP: net.IPv4(10, 0, 0, 9), Port: 4242},
		AuthInfo: credentials.TLSInfo{State: tls.ConnectionState{VerifiedChains: [][]*x509.Certificate{{cert}}}},
	})
}

func TestGate(t *testing.T) {
	const (
		public  = "/hufu.v1.AccountService/SendSmsCode"
		system  = "/hufu.v1.OpeningService/Open"
		unknown = "/hufu.v1.AccountService/NotDeclared"
	)
	g := testGate(authn.Policy{public: authn.Public, system: authn.System})
	var seen authn.Caller
	var deadline time.Duration
	ok := func(ctx context.Context, _ any) (any, error) {
		seen = authn.CallerFrom(ctx)
		d, _ := ctx.Deadline()
		deadline = time.Until(d)
		return "ok", nil
	}
	panics := func(context.Context, any) (any, error) { panic("handler bug") }
	cases := []struct {
		name    string
		ctx     context.Context
		method  string
		handler grpc.UnaryHandler
		want    codes.Code
		system  string
	}{
		{"public", context.Background(), public, ok, codes.OK, ""},
		{"panic becomes Internal", context.Background(), public, panics, codes.Internal, ""},
		{"undeclared method", context.Background(), unknown, ok, codes.PermissionDenied, ""},
		{"system without certificate", context.Background(), system, ok, codes.Unauthenticated, ""},
		{"system allowed", withClientCert(context.Background(), "bid-opening"), system, ok, codes.OK, "bid-opening"},
		{"system not allowed", withClientCert(context.Background(), "business-system"), system, ok, codes.PermissionDenied, ""},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			seen = authn.Caller{}
			_, err := g.unary(c.ctx, nil, &grpc.UnaryServerInfo{FullMethod: c.method}, c.handler)
			if got := status.Code(err); got != c.want {
				t.Fatalf("got %v (%v), want %v", got, err, c.want)
			}
			if c.want == codes.OK && seen.System != c.system {
				t.Fatalf("caller system %q, want %q", seen.System, c.system)
			}
		})
	}
	if deadline <= 0 || deadline > time.Second {
		t.Fatalf("a call without a deadline got %v, want at most the configured 1s", deadline)
	}
	if n := testutil.ToFloat64(g.metrics.requests.WithLabelValues(public, "Internal")); n != 1 {
		t.Fatalf("internal errors counted %v times", n)
	}
}
