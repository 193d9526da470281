package daemon

import (
	"context"
	"log/slog"
	"runtime/debug"
	"strings"
	"time"

	"github.com/hufu-hsm/hufu/admin"
	"github.com/hufu-hsm/hufu/daemon/apierr"
	"github.com/hufu-hsm/hufu/daemon/authn"
	"github.com/hufu-hsm/hufu/store"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/peer"
	"google.golang.org/grpc/status"
)

// gate is the one interceptor every call goes through: it caps the deadline, authenticates
// the caller against the method's policy, runs the handler with panics turned into Internal
// errors, maps the result to a gRPC status (apierr.Status, the one place) and records the
// method's metrics and access log line.
//
// Every call gets a fresh request id (admin.RequestIDs; the caller's own x-request-id, if
// well-formed, is logged beside it as caller_request_id). It is returned in the
// x-request-id response header, carried in the context (store.RequestIDFrom: every audit
// record the call writes names it, detail request_id) and logged with the call: one Info line "rpc" per call, with the method, the status code, the
// duration, the kind of caller (user, system, anonymous: never who), the peer address and
// the id. Request messages and metadata values other than the id are never logged.
type gate struct {
	policy      authn.Policy
	sessions    authn.Sessions
	systems     map[string]map[string]bool // client name -> service -> allowed
	maxDeadline time.Duration
	metrics     *rpcMetrics
	log         *slog.Logger

	// registered, if set, allows what systems does not: clients registered at run time.
	registered func(name, service string) bool
}

// requestIDHeader is the metadata key of request ids, both ways.
const requestIDHeader = "x-request-id"

type callerRequestIDKey struct{}

// withRequestID gives the call a fresh request id (admin.RequestIDs) and puts it in the
// context, where the store finds it for the audit records the call writes
// (store.WithRequestID); the caller's own x-request-id, if well-formed, goes along for the
// access log line.
func withRequestID(ctx context.Context) (context.Context, metadata.MD) {
	id, callerID := admin.RequestIDs(incoming(ctx, requestIDHeader))
	ctx = store.WithRequestID(ctx, id)
	if callerID != "" {
		ctx = context.WithValue(ctx, callerRequestIDKey{}, callerID)
	}
	return ctx, metadata.MD{requestIDHeader: {id}} // requestIDHeader is lower case, as MD keys must be
}

func (g *gate) unary(ctx context.Context, req any, info *grpc.UnaryServerInfo, handler grpc.UnaryHandler) (resp any, err error) {
	start := time.Now()
	ctx, header := withRequestID(ctx)
	// Fails only without a gRPC transport in ctx (unit tests calling the gate directly).
	_ = grpc.SetHeader(ctx, header)
	ctx, cancel := g.capDeadline(ctx)
	defer cancel()
	defer func() {
		if r := recover(); r != nil {
			g.log.Error("handler panic", "method", info.FullMethod, "panic", r, "stack", string(debug.Stack()))
			resp, err = nil, apierr.New(apierr.Internal, "internal error")
		}
		err = g.finish(ctx, info.FullMethod, start, err)
	}()
	if ctx, err = g.authenticate(ctx, info.FullMethod); err != nil {
		return nil, err
	}
	return handler(ctx, req)
}

func (g *gate) stream(srv any, ss grpc.ServerStream, info *grpc.StreamServerInfo, handler grpc.StreamHandler) (err error) {
	start := time.Now()
	// Streams follow something until it ends (a scan session until its expiry, health
	// until the client leaves): the deadline cap of unary calls does not apply; each
	// stream handler bounds its own life.
	ctx, header := withRequestID(ss.Context())
	_ = ss.SetHeader(header)
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	defer func() {
		if r := recover(); r != nil {
			g.log.Error("handler panic", "method", info.FullMethod, "panic", r, "stack", string(debug.Stack()))
			err = apierr.New(apierr.Internal, "internal error")
		}
		err = g.finish(ctx, info.FullMethod, start, err)
	}()
	if ctx, err = g.authenticate(ctx, info.FullMethod); err != nil {
		return err
	}
	return handler(srv, &contextStream{ServerStream: ss, ctx: ctx})
}

type contextStream struct {
	grpc.ServerStream
	ctx context.Context
}

func (s *contextStream) Context() context.Context { return s.ctx }

