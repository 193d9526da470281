package webhook_test

import (
	"bytes"
	"context"
	"errors"
	"log/slog"
	"os"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/hufu-hsm/hufu/daemon/accounts"
	"github.com/hufu-hsm/hufu/daemon/apierr"
	"github.com/hufu-hsm/hufu/daemon/certs"
	"github.com/hufu-hsm/hufu/daemon/identity"
	"github.com/hufu-hsm/hufu/daemon/webhook"
	"github.com/hufu-hsm/hufu/daemon/webhook/webhooktest"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
	"google.golang.org/grpc/codes"
)

// Personal data used in the tests, which must never appear in logs, errors or labels.
const (
	phone    = "13912345678"
	code     = "493817"
	name     = "张三"
	idNumber = "11010519491231002X"
	card     = "6222021234567890128"
)

var person = identity.Person{Name: name, IDNumber: idNumber}

type fakeClock struct {
	mu  sync.Mutex
	now time.Time
}

func (c *fakeClock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.now
}

func (c *fakeClock) Advance(d time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.now = c.now.Add(d)
}

// fixture is a contract gateway, a provider pointed at it sharing its clock, and what the
// provider logs and reports.
type fixture struct {
	gw    *webhooktest.Server
	p     *webhook.Provider
	clock *fakeClock
	reg   *prometheus.Registry
	logs  *bytes.Buffer
}

func start(t *testing.T, edit func(*webhook.Options)) *fixture {
	t.Helper()
	f := &fixture{clock: &fakeClock{now: time.Now()}, reg: prometheus.NewRegistry(), logs: &bytes.Buffer{}}
	f.gw = webhooktest.Start(t, webhooktest.Config{Clock: f.clock.Now})
	opts := f.gw.Options()
	opts.Clock = f.clock
	if edit != nil {
		edit(&opts)
	}
	var err error
	f.p, err = webhook.New("sms", opts, f.reg, slog.New(slog.NewJSONHandler(&syncWriter{w: f.logs}, nil)))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(f.p.Close)
	return f
}

type syncWriter struct {
	mu sync.Mutex
	w  *bytes.Buffer
}

func (s *syncWriter) Write(b []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.w.Write(b)
}

func (f *fixture) requests(op, outcome string) float64 {
	return metricValue(f.reg, "hufu_provider_requests_total", map[string]string{"provider": "sms", "operation": op, "outcome": outcome})
}

func (f *fixture) attempts(op, result string) float64 {
	return metricValue(f.reg, "hufu_provider_attempts_total", map[string]string{"provider": "sms", "operation": op, "result": result})
}

// metricValue is the value of the counter or gauge series with exactly these labels, 0 if
// there is none.
func metricValue(reg *prometheus.Registry, metric string, labels map[string]string) float64 {
	families, err := reg.Gather()
	if err != nil {
		panic(err)
	}
	for _, fam := range families {
		if fam.GetName() != metric {
			continue
		}
	series:
		for _, m := range fam.GetMetric() {
			if len(m.GetLabel()) != len(labels) {
				continue
			}
			for _, l := range m.GetLabel() {
				if v, ok := labels[l.GetName()]; !ok || v != l.GetValue() {
					continue series
				}
			}
			return m.GetCounter().GetValue() + m.GetGauge().GetValue()
		}
	}
	return 0
}

func ctx(t *testing.T) context.Context {
	c, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	t.Cleanup(cancel)
	return c
}

