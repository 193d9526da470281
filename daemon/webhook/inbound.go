package webhook

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strconv"
	"sync"
	"time"
)

// OpPaymentNotify is the one operation a gateway sends to hufu: a payment completed
// (docs/providers.md §4, "payment.notify"). It is POSTed to the admin listener at
// /providers/<provider>/payment.notify.
const OpPaymentNotify = "payment.notify"

// maxInboundBody bounds an inbound request's body; a notification is a few hundred bytes.
const maxInboundBody = 16 << 10

// InboundFunc decides an inbound request whose signature, timestamp and nonce verified: it
// gets the body and returns the JSON object to answer with, which the handler signs. An
// error of kind ErrInboundInvalid is answered 400 (the gateway must not retry it); any other
// error 503 (the gateway retries later).
type InboundFunc func(ctx context.Context, body []byte) (answer any, err error)

// ErrInboundInvalid marks an inbound request that is well signed but malformed.
var ErrInboundInvalid = errors.New("webhook: malformed inbound request")

// inboundNonces remembers the nonces of verified inbound requests for twice the clock
// window: an older request fails the timestamp check anyway, so a replay inside the window
// is refused and memory stays bounded by the rate the gateway may send at.
type inboundNonces struct {
	mu   sync.Mutex
	seen map[string]time.Time
}

// fresh records nonce at now and reports whether it had not been seen within keep.
func (n *inboundNonces) fresh(nonce string, now time.Time, keep time.Duration) bool {
	n.mu.Lock()
	defer n.mu.Unlock()
	if n.seen == nil {
		n.seen = map[string]time.Time{}
	}
	for k, at := range n.seen {
		if now.Sub(at) > keep {
			delete(n.seen, k)
		}
	}
	if _, dup := n.seen[nonce]; dup {
		return false
	}
	n.seen[nonce] = now
	return true
}

// Inbound returns the handler of an operation the gateway sends to hufu, checked exactly as
// the contract has the gateway check hufu's requests (docs/providers.md §2): the four
// signed headers, the HMAC-SM3 signature under this provider's key (before anything else is
// believed), the timestamp within ±max_clock_skew and a nonce not seen in twice that. A
// request that fails is answered 401 and decide is not called. The answer is signed with
// direction RESPONSE, bound to the request's nonce and request id, as the gateway signs its
// answers to hufu.
func (p *Provider) Inbound(op string, decide InboundFunc) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		outcome := outcomeFailed
		defer func() { p.m.inbound.WithLabelValues(p.name, op, outcome).Inc() }()
		if r.Method != http.MethodPost {
			w.Header().Set("Allow", http.MethodPost)
			http.Error(w, "POST only", http.StatusMethodNotAllowed)
			return
		}
		body, err := io.ReadAll(http.MaxBytesReader(w, r.Body, maxInboundBody))
		if err != nil {
			http.Error(w, fmt.Sprintf("body: at most %d bytes", maxInboundBody), http.StatusRequestEntityTooLarge)
			return
		}
		signed := Signed{Direction: DirectionRequest, Operation: op, Timestamp: r.Header.Get(HeaderTimestamp),
			Nonce: r.Header.Get(HeaderNonce), RequestID: r.Header.Get(HeaderRequestID)}
		now := p.clock.Now()
		window := p.opts.MaxClockSkew.Std()
		if err := Verify(p.key, signed, body, r.Header.Get(HeaderSignature), now, window); err != nil {
			p.log.Warn("inbound request refused", "provider", p.name, "operation", op, "request_id", safeID(signed.RequestID), "err", err)
			http.Error(w, err.Error(), http.StatusUnauthorized)
			return
		}
		if !p.inNonces.fresh(signed.Nonce, now, 2*window) {
			p.log.Warn("inbound request refused: replayed nonce", "provider", p.name, "operation", op, "request_id", signed.RequestID)
			http.Error(w, "webhook: replayed nonce", http.StatusUnauthorized)
			return
		}
		answer, err := decide(r.Context(), body)
		switch {
		case errors.Is(err, ErrInboundInvalid):
			http.Error(w, err.Error(), http.StatusBadRequest)
			return
		case err != nil:
			p.log.Error("inbound request failed", "provider", p.name, "operation", op, "request_id", signed.RequestID, "err", err)
			http.Error(w, "hufu could not record the request; send it again later", http.StatusServiceUnavailable)
			return
		}
		out, err := json.Marshal(answer)
		if err != nil {
			http.Error(w, "hufu could not encode its answer", http.StatusInternalServerError)
			return
		}
		resp := Signed{Direction: DirectionResponse, Operation: op, Timestamp: strconv.FormatInt(p.clock.Now().Unix(), 10),
			Nonce: signed.Nonce, RequestID: signed.RequestID}
		w.Header().Set("Content-Type", "application/json; charset=utf-8")
		w.Header().Set(HeaderTimestamp, resp.Timestamp)
		w.Header().Set(HeaderSignature, Sign(p.key, resp, out))
		w.WriteHeader(http.StatusOK)
		_, _ = w.Write(out)
		outcome = outcomeOK
	})
}

// safeID is a request id as logged: only a well-formed one, since an unverified header is
// whatever the sender chose to put in a log line.
func safeID(id string) string {
	if requestIDRE.MatchString(id) {
		return id
	}
	return "(malformed)"
}
