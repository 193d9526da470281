package admin_test

import (
	"context"
	"errors"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync/atomic"
	"testing"

	"github.com/hufu-hsm/hufu/admin"
	"github.com/hufu-hsm/hufu/hsm"
	"github.com/hufu-hsm/hufu/softhsm/softhsmtest"
	"github.com/hufu-hsm/hufu/store"
	"github.com/prometheus/client_golang/prometheus"
)

func TestMain(m *testing.M) { softhsmtest.Main(m) }

// faultyProbe is a fault-injecting fake readiness probe: it fails while down is set. The
// daemon's end-to-end test breaks the real SoftHSM2 token, but SoftHSM2 never recovers the
// key handles it invalidated, so the way back to ready is tested here.
type faultyProbe struct{ down atomic.Bool }

func (p *faultyProbe) probe(context.Context) error {
	if p.down.Load() {
		return errors.New("injected: HSM unreachable")
	}
	return nil
}

// newServer is an admin server over a real SoftHSM2 keyring and a real Pebble store.
func newServer(t *testing.T, checks []admin.Check, mutate ...func(*admin.Options)) (*admin.Server, map[admin.Role]string) {
	t.Helper()
	tok := softhsmtest.New(t)
	kr, err := hsm.Initialize(context.Background(), hsm.Config{ModulePath: tok.ModulePath, TokenLabel: tok.Label, PINFile: tok.PINFile})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = kr.Close() })
	st, err := store.Open(context.Background(), store.Options{Dir: t.TempDir(), Signer: kr.AuditSigner(),
		Logger: slog.New(slog.NewTextHandler(io.Discard, nil))})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = st.Close(context.Background()) })
	tokens := map[admin.Role]string{}
	var configured []admin.Token
	for _, r := range admin.Roles {
		tk, hash, err := admin.NewToken()
		if err != nil {
			t.Fatal(err)
		}
		h, err := admin.ParseTokenHash(hash)
		if err != nil {
			t.Fatal(err)
		}
		tokens[r] = tk
		configured = append(configured, admin.Token{Name: string(r) + "-1", Role: r, SHA256: h})
	}
	reg := prometheus.NewRegistry()
	opts := admin.Options{
		Tokens: configured, Store: st, AuditKeyPEM: kr.AuditSigner().PublicKeyPEM, Checks: checks,
		Gatherer: reg, Registerer: reg, KEKs: kr, BackupKey: kr, BackupDir: t.TempDir(),
		Log: slog.New(slog.NewTextHandler(io.Discard, nil)),
	}
	for _, m := range mutate {
		m(&opts)
	}
	s, err := admin.New(opts)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = s.Close(context.Background()) })
	return s, tokens
}

func get(t *testing.T, h http.Handler, path, token string) (int, string) {
	t.Helper()
	req := httptest.NewRequest("GET", path, nil)
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	rec := httptest.NewRecorder()
	h.ServeHTTP(rec, req)
	return rec.Code, rec.Body.String()
}

func TestReadinessTurnsAndReturns(t *testing.T) {
	p := &faultyProbe{}
	s, tokens := newServer(t, []admin.Check{{Name: "hsm", Probe: p.probe}, {Name: "store", Probe: func(context.Context) error { return nil }}})
	steps := []struct {
		name     string
		down     bool
		path     string
		token    string
		wantCode int
		want     []string
		notWant  []string
	}{
		{"up", false, "/readyz", "", 200, []string{"ok"}, nil},
		{"up verbose", false, "/readyz?verbose", "", 200, []string{"[+]hsm ok", "[+]store ok"}, nil},
		{"down", true, "/readyz", "", 503, []string{"[-]hsm failed", "readyz check failed"}, []string{"injected"}},
		{"down verbose, no token", true, "/readyz?verbose", "", 503, []string{"[-]hsm failed", "[+]store ok"}, []string{"injected"}},
		{"down verbose, token", true, "/readyz?verbose", tokens[admin.Operator], 503, []string{"[-]hsm failed: injected: HSM unreachable"}, nil},
		{"live while down", true, "/livez", "", 200, []string{"ok"}, nil},
		{"back", false, "/readyz?verbose", "", 200, []string{"[+]hsm ok"}, nil},
	}
	for _, st := range steps {
		t.Run(st.name, func(t *testing.T) {
			p.down.Store(st.down)
			code, body := get(t, s.Handler(), st.path, st.token)
			if code != st.wantCode {
				t.Fatalf("%s: %d %q, want %d", st.path, code, body, st.wantCode)
			}
			for _, w := range st.want {
				if !strings.Contains(body, w) {
					t.Errorf("body %q lacks %q", body, w)
				}
			}
			for _, w := range st.notWant {
				if strings.Contains(body, w) {
					t.Errorf("body %q shows %q", body, w)
				}
			}
		})
	}
}

func TestTokens(t *testing.T) {
	tok, hash, err := admin.NewToken()
	if err != nil {
		t.Fatal(err)
	}
	if !strings.HasPrefix(tok, "hufu_admin_") || len(tok) < 40 || admin.HashToken(tok) != hash {
		t.Fatalf("token %q hash %q", tok, hash)
	}
	other, _, _ := admin.NewToken()
	if other == tok {
		t.Fatal("two tokens are equal")
	}
	for _, bad := range []string{"", "zz", strings.Repeat("a", 63), tok} {
		if _, err := admin.ParseTokenHash(bad); err == nil {
			t.Errorf("ParseTokenHash(%q) accepted", bad)
		}
	}
}

func TestWrongRoleAndUnknownTokens(t *testing.T) {
	s, tokens := newServer(t, nil)
	cases := []struct {
		name, path, token string
		want              int
	}{
		{"no token", "/metrics", "", 401},
		{"unknown token", "/metrics", "hufu_admin_unknown", 401},
		{"hash instead of token", "/metrics", admin.HashToken(tokens[admin.Operator]), 401},
		{"auditor on metrics", "/metrics", tokens[admin.Auditor], 403},
		{"operator on export", "/audit/export", tokens[admin.Operator], 403},
		{"operator on pprof", "/debug/pprof/", tokens[admin.Operator], 403},
		{"officer on pprof", "/debug/pprof/", tokens[admin.SecurityOfficer], 200},
		{"auditor on checkpoints", "/audit/checkpoints", tokens[admin.Auditor], 200},
		{"bad limit", "/audit/checkpoints?limit=0", tokens[admin.Auditor], 400},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			if code, body := get(t, s.Handler(), c.path, c.token); code != c.want {
				t.Fatalf("%d %q, want %d", code, body, c.want)
			}
		})
	}
}
