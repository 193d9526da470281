package admin

import (
	"context"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/pprof"
	"strings"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"

	"github.com/hufu-hsm/hufu/store"
)

// Role is what a token may do.
type Role string

// The roles.
const (
	// Operator runs the appliance: metrics, backups, (later) the review desk and system
	// clients.
	Operator Role = "operator"
	// Auditor checks it: audit export, checkpoints, the audit public key.
	Auditor Role = "auditor"
	// SecurityOfficer holds its keys: KEK rotation, profiling, and what the others see.
	SecurityOfficer Role = "security_officer"
)

// Token is one configured bearer token.
type Token struct {
	Name   string   // who holds it; the token id in audit records
	Role   Role     //
	SHA256 [32]byte // SHA-256 of the token
}

// tokenPrefix marks hufu admin tokens, so a leaked one is recognisable in a secret scan.
const tokenPrefix = "hufu_admin_"

// NewToken returns a fresh random token and the hex SHA-256 to put in the configuration.
func NewToken() (token, sha256Hex string, err error) {
	var b [32]byte
	if _, err := rand.Read(b[:]); err != nil {
		return "", "", fmt.Errorf("admin: new token: %w", err)
	}
	token = tokenPrefix + base64.RawURLEncoding.EncodeToString(b[:])
	return token, HashToken(token), nil
}

// HashToken is the hex SHA-256 of a token, as configured.
func HashToken(token string) string {
	h := sha256.Sum256([]byte(token))
	return hex.EncodeToString(h[:])
}

// ParseTokenHash decodes a configured hex SHA-256.
func ParseTokenHash(s string) ([32]byte, error) {
	var h [32]byte
	b, err := hex.DecodeString(s)
	if err != nil || len(b) != len(h) {
		return h, errors.New("admin: token hash: want 64 hex digits")
	}
	copy(h[:], b)
	return h, nil
}

// Store is what the admin surface needs of the store.
type Store interface {
	Append(ctx context.Context, events ...store.Event) error
	ExportAudit(ctx context.Context, w io.Writer, from, to uint64) error
	Checkpoints(ctx context.Context, after uint64, limit int) ([]*store.Checkpoint, error)
	Backup(ctx context.Context, dir, actor string) error
}

// Check is one readiness check.
type Check struct {
	Name  string
	Probe func(ctx context.Context) error
}

// Options configure a Server. Store, AuditKeyPEM, Gatherer, KEKs and BackupDir are
// required.
type Options struct {
	Tokens []Token
	Store  Store
	// AuditKeyPEM returns the public key that verifies audit checkpoints.
	AuditKeyPEM func() ([]byte, error)
	Checks      []Check
	// CheckTimeout bounds each readiness probe (default 2s).
	CheckTimeout time.Duration
	Gatherer     prometheus.Gatherer
	KEKs         KEKs
	// SystemClients, if set, serves /system-clients.
	SystemClients SystemClients
	// Rewrappers find and rewrap the stored blobs of each domain during a KEK rotation.
	Rewrappers []Rewrapper
	// CRL, if set, serves each CA's current certificate revocation list at /crl/{ca}: public,
	// no token, because relying parties must be able to fetch it. It returns an error
	// matching ErrNoSuchCA for an unknown CA.
	CRL func(ctx context.Context, caID string) ([]byte, error)
	// BackupDir is the scratch directory for backups; it must be on the store's
	// filesystem so that Pebble can hard-link (the daemon uses <data_dir>/backup-scratch).
	BackupDir string
	Clock     interface{ Now() time.Time }
	Log       *slog.Logger
}

// Server is the admin HTTP surface.
type Server struct {
	opts   Options
	tokens map[[32]byte]Token
	mux    *http.ServeMux
	root   http.Handler // mux behind the access log
	rot    *rotation

	// jobs is the lifetime of background work (the rotation job); Close ends it.
	jobs       context.Context
	stopJobs   context.CancelFunc
	background sync.WaitGroup
	http       *http.Server

	mode string // SetMode
}

// SetMode names the appliance's mode ("development", "production") for /readyz?verbose,
// which lists it as "[+]mode development" before the checks. The line is information for
// the operator; it never makes readiness fail. Call it before Serve.
func (s *Server) SetMode(mode string) { s.mode = mode }

// New returns the server; Serve it on a listener, Close it before the store closes.
func New(opts Options) (*Server, error) {
	if opts.Store == nil || opts.AuditKeyPEM == nil || opts.Gatherer == nil || opts.KEKs == nil || opts.BackupDir == "" {
		return nil, errors.New("admin: missing dependency")
	}
	if opts.CheckTimeout <= 0 {
		opts.CheckTimeout = 2 * time.Second
	}
	if opts.Log == nil {
		opts.Log = slog.Default()
	}
	if opts.Clock == nil {
		opts.Clock = systemClock{}
	}
	s := &Server{opts: opts, tokens: map[[32]byte]Token{}, mux: http.NewServeMux()}
	for _, t := range opts.Tokens {
		switch t.Role {
		case Operator, Auditor, SecurityOfficer:
		default:
			return nil, fmt.Errorf("admin: token %q: unknown role %q", t.Name, t.Role)
		}
		if _, dup := s.tokens[t.SHA256]; dup {
			return nil, fmt.Errorf("admin: token %q is configured twice", t.Name)
		}
		s.tokens[t.SHA256] = t
	}
	s.jobs, s.stopJobs = context.WithCancel(context.Background())
	s.rot = &rotation{s: s, state: RotationStatus{State: StateIdle}}
	s.routes()
	s.root = accessLog(opts.Log, s.mux)
	s.http = &http.Server{Handler: s.root, ReadHeaderTimeout: 10 * time.Second, ErrorLog: slog.NewLogLogger(opts.Log.Handler(), slog.LevelWarn)}
	return s, nil
}

