package console

import (
	"context"
	"crypto/rand"
	"crypto/sha256"
	"crypto/subtle"
	"embed"
	"errors"
	"fmt"
	"html/template"
	"io/fs"
	"log/slog"
	"net"
	"net/http"
	"net/netip"
	"strconv"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/hufu-hsm/hufu/admin"
	hufuv1 "github.com/hufu-hsm/hufu/api/hufu/v1"
	"github.com/hufu-hsm/hufu/daemon/authn"
	"github.com/hufu-hsm/hufu/store"
)

//go:embed templates/*.html
var templateFS embed.FS

//go:embed static
var staticFS embed.FS

// Options configure the console. Host, Store and Gatherer are required; a desk left nil
// is not shown.
type Options struct {
	Host admin.ConsoleHost
	// Store is the appliance's store: the audit log to browse, export and verify.
	Store    *store.Store
	Gatherer prometheus.Gatherer
	// Review is the certificate review desk, the same server the gRPC server serves.
	Review hufuv1.ReviewServiceServer
	// Reconciliation is the corporate-transfer desk, the same server the gRPC server serves.
	Reconciliation hufuv1.ReconciliationServiceServer
	// Payments, AfterSales, Invoices and Support are the offline payment, after-sales,
	// invoicing and support desks, the same servers the gRPC server serves.
	Payments   hufuv1.PaymentDeskServiceServer
	AfterSales hufuv1.AfterSalesDeskServiceServer
	Invoices   hufuv1.InvoiceDeskServiceServer
	Support    hufuv1.SupportDeskServiceServer
	// Openings are the bid openings, read as an operator sees them.
	Openings Openings
	// SessionTTL bounds a session's life (default 8h); IdleTimeout ends a session left
	// alone (default 30m); MaxSessions bounds the live sessions (default 200: the oldest
	// goes).
	SessionTTL  time.Duration
	IdleTimeout time.Duration
	MaxSessions int
	Clock       interface{ Now() time.Time }
	Log         *slog.Logger
}

// Openings is what the openings screen reads, as an operator (every system's openings).
type Openings interface {
	// List lists every opening, newest first, a page at a time.
	List(ctx context.Context, size int, cursor string) ([]*hufuv1.Opening, string, error)
	// Get returns one opening with its counts (registered, consented, released, early
	// attempts), brought up to date with the clock.
	Get(ctx context.Context, caller authn.Caller, id string) (*hufuv1.Opening, error)
	// Report returns the signed report of a closed opening (package bidopening).
	Report(ctx context.Context, caller authn.Caller, id string) ([]byte, error)
}

const (
	sessionCookie = "__Host-hufu-console"
	signInCookie  = "__Host-hufu-signin"
	base          = "/console/"
)

// Console is the operator console's handler.
type Console struct {
	opts  Options
	mux   *http.ServeMux
	pages map[string]*template.Template

	mu       sync.Mutex
	sessions map[[32]byte]*session
}

type session struct {
	who      admin.Token
	csrf     string
	created  time.Time
	lastSeen time.Time
}

// New returns the console.
func New(opts Options) (*Console, error) {
	if opts.Host == nil || opts.Store == nil || opts.Gatherer == nil {
		return nil, errors.New("console: missing dependency")
	}
	if opts.SessionTTL <= 0 {
		opts.SessionTTL = 8 * time.Hour
	}
	if opts.IdleTimeout <= 0 {
		opts.IdleTimeout = 30 * time.Minute
	}
	if opts.MaxSessions <= 0 {
		opts.MaxSessions = 200
	}
	if opts.Clock == nil {
		opts.Clock = systemClock{}
	}
	if opts.Log == nil {
		opts.Log = slog.Default()
	}
	c := &Console{opts: opts, mux: http.NewServeMux(), sessions: map[[32]byte]*session{}}
	if err := c.parseTemplates(); err != nil {
		return nil, err
	}
	c.routes()
	return c, nil
}

