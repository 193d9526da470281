// Package webhooktest runs a gateway that enforces the webhook provider contract
// (docs/providers.md) over real HTTPS, for tests of the webhook package and of the daemon
// end to end. It verifies every request's signature, timestamp and nonce, answers a
// repeated request id with its first answer, signs its answers, and can be told to fail in
// each of the ways a real gateway does (Fault).
//
// Its default answers mirror the development providers, so flows written against those
// work unchanged: names starting with "错" do not match, login credentials are
// "dev-<openid>" and "dev-<phone number>", a charge with method "decline" is declined.
//
// The signing here is written independently of the webhook package (from the contract's
// text), so that the two implementations check each other.
package webhooktest

import (
	"bytes"
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"encoding/pem"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/emmansun/gmsm/sm3"
	"github.com/hufu-hsm/hufu/daemon/webhook"
)

// BasePath is the path under which the server answers: its URL is https://<host>/hufu/v1.
const BasePath = "/hufu/v1"

// Fault is a failure the server produces for one attempt, instead of its normal answer.
type Fault int

const (
	// Status503 answers 503 without doing anything.
	Status503 Fault = iota + 1
	// Hang answers nothing until the client gives up.
	Hang
	// LostAnswer does the operation (sends the SMS, takes the charge) and remembers the
	// answer under the request id, then answers 503, as if the answer were lost on the way.
	LostAnswer
	// BadSignature signs the answer with another key.
	BadSignature
	// Unsigned answers without a signature header.
	Unsigned
	// StaleTimestamp signs the answer correctly with a timestamp ten minutes old.
	StaleTimestamp
	// WrongNonce signs the answer correctly but for another nonce: a recorded answer
	// replayed.
	WrongNonce
	// MalformedJSON answers a correctly signed body that is not JSON.
	MalformedJSON
	// Unavailable answers a correctly signed result "unavailable".
	Unavailable
)

// Config configures Start.
type Config struct {
	// Clock is the server's time, for checking request timestamps and stamping answers;
	// nil means time.Now. Share the provider's fake clock with it.
	Clock func() time.Time
	// MaxClockSkew is the accepted timestamp window (default 5m).
	MaxClockSkew time.Duration
}

// Request is a verified request, as a Handler sees it.
type Request struct {
	Operation string
	RequestID string
	Body      []byte // the JSON body as sent
}

// Handler answers one operation instead of the default behaviour.
type Handler func(Request) webhook.Response

// SMS is one message the server was asked to send.
type SMS struct {
	Phone, Purpose, Code, RequestID string
}

// Server is a running contract gateway. Its methods are safe for concurrent use.
type Server struct {
	// URL is the base URL to configure (https://127.0.0.1:port/hufu/v1).
	URL string
	// KeyFile holds the shared key as hex, CAFile the server's TLS certificate as PEM.
	KeyFile, CAFile string
	// Key is the shared key.
	Key []byte

	srv    *httptest.Server
	clock  func() time.Time
	window time.Duration
	done   chan struct{}

	mu         sync.Mutex
	nonces     map[string]time.Time
	answers    map[string]storedAnswer
	attempts   map[string]int
	requestIDs map[string][]string
	faults     map[string][]Fault
	down       bool
	handlers   map[string]Handler
	refusals   []string
	outbox     []SMS
	charges    map[string]string // order id + idempotency key -> payment ref
	refunds    map[string]int64  // payment ref -> amount
	faces      map[string]webhook.PersonRequest
	last       map[string]capturedRequest // per operation, the last verified request
}

type capturedRequest struct {
	header http.Header
	body   []byte
}

type storedAnswer struct {
	operation string
	bodyHash  [32]byte
	answer    []byte
}

