package webhook

import (
	"bytes"
	"context"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	mathrand "math/rand/v2"
	"net/http"
	"net/url"
	"regexp"
	"strconv"
	"time"

	"github.com/prometheus/client_golang/prometheus"
)

// Provider is one configured gateway. It implements every provider interface of the daemon
// (accounts.SMSSender, accounts.WeChat, accounts.Carrier, identity.Verifier,
// certs.Payments); a deployment uses one Provider per gateway it is pointed at. It is safe
// for concurrent use.
type Provider struct {
	name    string
	base    *url.URL
	key     secretKey
	opts    Options
	clock   Clock
	client  *http.Client
	breaker *breaker
	m       *metrics
	log     *slog.Logger
	// inNonces are the nonces of inbound requests (Inbound) seen within twice the window.
	inNonces inboundNonces
}

// ErrUnavailable: the gateway gave no usable answer within the attempts and the caller's
// deadline. The error wrapping it names the provider, operation, request id, the number of
// attempts and the last failure.
var ErrUnavailable = errors.New("webhook: provider unavailable")

var providerNameRE = regexp.MustCompile(`^[a-z][a-z0-9_-]{0,31}$`)

// New makes the provider name (a metrics label and the key under which its options are
// reported, "providers.<name>") from opts, whose zero fields take their defaults. It reads
// the key and CA files; every problem is reported with its YAML key path. reg, if not nil,
// gets the metrics (shared by all providers on one registry).
func New(name string, opts Options, reg prometheus.Registerer, log *slog.Logger) (*Provider, error) {
	if !providerNameRE.MatchString(name) {
		return nil, fmt.Errorf("webhook: provider name %q: want 1-32 of [a-z0-9_-], starting with a letter", name)
	}
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	prefix := "providers." + name
	opts.EnsureDefaults()
	if ps := opts.Validate(prefix); ps != nil {
		return nil, ps
	}
	base, _ := parseBaseURL(opts.URL) // checked by Validate
	key, err := readKey(opts.KeyFile)
	if err != nil {
		return nil, Problems{{Path: prefix + ".key_file", Message: err.Error()}}
	}
	if keyFileTooOpen(opts.KeyFile) {
		log.Warn("provider key file can be read by other users; chmod 600 it", "provider", name, "key_file", opts.KeyFile)
	}
	tlsConf := tlsConfig(nil)
	if opts.CAFile != "" {
		cas, err := readCAs(opts.CAFile)
		if err != nil {
			return nil, Problems{{Path: prefix + ".ca_file", Message: err.Error()}}
		}
		tlsConf = tlsConfig(cas)
	}
	m, err := newMetrics(reg)
	if err != nil {
		return nil, fmt.Errorf("webhook: registering metrics: %w", err)
	}
	p := &Provider{
		name: name, base: base, key: key, opts: opts, clock: opts.Clock, m: m, log: log,
		client: &http.Client{
			Transport: &http.Transport{
				Proxy:               http.ProxyFromEnvironment,
				TLSClientConfig:     tlsConf,
				ForceAttemptHTTP2:   true,
				TLSHandshakeTimeout: opts.Timeout.Std(),
				MaxIdleConnsPerHost: 16,
				IdleConnTimeout:     90 * time.Second,
			},
			// A redirect would send the signed body to a path it was not signed for, and
			// a gateway has no reason to redirect: its answer is refused instead.
			CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse },
		},
	}
	for _, op := range Operations {
		// Zero series exist from the start, so a dashboard shows a provider before it fails.
		m.requests.WithLabelValues(name, op, outcomeOK)
		m.requests.WithLabelValues(name, op, outcomeFailed)
	}
	circuit := m.circuit.WithLabelValues(name)
	p.breaker = newBreaker(name, opts.Clock, opts.Circuit.FailureThreshold, opts.Circuit.Cooldown.Std(), func(s CircuitState) {
		circuit.Set(float64(s))
		switch s {
		case CircuitOpen:
			log.Warn("provider circuit open: failing fast", "provider", name, "cooldown", opts.Circuit.Cooldown.String())
		case CircuitHalfOpen:
			log.Info("provider circuit half-open: probing", "provider", name)
		}
	})
	return p, nil
}

// Name is the provider's name.
func (p *Provider) Name() string { return p.name }

// CircuitState is the state of the provider's circuit breaker.
func (p *Provider) CircuitState() CircuitState { return p.breaker.State() }

// Close releases idle connections.
func (p *Provider) Close() { p.client.CloseIdleConnections() }

// attemptError is one failed attempt: its metrics label, whether another attempt may help,
// and what went wrong (never personal data: no request or response content).
type attemptError struct {
	result    string
	retryable bool
	err       error
}

func (e *attemptError) Error() string { return e.err.Error() }
func (e *attemptError) Unwrap() error { return e.err }

