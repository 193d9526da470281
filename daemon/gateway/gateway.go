// Package gateway serves hufu's public gRPC API as JSON over HTTPS (grpc-gateway), for the
// Java and .NET systems of a trading centre, with the OpenAPI document at /openapi.json.
//
// There is no second authorization path. The gateway never calls a service's methods itself
// (grpc-gateway's Register…HandlerServer would skip the interceptors); it is a gRPC client of
// the very *grpc.Server that serves the gRPC listener, so every JSON call passes the same
// gate: authentication, the system clients' permissions, the decoding checks, the deadline
// cap, the error mapping, the access log and the request id. The route is:
//
//  1. The JSON listener terminates TLS with the gRPC listener's certificate and client-CA
//     verification (a system presents its client certificate; a person does not).
//  2. Each HTTPS connection gets its own gRPC client connection, dialled over an in-memory
//     pipe (Listener) that only this process can reach — no socket, no port. The pipe's
//     server end carries the HTTPS connection's verified TLS state and remote address.
//  3. The grpc.Server's transport credentials (Credentials) hand that TLS state to gRPC as
//     the connection's credentials.TLSInfo without a handshake, and use the real TLS
//     handshake for every other connection. The gate therefore reads the caller's identity
//     from exactly where it reads a direct gRPC caller's: the verified client certificate
//     of the TLS connection the caller opened. An HTTPS connection without a verified
//     certificate reaches gRPC without one, and system methods refuse it as they would.
//  4. Only three HTTP headers become gRPC metadata (IncomingHeaders): Authorization (the
//     person's "Bearer <access token>"), Hufu-Device-Id and X-Request-Id, under the names
//     the phone sends. No header can name a system or set other metadata the gate reads.
//
// Errors are the gRPC status as grpc-gateway maps it (InvalidArgument → 400,
// Unauthenticated → 401, PermissionDenied → 403, NotFound → 404, FailedPrecondition → 400,
// ResourceExhausted → 429 …), with the status's details — the field violations apierr puts
// in a google.rpc.BadRequest — in the JSON body. Server-streaming calls answer chunked
// newline-delimited JSON, one {"result": …} (or, at the end, {"error": …}) object per line.
// JSON field names are the proto field names, as in the OpenAPI document and in field
// violations. A body that is not JSON of the request message is refused 400 by the gateway
// before any call (it has no protobuf to send); such refusals are logged here.
package gateway

import (
	"context"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"net/textproto"
	"sync"
	"sync/atomic"
	"time"

	"github.com/grpc-ecosystem/grpc-gateway/v2/runtime"
	hufuv1 "github.com/hufu-hsm/hufu/api/hufu/v1"
	"google.golang.org/grpc"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/encoding/protojson"
)

// Options configure a Gateway.
type Options struct {
	Log *slog.Logger
	// OpenAPI is the document served at /openapi.json.
	OpenAPI []byte
	// MaxBodyBytes bounds a request body (the JSON encoding of one request message).
	MaxBodyBytes int64
	// MaxResponseBytes bounds one response message from gRPC.
	MaxResponseBytes int
}

// Gateway is the JSON/HTTP front of the gRPC server.
type Gateway struct {
	opts    Options
	pipe    *pipeListener
	handler http.Handler

	mu    sync.Mutex
	conns map[net.Conn]*httpsConn // open HTTPS connections and their gRPC connections
}