func (g *gate) capDeadline(ctx context.Context) (context.Context, context.CancelFunc) {
	if d, ok := ctx.Deadline(); ok && time.Until(d) <= g.maxDeadline {
		return ctx, func() {}
	}
	return context.WithTimeout(ctx, g.maxDeadline)
}

func (g *gate) finish(ctx context.Context, method string, start time.Time, err error) error {
	elapsed := time.Since(start)
	code := codes.OK
	var st *status.Status
	if err != nil { // no status to build for a success (issue 18: the gate's per-call cost)
		var internal bool
		st, internal = apierr.Status(err)
		code = st.Code()
		if internal {
			g.log.ErrorContext(ctx, "internal error", "method", method, "actor", authn.CallerFrom(ctx).Actor(), "request_id", store.RequestIDFrom(ctx), "err", err)
		}
	}
	g.metrics.requests.WithLabelValues(method, code.String()).Inc()
	g.metrics.duration.WithLabelValues(method).Observe(elapsed.Seconds())
	if g.log.Enabled(ctx, slog.LevelInfo) {
		g.accessLog(ctx, method, code, elapsed)
	}
	if err == nil {
		return nil
	}
	return st.Err()
}

// accessLog writes the call's access log line.
func (g *gate) accessLog(ctx context.Context, method string, code codes.Code, elapsed time.Duration) {
	id := store.RequestIDFrom(ctx)
	peerAddr := ""
	if p, ok := peer.FromContext(ctx); ok && p.Addr != nil {
		peerAddr = p.Addr.String()
	}
	attrs := []slog.Attr{slog.String("method", method), slog.String("code", code.String()),
		slog.String("duration", elapsed.Round(time.Microsecond).String()),
		slog.String("caller", callerKind(authn.CallerFrom(ctx))), slog.String("peer", peerAddr),
		slog.String("request_id", id)}
	if callerID, _ := ctx.Value(callerRequestIDKey{}).(string); callerID != "" {
		attrs = append(attrs, slog.String("caller_request_id", callerID))
	}
	g.log.LogAttrs(ctx, slog.LevelInfo, "rpc", attrs...)
}

func (g *gate) authenticate(ctx context.Context, method string) (context.Context, error) {
	caller := authn.Caller{}
	p, _ := peer.FromContext(ctx)
	if p != nil {
		caller.Peer = p.Addr
	}
	switch g.policy[method] {
	case authn.Public:
	case authn.User:
		token, ok := strings.CutPrefix(incoming(ctx, "authorization"), "Bearer ")
		if !ok || token == "" {
			return ctx, apierr.New(apierr.Unauthenticated, "sign in first: no access token")
		}
		device := incoming(ctx, "hufu-device-id")
		if device == "" {
			return ctx, apierr.New(apierr.Unauthenticated, "the hufu-device-id header is missing")
		}
		session, err := g.sessions.Authenticate(ctx, token, device)
		if err != nil {
			return ctx, err
		}
		session.Peer = caller.Peer
		caller = session
	case authn.System:
		name := systemName(p)
		if name == "" {
			return ctx, apierr.New(apierr.Unauthenticated, "this method needs a client certificate")
		}
		service := method[1:strings.LastIndexByte(method, '/')]
		if !g.systems[name][service] && (g.registered == nil || !g.registered(name, service)) {
			return ctx, apierr.New(apierr.PermissionDenied, "system client %q may not call %s", name, service)
		}
		caller.System = name
	default:
		return ctx, apierr.New(apierr.PermissionDenied, "method not available")
	}
	return authn.WithCaller(ctx, caller), nil
}

// callerKind is how the access log names a caller: its kind, never its identity.
func callerKind(c authn.Caller) string {
	switch {
	case c.UserID != "":
		return "user"
	case c.System != "":
		return "system"
	}
	return "anonymous"
}

// systemName is the common name of the peer's verified client certificate, if any.
func systemName(p *peer.Peer) string {
	if p == nil {
		return ""
	}
	info, ok := p.AuthInfo.(credentials.TLSInfo)
	if !ok || len(info.State.VerifiedChains) == 0 {
		return ""
	}
	return info.State.VerifiedChains[0][0].Subject.CommonName
}

// incoming is the first value of an incoming metadata key (lower case). Unlike
// metadata.FromIncomingContext it copies only that key's values, not the whole map: the
// gate reads three keys on every call (issue 18).
func incoming(ctx context.Context, key string) string {
	if v := metadata.ValueFromIncomingContext(ctx, key); len(v) > 0 {
		return v[0]
	}
	return ""
}
