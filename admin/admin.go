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
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"

	"github.com/hufu-hsm/hufu/backup"
	"github.com/hufu-hsm/hufu/store"
)

// Role is what a token may do.
type Role string

// The roles. Duties are separated: what exports personal data (backups) or grants access
// (system clients, admin tokens) belongs to the security officer alone, and a grant of a
// desk permission or of a new security officer token needs a second officer (approvals.go).
const (
	// Operator runs the appliance: metrics, the audit public key, the list of system
	// clients.
	Operator Role = "operator"
	// Auditor checks it: audit export, checkpoints, the audit public key.
	Auditor Role = "auditor"
	// SecurityOfficer holds its keys: KEK rotation, backups, system clients, admin tokens,
	// approvals, profiling, and what the others see.
	SecurityOfficer Role = "security_officer"
	// MetricsReader is what Prometheus holds: /metrics and nothing else, so a token kept in
	// a monitoring system's configuration opens no data.
	MetricsReader Role = "metrics_reader"
)

// Roles lists every role.
var Roles = []Role{Operator, Auditor, SecurityOfficer, MetricsReader}

// validRole reports whether r is one of Roles.
func validRole(r Role) bool {
	for _, x := range Roles {
		if x == r {
			return true
		}
	}
	return false
}

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

// Check is one readiness check.
type Check struct {
	Name  string
	Probe func(ctx context.Context) error
}

// Options configure a Server. Store, AuditKeyPEM, Gatherer, KEKs, BackupKey and BackupDir are
// required.
type Options struct {
	// Tokens are the configuration's tokens (admin.tokens): the bootstrap, read-only here.
	Tokens []Token
	// Store is the appliance's store: the audit log, backups, and the admin surface's own
	// records (online tokens and approval requests, z/ in store/schema.go). It is the
	// concrete store, not an interface, because those records are read through the
	// store's generic collections.
	Store *store.Store
	// Registerer, if set, receives the admin surface's metrics: readiness per check and
	// KEK-rotation progress (metrics.go).
	Registerer prometheus.Registerer
	// MaxTokens bounds the online tokens that are neither revoked nor expired (default
	// 100); MaxTokenTTL bounds the lifetime of one (default 365 days); ApprovalTTL is how
	// long an approval request waits for the second officer (default 24h).
	MaxTokens   int
	MaxTokenTTL time.Duration
	ApprovalTTL time.Duration
	// AuditKeyPEM returns the public key that verifies audit checkpoints.
	AuditKeyPEM func() ([]byte, error)
	Checks      []Check
	// CheckTimeout bounds each readiness probe (default 2s).
	CheckTimeout time.Duration
	Gatherer     prometheus.Gatherer
	KEKs         KEKs
	// SystemClients, if set, serves /system-clients.
	SystemClients SystemClients
	// IssuingCAs, if set, serves POST /ca/revoke-issuing (carevoke.go).
	IssuingCAs IssuingCAs
	// Rewrappers find and rewrap the stored blobs of each domain during a KEK rotation.
	Rewrappers []Rewrapper
	// ErasureInterval is how often the KEK erasure runs (erasure.go; StartErasureSchedule),
	// counted from the last one; 0 for none but the ones a security officer starts.
	ErasureInterval time.Duration
	// CRL, if set, serves each CA's current certificate revocation list at /crl/{ca}: public,
	// no token, because relying parties must be able to fetch it. It returns an error
	// matching ErrNoSuchCA for an unknown CA.
	CRL func(ctx context.Context, caID string) ([]byte, error)
	// Callbacks are the requests other services send to the appliance (a payment gateway's
	// payment.notify), by path, served for POST without a token: each handler authenticates
	// its sender itself (a signature under a key shared with that service).
	Callbacks map[string]http.Handler
	// Console, if set, builds the operator console (package admin/console) served under
	// /console/; the console authenticates its sessions with this server's tokens and
	// records through its audit (ConsoleHost).
	Console func(host ConsoleHost) http.Handler
	// BackupKey wraps each backup's data key (the HSM keyring): backups leave the
	// appliance encrypted (package backup).
	BackupKey backup.KeyWrapper
	// BackupDir is the scratch directory for backups; it must be on the store's
	// filesystem so that Pebble can hard-link (the daemon uses <data_dir>/backup-scratch).
	BackupDir string
	// AuthFailureWindow and AuthFailureLimit rate-limit requests without a valid token per
	// source address (authfailures.go; defaults 1m and 10).
	AuthFailureWindow time.Duration
	AuthFailureLimit  int
	Clock             interface{ Now() time.Time }
	Log               *slog.Logger
}

