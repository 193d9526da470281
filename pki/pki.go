// Package pki is the appliance's public PKI listener: plain HTTP without authentication,
// serving the signed objects a relying party fetches to check a certificate hufu's embedded
// CAs issued. CRLs and CA certificates are signed, so they need no TLS, and RFC 5280
// §4.2.1.13 expects CRL distribution points over HTTP; a relying party checking revocation
// must not need TLS (whose own certificates it would have to check first).
//
//	GET|HEAD /ca/<ca id>/issuing.crl        the issuing CA's CRL       application/pkix-crl
//	GET|HEAD /ca/<ca id>/root.crl           the root's CRL             application/pkix-crl
//	GET|HEAD /ca/<ca id>/issuing.cer        the issuing CA certificate application/pkix-cert (DER)
//	GET|HEAD /ca/<ca id>/root.cer           the root certificate       application/pkix-cert (DER)
//	POST     /ocsp/<ca id>                  OCSP (RFC 6960), delegated to Options.OCSP
//	GET      /ocsp/<ca id>/<base64 request> OCSP, delegated to Options.OCSP
//
// Nothing else is served; an unknown CA is 404, and so is OCSP without a handler. Responses
// carry ETag and Last-Modified (conditional requests get 304) and Cache-Control: a CRL's
// max-age is at most five minutes and never beyond its nextUpdate, so a revocation reaches
// HTTP caches within five minutes; certificates are cached for a day.
//
// Metrics: hufu_pki_requests_total{route, code}, route one of the fixed names in routes
// ("issuing.crl", "root.crl", "issuing.cer", "root.cer", "ocsp", "unmatched"). Each request
// is logged once ("pki request") with its route, never its path: OCSP requests name serials.
package pki

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"strconv"
	"time"

	"github.com/prometheus/client_golang/prometheus"
)

// CRL is a CA level's current CRL.
type CRL struct {
	DER        []byte
	ThisUpdate time.Time
	NextUpdate time.Time
}

// Authority is one CA as the listener publishes it.
type Authority struct {
	// RootDER and IssuingDER are the CA certificates, DER.
	RootDER, IssuingDER []byte
	// CRL returns the current CRL of level "issuing" or "root", making a new one when due.
	CRL func(ctx context.Context, level string) (CRL, error)
}

// Clock is the injected time.
type Clock interface{ Now() time.Time }

// Options configure the listener.
type Options struct {
	// Authorities by CA id.
	Authorities map[string]Authority
	// OCSP, if not nil, answers /ocsp/{ca}/... for every CA in Authorities; it finds the CA
	// with r.PathValue("ca") and, for GET, the request with r.PathValue("request"). A POST
	// body reaches it limited to MaxOCSPRequestBytes.
	OCSP http.Handler
	// Registerer, if not nil, gets hufu_pki_requests_total.
	Registerer prometheus.Registerer
	Log        *slog.Logger
	Clock      Clock
}

// MaxOCSPRequestBytes bounds an OCSP POST body; real requests are a few hundred bytes.
const MaxOCSPRequestBytes = 16 << 10

const (
	maxCRLAge  = 5 * time.Minute
	certMaxAge = 24 * time.Hour
)

// Server is the listener's HTTP server.
type Server struct {
	opts     Options
	mux      *http.ServeMux
	root     http.Handler
	http     *http.Server
	requests *prometheus.CounterVec
}

// New returns the server; Serve it on a listener and Close it before the store closes.
func New(opts Options) (*Server, error) {
	if opts.Log == nil {
		opts.Log = slog.Default()
	}
	if opts.Clock == nil {
		return nil, errors.New("pki: missing clock")
	}
	s := &Server{opts: opts, mux: http.NewServeMux(), requests: prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "hufu_pki_requests_total",
		Help: "Requests to the public PKI listener (CRLs, CA certificates, OCSP), by route and HTTP status code.",
	}, []string{"route", "code"})}
	if opts.Registerer != nil {
		if err := opts.Registerer.Register(s.requests); err != nil {
			return nil, fmt.Errorf("pki: metrics: %w", err)
		}
	}
	for _, level := range []string{"issuing", "root"} {
		s.handle("GET /ca/{ca}/"+level+".crl", level+".crl", s.crl(level))
		s.handle("GET /ca/{ca}/"+level+".cer", level+".cer", s.cert(level))
	}
	s.handle("POST /ocsp/{ca}", "ocsp", s.ocsp)
	s.handle("GET /ocsp/{ca}/{request...}", "ocsp", s.ocsp)
	s.root = s.accessLog(s.mux)
	// Timeouts and limits as for the admin surface, with room to send a large CRL to a
	// slow client.
	s.http = &http.Server{Handler: s.root, ReadHeaderTimeout: 10 * time.Second, ReadTimeout: 30 * time.Second,
		WriteTimeout: 2 * time.Minute, IdleTimeout: 2 * time.Minute, MaxHeaderBytes: 16 << 10,
		ErrorLog: slog.NewLogLogger(opts.Log.Handler(), slog.LevelWarn)}
	return s, nil
}

// SetOCSP mounts h as the OCSP handler (see Options.OCSP); call it before Serve.
func (s *Server) SetOCSP(h http.Handler) { s.opts.OCSP = h }