type systemClock struct{}

func (systemClock) Now() time.Time { return time.Now() }

// Handler returns the HTTP handler, access log included (for tests and for embedding).
func (s *Server) Handler() http.Handler { return s.root }

// Serve serves on l until Close; it returns nil after Close.
func (s *Server) Serve(l net.Listener) error {
	if err := s.http.Serve(l); !errors.Is(err, http.ErrServerClosed) {
		return err
	}
	return nil
}

// Close stops accepting requests, lets requests in flight finish until ctx ends, then
// stops background work (a KEK rotation job is cancelled between batches and can be
// started again) and waits for it.
func (s *Server) Close(ctx context.Context) error {
	err := s.http.Shutdown(ctx)
	if err != nil {
		_ = s.http.Close()
	}
	s.stopJobs()
	s.background.Wait()
	return err
}

// endpoint is one route: its audit action, the roles allowed, and whether successful
// requests are audited (probes and scrapes are not: they carry no decision and run every
// few seconds).
type endpoint struct {
	action  string
	roles   []Role
	audited bool
	handle  func(w http.ResponseWriter, r *http.Request, who Token)
}

func (s *Server) routes() {
	all := []Role{Operator, Auditor, SecurityOfficer}
	ops := []Role{Operator, SecurityOfficer}
	audit := []Role{Auditor, SecurityOfficer}
	so := []Role{SecurityOfficer}
	s.mux.HandleFunc("GET /livez", func(w http.ResponseWriter, r *http.Request) { writeText(w, http.StatusOK, "ok\n") })
	s.mux.HandleFunc("GET /readyz", s.readyz)
	if s.opts.CRL != nil {
		s.mux.HandleFunc("GET /crl/{ca}", s.crl)
	}
	s.handle("GET /metrics", endpoint{action: "admin.metrics", roles: ops, handle: s.metrics})
	s.handle("GET /audit/export", endpoint{action: "admin.audit.export", roles: audit, audited: true, handle: s.auditExport})
	s.handle("GET /audit/checkpoints", endpoint{action: "admin.audit.checkpoints", roles: audit, audited: true, handle: s.checkpoints})
	s.handle("GET /audit/public-key", endpoint{action: "admin.audit.public_key", roles: all, audited: true, handle: s.publicKey})
	s.handle("POST /backup", endpoint{action: "admin.backup", roles: ops, audited: true, handle: s.backup})
	s.handle("GET /kek", endpoint{action: "admin.kek.status", roles: so, audited: true, handle: s.rot.status})
	s.handle("POST /kek/rotate", endpoint{action: "admin.kek.rotate", roles: so, audited: true, handle: s.rot.start})
	s.handle("POST /kek/finish", endpoint{action: "admin.kek.finish", roles: so, audited: true, handle: s.rot.finish})
	if s.opts.SystemClients != nil {
		s.handle("GET /system-clients", endpoint{action: "admin.system_clients.list", roles: ops, audited: true, handle: s.listSystems})
		s.handle("POST /system-clients", endpoint{action: "admin.system_clients.register", roles: ops, audited: true, handle: s.registerSystem})
		s.handle("DELETE /system-clients/{name}", endpoint{action: "admin.system_clients.remove", roles: ops, audited: true, handle: s.removeSystem})
	}
	pp := map[string]http.HandlerFunc{
		"/debug/pprof/": pprof.Index, "/debug/pprof/cmdline": pprof.Cmdline, "/debug/pprof/profile": pprof.Profile,
		"/debug/pprof/symbol": pprof.Symbol, "/debug/pprof/trace": pprof.Trace,
	}
	for path, h := range pp {
		s.handle("GET "+path, endpoint{action: "admin.pprof", roles: so, audited: true,
			handle: func(w http.ResponseWriter, r *http.Request, _ Token) { h(w, r) }})
	}
}

