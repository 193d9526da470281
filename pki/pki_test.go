package pki_test

import (
	"bytes"
	"context"
	"errors"
	"io"
	"net"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/hufu-hsm/hufu/pki"
)

type clock struct {
	mu  sync.Mutex
	now time.Time
}

func (c *clock) Now() time.Time { c.mu.Lock(); defer c.mu.Unlock(); return c.now }

// serve starts the listener on a loopback port and returns its base URL.
func serve(t *testing.T, opts pki.Options) string {
	t.Helper()
	s, err := pki.New(opts)
	if err != nil {
		t.Fatal(err)
	}
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- s.Serve(l) }()
	t.Cleanup(func() {
		if err := s.Close(context.Background()); err != nil {
			t.Error(err)
		}
		if err := <-done; err != nil {
			t.Error(err)
		}
	})
	return "http://" + l.Addr().String()
}

func TestListener(t *testing.T) {
	now := time.Date(2026, 11, 30, 9, 0, 0, 0, time.UTC)
	c := &clock{now: now}
	issuingCRL := pki.CRL{DER: []byte("issuing-crl"), ThisUpdate: now.Add(-time.Hour), NextUpdate: now.Add(23 * time.Hour)}
	rootCRL := pki.CRL{DER: []byte("root-crl"), ThisUpdate: now.Add(-time.Hour), NextUpdate: now.Add(2 * time.Minute)}
	var ocspCA, ocspReq string
	var ocspBody int
	reg := prometheus.NewRegistry()
	base := serve(t, pki.Options{
		Authorities: map[string]pki.Authority{
			"hufu-ca": {RootDER: []byte("root-der"), IssuingDER: []byte("issuing-der"), CRL: func(_ context.Context, level string) (pki.CRL, error) {
				if level == "root" {
					return rootCRL, nil
				}
				return issuingCRL, nil
			}},
			// failingCA is a fake: a CRL that cannot be signed (the HSM is away).
			"failing-ca": {RootDER: []byte("r"), IssuingDER: []byte("i"), CRL: func(context.Context, string) (pki.CRL, error) {
				return pki.CRL{}, errors.New("hsm unavailable")
			}},
		},
		OCSP: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			ocspCA, ocspReq = r.PathValue("ca"), r.PathValue("request")
			b, err := io.ReadAll(r.Body)
			ocspBody = len(b)
			if err != nil {
				w.WriteHeader(http.StatusRequestEntityTooLarge)
				return
			}
			w.Header().Set("Content-Type", "application/ocsp-response")
			w.Write([]byte("ocsp"))
		}),
		Registerer: reg, Clock: c,
	})
	for _, tc := range []struct {
		name, method, path    string
		code                  int
		contentType, body     string
		cacheControl, lastMod string
	}{
		{"issuing CRL", "GET", "/ca/hufu-ca/issuing.crl", 200, "application/pkix-crl", "issuing-crl", "public, no-transform, max-age=300", "Mon, 30 Nov 2026 08:00:00 GMT"},
		{"root CRL near its nextUpdate", "GET", "/ca/hufu-ca/root.crl", 200, "application/pkix-crl", "root-crl", "public, no-transform, max-age=120", "Mon, 30 Nov 2026 08:00:00 GMT"},
		{"HEAD of a CRL", "HEAD", "/ca/hufu-ca/issuing.crl", 200, "application/pkix-crl", "", "public, no-transform, max-age=300", "Mon, 30 Nov 2026 08:00:00 GMT"},
		{"issuing certificate", "GET", "/ca/hufu-ca/issuing.cer", 200, "application/pkix-cert", "issuing-der", "public, no-transform, max-age=86400", ""},
		{"root certificate", "GET", "/ca/hufu-ca/root.cer", 200, "application/pkix-cert", "root-der", "public, no-transform, max-age=86400", ""},
		{"unknown CA", "GET", "/ca/other/issuing.crl", 404, "text/plain; charset=utf-8", "no such CA\n", "no-store", ""},
		{"unknown object", "GET", "/ca/hufu-ca/leaf.crl", 404, "text/plain; charset=utf-8", "404 page not found\n", "", ""},
		{"unknown path", "GET", "/metrics", 404, "text/plain; charset=utf-8", "404 page not found\n", "", ""},
		{"CRL that cannot be made", "GET", "/ca/failing-ca/issuing.crl", 503, "text/plain; charset=utf-8", "the CRL is unavailable\n", "no-store", ""},
		{"OCSP by POST", "POST", "/ocsp/hufu-ca", 200, "application/ocsp-response", "ocsp", "", ""},
		{"OCSP by GET", "GET", "/ocsp/hufu-ca/MEMwQTA%2FMD0wOzAJBgUrDgMCGgUABBQ/x==", 200, "application/ocsp-response", "ocsp", "", ""},
		{"OCSP of an unknown CA", "POST", "/ocsp/other", 404, "text/plain; charset=utf-8", "no such CA\n", "no-store", ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			req, _ := http.NewRequest(tc.method, base+tc.path, strings.NewReader("req"))
			resp, err := http.DefaultClient.Do(req)
			if err != nil {
				t.Fatal(err)
			}
			body, _ := io.ReadAll(resp.Body)
			resp.Body.Close()
			if resp.StatusCode != tc.code || resp.Header.Get("Content-Type") != tc.contentType || string(body) != tc.body {
				t.Fatalf("%d %q %q, want %d %q %q", resp.StatusCode, resp.Header.Get("Content-Type"), body, tc.code, tc.contentType, tc.body)
			}
			if resp.Header.Get("Cache-Control") != tc.cacheControl || resp.Header.Get("Last-Modified") != tc.lastMod {
				t.Fatalf("Cache-Control %q Last-Modified %q, want %q %q", resp.Header.Get("Cache-Control"), resp.Header.Get("Last-Modified"), tc.cacheControl, tc.lastMod)
			}
			if tc.code == 200 && strings.HasPrefix(tc.contentType, "application/pkix") && (resp.Header.Get("ETag") == "" || resp.ContentLength != int64(len(tc.body)) && tc.method == "GET") {
				t.Fatalf("ETag %q, length %d", resp.Header.Get("ETag"), resp.ContentLength)
			}
		})
	}
	if ocspCA != "hufu-ca" || ocspReq != "MEMwQTA/MD0wOzAJBgUrDgMCGgUABBQ/x==" {
		t.Fatalf("OCSP handler saw CA %q request %q", ocspCA, ocspReq)
	}

	// A cache revalidates with the ETag or the date and gets 304 without a body.
	get := func(h http.Header) *http.Response {
		req, _ := http.NewRequest("GET", base+"/ca/hufu-ca/issuing.crl", nil)
		req.Header = h
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		return resp
	}
	etag := get(nil).Header.Get("ETag")
	if r := get(http.Header{"If-None-Match": {etag}}); r.StatusCode != http.StatusNotModified {
		t.Fatalf("If-None-Match: %d", r.StatusCode)
	}
	if r := get(http.Header{"If-Modified-Since": {"Mon, 30 Nov 2026 08:30:00 GMT"}}); r.StatusCode != http.StatusNotModified {
		t.Fatalf("If-Modified-Since: %d", r.StatusCode)
	}
	issuingCRL.DER, issuingCRL.ThisUpdate = []byte("issuing-crl-2"), now // a new CRL: a new ETag
	if r := get(http.Header{"If-None-Match": {etag}}); r.StatusCode != http.StatusOK || r.Header.Get("ETag") == etag {
		t.Fatalf("after a new CRL: %d %q", r.StatusCode, r.Header.Get("ETag"))
	}

	// An oversized OCSP body does not reach the handler whole.
	resp, err := http.Post(base+"/ocsp/hufu-ca", "application/ocsp-request", bytes.NewReader(make([]byte, pki.MaxOCSPRequestBytes+1)))
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusRequestEntityTooLarge || ocspBody > pki.MaxOCSPRequestBytes {
		t.Fatalf("oversized OCSP request: %d, handler read %d bytes", resp.StatusCode, ocspBody)
	}

	for _, m := range []struct {
		route, code string
		want        float64
	}{{"issuing.crl", "200", 4}, {"issuing.crl", "304", 2}, {"unmatched", "404", 2}, {"ocsp", "200", 2}, {"ocsp", "404", 1}, {"issuing.crl", "503", 1}} {
		got := counter(t, reg, m.route, m.code)
		if got != m.want {
			t.Errorf("hufu_pki_requests_total{route=%q,code=%q} = %v, want %v", m.route, m.code, got, m.want)
		}
	}
}

func counter(t *testing.T, reg *prometheus.Registry, route, code string) float64 {
	t.Helper()
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	v := 0.0
	for _, mf := range mfs {
		for _, m := range mf.GetMetric() {
			labels := map[string]string{}
			for _, l := range m.GetLabel() {
				labels[l.GetName()] = l.GetValue()
			}
			if mf.GetName() == "hufu_pki_requests_total" && labels["route"] == route && labels["code"] == code {
				v = m.GetCounter().GetValue()
			}
		}
	}
	return v
}

func TestListenerWithoutOCSP(t *testing.T) {
	base := serve(t, pki.Options{Authorities: map[string]pki.Authority{"hufu-ca": {}}, Clock: &clock{}})
	resp, err := http.Post(base+"/ocsp/hufu-ca", "application/ocsp-request", strings.NewReader("x"))
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusNotFound {
		t.Fatalf("OCSP without a responder: %d", resp.StatusCode)
	}
}
