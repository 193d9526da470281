package admin_test

import (
	"context"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/hufu-hsm/hufu/admin"
)

func post(t *testing.T, h http.Handler, path, token, body string) (int, string) {
	t.Helper()
	req := httptest.NewRequest("POST", path, strings.NewReader(body))
	req.Header.Set("Authorization", "Bearer "+token)
	rec := httptest.NewRecorder()
	h.ServeHTTP(rec, req)
	return rec.Code, rec.Body.String()
}

func TestTokenLimits(t *testing.T) {
	s, tokens := newServer(t, nil, func(o *admin.Options) { o.MaxTokens = 2; o.MaxTokenTTL = 48 * 3600e9 })
	so := tokens[admin.SecurityOfficer]
	cases := []struct {
		name, body string
		code       int
		prefix     string
	}{
		{"first", `{"name":"a","role":"auditor","expires_in":"1h"}`, 201, ""},
		{"over the lifetime limit", `{"name":"b","role":"auditor","expires_in":"49h"}`, 400, "expires_in: want 1m..48h0m0s"},
		{"not a duration", `{"name":"b","role":"auditor","expires_in":"tomorrow"}`, 400, "expires_in:"},
		{"role of the wrong type", `{"name":"b","role":1,"expires_in":"1h"}`, 400, "role: want a"},
		{"a configured name", `{"name":"auditor-1","role":"auditor","expires_in":"1h"}`, 409, "name:"},
		{"second", `{"name":"b","role":"metrics_reader","expires_in":"1h"}`, 201, ""},
		{"over the count limit", `{"name":"c","role":"auditor","expires_in":"1h"}`, 409, "tokens: 2 online tokens are live"},
		{"two objects", `{"name":"c","role":"auditor","expires_in":"1h"}{}`, 400, "body:"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			code, body := post(t, s.Handler(), "/tokens", so, c.body)
			if code != c.code || !strings.HasPrefix(body, c.prefix) {
				t.Fatalf("%d %q, want %d %q", code, body, c.code, c.prefix)
			}
		})
	}
	// A revoked token frees its place in the limit, not its name.
	req := httptest.NewRequest("DELETE", "/tokens/a", nil)
	req.Header.Set("Authorization", "Bearer "+so)
	rec := httptest.NewRecorder()
	s.Handler().ServeHTTP(rec, req)
	if rec.Code != http.StatusNoContent {
		t.Fatalf("revoke: %d %s", rec.Code, rec.Body)
	}
	if code, body := post(t, s.Handler(), "/tokens", so, `{"name":"a","role":"auditor","expires_in":"1h"}`); code != 409 {
		t.Fatalf("a revoked token's name: %d %s", code, body)
	}
	if code, body := post(t, s.Handler(), "/tokens", so, `{"name":"c","role":"auditor","expires_in":"1h"}`); code != 201 {
		t.Fatalf("after a revocation: %d %s", code, body)
	}
}

func TestReadinessMetrics(t *testing.T) {
	p := &faultyProbe{}
	s, tokens := newServer(t, []admin.Check{{Name: "hsm", Probe: p.probe}, {Name: "store", Probe: func(context.Context) error { return nil }}})
	for _, st := range []struct {
		down bool
		want []string
	}{
		{false, []string{"hufu_ready 1", `hufu_readiness_check{check="hsm"} 1`, `hufu_readiness_check{check="store"} 1`, "hufu_kek_rotation_running 0", "hufu_kek_current_version 1"}},
		{true, []string{"hufu_ready 0", `hufu_readiness_check{check="hsm"} 0`, `hufu_readiness_check{check="store"} 1`}},
		{false, []string{"hufu_ready 1"}},
	} {
		p.down.Store(st.down)
		code, body := get(t, s.Handler(), "/metrics", tokens[admin.MetricsReader])
		if code != 200 {
			t.Fatalf("metrics: %d", code)
		}
		for _, w := range st.want {
			if !strings.Contains(body, w+"\n") {
				t.Errorf("down=%v: /metrics lacks %q", st.down, w)
			}
		}
		if strings.Contains(body, "injected") {
			t.Error("a probe's error reached /metrics")
		}
	}
	// The metrics reader reads nothing else.
	for _, path := range []string{"/audit/public-key", "/audit/export", "/kek", "/tokens", "/approvals"} {
		if code, _ := get(t, s.Handler(), path, tokens[admin.MetricsReader]); code != http.StatusForbidden {
			t.Errorf("metrics reader on %s: %d, want 403", path, code)
		}
	}
}