// Each operation against the contract gateway: success, and each decision keeping its
// meaning (the daemon maps the sentinels).
func TestOperations(t *testing.T) {
	f := start(t, nil)
	c := ctx(t)

	t.Run("sms.send", func(t *testing.T) {
		if err := f.p.Send(c, phone, accounts.PurposeSignIn, code); err != nil {
			t.Fatal(err)
		}
		if got, ok := f.gw.LatestCode(phone, string(accounts.PurposeSignIn)); !ok || got != code {
			t.Fatalf("gateway outbox has %q, %v", got, ok)
		}
	})
	t.Run("identity.name-id", func(t *testing.T) {
		if err := f.p.VerifyNameID(c, person); err != nil {
			t.Fatal(err)
		}
		err := f.p.VerifyNameID(c, identity.Person{Name: "错误", IDNumber: idNumber})
		if !errors.Is(err, identity.ErrMismatch) || !strings.Contains(err.Error(), "NAME_ID_MISMATCH") {
			t.Fatalf("mismatch: %v", err)
		}
	})
	t.Run("identity.face", func(t *testing.T) {
		id, url, err := f.p.StartFace(c, person)
		if err != nil || !strings.HasPrefix(url, "https://") || !strings.Contains(url, id) {
			t.Fatalf("StartFace = %q, %q, %v", id, url, err)
		}
		got, err := f.p.CompleteFace(c, id)
		if err != nil || got != person {
			t.Fatalf("CompleteFace = %+v, %v", got, err)
		}
		if _, err := f.p.CompleteFace(c, id); !errors.Is(err, identity.ErrUnknownSession) {
			t.Fatalf("second CompleteFace: %v", err)
		}
		if _, _, err := f.p.StartFace(c, identity.Person{Name: "错误", IDNumber: idNumber}); !errors.Is(err, identity.ErrMismatch) {
			t.Fatalf("StartFace mismatch: %v", err)
		}
	})
	t.Run("identity.bank-card", func(t *testing.T) {
		if err := f.p.VerifyBankCard(c, identity.BankCard{Person: person, CardNumber: card, ReservedPhone: phone}); err != nil {
			t.Fatal(err)
		}
		wrong := identity.BankCard{Person: identity.Person{Name: "错误", IDNumber: idNumber}, CardNumber: card, ReservedPhone: phone}
		if err := f.p.VerifyBankCard(c, wrong); !errors.Is(err, identity.ErrMismatch) {
			t.Fatalf("mismatch: %v", err)
		}
	})
	t.Run("login.wechat", func(t *testing.T) {
		if id, err := f.p.OpenID(c, "dev-oUpF8uMuAJO"); err != nil || id != "oUpF8uMuAJO" {
			t.Fatalf("OpenID = %q, %v", id, err)
		}
		if _, err := f.p.OpenID(c, "expired"); !errors.Is(err, accounts.ErrProviderRejected) {
			t.Fatalf("rejected: %v", err)
		}
	})
	t.Run("login.carrier", func(t *testing.T) {
		if got, err := f.p.PhoneNumber(c, "dev-"+phone); err != nil || got != phone {
			t.Fatalf("PhoneNumber = %q, %v", got, err)
		}
		if _, err := f.p.PhoneNumber(c, "forged"); !errors.Is(err, accounts.ErrProviderRejected) {
			t.Fatalf("rejected: %v", err)
		}
	})
	t.Run("payment", func(t *testing.T) {
		charge := certs.Charge{OrderID: "ord1", UserID: "u1", Method: "wechat", IdempotencyKey: "pay-0000001", AmountFen: 19900}
		ref, err := f.p.Charge(c, charge)
		if err != nil || ref == "" {
			t.Fatalf("Charge = %q, %v", ref, err)
		}
		// Paying again with the same idempotency key (a new call, a new request id) is
		// the payment service's to deduplicate; the provider passes the key through.
		if again, err := f.p.Charge(c, charge); err != nil || again != ref || f.gw.Charges() != 1 {
			t.Fatalf("second Charge = %q, %v; %d charges", again, err, f.gw.Charges())
		}
		if err := f.p.Refund(c, ref, 19900); err != nil {
			t.Fatal(err)
		}
		if amount, ok := f.gw.Refunded(ref); !ok || amount != 19900 {
			t.Fatalf("refunded %d, %v", amount, ok)
		}
		if err := f.p.Refund(c, "wx:unknown", 100); !errors.Is(err, webhook.ErrRefundDeclined) {
			t.Fatalf("refund of an unknown payment: %v", err)
		}
		declined := charge
		declined.Method, declined.IdempotencyKey = "decline", "pay-0000002"
		_, err = f.p.Charge(c, declined)
		if st, _ := apierr.Status(err); st.Code() != codes.FailedPrecondition {
			t.Fatalf("declined charge: %v (%v)", st.Code(), err)
		}
		bad := charge
		bad.Method = "WeChat Pay"
		_, err = f.p.Charge(c, bad)
		if st, _ := apierr.Status(err); st.Code() != codes.InvalidArgument {
			t.Fatalf("bad method: %v (%v)", st.Code(), err)
		}
	})
	t.Run("decisions the daemon has no sentinel for", func(t *testing.T) {
		f.gw.Handle(webhook.OpSMSSend, func(webhooktest.Request) webhook.Response {
			return webhook.Response{Result: webhook.ResultRejected, ErrorCode: "BLACKLISTED"}
		})
		f.gw.Handle(webhook.OpFaceComplete, func(webhooktest.Request) webhook.Response {
			return webhook.Response{Result: webhook.ResultPending}
		})
		if err := f.p.Send(c, phone, accounts.PurposeSignIn, code); !errors.Is(err, webhook.ErrSMSRejected) {
			t.Fatalf("rejected SMS: %v", err)
		}
		if _, err := f.p.CompleteFace(c, "face1"); !errors.Is(err, webhook.ErrFacePending) {
			t.Fatalf("pending face: %v", err)
		}
	})
	if refusals := f.gw.Refusals(); len(refusals) != 0 {
		t.Fatalf("the gateway refused requests: %q", refusals)
	}
	if got := f.requests(webhook.OpIdentityNameID, "refused"); got != 1 {
		t.Fatalf("refused name-id calls = %v, want 1", got)
	}
}