// Start starts a server with a fresh key; it stops when the test ends.
func Start(t testing.TB, cfg Config) *Server {
	t.Helper()
	if cfg.Clock == nil {
		cfg.Clock = time.Now
	}
	if cfg.MaxClockSkew == 0 {
		cfg.MaxClockSkew = webhook.DefaultMaxClockSkew
	}
	s := &Server{
		clock: cfg.Clock, window: cfg.MaxClockSkew, done: make(chan struct{}),
		nonces: map[string]time.Time{}, answers: map[string]storedAnswer{}, attempts: map[string]int{},
		requestIDs: map[string][]string{}, faults: map[string][]Fault{}, handlers: map[string]Handler{},
		charges: map[string]string{}, refunds: map[string]int64{}, faces: map[string]webhook.PersonRequest{},
		last: map[string]capturedRequest{},
	}
	s.Key = make([]byte, 32)
	rand.Read(s.Key)
	dir := t.TempDir()
	s.KeyFile = filepath.Join(dir, "gateway.key")
	if err := os.WriteFile(s.KeyFile, []byte(hex.EncodeToString(s.Key)+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	s.srv = httptest.NewUnstartedServer(http.HandlerFunc(s.serve))
	s.srv.EnableHTTP2 = true
	s.srv.StartTLS()
	s.CAFile = filepath.Join(dir, "gateway-ca.pem")
	certPEM := pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: s.srv.Certificate().Raw})
	if err := os.WriteFile(s.CAFile, certPEM, 0o644); err != nil {
		t.Fatal(err)
	}
	s.URL = s.srv.URL + BasePath
	t.Cleanup(func() {
		close(s.done) // releases Hang handlers, which Close would otherwise wait for
		s.srv.Close()
	})
	return s
}

// Options are provider options for this server: its URL, key and CA, with retries fast
// enough for tests (1ms backoff). Change what a test needs.
func (s *Server) Options() webhook.Options {
	return webhook.Options{
		URL: s.URL, KeyFile: s.KeyFile, CAFile: s.CAFile, Timeout: webhook.Duration(5 * time.Second),
		RetryBackoff: webhook.Duration(time.Millisecond), MaxBackoff: webhook.Duration(5 * time.Millisecond),
	}
}

// Inject queues faults for the next attempts at op, one attempt each, in order.
func (s *Server) Inject(op string, faults ...Fault) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.faults[op] = append(s.faults[op], faults...)
}

// SetDown makes every request answer 503 (true) until SetDown(false).
func (s *Server) SetDown(down bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.down = down
}

// Handle replaces the default behaviour of op.
func (s *Server) Handle(op string, h Handler) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.handlers[op] = h
}

// Attempts is how many requests for op arrived (refused ones included).
func (s *Server) Attempts(op string) int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.attempts[op]
}

// RequestIDs are the request ids of the signed requests for op that arrived, in order.
func (s *Server) RequestIDs(op string) []string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]string(nil), s.requestIDs[op]...)
}

// Refusals are the reasons the server refused requests (signature, timestamp, nonce,
// request id, body), in order.
func (s *Server) Refusals() []string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]string(nil), s.refusals...)
}

// Outbox is every SMS sent, once per request id.
func (s *Server) Outbox() []SMS {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]SMS(nil), s.outbox...)
}

// LatestCode is the newest code sent to phone for purpose.
func (s *Server) LatestCode(phone, purpose string) (string, bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	for i := len(s.outbox) - 1; i >= 0; i-- {
		if m := s.outbox[i]; m.Phone == phone && m.Purpose == purpose {
			return m.Code, true
		}
	}
	return "", false
}

// Charges is how many distinct charges were taken.
func (s *Server) Charges() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return len(s.charges)
}

// Refunded is the amount refunded for a payment reference, and whether it was.
func (s *Server) Refunded(ref string) (int64, bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	amount, ok := s.refunds[ref]
	return amount, ok
}

// ReplayLast sends the last verified request for op again, byte for byte, as an attacker who
// captured it would, and returns the status and the refusal reason.
func (s *Server) ReplayLast(t testing.TB, op string) (int, string) {
	t.Helper()
	s.mu.Lock()
	c, ok := s.last[op]
	s.mu.Unlock()
	if !ok {
		t.Fatalf("webhooktest: no %s request to replay", op)
	}
	req, err := http.NewRequest(http.MethodPost, s.URL+"/"+op, bytes.NewReader(c.body))
	if err != nil {
		t.Fatal(err)
	}
	req.Header = c.header.Clone()
	resp, err := s.srv.Client().Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var refusal struct{ Error string }
	json.NewDecoder(resp.Body).Decode(&refusal)
	return resp.StatusCode, refusal.Error
}

var (
	timestampRE = regexp.MustCompile(`^[1-9][0-9]{0,18}$`)
	hex32RE     = regexp.MustCompile(`^[0-9a-f]{32}$`)
	hex64RE     = regexp.MustCompile(`^[0-9a-f]{64}$`)
)

