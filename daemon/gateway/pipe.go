package gateway

import (
	"context"
	"crypto/tls"
	"errors"
	"math"
	"net"
	"sync"
	"sync/atomic"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/status"
)

// pipeListener is the in-memory listener between the gateway and the grpc.Server: dial
// makes a net.Pipe and queues its server end, which Accept returns. Nothing outside the
// process can connect to it.
type pipeListener struct {
	conns     chan net.Conn
	closed    chan struct{}
	closeOnce sync.Once
}

func newPipeListener() *pipeListener {
	return &pipeListener{conns: make(chan net.Conn), closed: make(chan struct{})}
}

var errPipeClosed = errors.New("gateway: in-memory listener closed")

func (l *pipeListener) Accept() (net.Conn, error) {
	select {
	case c := <-l.conns:
		return c, nil
	case <-l.closed:
		return nil, net.ErrClosed
	}
}

func (l *pipeListener) Close() error {
	l.closeOnce.Do(func() { close(l.closed) })
	return nil
}

func (l *pipeListener) Addr() net.Addr { return pipeAddr{} }

// dial connects to the grpc.Server as the HTTPS connection whose TLS state and addresses
// are given.
func (l *pipeListener) dial(ctx context.Context, state tls.ConnectionState, remote, local net.Addr) (net.Conn, error) {
	client, server := net.Pipe()
	select {
	case l.conns <- &pipeConn{Conn: server, state: state, remote: remote, local: local}:
		return client, nil
	case <-l.closed:
		return nil, errPipeClosed
	case <-ctx.Done():
		return nil, ctx.Err()
	}
}

type pipeAddr struct{}

func (pipeAddr) Network() string { return "pipe" }
func (pipeAddr) String() string  { return "hufu-json-gateway" }

// pipeConn is the grpc.Server's end of a pipe: it reports the HTTPS client's address as
// its remote address (the access log's peer, the rate limits' source) and carries the TLS
// state the HTTPS connection verified.
type pipeConn struct {
	net.Conn
	state         tls.ConnectionState
	remote, local net.Addr
}

func (c *pipeConn) RemoteAddr() net.Addr { return c.remote }
func (c *pipeConn) LocalAddr() net.Addr  { return c.local }

// Credentials wraps the grpc.Server's TLS transport credentials: a connection from the
// gateway's pipe presents, instead of a handshake, the TLS state of the HTTPS connection it
// stands for (as the credentials.TLSInfo a TLS handshake would have produced); every other
// connection does the real TLS handshake of tlsCreds.
func Credentials(tlsCreds credentials.TransportCredentials) credentials.TransportCredentials {
	return serverCredentials{TransportCredentials: tlsCreds}
}

type serverCredentials struct {
	credentials.TransportCredentials
}

func (c serverCredentials) ServerHandshake(conn net.Conn) (net.Conn, credentials.AuthInfo, error) {
	if pc, ok := conn.(*pipeConn); ok {
		return conn, credentials.TLSInfo{State: pc.state,
			CommonAuthInfo: credentials.CommonAuthInfo{SecurityLevel: credentials.PrivacyAndIntegrity}}, nil
	}
	return c.TransportCredentials.ServerHandshake(conn)
}

func (c serverCredentials) Clone() credentials.TransportCredentials {
	return serverCredentials{TransportCredentials: c.TransportCredentials.Clone()}
}

// httpsConn is one HTTPS connection and, once it has made a request, its gRPC connection.
type httpsConn struct {
	remote, local net.Addr

	mu     sync.Mutex
	cc     *grpc.ClientConn
	closed bool
}

type httpsConnKey struct{}

// calledKey marks, in a request's context, that the request reached gRPC (connRouter).
type calledKey struct{}

// open makes the connection's gRPC client connection if it has none. The TLS state of a
// connection does not change after its handshake, so the first request's stands for all.
func (hc *httpsConn) open(g *Gateway, state *tls.ConnectionState) error {
	hc.mu.Lock()
	defer hc.mu.Unlock()
	if hc.closed {
		return net.ErrClosed
	}
	if hc.cc != nil {
		return nil
	}
	st := *state
	cc, err := grpc.NewClient("passthrough:///hufu-json-gateway",
		grpc.WithContextDialer(func(ctx context.Context, _ string) (net.Conn, error) {
			return g.pipe.dial(ctx, st, hc.remote, hc.local)
		}),
		// The pipe never leaves the process; the server side's credentials are the HTTPS
		// connection's (Credentials).
		grpc.WithTransportCredentials(insecure.NewCredentials()),
		grpc.WithDefaultCallOptions(grpc.MaxCallRecvMsgSize(max(g.opts.MaxResponseBytes, 4<<20)), grpc.MaxCallSendMsgSize(math.MaxInt32)),
	)
	if err != nil {
		return err
	}
	hc.cc = cc
	return nil
}

func (hc *httpsConn) close() {
	hc.mu.Lock()
	defer hc.mu.Unlock()
	hc.closed = true
	if hc.cc != nil {
		_ = hc.cc.Close()
		hc.cc = nil
	}
}

func (hc *httpsConn) conn() *grpc.ClientConn {
	hc.mu.Lock()
	defer hc.mu.Unlock()
	return hc.cc
}

// connRouter is the gRPC client connection of the generated gateway handlers: each call
// goes out on the gRPC connection of the HTTPS connection the request came on.
type connRouter struct{}

var _ grpc.ClientConnInterface = connRouter{}

func connOf(ctx context.Context) (*grpc.ClientConn, error) {
	hc, _ := ctx.Value(httpsConnKey{}).(*httpsConn)
	if hc == nil {
		return nil, status.Error(codes.Internal, "gateway: request without an HTTPS connection")
	}
	cc := hc.conn()
	if cc == nil {
		return nil, status.Error(codes.Unavailable, "gateway: connection closed")
	}
	if called, _ := ctx.Value(calledKey{}).(*atomic.Bool); called != nil {
		called.Store(true)
	}
	return cc, nil
}

func (connRouter) Invoke(ctx context.Context, method string, args, reply any, opts ...grpc.CallOption) error {
	cc, err := connOf(ctx)
	if err != nil {
		return err
	}
	return cc.Invoke(ctx, method, args, reply, opts...)
}

func (connRouter) NewStream(ctx context.Context, desc *grpc.StreamDesc, method string, opts ...grpc.CallOption) (grpc.ClientStream, error) {
	cc, err := connOf(ctx)
	if err != nil {
		return nil, err
	}
	return cc.NewStream(ctx, desc, method, opts...)
}