// Each way a gateway fails: what the caller gets, how many attempts the gateway saw, and
// that every attempt of a call carried the same request id.
func TestFailures(t *testing.T) {
	tests := []struct {
		name         string
		faults       []webhooktest.Fault
		edit         func(*webhook.Options)
		wantErr      error // nil: the call succeeds in the end
		wantAttempts int
		wantResult   string // attempts_total result of the first attempt
	}{
		{"503 then ok", []webhooktest.Fault{webhooktest.Status503}, nil, nil, 2, "http_5xx"},
		{"503 twice then ok", []webhooktest.Fault{webhooktest.Status503, webhooktest.Status503}, nil, nil, 3, "http_5xx"},
		{"503 on every attempt", []webhooktest.Fault{webhooktest.Status503, webhooktest.Status503, webhooktest.Status503, webhooktest.Status503},
			nil, webhook.ErrUnavailable, 3, "http_5xx"},
		{"one attempt allowed", []webhooktest.Fault{webhooktest.Status503}, func(o *webhook.Options) { o.MaxAttempts = 1 }, webhook.ErrUnavailable, 1, "http_5xx"},
		{"timeout then ok", []webhooktest.Fault{webhooktest.Hang}, func(o *webhook.Options) { o.Timeout = webhook.Duration(300 * time.Millisecond) }, nil, 2, "timeout"},
		{"unavailable then ok", []webhooktest.Fault{webhooktest.Unavailable}, nil, nil, 2, "unavailable"},
		{"lost answer then its replay", []webhooktest.Fault{webhooktest.LostAnswer}, nil, nil, 2, "http_5xx"},
		{"bad signature", []webhooktest.Fault{webhooktest.BadSignature}, nil, webhook.ErrBadSignature, 1, "bad_signature"},
		{"unsigned", []webhooktest.Fault{webhooktest.Unsigned}, nil, webhook.ErrBadSignature, 1, "bad_signature"},
		{"replayed answer", []webhooktest.Fault{webhooktest.WrongNonce}, nil, webhook.ErrBadSignature, 1, "bad_signature"},
		{"stale answer", []webhooktest.Fault{webhooktest.StaleTimestamp}, nil, webhook.ErrStale, 1, "stale_response"},
		{"malformed JSON", []webhooktest.Fault{webhooktest.MalformedJSON}, nil, webhook.ErrMalformed, 1, "malformed"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			f := start(t, tt.edit)
			f.gw.Inject(webhook.OpIdentityNameID, tt.faults...)
			err := f.p.VerifyNameID(ctx(t), person)
			if tt.wantErr == nil && err != nil {
				t.Fatalf("VerifyNameID: %v", err)
			}
			if tt.wantErr != nil {
				if !errors.Is(err, tt.wantErr) || !errors.Is(err, webhook.ErrUnavailable) {
					t.Fatalf("VerifyNameID = %v, want %v wrapped in ErrUnavailable", err, tt.wantErr)
				}
				// A spoofed or broken gateway never confirms, and is not a decision.
				if errors.Is(err, identity.ErrMismatch) {
					t.Fatal("a failure reads as a mismatch")
				}
			}
			if got := f.gw.Attempts(webhook.OpIdentityNameID); got != tt.wantAttempts {
				t.Fatalf("gateway saw %d attempts, want %d", got, tt.wantAttempts)
			}
			ids := f.gw.RequestIDs(webhook.OpIdentityNameID)
			for _, id := range ids {
				if id != ids[0] {
					t.Fatalf("request ids differ across retries: %q", ids)
				}
			}
			if got := f.attempts(webhook.OpIdentityNameID, tt.wantResult); got < 1 {
				t.Fatalf("attempts_total{result=%s} = %v", tt.wantResult, got)
			}
			outcome := "ok"
			if tt.wantErr != nil {
				outcome = "failed"
			}
			if got := f.requests(webhook.OpIdentityNameID, outcome); got != 1 {
				t.Fatalf("requests_total{outcome=%s} = %v, want 1", outcome, got)
			}
			if refusals := f.gw.Refusals(); len(refusals) != 0 {
				t.Fatalf("the gateway refused requests: %q", refusals)
			}
		})
	}
}

