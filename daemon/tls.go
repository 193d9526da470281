package daemon

import (
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"os"
	"sync"
)

// tlsMaterial holds the server certificate and the client CA pool, reloadable on SIGHUP
// without dropping connections: each handshake takes the current pair.
type tlsMaterial struct {
	certFile, keyFile, clientCAFile string
	minVersion                      uint16

	mu   sync.RWMutex
	cert *tls.Certificate
	cas  *x509.CertPool
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
	var cas *x509.CertPool
	if m.clientCAFile != "" {
		pem, err := os.ReadFile(m.clientCAFile)
		if err != nil {
			return fmt.Errorf("tls: client CA: %w", err)
		}
		cas = x509.NewCertPool()
		if !cas.AppendCertsFromPEM(pem) {
			return errors.New("tls: client CA file holds no certificate")
		}
	}
	m.mu.Lock()
	m.cert, m.cas = &cert, cas
	m.mu.Unlock()
	return nil
}

// config is the server's TLS configuration. Client certificates are verified when given
// (systems present one, phones do not); which methods need one is the policy's business.
func (m *tlsMaterial) config() *tls.Config {
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
				NextProtos:   []string{"h2"},
			}, nil
		},
	}
}
