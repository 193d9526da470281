// Package devpki makes the development TLS material that `hufud init` writes for a local
// appliance: a private CA, a server certificate for loopback and the host's names, and a
// client certificate for the hufu CLI. Production deployments bring their own certificates;
// nothing here is meant to be trusted beyond one machine.
//
// Keys are ECDSA P-256 (TLS stacks do not speak SM2 certificates); files are PEM, private
// keys mode 0600. Ensure is idempotent: existing files are kept, never overwritten.
package devpki

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"errors"
	"fmt"
	"math/big"
	"net"
	"os"
	"path/filepath"
	"time"
)

// Files names the material in a TLS directory.
type Files struct {
	CACert, CAKey         string
	ServerCert, ServerKey string
	ClientCert, ClientKey string
}

// FilesIn returns the file names Ensure uses in dir.
func FilesIn(dir string) Files {
	p := func(name string) string { return filepath.Join(dir, name) }
	return Files{
		CACert: p("ca.pem"), CAKey: p("ca-key.pem"),
		ServerCert: p("server.pem"), ServerKey: p("server-key.pem"),
		ClientCert: p("cli.pem"), ClientKey: p("cli-key.pem"),
	}
}

// CLIClientName is the common name of the CLI's client certificate.
const CLIClientName = "hufu-cli"

// Ensure creates whatever is missing in dir and reports what it created. hosts are extra DNS
// names or IP addresses for the server certificate, besides localhost, 127.0.0.1 and ::1.
func Ensure(dir string, hosts []string, now time.Time) (Files, []string, error) {
	f := FilesIn(dir)
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return f, nil, err
	}
	var created []string
	ca, caKey, err := loadPair(f.CACert, f.CAKey)
	if errors.Is(err, os.ErrNotExist) {
		if exists(f.ServerCert) || exists(f.ClientCert) {
			return f, nil, fmt.Errorf("devpki: %s is missing but certificates it signed exist; remove them or restore the CA", f.CACert)
		}
		ca, caKey, err = issue(f.CACert, f.CAKey, &x509.Certificate{
			Subject:               pkix.Name{CommonName: "hufu development CA", Organization: []string{"hufu"}},
			IsCA:                  true,
			BasicConstraintsValid: true,
			MaxPathLenZero:        true,
			KeyUsage:              x509.KeyUsageCertSign | x509.KeyUsageCRLSign,
		}, nil, nil, now, 10)
		created = append(created, f.CACert)
	}
	if err != nil {
		return f, nil, err
	}
	if !exists(f.ServerCert) {
		tmpl := &x509.Certificate{
			Subject:     pkix.Name{CommonName: "hufud", Organization: []string{"hufu"}},
			KeyUsage:    x509.KeyUsageDigitalSignature,
			ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
			DNSNames:    []string{"localhost"},
			IPAddresses: []net.IP{net.IPv4(127, 0, 0, 1), net.IPv6loopback},
		}
		for _, h := range hosts {
			if ip := net.ParseIP(h); ip != nil {
				tmpl.IPAddresses = append(tmpl.IPAddresses, ip)
			} else if h != "" {
				tmpl.DNSNames = append(tmpl.DNSNames, h)
			}
		}
		if _, _, err := issue(f.ServerCert, f.ServerKey, tmpl, ca, caKey, now, 2); err != nil {
			return f, nil, err
		}
		created = append(created, f.ServerCert)
	}
	if !exists(f.ClientCert) {
		if _, _, err := IssueClient(f.ClientCert, f.ClientKey, CLIClientName, ca, caKey, now); err != nil {
			return f, nil, err
		}
		created = append(created, f.ClientCert)
	}
	return f, created, nil
}

// IssueClient writes a client certificate with the given common name, signed by the CA.
func IssueClient(certFile, keyFile, name string, ca *x509.Certificate, caKey *ecdsa.PrivateKey, now time.Time) (*x509.Certificate, *ecdsa.PrivateKey, error) {
	return issue(certFile, keyFile, &x509.Certificate{
		Subject:     pkix.Name{CommonName: name, Organization: []string{"hufu"}},
		KeyUsage:    x509.KeyUsageDigitalSignature,
		ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth},
	}, ca, caKey, now, 2)
}

// LoadCA reads the CA written by Ensure.
func LoadCA(f Files) (*x509.Certificate, *ecdsa.PrivateKey, error) {
	return loadPair(f.CACert, f.CAKey)
}

func issue(certFile, keyFile string, tmpl, parent *x509.Certificate, parentKey *ecdsa.PrivateKey, now time.Time, years int) (*x509.Certificate, *ecdsa.PrivateKey, error) {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, nil, err
	}
	serial, err := rand.Int(rand.Reader, new(big.Int).Lsh(big.NewInt(1), 127))
	if err != nil {
		return nil, nil, err
	}
	tmpl.SerialNumber = serial
	tmpl.NotBefore = now.Add(-time.Hour)
	tmpl.NotAfter = now.AddDate(years, 0, 0)
	if parent == nil {
		parent, parentKey = tmpl, key
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, parent, &key.PublicKey, parentKey)
	if err != nil {
		return nil, nil, err
	}
	keyDER, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		return nil, nil, err
	}
	if err := writePEM(keyFile, "PRIVATE KEY", keyDER, 0o600); err != nil {
		return nil, nil, err
	}
	// 0600 like everything in the data directory: the development CLI runs as the same user.
	if err := writePEM(certFile, "CERTIFICATE", der, 0o600); err != nil {
		return nil, nil, err
	}
	cert, err := x509.ParseCertificate(der)
	return cert, key, err
}

func loadPair(certFile, keyFile string) (*x509.Certificate, *ecdsa.PrivateKey, error) {
	pair, err := tls.LoadX509KeyPair(certFile, keyFile)
	if err != nil {
		return nil, nil, fmt.Errorf("devpki: %w", err)
	}
	key, ok := pair.PrivateKey.(*ecdsa.PrivateKey)
	if !ok {
		return nil, nil, fmt.Errorf("devpki: %s is not an ECDSA key", keyFile)
	}
	cert, err := x509.ParseCertificate(pair.Certificate[0])
	return cert, key, err
}

// writePEM creates path exclusively, so existing material is never overwritten.
func writePEM(path, blockType string, der []byte, mode os.FileMode) error {
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_EXCL, mode)
	if err != nil {
		return fmt.Errorf("devpki: %w", err)
	}
	if err := pem.Encode(f, &pem.Block{Type: blockType, Bytes: der}); err != nil {
		f.Close()
		return err
	}
	return f.Close()
}

func exists(path string) bool {
	_, err := os.Stat(path)
	return err == nil
}
