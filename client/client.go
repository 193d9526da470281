// Package client is the Go SDK for hufu: a connection to the daemon over TLS (with a client
// certificate for business and bid-opening systems, with a session token for people) and the
// typed service clients; and the phone's half of split SM2 keys: two-party key generation
// (CreateKey), a crypto.Signer and crypto.Decrypter backed by the appliance (OpenKey, Key),
// batch signing and decryption, and crash-safe share refresh (RefreshKey). The phone's shares
// are kept by package client/keystore.
package client

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"os"
	"sync"

	hufuv1 "github.com/hufu-hsm/hufu/api/hufu/v1"
	"google.golang.org/genproto/googleapis/rpc/errdetails"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
	"google.golang.org/grpc/status"
)

// Config says how to reach a daemon.
type Config struct {
	// Addr is host:port of the daemon's gRPC listener.
	Addr string
	// CAFile holds the CA certificates that sign the daemon's certificate; empty means the
	// system roots.
	CAFile string
	// ClientCertFile and ClientKeyFile are a system client's certificate; optional for people.
	ClientCertFile, ClientKeyFile string
	// ServerName overrides the name checked in the daemon's certificate.
	ServerName string
	// DeviceID identifies this device; sessions are bound to it.
	DeviceID string
}

// Conn is a connection to a daemon with its service clients.
type Conn struct {
	cc    *grpc.ClientConn
	creds *sessionCreds
	// refreshMu guards refreshToken and saved, and makes refreshes (SetSession) take turns.
	refreshMu    sync.Mutex
	refreshToken string
	saved        func(*hufuv1.Session) error

	Accounts  hufuv1.AccountServiceClient
	Platforms hufuv1.PlatformServiceClient
	Identity  hufuv1.IdentityServiceClient
	Keys      hufuv1.KeyServiceClient
	Cosign    hufuv1.CosignServiceClient
	// Enterprises is the enterprise side (enterprise.go has the delegation helpers).
	Enterprises hufuv1.EnterpriseServiceClient
	Health      healthpb.HealthClient
}

// Dial connects to the daemon. The connection is lazy: errors in reaching it show on the
// first call.
func Dial(cfg Config) (*Conn, error) {
	tlsCfg := &tls.Config{MinVersion: tls.VersionTLS12, ServerName: cfg.ServerName}
	if cfg.CAFile != "" {
		pem, err := os.ReadFile(cfg.CAFile)
		if err != nil {
			return nil, fmt.Errorf("client: CA file: %w", err)
		}
		tlsCfg.RootCAs = x509.NewCertPool()
		if !tlsCfg.RootCAs.AppendCertsFromPEM(pem) {
			return nil, fmt.Errorf("client: %s holds no certificate", cfg.CAFile)
		}
	}
	if cfg.ClientCertFile != "" {
		pair, err := tls.LoadX509KeyPair(cfg.ClientCertFile, cfg.ClientKeyFile)
		if err != nil {
			return nil, fmt.Errorf("client: client certificate: %w", err)
		}
		tlsCfg.Certificates = []tls.Certificate{pair}
	}
	creds := &sessionCreds{device: cfg.DeviceID}
	conn := &Conn{creds: creds}
	cc, err := grpc.NewClient(cfg.Addr,
		grpc.WithTransportCredentials(credentials.NewTLS(tlsCfg)),
		grpc.WithPerRPCCredentials(creds),
		// Fixed windows: no bandwidth-delay pings, which cost the daemon a read and a
		// write on every call at low concurrency (the daemon does the same, daemon.go).
		grpc.WithInitialWindowSize(1<<20), grpc.WithInitialConnWindowSize(1<<20),
		grpc.WithChainUnaryInterceptor(conn.refreshExpired))
	if err != nil {
		return nil, err
	}
	conn.cc = cc
	conn.Accounts = hufuv1.NewAccountServiceClient(cc)
	conn.Platforms = hufuv1.NewPlatformServiceClient(cc)
	conn.Identity = hufuv1.NewIdentityServiceClient(cc)
	conn.Keys = hufuv1.NewKeyServiceClient(cc)
	conn.Cosign = hufuv1.NewCosignServiceClient(cc)
	conn.Enterprises = hufuv1.NewEnterpriseServiceClient(cc)
	conn.Health = healthpb.NewHealthClient(cc)
	return conn, nil
}

// DeviceID is the device id every call carries.
func (c *Conn) DeviceID() string { return c.creds.device }

// ClientConn is the underlying gRPC connection, for services this package does not wrap.
func (c *Conn) ClientConn() *grpc.ClientConn { return c.cc }