// A lost answer to a charge or an SMS is retried with the same request id, and the gateway
// does the operation once.
func TestRetriedOperationsHappenOnce(t *testing.T) {
	f := start(t, nil)
	c := ctx(t)
	f.gw.Inject(webhook.OpPaymentCharge, webhooktest.LostAnswer, webhooktest.Status503)
	ref, err := f.p.Charge(c, certs.Charge{OrderID: "ord1", UserID: "u1", Method: "wechat", IdempotencyKey: "pay-0000001", AmountFen: 100})
	if err != nil || ref == "" {
		t.Fatalf("Charge = %q, %v", ref, err)
	}
	if f.gw.Charges() != 1 || f.gw.Attempts(webhook.OpPaymentCharge) != 3 {
		t.Fatalf("%d charges in %d attempts, want 1 in 3", f.gw.Charges(), f.gw.Attempts(webhook.OpPaymentCharge))
	}
	f.gw.Inject(webhook.OpSMSSend, webhooktest.LostAnswer)
	if err := f.p.Send(c, phone, accounts.PurposeSignIn, code); err != nil {
		t.Fatal(err)
	}
	if n := len(f.gw.Outbox()); n != 1 {
		t.Fatalf("%d messages sent, want 1", n)
	}
}

// Misconfigurations the gateway detects: not retried, reported clearly.
func TestGatewayRefusesRequest(t *testing.T) {
	t.Run("clock skew", func(t *testing.T) {
		clock := &fakeClock{now: time.Now()}
		gw := webhooktest.Start(t, webhooktest.Config{Clock: func() time.Time { return clock.Now().Add(6 * time.Minute) }})
		opts := gw.Options()
		opts.Clock = clock
		p, err := webhook.New("skewed", opts, nil, nil)
		if err != nil {
			t.Fatal(err)
		}
		err = p.VerifyNameID(ctx(t), person)
		if !errors.Is(err, webhook.ErrUnavailable) || !strings.Contains(err.Error(), "HTTP 401") || !strings.Contains(err.Error(), "clocks") {
			t.Fatalf("VerifyNameID = %v", err)
		}
		if r := gw.Refusals(); gw.Attempts(webhook.OpIdentityNameID) != 1 || len(r) != 1 || r[0] != "stale timestamp" {
			t.Fatalf("%d attempts, refusals %q", gw.Attempts(webhook.OpIdentityNameID), r)
		}
	})
	t.Run("wrong key", func(t *testing.T) {
		gw := webhooktest.Start(t, webhooktest.Config{})
		other := webhooktest.Start(t, webhooktest.Config{}) // its key file holds another key
		opts := gw.Options()
		opts.KeyFile = other.KeyFile
		p, err := webhook.New("wrongkey", opts, nil, nil)
		if err != nil {
			t.Fatal(err)
		}
		if err := p.VerifyNameID(ctx(t), person); !errors.Is(err, webhook.ErrUnavailable) || !strings.Contains(err.Error(), "HTTP 401") {
			t.Fatalf("VerifyNameID = %v", err)
		}
		if r := gw.Refusals(); gw.Attempts(webhook.OpIdentityNameID) != 1 || len(r) != 1 || r[0] != "bad signature" {
			t.Fatalf("%d attempts, refusals %q", gw.Attempts(webhook.OpIdentityNameID), r)
		}
	})
	t.Run("untrusted certificate", func(t *testing.T) {
		f := start(t, nil)
		opts := f.gw.Options()
		opts.CAFile = "" // the system roots do not know the test server
		p, err := webhook.New("noca", opts, nil, nil)
		if err != nil {
			t.Fatal(err)
		}
		err = p.VerifyNameID(ctx(t), person)
		if !errors.Is(err, webhook.ErrUnavailable) || !strings.Contains(err.Error(), "TLS certificate") {
			t.Fatalf("VerifyNameID = %v", err)
		}
		if got := f.gw.Attempts(webhook.OpIdentityNameID); got != 0 {
			t.Fatalf("%d requests reached the gateway", got)
		}
	})
}

