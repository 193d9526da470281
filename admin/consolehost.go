package admin

import (
	"context"
	"crypto/sha256"
	"net/http"
	"time"
)

// ConsoleHost is what the admin surface lends the operator console (package
// admin/console, mounted at /console/ through Options.Console): its tokens and roles, its
// rate limit on failed authentication, its readiness checks and its audit records, so that
// a person at the console is authenticated, limited and recorded exactly as the same
// person calling the admin endpoints with a bearer token.
type ConsoleHost interface {
	// AuthenticateToken finds a live token (configured or online) as a bearer token would.
	AuthenticateToken(token string) (Token, bool)
	// TokenByHash finds a live token by its SHA-256: a console session keeps only the hash
	// and re-checks it on every request, so a revoked or expired token ends its sessions
	// at once.
	TokenByHash(sum [32]byte) (Token, bool)
	// RefuseSignIn counts a failed sign-in from r's source as a request without a valid
	// token (authfailures.go: audited, counted or limited) and returns how long the source
	// must wait, 0 when it is not limited.
	RefuseSignIn(r *http.Request, action string) (retryAfter time.Duration)
	// Readiness runs the readiness checks (each bounded by Options.CheckTimeout).
	Readiness(ctx context.Context) []CheckResult
	// Audit appends one record of an admin action by who (actor "admin:<name>").
	Audit(r *http.Request, who Token, action, outcome string, details map[string]string) error
	// AuditKeyPEM is the public key that verifies audit checkpoints.
	AuditKeyPEM() ([]byte, error)
	// Tokens lists the admin tokens as GET /tokens does.
	Tokens(ctx context.Context) ([]TokenInfo, error)
	// SystemClients lists the system clients as GET /system-clients does (nil without
	// Options.SystemClients).
	SystemClients(ctx context.Context) ([]SystemClient, error)
}

var _ ConsoleHost = (*Server)(nil)

// CheckResult is one readiness check's outcome.
type CheckResult struct {
	Name string
	Err  error
}

// AuthenticateToken implements ConsoleHost.
func (s *Server) AuthenticateToken(token string) (Token, bool) {
	if token == "" {
		return Token{}, false
	}
	return s.TokenByHash(sha256.Sum256([]byte(token)))
}

// TokenByHash implements ConsoleHost.
func (s *Server) TokenByHash(sum [32]byte) (Token, bool) {
	if t, ok := s.tokens[sum]; ok {
		return t, true
	}
	return s.online.authenticate(sum, s.opts.Clock.Now())
}

// RefuseSignIn implements ConsoleHost.
func (s *Server) RefuseSignIn(r *http.Request, action string) time.Duration {
	return s.countAuthFailure(r, action)
}

// Readiness implements ConsoleHost.
func (s *Server) Readiness(ctx context.Context) []CheckResult {
	var out []CheckResult
	for _, c := range s.runChecks(ctx) {
		out = append(out, CheckResult{Name: c.name, Err: c.err})
	}
	return out
}

// Audit implements ConsoleHost.
func (s *Server) Audit(r *http.Request, who Token, action, outcome string, details map[string]string) error {
	return s.audit(r, who, action, outcome, details)
}

// AuditKeyPEM implements ConsoleHost.
func (s *Server) AuditKeyPEM() ([]byte, error) { return s.opts.AuditKeyPEM() }

// SystemClients implements ConsoleHost.
func (s *Server) SystemClients(ctx context.Context) ([]SystemClient, error) {
	if s.opts.SystemClients == nil {
		return nil, nil
	}
	list, err := s.opts.SystemClients.List(ctx)
	for i := range list {
		list[i].Desks = DesksOf(list[i].Services)
	}
	return list, err
}
