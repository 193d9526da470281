package ocsp

import (
	"context"
	"encoding/base64"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"math/big"
	"mime"
	"net/http"
	"net/url"
	"strings"
	"sync"
	"time"

	"github.com/emmansun/gmsm/smx509"
	"github.com/prometheus/client_golang/prometheus"
)

// Source tells the responder the status of a certificate of its issuer.
type Source interface {
	// Status returns the status of the certificate with serial. An error makes the
	// response internalError.
	Status(ctx context.Context, serial *big.Int) (Status, error)
}

// Signer signs with the issuer's key.
type Signer interface {
	// SignOCSP returns the SM2 signature (ASN.1 r, s) with SM3 and the default ID
	// 1234567812345678 of tbs, under the key of the issuer certificate.
	SignOCSP(ctx context.Context, tbs []byte) ([]byte, error)
}

// Clock is the injected time.
type Clock interface{ Now() time.Time }

// Config configures a Handler.
type Config struct {
	// CAID names the CA in metrics.
	CAID string
	// Issuer is the CA certificate whose certificates the handler answers for; responses
	// are signed with its key (Signer) and name it by key hash.
	Issuer *smx509.Certificate
	Source Source
	Signer Signer
	Clock  Clock
	// Validity is nextUpdate − thisUpdate of every answer. The daemon passes the CRL's
	// (certificates.crl_next_update), so an OCSP answer is never valid longer than the CRL
	// that would say the same. Default 24h.
	Validity time.Duration
	// MaxSigning bounds the signatures being made at once (each unwraps the issuing key
	// through the HSM). Default 4.
	MaxSigning int
	// SigningWait is how long a request that needs a signature waits for one of the
	// MaxSigning slots before it is answered tryLater. Default 1s.
	SigningWait time.Duration
	// CacheEntries bounds the cached responses. Default 10000.
	CacheEntries int
	// IncludeIssuer puts the issuer's certificate in the response's certs. A relying party
	// that makes a CertID has the issuer, but OpenSSL looks for the signer only in the
	// response and in certificates given with -verify_other, not in -issuer or the trust
	// store; so it is on by default in hufu's wiring (see the package documentation).
	IncludeIssuer bool
	// Metrics, shared by the handlers of all CAs; nil counts nothing.
	Metrics *Metrics
	Log     *slog.Logger
}

// Metrics of the OCSP responders (a private registry, as all of hufu's).
type Metrics struct {
	responses *prometheus.CounterVec
	cacheHits *prometheus.CounterVec
	signing   *prometheus.HistogramVec
}

// NewMetrics registers the responders' metrics in reg. Labels are the CA and the outcome,
// never a serial.
func NewMetrics(reg prometheus.Registerer) *Metrics {
	m := &Metrics{
		responses: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "hufu_ocsp_responses_total",
			Help: "OCSP answers: per certificate in a successful response (good, revoked, unknown), else per response (malformed, unauthorized, try_later, error).",
		}, []string{"ca", "status"}),
		cacheHits: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "hufu_ocsp_cache_hits_total",
			Help: "OCSP responses served from the cache, without signing.",
		}, []string{"ca"}),
		signing: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name:    "hufu_ocsp_signing_duration_seconds",
			Help:    "Time to sign one OCSP response (unwrapping the issuing key through the HSM and signing).",
			Buckets: prometheus.ExponentialBuckets(0.0005, 2, 12),
		}, []string{"ca"}),
	}
	if reg != nil {
		reg.MustRegister(m.responses, m.cacheHits, m.signing)
	}
	return m
}

// Handler is the OCSP responder of one issuing CA, an http.Handler (see the package
// documentation).
type Handler struct {
	cfg     Config
	hashes  *issuerHashes
	certs   [][]byte
	slots   chan struct{}
	log     *slog.Logger
	metrics *Metrics

	mu    sync.Mutex
	cache map[string]*cached
}

// cached is a signed response to a request for one certificate without a nonce.
type cached struct {
	der        []byte
	status     Status
	thisUpdate time.Time
}

// NewHandler returns the responder for cfg.Issuer.
func NewHandler(cfg Config) (*Handler, error) {
	if cfg.Issuer == nil || cfg.Source == nil || cfg.Signer == nil || cfg.Clock == nil {
		return nil, errors.New("ocsp: Issuer, Source, Signer and Clock are required")
	}
	if cfg.Validity <= 0 {
		cfg.Validity = 24 * time.Hour
	}
	if cfg.MaxSigning <= 0 {
		cfg.MaxSigning = 4
	}
	if cfg.SigningWait <= 0 {
		cfg.SigningWait = time.Second
	}
	if cfg.CacheEntries <= 0 {
		cfg.CacheEntries = 10000
	}
	if cfg.Metrics == nil {
		cfg.Metrics = NewMetrics(nil)
	}
	if cfg.Log == nil {
		cfg.Log = slog.New(slog.DiscardHandler)
	}
	hashes, err := newIssuerHashes(cfg.Issuer)
	if err != nil {
		return nil, err
	}
	h := &Handler{cfg: cfg, hashes: hashes, slots: make(chan struct{}, cfg.MaxSigning),
		log: cfg.Log.With("ca", cfg.CAID), metrics: cfg.Metrics, cache: map[string]*cached{}}
	if cfg.IncludeIssuer {
		h.certs = [][]byte{cfg.Issuer.Raw}
	}
	return h, nil
}