// The gateway enforces nonce uniqueness: a captured request sent again is refused.
func TestGatewayRefusesReplayedRequest(t *testing.T) {
	f := start(t, nil)
	if err := f.p.Send(ctx(t), phone, accounts.PurposeSignIn, code); err != nil {
		t.Fatal(err)
	}
	status, reason := f.gw.ReplayLast(t, webhook.OpSMSSend)
	if status != 401 || reason != "replayed nonce" {
		t.Fatalf("replay answered %d %q", status, reason)
	}
}

// The caller's deadline bounds the call, whatever timeout and retries say.
func TestCallerDeadline(t *testing.T) {
	t.Run("hanging gateway", func(t *testing.T) {
		// The attempt's own timer, cut to the caller's deadline, ends it first: the hang is
		// the gateway's failure (the circuit counts it), not the caller giving up.
		f := start(t, func(o *webhook.Options) { o.Timeout, o.MaxAttempts = webhook.Duration(time.Minute), 1 })
		f.gw.Inject(webhook.OpPaymentCharge, webhooktest.Hang)
		// 2 s leaves the attempt's timer (nine tenths of the time left) a 200 ms margin to
		// return before the caller's deadline, enough on a loaded CI machine; 200 ms was not.
		c, cancel := context.WithTimeout(context.Background(), 2*time.Second)
		defer cancel()
		_, err := f.p.Charge(c, certs.Charge{OrderID: "o", UserID: "u", Method: "wechat", IdempotencyKey: "pay-0000001", AmountFen: 1})
		if st, _ := apierr.Status(err); st.Code() != codes.Unavailable || c.Err() != nil {
			t.Fatalf("Charge: %v (%v), want Unavailable before the caller's deadline", st.Code(), err)
		}
		if f.gw.Attempts(webhook.OpPaymentCharge) != 1 || f.attempts(webhook.OpPaymentCharge, "timeout") != 1 {
			t.Fatalf("%d attempts, %v timeouts", f.gw.Attempts(webhook.OpPaymentCharge), f.attempts(webhook.OpPaymentCharge, "timeout"))
		}
	})
	t.Run("hang then answer within the caller's deadline", func(t *testing.T) {
		f := start(t, func(o *webhook.Options) { o.Timeout = webhook.Duration(time.Minute) })
		f.gw.Inject(webhook.OpPaymentCharge, webhooktest.Hang)
		c, cancel := context.WithTimeout(context.Background(), 2*time.Second)
		defer cancel()
		if _, err := f.p.Charge(c, certs.Charge{OrderID: "o", UserID: "u", Method: "wechat", IdempotencyKey: "pay-0000002", AmountFen: 1}); err != nil {
			t.Fatalf("Charge after one hung attempt: %v", err)
		}
		if ids := f.gw.RequestIDs(webhook.OpPaymentCharge); len(ids) != 2 || ids[0] != ids[1] {
			t.Fatalf("request ids %v: want two attempts of one request", ids)
		}
	})
	t.Run("caller gives up", func(t *testing.T) {
		// A caller that cancels is not the gateway's fault: the circuit does not count it.
		f := start(t, func(o *webhook.Options) { o.Timeout = webhook.Duration(time.Minute) })
		f.gw.Inject(webhook.OpPaymentCharge, webhooktest.Hang)
		c, cancel := context.WithCancel(context.Background())
		time.AfterFunc(100*time.Millisecond, cancel)
		_, err := f.p.Charge(c, certs.Charge{OrderID: "o", UserID: "u", Method: "wechat", IdempotencyKey: "pay-0000003", AmountFen: 1})
		if err == nil {
			t.Fatal("Charge succeeded after the caller canceled")
		}
		if got := f.attempts(webhook.OpPaymentCharge, "canceled"); got != 1 {
			t.Fatalf("attempts_total{canceled} = %v", got)
		}
	})
	t.Run("no time left for a retry", func(t *testing.T) {
		f := start(t, func(o *webhook.Options) {
			o.RetryBackoff, o.MaxBackoff = webhook.Duration(10*time.Second), webhook.Duration(10*time.Second)
		})
		f.gw.SetDown(true)
		c, cancel := context.WithTimeout(context.Background(), 3*time.Second)
		defer cancel()
		err := f.p.VerifyNameID(c, person)
		if !errors.Is(err, webhook.ErrUnavailable) || !strings.Contains(err.Error(), "no time for another") {
			t.Fatalf("VerifyNameID = %v", err)
		}
		if c.Err() != nil {
			t.Fatal("the provider waited into the caller's deadline instead of returning")
		}
		if got := f.gw.Attempts(webhook.OpIdentityNameID); got != 1 {
			t.Fatalf("%d attempts, want 1", got)
		}
	})
}

