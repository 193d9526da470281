package admin

import (
	"net"
	"net/http"
	"strconv"
	"sync"
	"time"

	"github.com/hufu-hsm/hufu/store"
	"github.com/prometheus/client_golang/prometheus"
)

// Failed authentication on the admin surface (a request without a valid bearer token).
// Each used to be a synced audit record, so any local process could flood the log. Now,
// per source address (the host, without the port) and window (Options.AuthFailureWindow):
//
//   - the first failure is audited as before ("no valid token");
//   - the others are counted, and the count is audited once, as admin.auth.failures, at
//     the source's first failure after the window;
//   - from the AuthFailureLimit-th failure in the window on, requests from the source
//     without a valid token are answered 429 with Retry-After, and not audited.
//
// A valid token is served whatever its source's count: on the loopback listener every
// local process shares one address, and a flooding one must not lock the operators out.
// hufu_admin_auth_failures_total{handling} counts the failures by what was done with them
// (audited, counted, limited).

const (
	defaultAuthFailureWindow = time.Minute
	defaultAuthFailureLimit  = 10
	// maxAuthFailureSources bounds the table; beyond it, sources whose window ended go.
	maxAuthFailureSources = 4096
)

type authFailureWindow struct {
	start, end time.Time
	failures   int // in the window, audited or not
	unaudited  int // failures in the window that only the summary records
}

type authFailures struct {
	window time.Duration
	limit  int
	count  *prometheus.CounterVec

	mu       sync.Mutex
	bySource map[string]*authFailureWindow
}

func newAuthFailures(window time.Duration, limit int) *authFailures {
	if window <= 0 {
		window = defaultAuthFailureWindow
	}
	if limit <= 0 {
		limit = defaultAuthFailureLimit
	}
	return &authFailures{window: window, limit: limit, bySource: map[string]*authFailureWindow{},
		count: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "hufu_admin_auth_failures_total",
			Help: "Admin requests without a valid bearer token, by handling: audited (the first per source and window), counted (in the window's summary record), limited (answered 429).",
		}, []string{"handling"})}
}

// authFailureDecision is what to do with one failure.
type authFailureDecision struct {
	audit      bool               // audit this failure
	summary    *authFailureWindow // a finished window whose unaudited failures to audit
	retryAfter time.Duration      // > 0: answer 429
}

// fail records a failure from source at now and decides its handling.
func (a *authFailures) fail(source string, now time.Time) authFailureDecision {
	a.mu.Lock()
	defer a.mu.Unlock()
	var d authFailureDecision
	w := a.bySource[source]
	if w != nil && !now.Before(w.end) {
		if w.unaudited > 0 {
			d.summary = w
		}
		w = nil
	}
	if w == nil {
		if len(a.bySource) >= maxAuthFailureSources {
			a.prune(now)
		}
		w = &authFailureWindow{start: now, end: now.Add(a.window)}
		a.bySource[source] = w
	}
	w.failures++
	switch {
	case w.failures > a.limit:
		d.retryAfter = w.end.Sub(now)
		a.count.WithLabelValues("limited").Inc()
	case w.failures == 1:
		d.audit = true
		a.count.WithLabelValues("audited").Inc()
	default:
		w.unaudited++
		a.count.WithLabelValues("counted").Inc()
	}
	return d
}

// prune drops the sources whose window ended (their unaudited counts stay in the metric).
func (a *authFailures) prune(now time.Time) {
	for src, w := range a.bySource {
		if !now.Before(w.end) {
			delete(a.bySource, src)
		}
	}
}

// sourceHost is the address a request came from, without its port.
func sourceHost(remoteAddr string) string {
	if host, _, err := net.SplitHostPort(remoteAddr); err == nil {
		return host
	}
	return remoteAddr
}

// refuseUnauthenticated answers a request without a valid token: audited, counted or
// limited as above.
func (s *Server) refuseUnauthenticated(w http.ResponseWriter, r *http.Request, action string) {
	if retryAfter := s.countAuthFailure(r, action); retryAfter > 0 {
		w.Header().Set("Retry-After", strconv.Itoa(int(retryAfter.Round(time.Second)/time.Second)+1))
		writeText(w, http.StatusTooManyRequests, "too many requests without a valid admin token from this address; retry later\n")
		return
	}
	w.Header().Set("WWW-Authenticate", `Bearer realm="hufu-admin"`)
	writeText(w, http.StatusUnauthorized, "a valid admin bearer token is required\n")
}

// countAuthFailure records one failure from r's source (audited, counted or limited, as
// above) and returns how long the source must wait, 0 when it is not limited. The console's
// failed sign-ins count here too (ConsoleHost.RefuseSignIn).
func (s *Server) countAuthFailure(r *http.Request, action string) time.Duration {
	source := sourceHost(r.RemoteAddr)
	d := s.authFailures.fail(source, s.opts.Clock.Now())
	if d.summary != nil {
		// Best effort: the failures it sums were refused whatever happens to their summary.
		_ = s.opts.Store.Append(r.Context(), store.Event{Actor: "admin:unknown", Action: "admin.auth.failures", Subject: "source:" + source,
			Outcome: store.OutcomeDenied, Details: map[string]string{"remote": source, "unaudited_failures": strconv.Itoa(d.summary.unaudited),
				"failures":     strconv.Itoa(d.summary.failures),
				"window_start": d.summary.start.UTC().Format(time.RFC3339), "window_end": d.summary.end.UTC().Format(time.RFC3339)}})
	}
	if d.retryAfter > 0 {
		return d.retryAfter
	}
	if d.audit {
		s.audit(r, Token{}, action, store.OutcomeDenied, map[string]string{"reason": "no valid token"})
	}
	return 0
}