// ServeHTTP answers a POST with an application/ocsp-request body and a GET of
// /<base64 of the request DER> (RFC 6960 appendix A), relative to where the handler is
// mounted: under a {request...} pattern wildcard (see ByCA) or http.StripPrefix. Every OCSP answer, including malformedRequest, is HTTP 200 with
// application/ocsp-response; a wrong method or media type is an HTTP error.
func (h *Handler) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	var der []byte
	switch r.Method {
	case http.MethodPost:
		mt, _, err := mime.ParseMediaType(r.Header.Get("Content-Type"))
		if err != nil || mt != "application/ocsp-request" {
			http.Error(w, "an OCSP request is POSTed as application/ocsp-request", http.StatusUnsupportedMediaType)
			return
		}
		der, err = io.ReadAll(http.MaxBytesReader(w, r.Body, MaxRequestBytes))
		if err != nil {
			h.write(w, h.fail(MalformedRequest, "body unreadable or larger than the limit"))
			return
		}
	case http.MethodGet, http.MethodHead:
		var ok bool
		if der, ok = decodeGETPath(r); !ok {
			h.write(w, h.fail(MalformedRequest, "GET path is not base64 of a request"))
			return
		}
	default:
		w.Header().Set("Allow", "GET, HEAD, POST")
		http.Error(w, "OCSP takes GET and POST", http.StatusMethodNotAllowed)
		return
	}
	h.write(w, h.Respond(r.Context(), der))
}

func (h *Handler) write(w http.ResponseWriter, der []byte) {
	w.Header().Set("Content-Type", "application/ocsp-response")
	// A revocation must reach relying parties at once: HTTP caches between them and hufu
	// would serve an earlier "good" (hufu's own cache checks the status on every request).
	w.Header().Set("Cache-Control", "no-cache")
	w.Header().Set("Content-Length", fmt.Sprint(len(der)))
	_, _ = w.Write(der)
}

// decodeGETPath reads the request of a GET: the base64 (standard or URL alphabet, padded
// or not) of the DER, URL-escaped (RFC 6960 appendix A). Behind a ServeMux pattern with a
// {request...} wildcard (the PKI listener: GET /ocsp/{ca}/{request...}) it is that
// wildcard, which the mux has unescaped; else the escaped path after the mount point (an
// http.StripPrefix mount), unescaped here.
func decodeGETPath(r *http.Request) ([]byte, bool) {
	s := r.PathValue("request")
	if s == "" {
		p := strings.TrimPrefix(r.URL.EscapedPath(), "/")
		if len(p) > 3*MaxRequestBytes {
			return nil, false
		}
		var err error
		if s, err = url.PathUnescape(p); err != nil {
			return nil, false
		}
	}
	if s == "" || len(s) > 2*MaxRequestBytes {
		return nil, false
	}
	for _, enc := range []*base64.Encoding{base64.StdEncoding, base64.URLEncoding, base64.RawStdEncoding, base64.RawURLEncoding} {
		if der, err := enc.Strict().DecodeString(s); err == nil {
			return der, true
		}
	}
	return nil, false
}

var (
	_ http.Handler = (*Handler)(nil)
	_ http.Handler = ByCA(nil)
)

// ByCA serves the responders of several CAs under one ServeMux pattern with a {ca}
// wildcard, as the PKI listener mounts OCSP (POST /ocsp/{ca}, GET /ocsp/{ca}/{request...}):
// the CA id picks the Handler, and an id without one is 404.
type ByCA map[string]*Handler

func (m ByCA) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	h, ok := m[r.PathValue("ca")]
	if !ok {
		http.Error(w, "no OCSP responder for this CA", http.StatusNotFound)
		return
	}
	h.ServeHTTP(w, r)
}