func TestCircuit(t *testing.T) {
	f := start(t, func(o *webhook.Options) {
		o.MaxAttempts = 1
		o.Circuit = webhook.Circuit{FailureThreshold: 3, Cooldown: webhook.Duration(30 * time.Second)}
	})
	c := ctx(t)
	state := func() float64 {
		return metricValue(f.reg, "hufu_provider_circuit_state", map[string]string{"provider": "sms"})
	}
	f.gw.SetDown(true)
	for i := range 3 {
		if err := f.p.VerifyNameID(c, person); !errors.Is(err, webhook.ErrUnavailable) {
			t.Fatalf("call %d: %v", i, err)
		}
	}
	if f.p.CircuitState() != webhook.CircuitOpen || state() != 2 {
		t.Fatalf("state %v (gauge %v) after 3 failures", f.p.CircuitState(), state())
	}
	// Open: fail fast, without asking the gateway, with a clear error.
	err := f.p.VerifyNameID(c, person)
	if !errors.Is(err, webhook.ErrCircuitOpen) || !strings.Contains(err.Error(), "next probe in 30s") {
		t.Fatalf("open circuit: %v", err)
	}
	_, err = f.p.Charge(c, certs.Charge{OrderID: "o", UserID: "u", Method: "wechat", IdempotencyKey: "pay-0000001", AmountFen: 1})
	var apiErr *apierr.Error
	if !errors.As(err, &apiErr) || apiErr.Kind != apierr.Unavailable || apiErr.RetryAfter != 30*time.Second {
		t.Fatalf("open circuit, payment: %#v", err)
	}
	if got := f.gw.Attempts(webhook.OpIdentityNameID); got != 3 {
		t.Fatalf("the gateway saw %d attempts, want 3", got)
	}
	if got := f.requests(webhook.OpIdentityNameID, "circuit_open"); got != 1 {
		t.Fatalf("requests_total{circuit_open} = %v", got)
	}

	// After the cool-down one probe goes through; it fails, so the circuit opens again.
	f.clock.Advance(30 * time.Second)
	if err := f.p.VerifyNameID(c, person); !errors.Is(err, webhook.ErrUnavailable) || errors.Is(err, webhook.ErrCircuitOpen) {
		t.Fatalf("failed probe: %v", err)
	}
	if f.p.CircuitState() != webhook.CircuitOpen || f.gw.Attempts(webhook.OpIdentityNameID) != 4 {
		t.Fatalf("state %v, %d attempts", f.p.CircuitState(), f.gw.Attempts(webhook.OpIdentityNameID))
	}
	if err := f.p.VerifyNameID(c, person); !errors.Is(err, webhook.ErrCircuitOpen) {
		t.Fatalf("after a failed probe: %v", err)
	}

	// The gateway recovers; while the next probe is in flight, other calls fail fast.
	f.gw.SetDown(false)
	f.clock.Advance(30 * time.Second)
	arrived, release := make(chan struct{}), make(chan struct{})
	f.gw.Handle(webhook.OpIdentityNameID, func(webhooktest.Request) webhook.Response {
		close(arrived)
		<-release
		return webhook.Response{Result: webhook.ResultMismatch} // a decision is a healthy answer
	})
	probe := make(chan error)
	go func() { probe <- f.p.VerifyNameID(c, person) }()
	<-arrived
	if f.p.CircuitState() != webhook.CircuitHalfOpen || state() != 1 {
		t.Fatalf("state %v during the probe", f.p.CircuitState())
	}
	if err := f.p.VerifyNameID(c, person); !errors.Is(err, webhook.ErrCircuitOpen) || !strings.Contains(err.Error(), "probe request is in flight") {
		t.Fatalf("call during the probe: %v", err)
	}
	close(release)
	if err := <-probe; !errors.Is(err, identity.ErrMismatch) {
		t.Fatalf("probe: %v", err)
	}
	if f.p.CircuitState() != webhook.CircuitClosed || state() != 0 {
		t.Fatalf("state %v after a successful probe", f.p.CircuitState())
	}
	if err := f.p.Send(c, phone, accounts.PurposeSignIn, code); err != nil {
		t.Fatalf("after recovery: %v", err)
	}
}