type systemClock struct{}

func (systemClock) Now() time.Time { return time.Now() }

// screen is one page or action: its audit action when refused, and the roles allowed.
type screen struct {
	action string
	roles  []admin.Role
	handle func(w http.ResponseWriter, r *http.Request, s *session)
}

var (
	anyone   = []admin.Role{admin.Operator, admin.Auditor, admin.SecurityOfficer}
	desk     = []admin.Role{admin.Operator}
	auditors = []admin.Role{admin.Auditor, admin.SecurityOfficer}
	ops      = []admin.Role{admin.Operator, admin.SecurityOfficer}
)

func (c *Console) routes() {
	static, _ := fs.Sub(staticFS, "static")
	c.mux.Handle("GET /console/static/", http.StripPrefix("/console/static/", http.FileServerFS(static)))
	c.mux.HandleFunc("GET /console/signin", c.signInPage)
	c.mux.HandleFunc("POST /console/signin", c.signIn)
	c.mux.HandleFunc("POST /console/signout", c.signOut)
	c.page("GET /console/{$}", screen{"admin.console.home", anyone, c.home})
	if c.opts.Review != nil {
		c.page("GET /console/review", screen{"admin.console.review", desk, c.reviewQueue})
		c.page("GET /console/review/{id}", screen{"admin.console.review", desk, c.reviewOrder})
		c.page("GET /console/review/{id}/attachment/{n}", screen{"admin.console.review", desk, c.reviewAttachment})
		c.page("POST /console/review/{id}/approve", screen{"admin.console.review.approve", desk, c.reviewApprove})
		c.page("POST /console/review/{id}/reject", screen{"admin.console.review.reject", desk, c.reviewReject})
	}
	if c.opts.Reconciliation != nil {
		c.page("GET /console/reconcile", screen{"admin.console.reconcile", desk, c.reconcile})
		c.page("POST /console/reconcile/import", screen{"admin.console.reconcile.import", desk, c.reconcileImport})
		c.page("POST /console/reconcile/{id}/confirm", screen{"admin.console.reconcile.confirm", desk, c.reconcileConfirm})
		c.page("POST /console/reconcile/{id}/reject", screen{"admin.console.reconcile.reject", desk, c.reconcileReject})
	}
	if c.opts.Payments != nil {
		c.page("GET /console/payments", screen{"admin.console.payments", desk, c.paymentsList})
		c.page("GET /console/payments/{id}", screen{"admin.console.payments", desk, c.paymentPage})
		c.page("POST /console/payments/{id}/confirm", screen{"admin.console.payments.confirm", desk, c.paymentConfirm})
		c.page("POST /console/payments/{id}/reject", screen{"admin.console.payments.reject", desk, c.paymentReject})
		c.page("POST /console/payments/{id}/payout", screen{"admin.console.payments.payout", desk, c.paymentPayout})
	}
	if c.opts.AfterSales != nil {
		c.page("GET /console/aftersales", screen{"admin.console.aftersales", desk, c.afterSalesList})
		c.page("GET /console/aftersales/{id}", screen{"admin.console.aftersales", desk, c.afterSalesCase})
		c.page("GET /console/aftersales/{id}/attachment/{att}", screen{"admin.console.aftersales", desk, c.afterSalesAttachment})
		c.page("POST /console/aftersales/{id}/refund", screen{"admin.console.aftersales.refund", desk, c.afterSalesRefund})
		c.page("POST /console/aftersales/{id}/settle", screen{"admin.console.aftersales.settle", desk, c.afterSalesSettle})
	}
	if c.opts.Invoices != nil {
		c.page("GET /console/invoices", screen{"admin.console.invoices", desk, c.invoicesList})
		c.page("GET /console/invoices/{id}", screen{"admin.console.invoices", desk, c.invoicePage})
		c.page("POST /console/invoices/{id}/issue", screen{"admin.console.invoices.issue", desk, c.invoiceIssue})
		c.page("POST /console/invoices/{id}/reject", screen{"admin.console.invoices.reject", desk, c.invoiceReject})
	}
	if c.opts.Support != nil {
		c.page("GET /console/feedback", screen{"admin.console.feedback", desk, c.feedbackList})
		c.page("GET /console/feedback/{id}", screen{"admin.console.feedback", desk, c.feedbackPage})
		c.page("GET /console/feedback/{id}/attachment/{att}", screen{"admin.console.feedback", desk, c.feedbackAttachment})
		c.page("POST /console/feedback/{id}/reply", screen{"admin.console.feedback.reply", desk, c.feedbackReply})
		c.page("POST /console/feedback/{id}/close", screen{"admin.console.feedback.close", desk, c.feedbackClose})
	}
	c.page("GET /console/access", screen{"admin.console.access", ops, c.access})
	c.page("GET /console/audit", screen{"admin.audit.browse", auditors, c.auditBrowse})
	c.page("GET /console/audit/export", screen{"admin.audit.export", auditors, c.auditExport})
	c.page("POST /console/audit/verify", screen{"admin.audit.verify", auditors, c.auditVerify})
	if c.opts.Openings != nil {
		c.page("GET /console/openings", screen{"admin.console.openings", desk, c.openingsList})
		c.page("GET /console/openings/{id}", screen{"admin.console.openings", desk, c.openingPage})
		c.page("GET /console/openings/{id}/progress", screen{"admin.console.openings", desk, c.openingProgress})
		c.page("GET /console/openings/{id}/report", screen{"admin.console.openings.report", desk, c.openingReport})
	}
}