// New builds the gateway's handler for every service of hufu.v1.
func New(opts Options) (*Gateway, error) {
	if opts.Log == nil {
		opts.Log = slog.Default()
	}
	g := &Gateway{opts: opts, pipe: newPipeListener(), conns: map[net.Conn]*httpsConn{}}
	mux := runtime.NewServeMux(
		runtime.WithIncomingHeaderMatcher(IncomingHeaders),
		runtime.WithOutgoingHeaderMatcher(outgoingHeaders),
		runtime.WithMarshalerOption(runtime.MIMEWildcard, &runtime.JSONPb{
			MarshalOptions:   protojson.MarshalOptions{UseProtoNames: true},
			UnmarshalOptions: protojson.UnmarshalOptions{},
		}),
		runtime.WithErrorHandler(g.errorHandler),
		// X-HTTP-Method-Override would let a POST reach a GET route; nothing needs it.
		runtime.WithDisableHTTPMethodOverride(),
	)
	ctx := context.Background()
	for name, register := range registrations {
		if err := register(ctx, mux, connRouter{}); err != nil {
			return nil, fmt.Errorf("gateway: %s: %w", name, err)
		}
	}
	top := http.NewServeMux()
	top.HandleFunc("GET /openapi.json", func(w http.ResponseWriter, _ *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		_, _ = w.Write(opts.OpenAPI)
	})
	top.Handle("/", mux)
	g.handler = g.withConnection(http.MaxBytesHandler(top, opts.MaxBodyBytes))
	return g, nil
}