func (s *Server) handle(pattern string, e endpoint) {
	s.mux.HandleFunc(pattern, func(w http.ResponseWriter, r *http.Request) {
		who, ok := s.authenticate(r)
		if ok {
			setCaller(r, string(who.Role))
		}
		if !ok {
			s.audit(r, who, e.action, store.OutcomeDenied, map[string]string{"reason": "no valid token"})
			w.Header().Set("WWW-Authenticate", `Bearer realm="hufu-admin"`)
			writeText(w, http.StatusUnauthorized, "a valid admin bearer token is required\n")
			return
		}
		if !allowed(who.Role, e.roles) {
			s.audit(r, who, e.action, store.OutcomeDenied, map[string]string{"reason": "role not allowed"})
			writeText(w, http.StatusForbidden, fmt.Sprintf("role %s may not use %s\n", who.Role, r.URL.Path))
			return
		}
		if e.audited && !sideEffect(e.action) {
			// Reads are recorded before they are served: no record, no answer.
			if err := s.audit(r, who, e.action, store.OutcomeOK, nil); err != nil {
				writeText(w, http.StatusServiceUnavailable, "the audit log cannot be written; refusing\n")
				return
			}
		}
		e.handle(w, r, who)
	})
}

// sideEffect endpoints audit themselves with the details of what they did (in the same
// batch as the change where there is one).
func sideEffect(action string) bool {
	switch action {
	case "admin.backup", "admin.kek.rotate", "admin.kek.finish", "admin.system_clients.register", "admin.system_clients.remove":
		return true
	}
	return false
}

func allowed(role Role, roles []Role) bool {
	for _, r := range roles {
		if r == role {
			return true
		}
	}
	return false
}

// authenticate finds the caller's token. The comparison is of SHA-256 digests in a map:
// what a timing difference could reveal is a digest prefix, not the token.
func (s *Server) authenticate(r *http.Request) (Token, bool) {
	token, ok := strings.CutPrefix(r.Header.Get("Authorization"), "Bearer ")
	if !ok || token == "" {
		return Token{}, false
	}
	t, ok := s.tokens[sha256.Sum256([]byte(token))]
	return t, ok
}

// audit appends one record of an admin request. The token itself never appears; the
// holder's name does, as the token id.
func (s *Server) audit(r *http.Request, who Token, action, outcome string, details map[string]string) error {
	actor := "admin:unknown"
	d := map[string]string{"remote": r.RemoteAddr, "path": r.URL.Path}
	if who.Name != "" {
		actor = "admin:" + who.Name
		d["role"], d["token"] = string(who.Role), who.Name
	}
	for k, v := range details {
		d[k] = v
	}
	err := s.opts.Store.Append(r.Context(), store.Event{Actor: actor, Action: action, Subject: r.URL.Path, Outcome: outcome, Details: d})
	if err != nil {
		s.opts.Log.Error("admin: audit append failed", "action", action, "request_id", RequestIDFrom(r.Context()), "err", err)
	}
	return err
}

func writeText(w http.ResponseWriter, code int, msg string) {
	w.Header().Set("Content-Type", "text/plain; charset=utf-8")
	w.Header().Set("X-Content-Type-Options", "nosniff")
	w.WriteHeader(code)
	_, _ = io.WriteString(w, msg)
}

func (s *Server) metrics(w http.ResponseWriter, r *http.Request, _ Token) {
	promhttp.HandlerFor(s.opts.Gatherer, promhttp.HandlerOpts{ErrorHandling: promhttp.ContinueOnError}).ServeHTTP(w, r)
}

// readyz runs every check. Without ?verbose it answers "ok" or the names of the failed
// checks; with ?verbose it lists the mode (SetMode) and each check, and with a valid token
// also the error.
func (s *Server) readyz(w http.ResponseWriter, r *http.Request) {
	_, verbose := r.URL.Query()["verbose"]
	_, authed := s.authenticate(r)
	var b strings.Builder
	if verbose && s.mode != "" {
		fmt.Fprintf(&b, "[+]mode %s\n", s.mode)
	}
	failed := 0
	for _, c := range s.opts.Checks {
		ctx, cancel := context.WithTimeout(r.Context(), s.opts.CheckTimeout)
		err := c.Probe(ctx)
		cancel()
		switch {
		case err == nil && verbose:
			fmt.Fprintf(&b, "[+]%s ok\n", c.Name)
		case err != nil && verbose && authed:
			failed++
			fmt.Fprintf(&b, "[-]%s failed: %v\n", c.Name, err)
		case err != nil:
			failed++
			fmt.Fprintf(&b, "[-]%s failed\n", c.Name)
		}
	}
	if failed > 0 {
		b.WriteString("readyz check failed\n")
		writeText(w, http.StatusServiceUnavailable, b.String())
		return
	}
	b.WriteString("ok\n")
	writeText(w, http.StatusOK, b.String())
}

// ErrNoSuchCA is what Options.CRL returns for a CA that is not configured.
var ErrNoSuchCA = errors.New("admin: no such CA")

// crl serves a CA's current CRL (DER, application/pkix-crl, RFC 5280 §5).
func (s *Server) crl(w http.ResponseWriter, r *http.Request) {
	der, err := s.opts.CRL(r.Context(), r.PathValue("ca"))
	switch {
	case errors.Is(err, ErrNoSuchCA):
		writeText(w, http.StatusNotFound, "no such CA\n")
		return
	case err != nil:
		s.opts.Log.Error("serving a CRL", "err", err)
		writeText(w, http.StatusServiceUnavailable, "the CRL is unavailable\n")
		return
	}
	w.Header().Set("Content-Type", "application/pkix-crl")
	w.Header().Set("Cache-Control", "max-age=60")
	w.Write(der)
}