// stringToSign is the contract's string to sign, as docs/providers.md §2 defines it.
func stringToSign(direction, op, timestamp, nonce, requestID string, body []byte) []byte {
	var b bytes.Buffer
	fmt.Fprintf(&b, "HUFU-HMAC-SM3-V1\n%s\n%s\n%s\n%s\n%s\n", direction, op, timestamp, nonce, requestID)
	b.Write(body)
	return b.Bytes()
}

func hmacSM3(key, msg []byte) []byte {
	m := hmac.New(sm3.New, key)
	m.Write(msg)
	return m.Sum(nil)
}

func (s *Server) refuse(w http.ResponseWriter, code int, reason string) {
	s.mu.Lock()
	s.refusals = append(s.refusals, reason)
	s.mu.Unlock()
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(code)
	json.NewEncoder(w).Encode(map[string]string{"error": reason})
}

func (s *Server) serve(w http.ResponseWriter, r *http.Request) {
	op, ok := strings.CutPrefix(r.URL.Path, BasePath+"/")
	if !ok || !knownOperation(op) {
		s.refuse(w, http.StatusNotFound, "unknown operation")
		return
	}
	s.mu.Lock()
	s.attempts[op]++
	s.mu.Unlock()
	if r.Method != http.MethodPost {
		s.refuse(w, http.StatusMethodNotAllowed, "method must be POST")
		return
	}
	if ct := r.Header.Get("Content-Type"); !strings.HasPrefix(ct, "application/json") {
		s.refuse(w, http.StatusUnsupportedMediaType, "content type must be application/json")
		return
	}
	body, err := io.ReadAll(io.LimitReader(r.Body, webhook.MaxResponseBytes+1))
	if err != nil || len(body) > webhook.MaxResponseBytes {
		s.refuse(w, http.StatusRequestEntityTooLarge, "body unreadable or too large")
		return
	}
	ts, nonce, rid, sig := r.Header.Get(webhook.HeaderTimestamp), r.Header.Get(webhook.HeaderNonce),
		r.Header.Get(webhook.HeaderRequestID), r.Header.Get(webhook.HeaderSignature)
	if !timestampRE.MatchString(ts) || !hex32RE.MatchString(nonce) || !hex32RE.MatchString(rid) || !hex64RE.MatchString(sig) {
		s.refuse(w, http.StatusUnauthorized, "missing or malformed signature headers")
		return
	}
	got, _ := hex.DecodeString(sig)
	if !hmac.Equal(got, hmacSM3(s.Key, stringToSign("REQUEST", op, ts, nonce, rid, body))) {
		s.refuse(w, http.StatusUnauthorized, "bad signature")
		return
	}
	now := s.clock()
	sec, _ := strconv.ParseInt(ts, 10, 64)
	if skew := now.Sub(time.Unix(sec, 0)); skew > s.window || skew < -s.window {
		s.refuse(w, http.StatusUnauthorized, "stale timestamp")
		return
	}
	s.mu.Lock()
	for n, seen := range s.nonces { // forget nonces whose timestamps the window refuses anyway
		if now.Sub(seen) > 2*s.window {
			delete(s.nonces, n)
		}
	}
	_, replayed := s.nonces[nonce]
	s.nonces[nonce] = now
	if !replayed {
		s.last[op] = capturedRequest{header: r.Header.Clone(), body: body}
	}
	s.requestIDs[op] = append(s.requestIDs[op], rid)
	var fault Fault
	if q := s.faults[op]; len(q) > 0 {
		fault, s.faults[op] = q[0], q[1:]
	}
	down := s.down
	stored, repeated := s.answers[rid]
	s.mu.Unlock()
	if replayed {
		s.refuse(w, http.StatusUnauthorized, "replayed nonce")
		return
	}
	switch {
	case down || fault == Status503:
		http.Error(w, "down", http.StatusServiceUnavailable)
		return
	case fault == Unavailable:
		// Before doing anything: the service behind the gateway is down.
		s.answer(w, fault, op, nonce, rid, nil, now)
		return
	case fault == Hang:
		select {
		case <-r.Context().Done():
		case <-s.done:
		}
		return
	}
	var answer []byte
	if repeated {
		if stored.operation != op || stored.bodyHash != sha256.Sum256(body) {
			s.refuse(w, http.StatusConflict, "request id reused with another body")
			return
		}
		answer = stored.answer // a retry: the first answer, not a second SMS or charge
	} else {
		resp, err := s.handle(op, rid, body)
		if err != nil {
			s.refuse(w, http.StatusBadRequest, err.Error())
			return
		}
		answer, _ = json.Marshal(resp)
		if resp.Result != webhook.ResultUnavailable {
			s.mu.Lock()
			s.answers[rid] = storedAnswer{operation: op, bodyHash: sha256.Sum256(body), answer: answer}
			s.mu.Unlock()
		}
	}
	s.answer(w, fault, op, nonce, rid, answer, now)
}

