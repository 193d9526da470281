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
	"fmt"
	"os"
	"sync"

	hufuv1 "github.com/hufu-hsm/hufu/api/hufu/v1"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
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
	cc        *grpc.ClientConn
	creds     *sessionCreds
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
	cc, err := grpc.NewClient(cfg.Addr,
		grpc.WithTransportCredentials(credentials.NewTLS(tlsCfg)),
		grpc.WithPerRPCCredentials(creds))
	if err != nil {
		return nil, err
	}
	return &Conn{
		cc: cc, creds: creds,
		Accounts:    hufuv1.NewAccountServiceClient(cc),
		Platforms:   hufuv1.NewPlatformServiceClient(cc),
		Identity:    hufuv1.NewIdentityServiceClient(cc),
		Keys:        hufuv1.NewKeyServiceClient(cc),
		Cosign:      hufuv1.NewCosignServiceClient(cc),
		Enterprises: hufuv1.NewEnterpriseServiceClient(cc),
		Health:      healthpb.NewHealthClient(cc),
	}, nil
}

// DeviceID is the device id every call carries.
func (c *Conn) DeviceID() string { return c.creds.device }

// ClientConn is the underlying gRPC connection, for services this package does not wrap.
func (c *Conn) ClientConn() *grpc.ClientConn { return c.cc }

// SetAccessToken makes later calls carry the token (empty: carry none).
func (c *Conn) SetAccessToken(token string) { c.creds.set(token) }

// Close closes the connection.
func (c *Conn) Close() error { return c.cc.Close() }

// sessionCreds adds the access token and the device id to every call.
type sessionCreds struct {
	device string
	mu     sync.RWMutex
	token  string
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