// SetAccessToken makes later calls carry the token (empty: carry none).
func (c *Conn) SetAccessToken(token string) { c.creds.set(token) }

// SetSession makes later calls carry the session's access token and keeps the session alive:
// when the appliance rejects the access token of a unary call as expired (or revoked), the
// connection exchanges the refresh token for a new pair (AccountService.RefreshSession), once
// for all calls that hit the same rejected token, and repeats the call once with the new
// access token. saved, when set, hears every new pair so that it can be kept; the old pair no
// longer works once it is called. If the refresh fails the call returns the appliance's
// rejection ("sign in again"). Streaming calls are not repeated. saved must not call
// SetSession.
func (c *Conn) SetSession(accessToken, refreshToken string, saved func(*hufuv1.Session) error) {
	c.refreshMu.Lock()
	defer c.refreshMu.Unlock()
	c.creds.set(accessToken)
	c.refreshToken, c.saved = refreshToken, saved
}

// refreshExpired is the unary interceptor of SetSession.
func (c *Conn) refreshExpired(ctx context.Context, method string, req, reply any, cc *grpc.ClientConn, invoker grpc.UnaryInvoker, opts ...grpc.CallOption) error {
	sent := c.creds.get()
	err := invoker(ctx, method, req, reply, cc, opts...)
	if sent == "" || !accessTokenRejected(err) || method == hufuv1.AccountService_RefreshSession_FullMethodName {
		return err
	}
	if rerr := c.refreshAfter(ctx, sent); rerr != nil {
		if errors.Is(rerr, errNoRefresh) {
			return err
		}
		return fmt.Errorf("client: refreshing the expired session: %w", rerr)
	}
	return invoker(ctx, method, req, reply, cc, opts...)
}

// errNoRefresh: the session cannot be refreshed (no refresh token, or the appliance refused
// it), so the original rejection stands.
var errNoRefresh = errors.New("client: no refresh")

// refreshAfter replaces the rejected access token with a new pair, unless another call has
// already done so.
func (c *Conn) refreshAfter(ctx context.Context, rejected string) error {
	c.refreshMu.Lock()
	defer c.refreshMu.Unlock()
	if c.creds.get() != rejected {
		return nil // refreshed meanwhile
	}
	if c.refreshToken == "" {
		return errNoRefresh
	}
	resp, err := c.Accounts.RefreshSession(ctx, &hufuv1.RefreshSessionRequest{RefreshToken: c.refreshToken})
	if err != nil {
		if status.Code(err) == codes.Unauthenticated || status.Code(err) == codes.InvalidArgument {
			c.refreshToken = "" // invalid, expired or revoked: do not try it again
			return errNoRefresh
		}
		return err
	}
	s := resp.GetSession()
	c.creds.set(s.GetAccessToken())
	c.refreshToken = s.GetRefreshToken()
	if c.saved != nil {
		if err := c.saved(s); err != nil {
			return fmt.Errorf("keeping the new session: %w", err)
		}
	}
	return nil
}

// accessTokenRejected says whether err is the appliance's answer to an access token it does
// not accept — expired, revoked or unknown (hufuv1.ReasonAccessTokenRejected) — the one
// Unauthenticated answer a refresh may cure. Other Unauthenticated answers (a wrong SMS code
// or password, an expired cosign ticket) come from the call itself and must not be repeated:
// a repeat would use up another attempt.
func accessTokenRejected(err error) bool {
	st, ok := status.FromError(err)
	if !ok || st.Code() != codes.Unauthenticated {
		return false
	}
	for _, d := range st.Details() {
		if info, ok := d.(*errdetails.ErrorInfo); ok && info.Domain == hufuv1.ErrorDomain && info.Reason == hufuv1.ReasonAccessTokenRejected {
			return true
		}
	}
	return false
}

// Close closes the connection.
func (c *Conn) Close() error { return c.cc.Close() }

// sessionCreds adds the access token and the device id to every call.
type sessionCreds struct {
	device string
	mu     sync.RWMutex
	token  string
}

func (s *sessionCreds) get() string {
	s.mu.RLock()
	defer s.mu.RUnlock()
	return s.token
}

func (s *sessionCreds) set(token string) {
	s.mu.Lock()
	s.token = token
	s.mu.Unlock()
}

func (s *sessionCreds) GetRequestMetadata(context.Context, ...string) (map[string]string, error) {
	s.mu.RLock()
	defer s.mu.RUnlock()
	md := map[string]string{}
	if s.device != "" {
		md["hufu-device-id"] = s.device
	}
	if s.token != "" {
		md["authorization"] = "Bearer " + s.token
	}
	return md, nil
}

func (s *sessionCreds) RequireTransportSecurity() bool { return true }