// answer signs and writes a 200 answer, spoiled as fault says.
func (s *Server) answer(w http.ResponseWriter, fault Fault, op, nonce, rid string, answer []byte, now time.Time) {
	key, stamp := s.Key, now
	switch fault {
	case LostAnswer:
		http.Error(w, "lost", http.StatusServiceUnavailable)
		return
	case BadSignature:
		key = bytes.Repeat([]byte{0x5a}, 32)
	case StaleTimestamp:
		stamp = now.Add(-10 * time.Minute)
	case WrongNonce:
		nonce = strings.Repeat("0", 32)
	case MalformedJSON:
		answer = []byte(`{"result": "ok", `)
	case Unavailable:
		answer = []byte(`{"result":"unavailable","error_code":"UPSTREAM_DOWN"}`)
	}
	ts := strconv.FormatInt(stamp.Unix(), 10)
	w.Header().Set("Content-Type", "application/json; charset=utf-8")
	w.Header().Set(webhook.HeaderTimestamp, ts)
	if fault != Unsigned {
		w.Header().Set(webhook.HeaderSignature, hex.EncodeToString(hmacSM3(key, stringToSign("RESPONSE", op, ts, nonce, rid, answer))))
	}
	w.Write(answer)
}

func knownOperation(op string) bool { return slices.Contains(webhook.Operations, op) }

// decodeStrict decodes a request body into v, refusing unknown fields and trailing data.
func decodeStrict(body []byte, v any) error {
	dec := json.NewDecoder(bytes.NewReader(body))
	dec.DisallowUnknownFields()
	if err := dec.Decode(v); err != nil {
		return errors.New("request body does not match the operation's schema")
	}
	if dec.More() {
		return errors.New("data after the request body")
	}
	return nil
}

func required(fields ...string) error {
	for _, f := range fields {
		if f == "" {
			return errors.New("a required request field is empty")
		}
	}
	return nil
}

