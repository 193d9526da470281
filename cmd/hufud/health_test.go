package main

import (
	"bytes"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
)

// TestHealth: hufud health succeeds on a ready listener's 200 and fails, naming the status,
// on anything else or when nothing listens.
func TestHealth(t *testing.T) {
	ready := true
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path != "/readyz" {
			http.NotFound(w, r)
			return
		}
		if !ready {
			http.Error(w, "[-]hsm failed", http.StatusServiceUnavailable)
			return
		}
		w.Write([]byte("ok\n"))
	}))
	defer srv.Close()
	cases := []struct {
		name  string
		ready bool
		args  []string
		want  string // in the error; empty: success
	}{
		{"ready", true, []string{"-url", srv.URL + "/readyz"}, ""},
		{"not ready", false, []string{"-url", srv.URL + "/readyz"}, "503"},
		{"wrong path", true, []string{"-url", srv.URL + "/nope"}, "404"},
		{"nothing listens", true, []string{"-url", "http://127.0.0.1:1/readyz", "-timeout", "2s"}, "not ready"},
		{"stray argument", true, []string{"now"}, "no arguments"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			ready = c.ready
			var out, errOut bytes.Buffer
			err := run(append([]string{"health"}, c.args...), &out, &errOut)
			if c.want == "" {
				if err != nil || strings.TrimSpace(out.String()) != "ok" {
					t.Fatalf("health: %v, printed %q", err, out.String())
				}
				return
			}
			if err == nil || !strings.Contains(err.Error(), c.want) {
				t.Fatalf("health: %v, want an error with %q", err, c.want)
			}
		})
	}
}