// Nothing personal in logs, errors or metric labels, whatever fails.
func TestNoPersonalData(t *testing.T) {
	f := start(t, func(o *webhook.Options) { o.MaxAttempts = 2 })
	c := ctx(t)
	var errs []error
	f.gw.Inject(webhook.OpSMSSend, webhooktest.Status503, webhooktest.BadSignature)
	errs = append(errs, f.p.Send(c, phone, accounts.PurposeSignIn, code))
	f.gw.Inject(webhook.OpIdentityBankCard, webhooktest.MalformedJSON)
	errs = append(errs, f.p.VerifyBankCard(c, identity.BankCard{Person: person, CardNumber: card, ReservedPhone: phone}))
	// A signed answer carrying personal data that fails the checks.
	f.gw.Handle(webhook.OpFaceComplete, func(webhooktest.Request) webhook.Response {
		return webhook.Response{Result: webhook.ResultOK, Name: name, IDNumber: idNumber[:17] + "1"}
	})
	_, err := f.p.CompleteFace(c, "face1")
	errs = append(errs, err)
	f.gw.Handle(webhook.OpLoginCarrier, func(webhooktest.Request) webhook.Response {
		return webhook.Response{Result: webhook.ResultOK, Phone: phone + "0"}
	})
	_, err = f.p.PhoneNumber(c, "dev-"+phone)
	errs = append(errs, err)
	f.gw.Inject(webhook.OpSMSSend, webhooktest.Unavailable, webhooktest.StaleTimestamp)
	errs = append(errs, f.p.Send(c, phone, accounts.PurposeSignIn, code))

	var text strings.Builder
	for i, err := range errs {
		if err == nil {
			t.Fatalf("call %d succeeded", i)
		}
		text.WriteString(err.Error() + "\n")
	}
	text.Write(f.logs.Bytes())
	families, _ := f.reg.Gather()
	for _, fam := range families {
		for _, m := range fam.GetMetric() {
			for _, l := range m.GetLabel() {
				text.WriteString(l.GetValue() + "\n")
			}
		}
	}
	if !strings.Contains(f.logs.String(), "provider attempt failed") {
		t.Fatal("nothing was logged")
	}
	for _, secret := range []string{phone, phone[:7], code, name, idNumber, idNumber[:14], card, card[:12], string(mustRead(t, f.gw.KeyFile))[:16]} {
		if strings.Contains(text.String(), secret) {
			t.Fatalf("%q leaked into:\n%s", secret, text.String())
		}
	}
}

func mustRead(t *testing.T, path string) []byte {
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// Several providers share one registry.
func TestProvidersShareRegistry(t *testing.T) {
	gw := webhooktest.Start(t, webhooktest.Config{})
	reg := prometheus.NewRegistry()
	for _, name := range []string{"sms", "identity", "login", "payment"} {
		p, err := webhook.New(name, gw.Options(), reg, nil)
		if err != nil {
			t.Fatalf("%s: %v", name, err)
		}
		if err := p.VerifyNameID(ctx(t), person); err != nil {
			t.Fatalf("%s: %v", name, err)
		}
	}
	got := metricValue(reg, "hufu_provider_requests_total", map[string]string{"provider": "payment", "operation": webhook.OpIdentityNameID, "outcome": "ok"})
	if got != 1 {
		t.Fatalf("payment provider's name-id calls = %v", got)
	}
	if n, err := testutil.GatherAndCount(reg, "hufu_provider_circuit_state"); err != nil || n != 4 {
		t.Fatalf("%d circuit gauges, %v", n, err)
	}
}
