package admin

import (
	"bufio"
	"context"
	"crypto/rand"
	"errors"
	"log/slog"
	"net"
	"net/http"
	"time"

	"github.com/hufu-hsm/hufu/store"
)

// Request ids and the access log of the admin surface. The gRPC gate (package daemon) uses
// the same request-id rules, so an id travels unchanged between a caller's logs and ours.

// RequestIDHeader is the header (HTTP) and metadata key (gRPC, lower-cased) that carries a
// request id in both directions: the caller's own id on the way in, the appliance's on the
// way out.
const RequestIDHeader = "X-Request-Id"

// RequestIDs returns the appliance's id for a request, always fresh: it is what audit
// records and the access log call the request, so no caller can choose it (reuse another
// request's, or put data in the audit chain). The caller's own id, if well-formed (1 to 64
// of A-Z a-z 0-9 . _ -), is returned as caller, for the access log line only; anything else
// a caller sends is discarded, not cleaned, since it would be logged verbatim.
func RequestIDs(supplied string) (id, caller string) {
	if ValidRequestID(supplied) {
		caller = supplied
	}
	return rand.Text(), caller
}

// ValidRequestID reports whether s is 1 to 64 of A-Z a-z 0-9 . _ -.
func ValidRequestID(s string) bool {
	if len(s) == 0 || len(s) > 64 {
		return false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		if !('a' <= c && c <= 'z' || 'A' <= c && c <= 'Z' || '0' <= c && c <= '9' || c == '.' || c == '_' || c == '-') {
			return false
		}
	}
	return true
}

// accessEntry is what the access log learns while a request is served: the route's
// authentication fills in the caller's role.
type accessEntry struct {
	caller string
}

type accessKey struct{}

// setCaller records the kind of caller for the access log: an admin role, never the
// token or its holder's name.
func setCaller(r *http.Request, kind string) {
	if e, ok := r.Context().Value(accessKey{}).(*accessEntry); ok {
		e.caller = kind
	}
}

// accessLog wraps next: it gives every request a fresh id (RequestIDs), returns it in the
// response's X-Request-Id, and logs one Info line per
// request, "admin request", with the route pattern, the status, the duration, the kind of
// caller, the peer address and the id. Query strings and tokens are never logged.
func accessLog(log *slog.Logger, next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		start := time.Now()
		id, callerID := RequestIDs(r.Header.Get(RequestIDHeader))
		w.Header().Set(RequestIDHeader, id)
		entry := &accessEntry{caller: "anonymous"}
		// In the context for the store: every audit record written for the request names it.
		ctx := context.WithValue(store.WithRequestID(r.Context(), id), accessKey{}, entry)
		r = r.WithContext(ctx)
		sw := &statusWriter{ResponseWriter: w}
		defer func() {
			route := r.Pattern // set by the ServeMux on this request
			if route == "" {
				route = "unmatched"
			}
			status := sw.status
			if status == 0 {
				status = http.StatusOK
			}
			p := recover()
			if p != nil {
				status = http.StatusInternalServerError
			}
			attrs := []slog.Attr{slog.String("method", r.Method), slog.String("route", route), slog.Int("status", status),
				slog.String("duration", time.Since(start).Round(time.Microsecond).String()),
				slog.String("caller", entry.caller), slog.String("peer", r.RemoteAddr), slog.String("request_id", id)}
			if callerID != "" {
				attrs = append(attrs, slog.String("caller_request_id", callerID))
			}
			log.LogAttrs(ctx, slog.LevelInfo, "admin request", attrs...)
			if p != nil {
				panic(p) // the server handles it, as without this wrapper
			}
		}()
		next.ServeHTTP(sw, r)
	})
}

// statusWriter remembers the status code; Flush and Hijack pass through (audit exports and
// profiles stream), and Unwrap lets http.ResponseController reach the rest.
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

func (w *statusWriter) Flush() {
	if w.status == 0 {
		w.status = http.StatusOK
	}
	if f, ok := w.ResponseWriter.(http.Flusher); ok {
		f.Flush()
	}
}

func (w *statusWriter) Hijack() (net.Conn, *bufio.ReadWriter, error) {
	if h, ok := w.ResponseWriter.(http.Hijacker); ok {
		return h.Hijack()
	}
	return nil, nil, errors.New("admin: the connection cannot be hijacked")
}

func (w *statusWriter) Unwrap() http.ResponseWriter { return w.ResponseWriter }
