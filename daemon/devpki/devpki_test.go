package devpki

import (
	"crypto/x509"
	"os"
	"testing"
	"time"
)

func TestEnsureIsIdempotentAndChainsVerify(t *testing.T) {
	dir := t.TempDir()
	now := time.Now()
	f, created, err := Ensure(dir, []string{"hufu.example.cn", "10.1.2.3"}, now)
	if err != nil {
		t.Fatal(err)
	}
	if len(created) != 3 {
		t.Fatalf("created %v, want CA, server and client", created)
	}
	before, _ := os.ReadFile(f.ServerCert)
	if _, created, err = Ensure(dir, nil, now); err != nil || len(created) != 0 {
		t.Fatalf("second run created %v, %v", created, err)
	}
	after, _ := os.ReadFile(f.ServerCert)
	if string(before) != string(after) {
		t.Fatal("existing certificate was rewritten")
	}
	if st, _ := os.Stat(f.ServerKey); st.Mode().Perm() != 0o600 {
		t.Fatalf("server key mode %v", st.Mode().Perm())
	}

	ca, _, err := LoadCA(f)
	if err != nil {
		t.Fatal(err)
	}
	roots := x509.NewCertPool()
	roots.AddCert(ca)
	server, _, err := loadPair(f.ServerCert, f.ServerKey)
	if err != nil {
		t.Fatal(err)
	}
	for _, host := range []string{"localhost", "127.0.0.1", "hufu.example.cn", "10.1.2.3"} {
		if _, err := server.Verify(x509.VerifyOptions{Roots: roots, DNSName: host}); err != nil {
			t.Errorf("server certificate for %s: %v", host, err)
		}
	}
	client, _, err := loadPair(f.ClientCert, f.ClientKey)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := client.Verify(x509.VerifyOptions{Roots: roots, KeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth}}); err != nil || client.Subject.CommonName != CLIClientName {
		t.Fatalf("client certificate: %v", err)
	}
}

func TestEnsureRefusesAnOrphanedCertificate(t *testing.T) {
	dir := t.TempDir()
	f, _, err := Ensure(dir, nil, time.Now())
	if err != nil {
		t.Fatal(err)
	}
	os.Remove(f.CACert)
	os.Remove(f.CAKey)
	if _, _, err := Ensure(dir, nil, time.Now()); err == nil {
		t.Fatal("a new CA must not be made under certificates signed by a lost one")
	}
}
