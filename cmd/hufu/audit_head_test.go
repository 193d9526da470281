package main

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"

	"github.com/hufu-hsm/hufu/hsm"
	"github.com/hufu-hsm/hufu/softhsm/softhsmtest"
	"github.com/hufu-hsm/hufu/store"
)

// TestAuditVerifyPinnedHead: verify prints the signed head; with -head, a forked log (a
// backup of the same store, written to again, checkpoints signed by the same SoftHSM2 key)
// is rejected, naming the record, although it verifies on its own.
func TestAuditVerifyPinnedHead(t *testing.T) {
	ctx := context.Background()
	tok := softhsmtest.New(t)
	kr, err := hsm.Initialize(ctx, hsm.Config{ModulePath: tok.ModulePath, TokenLabel: tok.Label, PINFile: tok.PINFile})
	if err != nil {
		t.Fatal(err)
	}
	defer kr.Close()
	quiet := slog.New(slog.NewTextHandler(io.Discard, nil))
	dir := t.TempDir()
	open := func(d string) *store.Store {
		st, err := store.Open(ctx, store.Options{Dir: d, Signer: kr.AuditSigner(), Logger: quiet})
		if err != nil {
			t.Fatal(err)
		}
		return st
	}
	appendN := func(st *store.Store, subject string, n int) {
		for i := range n {
			if err := st.Append(ctx, store.Event{Actor: "admin:test", Action: "test.event", Subject: fmt.Sprint(subject, i), Outcome: store.OutcomeOK}); err != nil {
				t.Fatal(err)
			}
		}
	}
	original := open(filepath.Join(dir, "original"))
	defer original.Close(ctx)
	appendN(original, "a", 3)
	if err := original.Backup(ctx, filepath.Join(dir, "backup"), "admin:test"); err != nil {
		t.Fatal(err)
	}
	appendN(original, "b", 3)
	forked := open(filepath.Join(dir, "backup"))
	defer forked.Close(ctx)
	appendN(forked, "c", 3)

	pemKey, err := kr.AuditSigner().PublicKeyPEM()
	if err != nil {
		t.Fatal(err)
	}
	keyFile := filepath.Join(dir, "audit.pem")
	if err := os.WriteFile(keyFile, pemKey, 0o600); err != nil {
		t.Fatal(err)
	}
	exportTo := func(st *store.Store, name string) string {
		var b bytes.Buffer
		if err := st.ExportAudit(ctx, &b, 0, 0); err != nil {
			t.Fatal(err)
		}
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, b.Bytes(), 0o600); err != nil {
			t.Fatal(err)
		}
		return p
	}
	originalLog, forkedLog := exportTo(original, "original.jsonl"), exportTo(forked, "forked.jsonl")
	verify := func(log string, extra ...string) (string, error) {
		var out, errOut bytes.Buffer
		err := run(append([]string{"audit", "verify", "--log", log, "--key", keyFile}, extra...), strings.NewReader(""), &out, &errOut)
		return out.String(), err
	}

	out, err := verify(originalLog)
	if err != nil {
		t.Fatal(err)
	}
	m := regexp.MustCompile(`(?m)^head (7:[0-9a-f]{64})$`).FindStringSubmatch(out)
	if m == nil {
		t.Fatalf("verify does not print the signed head 7:HASH:\n%s", out)
	}
	head := m[1]
	if _, err := verify(forkedLog); err != nil {
		t.Fatalf("the fork verifies on its own (which is why -head exists): %v", err)
	}
	tests := []struct {
		name    string
		log     string
		args    []string
		wantErr string
	}{
		{"original with its head", originalLog, []string{"-head", head}, ""},
		{"fork with the saved head", forkedLog, []string{"-head", head}, "first bad record 7 (line"},
		{"malformed head", originalLog, []string{"-head", "7:xyz"}, "HASH must be 64 hex digits"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			out, err := verify(tt.log, tt.args...)
			if tt.wantErr == "" {
				if err != nil || !strings.Contains(out, "pinned head 7 matches") {
					t.Fatalf("%q, %v", out, err)
				}
				return
			}
			if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
				t.Fatalf("got %v, want an error with %q", err, tt.wantErr)
			}
			if strings.Contains(tt.name, "fork") && !strings.Contains(err.Error(), "forked") {
				t.Fatalf("%v does not name the fork", err)
			}
		})
	}
}