// Server is the admin HTTP surface.
type Server struct {
	opts        Options
	tokens      map[[32]byte]Token // the configuration's
	configNames map[string]bool    // the configuration's token names
	online      onlineTokens       // tokens.go
	// changeMu serialises the changes of tokens and approvals, so that the limit on live
	// tokens holds and a request is decided once.
	changeMu sync.Mutex
	mux      *http.ServeMux
	root     http.Handler // mux behind the access log
	rot      *rotation
	// lastErasure is when the last KEK erasure finished, Unix seconds (0: never), for the
	// metrics.
	lastErasure atomic.Int64
	// erasureSince is when the erasure schedule first ran on this store without a finished
	// erasure, Unix seconds (0: it has finished one, or has no schedule): the base of the
	// first scheduled erasure (erasure.go).
	erasureSince atomic.Int64

	// jobs is the lifetime of background work (the rotation job); Close ends it.
	jobs       context.Context
	stopJobs   context.CancelFunc
	background sync.WaitGroup
	http       *http.Server

	mode string // SetMode

	authFailures *authFailures
}

// SetMode names the appliance's mode ("development", "production") for /readyz?verbose,
// which lists it as "[+]mode development" before the checks. The line is information for
// the operator; it never makes readiness fail. Call it before Serve.
func (s *Server) SetMode(mode string) { s.mode = mode }