// call sends one operation with retries and returns the gateway's answer: result "ok" or
// one of the operation's decisions. Every failure wraps ErrUnavailable, ErrCircuitOpen or
// the caller's context error. The time taken is bounded by ctx and, without a deadline, by
// max_attempts × (timeout + max_backoff).
func (p *Provider) call(ctx context.Context, op string, request any) (Response, error) {
	start := time.Now()
	resp, outcome, err := p.callAttempts(ctx, op, request)
	p.m.requests.WithLabelValues(p.name, op, outcome).Inc()
	p.m.duration.WithLabelValues(p.name, op).Observe(time.Since(start).Seconds())
	return resp, err
}

func (p *Provider) callAttempts(ctx context.Context, op string, request any) (Response, string, error) {
	body, err := json.Marshal(request)
	if err != nil {
		return Response{}, outcomeFailed, fmt.Errorf("webhook: encoding %s: %w", op, err)
	}
	// One request id for every attempt: the gateway answers a repeated id with its first
	// answer, which is what makes retrying a charge or an SMS safe.
	requestID := randomHex()
	var last *attemptError
	attempts := 0
	for attempts < p.opts.MaxAttempts {
		if attempts > 0 {
			wait := p.backoff(attempts)
			if deadline, ok := ctx.Deadline(); ok && time.Until(deadline) <= wait {
				return Response{}, outcomeFailed, fmt.Errorf("%w: provider %s, %s, request %s: %d attempt(s), no time for another before the caller's deadline; last: %w",
					ErrUnavailable, p.name, op, requestID, attempts, last)
			}
			timer := time.NewTimer(wait)
			select {
			case <-ctx.Done():
				timer.Stop()
				return Response{}, outcomeCanceled, p.gaveUp(ctx, op, requestID, attempts, last)
			case <-timer.C:
			}
		}
		gen, err := p.breaker.allow()
		if err != nil {
			if attempts == 0 {
				return Response{}, outcomeCircuitOpen, fmt.Errorf("%s: %w", op, err)
			}
			return Response{}, outcomeFailed, fmt.Errorf("%w: provider %s, %s, request %s: %d attempt(s), then %w; last: %w",
				ErrUnavailable, p.name, op, requestID, attempts, err, last)
		}
		attempts++
		resp, aerr := p.attempt(ctx, op, requestID, body, attempts)
		p.m.attempts.WithLabelValues(p.name, op, resultOf(aerr)).Inc()
		if aerr == nil {
			p.breaker.success(gen)
			if resp.Result == ResultOK {
				return resp, outcomeOK, nil
			}
			return resp, outcomeRefused, nil
		}
		if aerr.result == attemptCanceled {
			p.breaker.release(gen)
			return Response{}, outcomeCanceled, p.gaveUp(ctx, op, requestID, attempts, aerr)
		}
		p.breaker.failure(gen)
		p.log.Warn("provider attempt failed", "provider", p.name, "operation", op, "request_id", requestID,
			"attempt", attempts, "result", aerr.result, "retry", aerr.retryable && attempts < p.opts.MaxAttempts, "err", aerr)
		last = aerr
		if !aerr.retryable {
			break
		}
	}
	return Response{}, outcomeFailed, fmt.Errorf("%w: provider %s, %s, request %s: %d attempt(s); last: %w",
		ErrUnavailable, p.name, op, requestID, attempts, last)
}

func (p *Provider) gaveUp(ctx context.Context, op, requestID string, attempts int, last *attemptError) error {
	if last == nil {
		return fmt.Errorf("provider %s, %s, request %s: %w before any answer", p.name, op, requestID, ctx.Err())
	}
	return fmt.Errorf("provider %s, %s, request %s: %w after %d attempt(s); last: %v", p.name, op, requestID, ctx.Err(), attempts, last)
}

func resultOf(err *attemptError) string {
	if err == nil {
		return attemptOK
	}
	return err.result
}

// backoff is the wait after the given number of attempts: retry_backoff doubled per attempt
// up to max_backoff, with jitter taking off up to half, so that appliances retrying after
// one outage do not return in step.
func (p *Provider) backoff(attempts int) time.Duration {
	d := p.opts.RetryBackoff.Std()
	for i := 1; i < attempts && d < p.opts.MaxBackoff.Std(); i++ {
		d *= 2
	}
	d = min(d, p.opts.MaxBackoff.Std())
	return d - mathrand.N(d/2+1)
}