// registrations registers each service of hufu.v1 with the gateway's mux, by full name; a
// test checks that none is missing.
var registrations = map[string]func(context.Context, *runtime.ServeMux, grpc.ClientConnInterface) error{
	"hufu.v1.AccountService": func(ctx context.Context, mux *runtime.ServeMux, cc grpc.ClientConnInterface) error {
		return hufuv1.RegisterAccountServiceHandlerClient(ctx, mux, hufuv1.NewAccountServiceClient(cc))
	},
	"hufu.v1.AfterSalesService": func(ctx context.Context, mux *runtime.ServeMux, cc grpc.ClientConnInterface) error {
		return hufuv1.RegisterAfterSalesServiceHandlerClient(ctx, mux, hufuv1.NewAfterSalesServiceClient(cc))
	},
	"hufu.v1.AfterSalesDeskService": func(ctx context.Context, mux *runtime.ServeMux, cc grpc.ClientConnInterface) error {
		return hufuv1.RegisterAfterSalesDeskServiceHandlerClient(ctx, mux, hufuv1.NewAfterSalesDeskServiceClient(cc))
	},
	"hufu.v1.BankCardService": func(ctx context.Context, mux *runtime.ServeMux, cc grpc.ClientConnInterface) error {
		return hufuv1.RegisterBankCardServiceHandlerClient(ctx, mux, hufuv1.NewBankCardServiceClient(cc))
	},
	"hufu.v1.CertificateService": func(ctx context.Context, mux *runtime.ServeMux, cc grpc.ClientConnInterface) error {
		return hufuv1.RegisterCertificateServiceHandlerClient(ctx, mux, hufuv1.NewCertificateServiceClient(cc))
	},
	"hufu.v1.CosignService": func(ctx context.Context, mux *runtime.ServeMux, cc grpc.ClientConnInterface) error {
		return hufuv1.RegisterCosignServiceHandlerClient(ctx, mux, hufuv1.NewCosignServiceClient(cc))
	},
	"hufu.v1.EnterpriseService": func(ctx context.Context, mux *runtime.ServeMux, cc grpc.ClientConnInterface) error {
		return hufuv1.RegisterEnterpriseServiceHandlerClient(ctx, mux, hufuv1.NewEnterpriseServiceClient(cc))
	},
	"hufu.v1.IdentityService": func(ctx context.Context, mux *runtime.ServeMux, cc grpc.ClientConnInterface) error {
		return hufuv1.RegisterIdentityServiceHandlerClient(ctx, mux, hufuv1.NewIdentityServiceClient(cc))
	},
	"hufu.v1.InvoiceService": func(ctx context.Context, mux *runtime.ServeMux, cc grpc.ClientConnInterface) error {
		return hufuv1.RegisterInvoiceServiceHandlerClient(ctx, mux, hufuv1.NewInvoiceServiceClient(cc))
	},
	"hufu.v1.InvoiceDeskService": func(ctx context.Context, mux *runtime.ServeMux, cc grpc.ClientConnInterface) error {
		return hufuv1.RegisterInvoiceDeskServiceHandlerClient(ctx, mux, hufuv1.NewInvoiceDeskServiceClient(cc))
	},
	"hufu.v1.KeyService": func(ctx context.Context, mux *runtime.ServeMux, cc grpc.ClientConnInterface) error {
		return hufuv1.RegisterKeyServiceHandlerClient(ctx, mux, hufuv1.NewKeyServiceClient(cc))
	},
	"hufu.v1.OpeningService": func(ctx context.Context, mux *runtime.ServeMux, cc grpc.ClientConnInterface) error {
		return hufuv1.RegisterOpeningServiceHandlerClient(ctx, mux, hufuv1.NewOpeningServiceClient(cc))
	},
	"hufu.v1.PaymentService": func(ctx context.Context, mux *runtime.ServeMux, cc grpc.ClientConnInterface) error {
		return hufuv1.RegisterPaymentServiceHandlerClient(ctx, mux, hufuv1.NewPaymentServiceClient(cc))
	},
	"hufu.v1.PaymentDeskService": func(ctx context.Context, mux *runtime.ServeMux, cc grpc.ClientConnInterface) error {
		return hufuv1.RegisterPaymentDeskServiceHandlerClient(ctx, mux, hufuv1.NewPaymentDeskServiceClient(cc))
	},
	"hufu.v1.PhoneScanService": func(ctx context.Context, mux *runtime.ServeMux, cc grpc.ClientConnInterface) error {
		return hufuv1.RegisterPhoneScanServiceHandlerClient(ctx, mux, hufuv1.NewPhoneScanServiceClient(cc))
	},
	"hufu.v1.PlatformService": func(ctx context.Context, mux *runtime.ServeMux, cc grpc.ClientConnInterface) error {
		return hufuv1.RegisterPlatformServiceHandlerClient(ctx, mux, hufuv1.NewPlatformServiceClient(cc))
	},
	"hufu.v1.ReconciliationService": func(ctx context.Context, mux *runtime.ServeMux, cc grpc.ClientConnInterface) error {
		return hufuv1.RegisterReconciliationServiceHandlerClient(ctx, mux, hufuv1.NewReconciliationServiceClient(cc))
	},
	"hufu.v1.ReviewService": func(ctx context.Context, mux *runtime.ServeMux, cc grpc.ClientConnInterface) error {
		return hufuv1.RegisterReviewServiceHandlerClient(ctx, mux, hufuv1.NewReviewServiceClient(cc))
	},
	"hufu.v1.ScanService": func(ctx context.Context, mux *runtime.ServeMux, cc grpc.ClientConnInterface) error {
		return hufuv1.RegisterScanServiceHandlerClient(ctx, mux, hufuv1.NewScanServiceClient(cc))
	},
	"hufu.v1.SealService": func(ctx context.Context, mux *runtime.ServeMux, cc grpc.ClientConnInterface) error {
		return hufuv1.RegisterSealServiceHandlerClient(ctx, mux, hufuv1.NewSealServiceClient(cc))
	},
	"hufu.v1.SupportService": func(ctx context.Context, mux *runtime.ServeMux, cc grpc.ClientConnInterface) error {
		return hufuv1.RegisterSupportServiceHandlerClient(ctx, mux, hufuv1.NewSupportServiceClient(cc))
	},
	"hufu.v1.SupportDeskService": func(ctx context.Context, mux *runtime.ServeMux, cc grpc.ClientConnInterface) error {
		return hufuv1.RegisterSupportDeskServiceHandlerClient(ctx, mux, hufuv1.NewSupportDeskServiceClient(cc))
	},
	"hufu.v1.WalletService": func(ctx context.Context, mux *runtime.ServeMux, cc grpc.ClientConnInterface) error {
		return hufuv1.RegisterWalletServiceHandlerClient(ctx, mux, hufuv1.NewWalletServiceClient(cc))
	},
}

// Listener is the in-memory listener the grpc.Server must also serve (grpc.Server.Serve):
// the gateway's gRPC connections arrive on it.
func (g *Gateway) Listener() net.Listener { return g.pipe }

