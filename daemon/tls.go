package daemon

import (
	"crypto/tls"
	"crypto/x509"
	"encoding/pem"
	"errors"
	"fmt"
	"os"
	"sync"
	"time"
)

// tlsMaterial holds the server certificate and the client CA pool, reloadable on SIGHUP
// without dropping connections: each handshake takes the current pair.
type tlsMaterial struct {
	certFile, keyFile, clientCAFile string
	minVersion                      uint16

	mu   sync.RWMutex
	cert *tls.Certificate
	cas  *x509.CertPool
	// notAfter is when the server certificate expires and clientCANotAfter when the first
	// client CA certificate does (zero without client CAs), for the expiry metrics: the
	// pool does not give its certificates back.
	notAfter, clientCANotAfter time.Time
}

func newTLSMaterial(certFile, keyFile, clientCAFile, minVersion string) (*tlsMaterial, error) {
	m := &tlsMaterial{certFile: certFile, keyFile: keyFile, clientCAFile: clientCAFile, minVersion: tls.VersionTLS12}
	if minVersion == "1.3" {
		m.minVersion = tls.VersionTLS13
	}
	return m, m.reload()
}

// reload reads the files again; on any error the previous material stays in use.
func (m *tlsMaterial) reload() error {
	cert, err := tls.LoadX509KeyPair(m.certFile, m.keyFile)
	if err != nil {
		return fmt.Errorf("tls: server certificate: %w", err)
	}
	leaf := cert.Leaf // LoadX509KeyPair parses it (Go 1.23 and later)
	if leaf == nil {
		if leaf, err = x509.ParseCertificate(cert.Certificate[0]); err != nil {
			return fmt.Errorf("tls: server certificate: %w", err)
		}
	}
	var (
		cas       *x509.CertPool
		caExpires time.Time
	)
	if m.clientCAFile != "" {
		data, err := os.ReadFile(m.clientCAFile)
		if err != nil {
			return fmt.Errorf("tls: client CA: %w", err)
		}
		cas = x509.NewCertPool()
		if !cas.AppendCertsFromPEM(data) {
			return errors.New("tls: client CA file holds no certificate")
		}
		caExpires = firstExpiry(data)
	}
	m.mu.Lock()
	m.cert, m.cas = &cert, cas
	m.notAfter, m.clientCANotAfter = leaf.NotAfter, caExpires
	m.mu.Unlock()
	return nil
}

// expiry returns when the server certificate in use expires and when the first of the
// client CA certificates does (zero without client CAs).
func (m *tlsMaterial) expiry() (server, clientCA time.Time) {
	m.mu.RLock()
	defer m.mu.RUnlock()
	return m.notAfter, m.clientCANotAfter
}

// firstExpiry is the earliest NotAfter of the certificates in a PEM bundle, skipping what
// does not parse as AppendCertsFromPEM does.
func firstExpiry(data []byte) time.Time {
	var first time.Time
	for len(data) > 0 {
		var b *pem.Block
		if b, data = pem.Decode(data); b == nil {
			break
		}
		if b.Type != "CERTIFICATE" {
			continue
		}
		c, err := x509.ParseCertificate(b.Bytes)
		if err != nil {
			continue
		}
		if first.IsZero() || c.NotAfter.Before(first) {
			first = c.NotAfter
		}
	}
	return first
}

// config is the server's TLS configuration. Client certificates are verified when given
// (systems present one, phones do not); which methods need one is the policy's business.
func (m *tlsMaterial) config() *tls.Config { return m.configFor("h2") }

// configFor is config offering the application protocols protos (ALPN): the JSON gateway
// takes HTTP/1.1 as well as HTTP/2, with the same certificate and client verification.
func (m *tlsMaterial) configFor(protos ...string) *tls.Config {
	return &tls.Config{
		MinVersion: m.minVersion,
		GetConfigForClient: func(*tls.ClientHelloInfo) (*tls.Config, error) {
			m.mu.RLock()
			defer m.mu.RUnlock()
			clientAuth := tls.VerifyClientCertIfGiven
			if m.cas == nil {
				clientAuth = tls.NoClientCert
			}
			return &tls.Config{
				MinVersion:   m.minVersion,
				Certificates: []tls.Certificate{*m.cert},
				ClientCAs:    m.cas,
				ClientAuth:   clientAuth,
				NextProtos:   protos,
			}, nil
		},
	}
}