// attempt makes one signed HTTP request and checks the signed answer.
func (p *Provider) attempt(parent context.Context, op, requestID string, body []byte, n int) (Response, *attemptError) {
	// The attempt's own timer ends it before the caller's deadline does, so that a gateway
	// that does not answer counts as a failure (and opens the circuit) even for callers whose
	// deadlines are shorter than the timeout; a canceled attempt counts as neither.
	timeout := p.opts.Timeout.Std()
	if deadline, ok := parent.Deadline(); ok {
		if left := time.Until(deadline) * 9 / 10; left < timeout {
			timeout = left
		}
	}
	ctx, cancel := context.WithTimeout(parent, timeout)
	defer cancel()
	signed := Signed{Direction: DirectionRequest, Operation: op, Timestamp: strconv.FormatInt(p.clock.Now().Unix(), 10),
		Nonce: randomHex(), RequestID: requestID}
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, p.base.JoinPath(op).String(), bytes.NewReader(body))
	if err != nil {
		return Response{}, &attemptError{result: attemptNetwork, err: err}
	}
	req.Header.Set("Content-Type", "application/json; charset=utf-8")
	req.Header.Set("User-Agent", "hufu-webhook/1")
	req.Header.Set(HeaderTimestamp, signed.Timestamp)
	req.Header.Set(HeaderNonce, signed.Nonce)
	req.Header.Set(HeaderRequestID, requestID)
	req.Header.Set(HeaderSignature, Sign(p.key, signed, body))
	req.Header.Set("X-Hufu-Attempt", strconv.Itoa(n))
	resp, err := p.client.Do(req)
	if err != nil {
		return Response{}, transportError(parent, ctx, err)
	}
	defer resp.Body.Close()
	answer, err := io.ReadAll(io.LimitReader(resp.Body, MaxResponseBytes+1))
	if err != nil {
		return Response{}, transportError(parent, ctx, fmt.Errorf("reading the response: %w", err))
	}
	if resp.StatusCode != http.StatusOK {
		return Response{}, statusError(resp.StatusCode)
	}
	if len(answer) > MaxResponseBytes {
		return Response{}, &attemptError{result: attemptMalformed, err: fmt.Errorf("%w: more than %d bytes", ErrMalformed, MaxResponseBytes)}
	}
	// The response is bound to this attempt's nonce: an answer recorded earlier, for this
	// or any other request, does not verify.
	rs := Signed{Direction: DirectionResponse, Operation: op, Timestamp: resp.Header.Get(HeaderTimestamp), Nonce: signed.Nonce, RequestID: requestID}
	if err := Verify(p.key, rs, answer, resp.Header.Get(HeaderSignature), p.clock.Now(), p.opts.MaxClockSkew.Std()); err != nil {
		if errors.Is(err, ErrStale) {
			return Response{}, &attemptError{result: attemptStale, err: fmt.Errorf("response: %w (check both clocks)", err)}
		}
		return Response{}, &attemptError{result: attemptBadSignature, err: fmt.Errorf("response: %w: a gateway without hufu's key, or a different key (check key_file on both sides)", err)}
	}
	r, err := DecodeResponse(op, answer, p.clock.Now())
	if err != nil {
		return Response{}, &attemptError{result: attemptMalformed, err: err}
	}
	if r.Result == ResultUnavailable {
		return Response{}, &attemptError{result: attemptUnavailable, retryable: true,
			err: fmt.Errorf("the gateway answered %q%s", ResultUnavailable, codeSuffix(r.ErrorCode))}
	}
	return r, nil
}

// transportError classifies a failure to get an answer: the caller's context ending is not
// the gateway's fault; the attempt's own timeout and network failures are retried (the
// request may have arrived, which the request id makes harmless).
func transportError(parent, attempt context.Context, err error) *attemptError {
	switch {
	case parent.Err() != nil:
		return &attemptError{result: attemptCanceled, err: err}
	case isTLSVerification(err):
		// The gateway's certificate is not trusted (ca_file, or a host that is not the
		// gateway): no retry will change that.
		return &attemptError{result: attemptTLS, err: fmt.Errorf("the gateway's TLS certificate does not verify (check url and ca_file): %w", err)}
	case attempt.Err() != nil:
		return &attemptError{result: attemptTimeout, retryable: true, err: fmt.Errorf("no answer within the attempt timeout: %w", err)}
	}
	return &attemptError{result: attemptNetwork, retryable: true, err: err}
}

func isTLSVerification(err error) bool {
	var (
		verify  *tls.CertificateVerificationError
		unknown x509.UnknownAuthorityError
		host    x509.HostnameError
		invalid x509.CertificateInvalidError
	)
	return errors.As(err, &verify) || errors.As(err, &unknown) || errors.As(err, &host) || errors.As(err, &invalid)
}

func statusError(code int) *attemptError {
	text := fmt.Sprintf("HTTP %d %s", code, http.StatusText(code))
	switch {
	case code >= 500, code == http.StatusRequestTimeout, code == http.StatusTooManyRequests:
		return &attemptError{result: attemptHTTP5xx, retryable: true, err: errors.New(text)}
	case code == http.StatusUnauthorized:
		return &attemptError{result: attemptHTTP4xx, err: errors.New(text + ": the gateway refused hufu's signature or timestamp (check key_file on both sides and both clocks)")}
	case code == http.StatusConflict:
		return &attemptError{result: attemptHTTP4xx, err: errors.New(text + ": the gateway has this request id with another body")}
	}
	return &attemptError{result: attemptHTTP4xx, err: errors.New(text + ": the gateway does not accept the request (check url)")}
}

func codeSuffix(code string) string {
	if code == "" {
		return ""
	}
	return " (error_code " + code + ")"
}

// randomHex is 16 random bytes in hex: a nonce or request id.
func randomHex() string {
	var b [16]byte
	rand.Read(b[:]) // never fails (crypto/rand since Go 1.24)
	return hex.EncodeToString(b[:])
}