// ServeHTTP serves the console with its security headers on every answer.
func (c *Console) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	h := w.Header()
	h.Set("Content-Security-Policy", "default-src 'self'; img-src 'self' data:; object-src 'none'; base-uri 'none'; form-action 'self'; frame-ancestors 'none'")
	h.Set("X-Frame-Options", "DENY")
	h.Set("X-Content-Type-Options", "nosniff")
	// same-origin, not no-referrer: with no-referrer a browser sends "Origin: null" on a
	// form POST, and sameOrigin could not tell ours from a sandboxed frame's.
	h.Set("Referrer-Policy", "same-origin")
	h.Set("Cache-Control", "no-store")
	if r.TLS == nil {
		// A Secure cookie over plain HTTP would be sent in clear on the next request.
		http.Error(w, "控制台只通过 TLS 提供：请在配置中设置 admin.cert_file 与 admin.key_file。\nThe console is served over TLS only (admin.cert_file).", http.StatusForbidden)
		return
	}
	if r.Method == http.MethodPost {
		if !sameOrigin(r) {
			http.Error(w, "cross-origin request refused", http.StatusForbidden)
			return
		}
		// The largest forms are an invoice document (maxInvoiceDocument) and a bank
		// statement (maxStatement), with their multipart framing.
		r.Body = http.MaxBytesReader(w, r.Body, max(maxStatement, maxInvoiceDocument)+64<<10)
	}
	c.mux.ServeHTTP(w, r)
}

// sameOrigin refuses a POST whose browser says it comes from another site. CSRF tokens are
// the defence; this is a second one that costs nothing.
func sameOrigin(r *http.Request) bool {
	if o := r.Header.Get("Origin"); o != "" && o != "https://"+r.Host {
		return false
	}
	switch r.Header.Get("Sec-Fetch-Site") {
	case "", "same-origin", "none":
		return true
	}
	return false
}