// handle does op and returns the answer: a Handler's, or the default behaviour.
func (s *Server) handle(op, rid string, body []byte) (webhook.Response, error) {
	s.mu.Lock()
	h := s.handlers[op]
	s.mu.Unlock()
	ok := webhook.Response{Result: webhook.ResultOK}
	mismatchIf := func(name string) webhook.Response {
		if strings.HasPrefix(name, "错") {
			return webhook.Response{Result: webhook.ResultMismatch, ErrorCode: "NAME_ID_MISMATCH"}
		}
		return ok
	}
	switch op {
	case webhook.OpSMSSend:
		var req webhook.SMSRequest
		if err := decodeStrict(body, &req); err != nil {
			return ok, err
		}
		if err := required(req.Phone, req.Purpose, req.Code); err != nil {
			return ok, err
		}
		if h != nil {
			return h(Request{op, rid, body}), nil
		}
		s.mu.Lock()
		s.outbox = append(s.outbox, SMS{Phone: req.Phone, Purpose: req.Purpose, Code: req.Code, RequestID: rid})
		s.mu.Unlock()
		return ok, nil
	case webhook.OpIdentityNameID, webhook.OpFaceStart:
		var req webhook.PersonRequest
		if err := decodeStrict(body, &req); err != nil {
			return ok, err
		}
		if err := required(req.Name, req.IDNumber); err != nil {
			return ok, err
		}
		if h != nil {
			return h(Request{op, rid, body}), nil
		}
		resp := mismatchIf(req.Name)
		if op == webhook.OpFaceStart && resp.Result == webhook.ResultOK {
			resp.CertifyID = "face" + rid[:16]
			resp.URL = "https://render.alipay.com/p/f/fd-test/index.html?certify_id=" + resp.CertifyID
			s.mu.Lock()
			s.faces[resp.CertifyID] = req
			s.mu.Unlock()
		}
		return resp, nil
	case webhook.OpFaceComplete:
		var req webhook.FaceCompleteRequest
		if err := decodeStrict(body, &req); err != nil {
			return ok, err
		}
		if err := required(req.CertifyID); err != nil {
			return ok, err
		}
		if h != nil {
			return h(Request{op, rid, body}), nil
		}
		s.mu.Lock()
		defer s.mu.Unlock()
		p, found := s.faces[req.CertifyID]
		if !found {
			return webhook.Response{Result: webhook.ResultUnknownSession}, nil
		}
		delete(s.faces, req.CertifyID)
		return webhook.Response{Result: webhook.ResultOK, Name: p.Name, IDNumber: p.IDNumber}, nil
	case webhook.OpIdentityBankCard:
		var req webhook.BankCardRequest
		if err := decodeStrict(body, &req); err != nil {
			return ok, err
		}
		if err := required(req.Name, req.IDNumber, req.CardNumber, req.ReservedPhone); err != nil {
			return ok, err
		}
		if h != nil {
			return h(Request{op, rid, body}), nil
		}
		return mismatchIf(req.Name), nil
	case webhook.OpLoginWeChat:
		var req webhook.WeChatRequest
		if err := decodeStrict(body, &req); err != nil {
			return ok, err
		}
		if err := required(req.AuthCode); err != nil {
			return ok, err
		}
		if h != nil {
			return h(Request{op, rid, body}), nil
		}
		if id, found := strings.CutPrefix(req.AuthCode, "dev-"); found && id != "" {
			return webhook.Response{Result: webhook.ResultOK, OpenID: id}, nil
		}
		return webhook.Response{Result: webhook.ResultRejected, ErrorCode: "40029"}, nil
	case webhook.OpLoginCarrier:
		var req webhook.CarrierRequest
		if err := decodeStrict(body, &req); err != nil {
			return ok, err
		}
		if err := required(req.Token); err != nil {
			return ok, err
		}
		if h != nil {
			return h(Request{op, rid, body}), nil
		}
		if phone, found := strings.CutPrefix(req.Token, "dev-"); found && phone != "" {
			return webhook.Response{Result: webhook.ResultOK, Phone: phone}, nil
		}
		return webhook.Response{Result: webhook.ResultRejected, ErrorCode: "TOKEN_INVALID"}, nil
	case webhook.OpPaymentCharge:
		var req webhook.ChargeRequest
		if err := decodeStrict(body, &req); err != nil {
			return ok, err
		}
		if err := required(req.OrderID, req.UserID, req.Method, req.IdempotencyKey); err != nil || req.AmountFen <= 0 {
			return ok, errors.New("a required request field is empty")
		}
		if h != nil {
			return h(Request{op, rid, body}), nil
		}
		if req.Method == "decline" {
			return webhook.Response{Result: webhook.ResultDeclined, ErrorCode: "INSUFFICIENT_FUNDS"}, nil
		}
		s.mu.Lock()
		defer s.mu.Unlock()
		k := req.OrderID + "\x00" + req.IdempotencyKey
		ref, found := s.charges[k]
		if !found {
			ref = fmt.Sprintf("pay-%d", len(s.charges)+1)
			s.charges[k] = ref
		}
		return webhook.Response{Result: webhook.ResultOK, PaymentRef: ref}, nil
	case webhook.OpPaymentRefund:
		var req webhook.RefundRequest
		if err := decodeStrict(body, &req); err != nil {
			return ok, err
		}
		if err := required(req.PaymentRef); err != nil || req.AmountFen <= 0 {
			return ok, errors.New("a required request field is empty")
		}
		if h != nil {
			return h(Request{op, rid, body}), nil
		}
		s.mu.Lock()
		defer s.mu.Unlock()
		known := false
		for _, ref := range s.charges {
			known = known || ref == req.PaymentRef
		}
		if !known {
			return webhook.Response{Result: webhook.ResultDeclined, ErrorCode: "NO_SUCH_PAYMENT"}, nil
		}
		s.refunds[req.PaymentRef] = req.AmountFen
		return ok, nil
	}
	return ok, fmt.Errorf("unknown operation %q", op)
}
