package webhook

import (
	"errors"

	"github.com/prometheus/client_golang/prometheus"
)

// metrics of the providers. Several providers share one registry, so the collectors are
// registered once and each provider uses its own label value. Labels are provider names,
// operations and outcome words only: never phone numbers, names, ID or card numbers, codes,
// tokens or payment references.
type metrics struct {
	requests *prometheus.CounterVec   // provider, operation, outcome
	attempts *prometheus.CounterVec   // provider, operation, result
	duration *prometheus.HistogramVec // provider, operation
	circuit  *prometheus.GaugeVec     // provider
	inbound  *prometheus.CounterVec   // provider, operation, outcome (ok, failed)
}

// Outcomes of a call (hufu_provider_requests_total{outcome}).
const (
	outcomeOK          = "ok"           // result ok
	outcomeRefused     = "refused"      // a decision: mismatch, rejected, declined, unknown_session, pending
	outcomeFailed      = "failed"       // no usable answer within the attempts and the deadline
	outcomeCircuitOpen = "circuit_open" // failed fast without asking the gateway
	outcomeCanceled    = "canceled"     // the caller's context ended first
)

// Results of one attempt (hufu_provider_attempts_total{result}).
const (
	attemptOK           = "ok"
	attemptTimeout      = "timeout"        // the per-attempt timeout passed
	attemptNetwork      = "network"        // connection or transport failure
	attemptTLS          = "tls"            // the gateway's certificate does not verify
	attemptHTTP5xx      = "http_5xx"       // 5xx, 408 or 429: the gateway asks for a retry
	attemptHTTP4xx      = "http_4xx"       // other non-200: a misconfiguration
	attemptBadSignature = "bad_signature"  // missing or wrong response signature
	attemptStale        = "stale_response" // response timestamp outside the window
	attemptMalformed    = "malformed"      // signed, but not the contract's JSON
	attemptUnavailable  = "unavailable"    // the gateway answered result "unavailable"
	attemptCanceled     = "canceled"       // the caller's context ended during the attempt
)

func newMetrics(reg prometheus.Registerer) (*metrics, error) {
	m := &metrics{
		requests: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "hufu_provider_requests_total",
			Help: "Calls to webhook providers, by provider, operation and outcome (ok, refused, failed, circuit_open, canceled).",
		}, []string{"provider", "operation", "outcome"}),
		attempts: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "hufu_provider_attempts_total",
			Help: "HTTP attempts to webhook providers, by provider, operation and result (ok, timeout, network, tls, http_5xx, http_4xx, bad_signature, stale_response, malformed, unavailable, canceled).",
		}, []string{"provider", "operation", "result"}),
		duration: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name:    "hufu_provider_request_duration_seconds",
			Help:    "Duration of calls to webhook providers, retries and waits included, by provider and operation.",
			Buckets: []float64{.005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5, 10, 30},
		}, []string{"provider", "operation"}),
		circuit: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name: "hufu_provider_circuit_state",
			Help: "Circuit breaker state of each webhook provider: 0 closed, 1 half-open (probing), 2 open (failing fast).",
		}, []string{"provider"}),
		inbound: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "hufu_provider_inbound_requests_total",
			Help: "Requests webhook providers sent to hufu (payment.notify), by provider, operation and outcome (ok, failed: refused signature, timestamp or nonce, malformed, or not recorded).",
		}, []string{"provider", "operation", "outcome"}),
	}
	var err error
	if m.requests, err = register(reg, m.requests); err != nil {
		return nil, err
	}
	if m.attempts, err = register(reg, m.attempts); err != nil {
		return nil, err
	}
	if m.duration, err = register(reg, m.duration); err != nil {
		return nil, err
	}
	if m.circuit, err = register(reg, m.circuit); err != nil {
		return nil, err
	}
	if m.inbound, err = register(reg, m.inbound); err != nil {
		return nil, err
	}
	return m, nil
}

// register registers c, or returns the identical collector another provider registered.
func register[C prometheus.Collector](reg prometheus.Registerer, c C) (C, error) {
	if reg == nil {
		return c, nil
	}
	err := reg.Register(c)
	var already prometheus.AlreadyRegisteredError
	if errors.As(err, &already) {
		if existing, ok := already.ExistingCollector.(C); ok {
			return existing, nil
		}
	}
	return c, err
}