// IncomingHeaders is the gateway's header matcher: the HTTP headers that become gRPC
// metadata, under the names the phone's gRPC client uses. Authorization is forwarded by
// grpc-gateway itself, as "authorization". Everything else stays in HTTP.
func IncomingHeaders(key string) (string, bool) {
	switch textproto.CanonicalMIMEHeaderKey(key) {
	case "Hufu-Device-Id":
		return "hufu-device-id", true
	case "X-Request-Id":
		return "x-request-id", true
	}
	return "", false
}

// outgoingHeaders returns the request id as X-Request-Id and no other response metadata
// (grpc-gateway's default would echo every header as Grpc-Metadata-…).
func outgoingHeaders(key string) (string, bool) {
	if key == "x-request-id" {
		return "X-Request-Id", true
	}
	return "", false
}

// errorHandler is grpc-gateway's, plus a log line for the refusals that never reached gRPC
// (a body that is not JSON of the request): the gate logs every call that did.
func (g *Gateway) errorHandler(ctx context.Context, mux *runtime.ServeMux, m runtime.Marshaler, w http.ResponseWriter, r *http.Request, err error) {
	if called, _ := r.Context().Value(calledKey{}).(*atomic.Bool); called == nil || !called.Load() {
		// The code, not the message: a JSON decoding error quotes the body it choked on.
		g.opts.Log.Info("json: request refused before the call", "method", r.Method, "path", r.URL.Path,
			"peer", r.RemoteAddr, "code", status.Code(err).String())
	}
	runtime.DefaultHTTPErrorHandler(ctx, mux, m, w, r, err)
}

// Server returns the HTTP server of the gateway, to serve on a listener that hands out
// *tls.Conn connections configured as the gRPC listener's (tls.NewListener). Its owner
// shuts it down, then calls Close.
func (g *Gateway) Server() *http.Server {
	return &http.Server{
		Handler:           g.handler,
		ReadHeaderTimeout: 10 * time.Second,
		ConnContext: func(ctx context.Context, c net.Conn) context.Context {
			hc := &httpsConn{remote: c.RemoteAddr(), local: c.LocalAddr()}
			g.mu.Lock()
			g.conns[c] = hc
			g.mu.Unlock()
			return context.WithValue(ctx, httpsConnKey{}, hc)
		},
		ConnState: func(c net.Conn, st http.ConnState) {
			if st != http.StateClosed && st != http.StateHijacked {
				return
			}
			g.mu.Lock()
			hc := g.conns[c]
			delete(g.conns, c)
			g.mu.Unlock()
			if hc != nil {
				hc.close()
			}
		},
		ErrorLog: slog.NewLogLogger(g.opts.Log.Handler(), slog.LevelDebug),
	}
}

// Close closes the in-memory listener and the gRPC connections of HTTPS connections still
// open (the HTTP server is closed by its owner first).
func (g *Gateway) Close() {
	g.mu.Lock()
	conns := g.conns
	g.conns = map[net.Conn]*httpsConn{}
	g.mu.Unlock()
	for _, hc := range conns {
		hc.close()
	}
	_ = g.pipe.Close()
}

// withConnection opens, on an HTTPS connection's first request, its gRPC connection through
// the pipe, carrying the connection's TLS state.
func (g *Gateway) withConnection(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		hc, _ := r.Context().Value(httpsConnKey{}).(*httpsConn)
		if hc == nil || r.TLS == nil {
			http.Error(w, "the JSON gateway serves HTTPS only", http.StatusInternalServerError)
			return
		}
		if err := hc.open(g, r.TLS); err != nil {
			g.opts.Log.Error("json: in-process gRPC connection", "err", err)
			http.Error(w, "internal error", http.StatusInternalServerError)
			return
		}
		next.ServeHTTP(w, r.WithContext(context.WithValue(r.Context(), calledKey{}, new(atomic.Bool))))
	})
}