// page registers a screen behind the session check, the role check and, for a POST, the
// CSRF check.
func (c *Console) page(pattern string, sc screen) {
	c.mux.HandleFunc(pattern, func(w http.ResponseWriter, r *http.Request) {
		s := c.session(r)
		if s == nil {
			if r.Method == http.MethodGet && r.Header.Get("Accept") != "application/json" {
				http.Redirect(w, r, base+"signin", http.StatusSeeOther)
				return
			}
			http.Error(w, "sign in first", http.StatusUnauthorized)
			return
		}
		if !allowed(s.who.Role, sc.roles) {
			_ = c.opts.Host.Audit(r, s.who, sc.action, store.OutcomeDenied, map[string]string{"reason": "role not allowed", "via": "console"})
			c.render(w, r, http.StatusForbidden, "error", s, pageData{Title: "无权访问", Message: fmt.Sprintf("角色 %s 不能使用此页面。", roleName(s.who.Role))})
			return
		}
		if r.Method == http.MethodPost && !c.checkCSRF(r, s) {
			_ = c.opts.Host.Audit(r, s.who, sc.action, store.OutcomeDenied, map[string]string{"reason": "missing or wrong CSRF token", "via": "console"})
			c.render(w, r, http.StatusForbidden, "error", s, pageData{Title: "请求被拒绝", Message: "表单已失效（CSRF 校验失败），请返回后重试。"})
			return
		}
		sc.handle(w, r, s)
	})
}

func allowed(role admin.Role, roles []admin.Role) bool {
	for _, x := range roles {
		if x == role {
			return true
		}
	}
	return false
}

// may reports whether s's role may use the screens of roles: what the navigation shows.
func (s *session) may(roles []admin.Role) bool { return allowed(s.who.Role, roles) }

func (c *Console) checkCSRF(r *http.Request, s *session) bool {
	got := r.PostFormValue("csrf")
	return got != "" && subtle.ConstantTimeCompare([]byte(got), []byte(s.csrf)) == 1
}

// session returns the live session of r's cookie, or nil; it ends a session that is idle,
// too old, or whose token is no longer live.
func (c *Console) session(r *http.Request) *session {
	ck, err := r.Cookie(sessionCookie)
	if err != nil || ck.Value == "" {
		return nil
	}
	id := sha256.Sum256([]byte(ck.Value))
	now := c.opts.Clock.Now()
	c.mu.Lock()
	defer c.mu.Unlock()
	s := c.sessions[id]
	if s == nil {
		return nil
	}
	who, live := c.opts.Host.TokenByHash(s.who.SHA256)
	if !live || who.Role != s.who.Role || now.Sub(s.lastSeen) >= c.opts.IdleTimeout || now.Sub(s.created) >= c.opts.SessionTTL {
		delete(c.sessions, id)
		return nil
	}
	s.lastSeen = now
	return s
}

func randomText() string { return rand.Text() + rand.Text() }

func (c *Console) signInPage(w http.ResponseWriter, r *http.Request) {
	if c.session(r) != nil {
		http.Redirect(w, r, base, http.StatusSeeOther)
		return
	}
	c.renderSignIn(w, r, http.StatusOK, "")
}

// renderSignIn shows the form with a fresh sign-in CSRF token bound to a cookie: a page
// of another site cannot sign a browser in under its own token.
func (c *Console) renderSignIn(w http.ResponseWriter, r *http.Request, code int, msg string) {
	tok := randomText()
	http.SetCookie(w, &http.Cookie{Name: signInCookie, Value: tok, Path: "/", MaxAge: 600, HttpOnly: true, Secure: true, SameSite: http.SameSiteStrictMode})
	c.render(w, r, code, "signin", nil, pageData{Title: "登录", CSRF: tok, Message: msg})
}