// Respond answers one DER OCSPRequest with a DER OCSPResponse; it never fails: a bad
// request or a failure inside is an unsuccessful response status.
func (h *Handler) Respond(ctx context.Context, der []byte) []byte {
	req, err := ParseRequest(der)
	if err != nil {
		return h.fail(MalformedRequest, err.Error())
	}
	for _, id := range req.CertIDs {
		if !h.hashes.matches(id) {
			return h.fail(Unauthorized, "a certificate of another issuer")
		}
	}
	statuses := make([]Status, len(req.CertIDs))
	for i, id := range req.CertIDs {
		if statuses[i], err = h.cfg.Source.Status(ctx, id.Serial); err != nil {
			return h.fail(InternalError, "status: "+err.Error())
		}
	}
	now := h.cfg.Clock.Now().UTC().Truncate(time.Second)
	cacheable := len(req.CertIDs) == 1 && req.Nonce == nil
	var key string
	if cacheable {
		key = string(req.CertIDs[0].raw)
		if der, ok := h.cached(key, statuses[0], now); ok {
			h.metrics.cacheHits.WithLabelValues(h.cfg.CAID).Inc()
			h.metrics.responses.WithLabelValues(h.cfg.CAID, statuses[0].Status.String()).Inc()
			return der
		}
	}
	singles := make([]single, len(req.CertIDs))
	for i, id := range req.CertIDs {
		singles[i] = single{certID: id.raw, status: statuses[i], thisUpdate: now, nextUpdate: now.Add(h.cfg.Validity)}
	}
	tbs, err := tbsResponse(h.hashes.responderKeyHash, now, singles, req.Nonce)
	if err != nil {
		return h.fail(InternalError, "encoding: "+err.Error())
	}
	sig, status := h.sign(ctx, tbs)
	if status != Successful {
		return errorResponseDERs[status]
	}
	resp, err := basicResponse(tbs, sig, h.certs)
	if err != nil {
		return h.fail(InternalError, "encoding: "+err.Error())
	}
	if cacheable {
		h.store(key, &cached{der: resp, status: statuses[0], thisUpdate: now}, now)
	}
	for _, s := range statuses {
		h.metrics.responses.WithLabelValues(h.cfg.CAID, s.Status.String()).Inc()
	}
	return resp
}

// sign takes one of the MaxSigning slots, waiting at most SigningWait: a flood of
// requests that each need a signature (nonces, or serials not in the cache) gets tryLater
// instead of queueing on the HSM.
func (h *Handler) sign(ctx context.Context, tbs []byte) ([]byte, ResponseStatus) {
	wait := time.NewTimer(h.cfg.SigningWait)
	defer wait.Stop()
	select {
	case h.slots <- struct{}{}:
	case <-wait.C:
		h.fail(TryLater, "")
		return nil, TryLater
	case <-ctx.Done():
		h.fail(TryLater, "")
		return nil, TryLater
	}
	defer func() { <-h.slots }()
	start := time.Now()
	sig, err := h.cfg.Signer.SignOCSP(ctx, tbs)
	h.metrics.signing.WithLabelValues(h.cfg.CAID).Observe(time.Since(start).Seconds())
	if err != nil {
		h.fail(InternalError, "signing: "+err.Error())
		return nil, InternalError
	}
	return sig, Successful
}

// failureLabels are the status labels of unsuccessful responses.
var failureLabels = map[ResponseStatus]string{MalformedRequest: "malformed", Unauthorized: "unauthorized",
	TryLater: "try_later", InternalError: "error"}

// fail counts and logs an unsuccessful response and returns it. Reasons name no serial.
func (h *Handler) fail(s ResponseStatus, reason string) []byte {
	h.metrics.responses.WithLabelValues(h.cfg.CAID, failureLabels[s]).Inc()
	switch s {
	case InternalError:
		h.log.Error("ocsp: cannot answer", "reason", reason)
	case TryLater:
		h.log.Warn("ocsp: signing capacity exhausted; answered tryLater")
	default:
		h.log.Debug("ocsp: refused a request", "status", s.String(), "reason", reason)
	}
	return errorResponseDERs[s]
}

// cached returns the cached response for key if it says status (a revocation since it was
// signed makes it stale at once) and less than half of its validity has passed.
func (h *Handler) cached(key string, status Status, now time.Time) ([]byte, bool) {
	h.mu.Lock()
	defer h.mu.Unlock()
	c, ok := h.cache[key]
	if !ok {
		return nil, false
	}
	if !c.status.equal(status) || !h.fresh(c, now) {
		delete(h.cache, key)
		return nil, false
	}
	return c.der, true
}

func (h *Handler) fresh(c *cached, now time.Time) bool {
	return now.Sub(c.thisUpdate) < h.cfg.Validity/2
}

// store caches c; when the cache is full it drops stale entries, then arbitrary ones.
func (h *Handler) store(key string, c *cached, now time.Time) {
	h.mu.Lock()
	defer h.mu.Unlock()
	if len(h.cache) >= h.cfg.CacheEntries {
		for k, e := range h.cache {
			if !h.fresh(e, now) {
				delete(h.cache, k)
			}
		}
		for k := range h.cache {
			if len(h.cache) < h.cfg.CacheEntries {
				break
			}
			delete(h.cache, k)
		}
	}
	h.cache[key] = c
}