// New returns the server; Serve it on a listener, Close it before the store closes.
func New(opts Options) (*Server, error) {
	if opts.Store == nil || opts.AuditKeyPEM == nil || opts.Gatherer == nil || opts.KEKs == nil || opts.BackupKey == nil || opts.BackupDir == "" {
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
	if opts.MaxTokens <= 0 {
		opts.MaxTokens = 100
	}
	if opts.MaxTokenTTL <= 0 {
		opts.MaxTokenTTL = 365 * 24 * time.Hour
	}
	if opts.ApprovalTTL <= 0 {
		opts.ApprovalTTL = 24 * time.Hour
	}
	s := &Server{opts: opts, tokens: map[[32]byte]Token{}, configNames: map[string]bool{}, mux: http.NewServeMux(),
		authFailures: newAuthFailures(opts.AuthFailureWindow, opts.AuthFailureLimit)}
	for _, t := range opts.Tokens {
		if !validRole(t.Role) {
			return nil, fmt.Errorf("admin: token %q: unknown role %q", t.Name, t.Role)
		}
		if _, dup := s.tokens[t.SHA256]; dup {
			return nil, fmt.Errorf("admin: token %q is configured twice", t.Name)
		}
		s.tokens[t.SHA256] = t
		s.configNames[t.Name] = true
	}
	if err := s.loadOnline(context.Background()); err != nil {
		return nil, err
	}
	s.jobs, s.stopJobs = context.WithCancel(context.Background())
	s.rot = &rotation{s: s, state: RotationStatus{State: StateIdle}}
	last, err := s.LastErasure(context.Background())
	if err != nil {
		return nil, err
	}
	if !last.IsZero() {
		s.lastErasure.Store(last.Unix())
	} else if opts.ErasureInterval > 0 {
		since, err := s.ensureErasureSince(context.Background())
		if err != nil {
			return nil, err
		}
		s.erasureSince.Store(since.Unix())
	} else if err := s.forgetErasureSince(context.Background()); err != nil {
		return nil, err
	}
	if opts.Registerer != nil {
		if err := s.registerMetrics(opts.Registerer); err != nil {
			return nil, err
		}
		if err := opts.Registerer.Register(s.authFailures.count); err != nil {
			return nil, err
		}
	}
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
	scrape := []Role{Operator, SecurityOfficer, MetricsReader}
	audit := []Role{Auditor, SecurityOfficer}
	so := []Role{SecurityOfficer}
	s.mux.HandleFunc("GET /livez", func(w http.ResponseWriter, r *http.Request) { writeText(w, http.StatusOK, "ok\n") })
	s.mux.HandleFunc("GET /readyz", s.readyz)
	if s.opts.CRL != nil {
		s.mux.HandleFunc("GET /crl/{ca}", s.crl)
	}
	for path, h := range s.opts.Callbacks {
		s.mux.Handle("POST "+path, h)
	}
	s.handle("GET /metrics", endpoint{action: "admin.metrics", roles: scrape, handle: s.metrics})
	s.handle("GET /audit/export", endpoint{action: "admin.audit.export", roles: audit, audited: true, handle: s.auditExport})
	s.handle("GET /audit/checkpoints", endpoint{action: "admin.audit.checkpoints", roles: audit, audited: true, handle: s.checkpoints})
	s.handle("GET /audit/public-key", endpoint{action: "admin.audit.public_key", roles: all, audited: true, handle: s.publicKey})
	// A backup holds every phone number and sealed ID number: the security officer's.
	s.handle("POST /backup", endpoint{action: "admin.backup", roles: so, audited: true, handle: s.backup})
	s.handle("GET /kek", endpoint{action: "admin.kek.status", roles: so, audited: true, handle: s.rot.status})
	s.handle("POST /kek/rotate", endpoint{action: "admin.kek.rotate", roles: so, audited: true, handle: s.rot.start})
	s.handle("POST /kek/finish", endpoint{action: "admin.kek.finish", roles: so, audited: true, handle: s.rot.finish})
	s.handle("POST /kek/erase", endpoint{action: "admin.kek.erase", roles: so, audited: true, handle: s.rot.eraseNow})
	s.handle("GET /tokens", endpoint{action: "admin.tokens.list", roles: so, audited: true, handle: s.listTokens})
	s.handle("POST /tokens", endpoint{action: "admin.tokens.create", roles: so, audited: true, handle: s.createToken})
	s.handle("DELETE /tokens/{name}", endpoint{action: "admin.tokens.revoke", roles: so, audited: true, handle: s.revokeToken})
	s.handle("GET /approvals", endpoint{action: "admin.approvals.list", roles: so, audited: true, handle: s.listApprovals})
	s.handle("POST /approvals/{id}/approve", endpoint{action: "admin.approvals.approve", roles: so, audited: true, handle: s.approve})
	s.handle("POST /approvals/{id}/reject", endpoint{action: "admin.approvals.reject", roles: so, audited: true, handle: s.reject})
	if s.opts.SystemClients != nil {
		s.handle("GET /system-clients", endpoint{action: "admin.system_clients.list", roles: ops, audited: true, handle: s.listSystems})
		// Registering and removing grant and withdraw access: the security officer's.
		s.handle("POST /system-clients", endpoint{action: "admin.system_clients.register", roles: so, audited: true, handle: s.registerSystem})
		s.handle("DELETE /system-clients/{name}", endpoint{action: "admin.system_clients.remove", roles: so, audited: true, handle: s.removeSystem})
	}
	if s.opts.IssuingCAs != nil {
		// Irreversible, and every certificate under the CA stops verifying: asked by one
		// security officer, made when a second approves (carevoke.go).
		s.handle("POST /ca/revoke-issuing", endpoint{action: "admin.ca.revoke_issuing", roles: so, audited: true, handle: s.requestIssuingCARevocation})
	}
	if s.opts.Console != nil {
		s.mux.Handle("/console/", s.opts.Console(s))
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
			s.refuseUnauthenticated(w, r, e.action) // authfailures.go
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
	case "admin.backup", "admin.kek.rotate", "admin.kek.finish", "admin.kek.erase", "admin.system_clients.register", "admin.system_clients.remove",
		"admin.tokens.create", "admin.tokens.revoke", "admin.approvals.approve", "admin.approvals.reject", "admin.ca.revoke_issuing":
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

// authenticate finds the caller's token, among the configuration's and then the online
// ones (which must be live: not expired by the clock, not revoked, not awaiting approval).
// The comparison is of SHA-256 digests in a map: what a timing difference could reveal is
// a digest prefix, not the token.
func (s *Server) authenticate(r *http.Request) (Token, bool) {
	token, ok := strings.CutPrefix(r.Header.Get("Authorization"), "Bearer ")
	if !ok || token == "" {
		return Token{}, false
	}
	h := sha256.Sum256([]byte(token))
	if t, ok := s.tokens[h]; ok {
		return t, true
	}
	return s.online.authenticate(h, s.opts.Clock.Now())
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
		s.opts.Log.Error("admin: audit append failed", "action", action, "request_id", store.RequestIDFrom(r.Context()), "err", err)
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
// checks; with ?verbose it lists the mode (SetMode) and each check, and with the token of
// an operator or a security officer also the error (a metrics_reader reads /metrics only).
func (s *Server) readyz(w http.ResponseWriter, r *http.Request) {
	_, verbose := r.URL.Query()["verbose"]
	who, authed := s.authenticate(r)
	authed = authed && (who.Role == Operator || who.Role == SecurityOfficer)
	var b strings.Builder
	if verbose && s.mode != "" {
		fmt.Fprintf(&b, "[+]mode %s\n", s.mode)
	}
	failed := 0
	for _, c := range s.runChecks(r.Context()) {
		switch err := c.err; {
		case err == nil && verbose:
			fmt.Fprintf(&b, "[+]%s ok\n", c.name)
		case err != nil && verbose && authed:
			failed++
			fmt.Fprintf(&b, "[-]%s failed: %v\n", c.name, err)
		case err != nil:
			failed++
			fmt.Fprintf(&b, "[-]%s failed\n", c.name)
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
