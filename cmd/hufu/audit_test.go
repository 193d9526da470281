package main

import (
	"bytes"
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"encoding/pem"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/hufu-hsm/hufu/hsm"
	"github.com/hufu-hsm/hufu/softhsm/softhsmtest"
	"github.com/hufu-hsm/hufu/store"
)

// TestAuditVerify exports a real audit log (Pebble store, checkpoints signed in SoftHSM2)
// and checks that `hufu audit verify` accepts it and names the first bad record of a
// tampered copy.
func TestAuditVerify(t *testing.T) {
	ctx := context.Background()
	tok := softhsmtest.New(t)
	kr, err := hsm.Initialize(ctx, hsm.Config{ModulePath: tok.ModulePath, TokenLabel: tok.Label, PINFile: tok.PINFile})
	if err != nil {
		t.Fatal(err)
	}
	defer kr.Close()
	st, err := store.Open(ctx, store.Options{Dir: t.TempDir(), Signer: kr.AuditSigner(), Logger: slog.New(slog.NewTextHandler(io.Discard, nil))})
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close(ctx)
	for i := range 5 {
		if err := st.Append(ctx, store.Event{Actor: "admin:test", Action: "test.event", Subject: fmt.Sprint(i), Outcome: store.OutcomeOK}); err != nil {
			t.Fatal(err)
		}
	}
	var export bytes.Buffer
	if err := st.ExportAudit(ctx, &export, 0, 0); err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	logFile, keyFile := filepath.Join(dir, "audit.jsonl"), filepath.Join(dir, "audit.pem")
	pemKey, err := kr.AuditSigner().PublicKeyPEM()
	if err != nil {
		t.Fatal(err)
	}
	write := func(name string, b []byte) {
		if err := os.WriteFile(name, b, 0o600); err != nil {
			t.Fatal(err)
		}
	}
	write(logFile, export.Bytes())
	write(keyFile, pemKey)
	verify := func() (string, error) {
		var out, errOut bytes.Buffer
		err := run([]string{"audit", "verify", "--log", logFile, "--key", keyFile}, strings.NewReader(""), &out, &errOut)
		return out.String(), err
	}

	if out, err := verify(); err != nil || !strings.Contains(out, "audit log verifies: records 1..5") {
		t.Fatalf("untouched export: %q, %v", out, err)
	}

	write(logFile, bytes.Replace(export.Bytes(), []byte(`"subject":"2"`), []byte(`"subject":"7"`), 1))
	if _, err := verify(); err == nil || !strings.Contains(err.Error(), "first bad record 3") {
		t.Fatalf("edited record 3: %v; want it named", err)
	}

	// A whole log must start at record 1 and reach the checkpoint the auditor last saw.
	write(logFile, export.Bytes())
	run2 := func(extra ...string) error {
		var out, errOut bytes.Buffer
		return run(append([]string{"audit", "verify", "--log", logFile, "--key", keyFile}, extra...), strings.NewReader(""), &out, &errOut)
	}
	if err := run2("--at-least", "9"); err == nil || !strings.Contains(err.Error(), "records were cut") {
		t.Fatalf("a log shorter than a checkpoint seen before: %v", err)
	}
	var rangeExport bytes.Buffer
	if err := st.ExportAudit(ctx, &rangeExport, 3, 0); err != nil {
		t.Fatal(err)
	}
	write(logFile, rangeExport.Bytes())
	if err := run2(); err == nil || !strings.Contains(err.Error(), "starts at record 3") {
		t.Fatalf("a range export passed as a whole log: %v", err)
	}
	if err := run2("--partial"); err != nil {
		t.Fatalf("a range export with --partial: %v", err)
	}

	write(logFile, export.Bytes())
	other, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	der, _ := x509.MarshalPKIXPublicKey(&other.PublicKey)
	write(keyFile, pem.EncodeToMemory(&pem.Block{Type: "PUBLIC KEY", Bytes: der}))
	if _, err := verify(); err == nil || !strings.Contains(err.Error(), "does NOT verify") {
		t.Fatalf("another key: %v; want a failure", err)
	}
}