func (c *Console) signIn(w http.ResponseWriter, r *http.Request) {
	ck, err := r.Cookie(signInCookie)
	form := r.PostFormValue("csrf")
	if err != nil || form == "" || subtle.ConstantTimeCompare([]byte(form), []byte(ck.Value)) != 1 {
		c.renderSignIn(w, r, http.StatusForbidden, "登录表单已失效，请重新输入。")
		return
	}
	who, ok := c.opts.Host.AuthenticateToken(r.PostFormValue("token"))
	if ok && who.Role == admin.MetricsReader {
		_ = c.opts.Host.Audit(r, who, "admin.console.signin", store.OutcomeDenied, map[string]string{"reason": "role not allowed"})
		c.renderSignIn(w, r, http.StatusForbidden, "此令牌的角色（metrics_reader）不能登录控制台。")
		return
	}
	if !ok {
		if retry := c.opts.Host.RefuseSignIn(r, "admin.console.signin"); retry > 0 {
			w.Header().Set("Retry-After", strconv.Itoa(int(retry.Round(time.Second)/time.Second)+1))
			c.renderSignIn(w, r, http.StatusTooManyRequests, "失败次数过多，请稍后再试。")
			return
		}
		c.renderSignIn(w, r, http.StatusUnauthorized, "令牌无效、已过期或已吊销。")
		return
	}
	if err := c.opts.Host.Audit(r, who, "admin.console.signin", store.OutcomeOK, nil); err != nil {
		c.renderSignIn(w, r, http.StatusServiceUnavailable, "审计日志无法写入，拒绝登录。")
		return
	}
	value := randomText()
	now := c.opts.Clock.Now()
	c.mu.Lock()
	if len(c.sessions) >= c.opts.MaxSessions {
		c.evictOldest()
	}
	c.sessions[sha256.Sum256([]byte(value))] = &session{who: who, csrf: randomText(), created: now, lastSeen: now}
	c.mu.Unlock()
	http.SetCookie(w, &http.Cookie{Name: signInCookie, Value: "", Path: "/", MaxAge: -1, HttpOnly: true, Secure: true, SameSite: http.SameSiteStrictMode})
	http.SetCookie(w, &http.Cookie{Name: sessionCookie, Value: value, Path: "/", HttpOnly: true, Secure: true, SameSite: http.SameSiteStrictMode})
	http.Redirect(w, r, base, http.StatusSeeOther)
}

// evictOldest drops the least recently used session; c.mu is held.
func (c *Console) evictOldest() {
	var oldest [32]byte
	var at time.Time
	for id, s := range c.sessions {
		if at.IsZero() || s.lastSeen.Before(at) {
			oldest, at = id, s.lastSeen
		}
	}
	delete(c.sessions, oldest)
}

func (c *Console) signOut(w http.ResponseWriter, r *http.Request) {
	s := c.session(r)
	if s == nil {
		http.Redirect(w, r, base+"signin", http.StatusSeeOther)
		return
	}
	if !c.checkCSRF(r, s) {
		c.render(w, r, http.StatusForbidden, "error", s, pageData{Title: "请求被拒绝", Message: "表单已失效（CSRF 校验失败），请返回后重试。"})
		return
	}
	ck, _ := r.Cookie(sessionCookie)
	c.mu.Lock()
	delete(c.sessions, sha256.Sum256([]byte(ck.Value)))
	c.mu.Unlock()
	_ = c.opts.Host.Audit(r, s.who, "admin.console.signout", store.OutcomeOK, nil)
	http.SetCookie(w, &http.Cookie{Name: sessionCookie, Value: "", Path: "/", MaxAge: -1, HttpOnly: true, Secure: true, SameSite: http.SameSiteStrictMode})
	http.Redirect(w, r, base+"signin", http.StatusSeeOther)
}

// caller is the operator as the desks see them.
func caller(r *http.Request, s *session) authn.Caller {
	c := authn.Caller{Admin: s.who.Name}
	if ap, err := netip.ParseAddrPort(r.RemoteAddr); err == nil {
		c.Peer = net.TCPAddrFromAddrPort(ap)
	}
	return c
}

func roleName(r admin.Role) string {
	switch r {
	case admin.Operator:
		return "操作员 operator"
	case admin.Auditor:
		return "审计员 auditor"
	case admin.SecurityOfficer:
		return "安全员 security_officer"
	}
	return string(r)
}