// Handler returns the HTTP handler, access log included (for tests and for embedding).
func (s *Server) Handler() http.Handler { return s.root }

// Serve serves on l until Close; it returns nil after Close.
func (s *Server) Serve(l net.Listener) error {
	if err := s.http.Serve(l); !errors.Is(err, http.ErrServerClosed) {
		return err
	}
	return nil
}

// Close stops accepting requests and lets those in flight finish until ctx ends.
func (s *Server) Close(ctx context.Context) error {
	err := s.http.Shutdown(ctx)
	if err != nil {
		_ = s.http.Close()
	}
	return err
}

type routeKey struct{}

// handle registers h under pattern, naming the route for the metrics and the log.
func (s *Server) handle(pattern, route string, h http.HandlerFunc) {
	s.mux.HandleFunc(pattern, func(w http.ResponseWriter, r *http.Request) {
		if name, ok := r.Context().Value(routeKey{}).(*string); ok {
			*name = route
		}
		h(w, r)
	})
}

func (s *Server) authority(w http.ResponseWriter, r *http.Request) (Authority, bool) {
	a, ok := s.opts.Authorities[r.PathValue("ca")]
	if !ok {
		writeText(w, http.StatusNotFound, "no such CA\n")
	}
	return a, ok
}

func (s *Server) crl(level string) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		a, ok := s.authority(w, r)
		if !ok {
			return
		}
		c, err := a.CRL(r.Context(), level)
		if err != nil {
			s.opts.Log.Error("pki: serving a CRL", "ca", r.PathValue("ca"), "level", level, "err", err)
			writeText(w, http.StatusServiceUnavailable, "the CRL is unavailable\n")
			return
		}
		age := min(c.NextUpdate.Sub(s.opts.Clock.Now()), maxCRLAge)
		serveObject(w, r, "application/pkix-crl", c.DER, c.ThisUpdate, max(age, 0))
	}
}

func (s *Server) cert(level string) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		a, ok := s.authority(w, r)
		if !ok {
			return
		}
		der := a.IssuingDER
		if level == "root" {
			der = a.RootDER
		}
		// Certificates do not change while hufud runs: no Last-Modified, the ETag suffices.
		serveObject(w, r, "application/pkix-cert", der, time.Time{}, certMaxAge)
	}
}

func (s *Server) ocsp(w http.ResponseWriter, r *http.Request) {
	if s.opts.OCSP == nil {
		writeText(w, http.StatusNotFound, "no OCSP responder\n")
		return
	}
	if _, ok := s.authority(w, r); !ok {
		return
	}
	if r.Method == http.MethodPost {
		r.Body = http.MaxBytesReader(w, r.Body, MaxOCSPRequestBytes)
	}
	s.opts.OCSP.ServeHTTP(w, r)
}

// serveObject answers with a signed object: ETag from its content, Last-Modified if
// modified is set, Cache-Control public for maxAge; http.ServeContent answers HEAD and
// conditional requests.
func serveObject(w http.ResponseWriter, r *http.Request, contentType string, der []byte, modified time.Time, maxAge time.Duration) {
	sum := sha256.Sum256(der)
	h := w.Header()
	h.Set("Content-Type", contentType)
	h.Set("ETag", `"`+hex.EncodeToString(sum[:16])+`"`)
	h.Set("Cache-Control", "public, no-transform, max-age="+strconv.Itoa(int(maxAge/time.Second)))
	h.Set("X-Content-Type-Options", "nosniff")
	http.ServeContent(w, r, "", modified, bytes.NewReader(der))
}

func writeText(w http.ResponseWriter, code int, msg string) {
	w.Header().Set("Content-Type", "text/plain; charset=utf-8")
	w.Header().Set("X-Content-Type-Options", "nosniff")
	w.Header().Set("Cache-Control", "no-store")
	w.WriteHeader(code)
	_, _ = w.Write([]byte(msg))
}

// accessLog logs one line per request and counts it by route and status.
func (s *Server) accessLog(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		start := s.opts.Clock.Now()
		route := "unmatched"
		sw := &statusWriter{ResponseWriter: w}
		next.ServeHTTP(sw, r.WithContext(context.WithValue(r.Context(), routeKey{}, &route)))
		if sw.status == 0 {
			sw.status = http.StatusOK
		}
		s.requests.WithLabelValues(route, strconv.Itoa(sw.status)).Inc()
		s.opts.Log.Info("pki request", "route", route, "method", r.Method, "status", sw.status,
			"duration_ms", s.opts.Clock.Now().Sub(start).Milliseconds(), "remote", r.RemoteAddr)
	})
}

type statusWriter struct {
	http.ResponseWriter
	status int
}

func (w *statusWriter) WriteHeader(code int) {
	if w.status == 0 {
		w.status = code
	}
	w.ResponseWriter.WriteHeader(code)
}

func (w *statusWriter) Write(b []byte) (int, error) {
	if w.status == 0 {
		w.status = http.StatusOK
	}
	return w.ResponseWriter.Write(b)
}

// Unwrap lets http.ResponseController reach the connection.
func (w *statusWriter) Unwrap() http.ResponseWriter { return w.ResponseWriter }
