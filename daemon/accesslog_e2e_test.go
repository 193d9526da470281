package daemon_test

import (
	"bytes"
	"context"
	"encoding/json"
	"log/slog"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/hufu-hsm/hufu/admin"
	hufuv1 "github.com/hufu-hsm/hufu/api/hufu/v1"
	"github.com/hufu-hsm/hufu/daemon/accounts"
	"github.com/hufu-hsm/hufu/daemon/config"
	"github.com/hufu-hsm/hufu/daemon/daemontest"
	"github.com/hufu-hsm/hufu/store"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"
)

// logBuffer is a daemon log written from many goroutines and read by the test.
type logBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *logBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func (b *logBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}

// lines returns the JSON log lines whose msg is msg.
func (b *logBuffer) lines(t *testing.T, msg string) []map[string]any {
	t.Helper()
	var out []map[string]any
	for _, l := range strings.Split(strings.TrimSpace(b.String()), "\n") {
		var m map[string]any
		if err := json.Unmarshal([]byte(l), &m); err != nil {
			t.Fatalf("log line %q: %v", l, err)
		}
		if m["msg"] == msg {
			out = append(out, m)
		}
	}
	return out
}

// byID returns the one line of lines with request id id.
func byID(t *testing.T, lines []map[string]any, id string) map[string]any {
	t.Helper()
	var found []map[string]any
	for _, l := range lines {
		if l["request_id"] == id {
			found = append(found, l)
		}
	}
	if len(found) != 1 {
		t.Fatalf("%d log lines with request id %q, want 1: %v", len(found), id, lines)
	}
	return found[0]
}

// wantFields checks an access log line: level, the given fields, a parseable duration and
// a peer address.
func wantFields(t *testing.T, l map[string]any, want map[string]string) {
	t.Helper()
	if l["level"] != "INFO" {
		t.Errorf("level %v, want INFO: %v", l["level"], l)
	}
	for k, v := range want {
		if l[k] != v {
			t.Errorf("%s = %v, want %q: %v", k, l[k], v, l)
		}
	}
	if d, ok := l["duration"].(string); !ok {
		t.Errorf("no duration: %v", l)
	} else if _, err := time.ParseDuration(d); err != nil {
		t.Errorf("duration %q: %v", d, err)
	}
	if p, _ := l["peer"].(string); !strings.HasPrefix(p, "127.0.0.1:") {
		t.Errorf("peer %q, want a loopback address: %v", l["peer"], l)
	}
}

// TestAccessLog: one Info line per gRPC call ("rpc") and per admin request ("admin
// request") with the method or route, the status, the duration, the kind of caller, the peer
// and the request id; the id is always the appliance's own, fresh, returned to the caller and
// written into the request's audit records, and a caller's well-formed id is logged beside it
// (caller_request_id), a malformed one dropped; the phone number, user id and tokens of the
// calls are not logged.
func TestAccessLog(t *testing.T) {
	logs := &logBuffer{}
	opTok, opHash, err := admin.NewToken()
	if err != nil {
		t.Fatal(err)
	}
	auditTok, auditHash, err := admin.NewToken()
	if err != nil {
		t.Fatal(err)
	}
	a := daemontest.StartWithLog(t, slog.New(slog.NewJSONHandler(logs, nil)), func(c *config.Config) {
		c.Admin.Tokens = []config.AdminToken{{Name: "olga", Role: string(admin.Operator), SHA256: opHash},
			{Name: "audra", Role: string(admin.Auditor), SHA256: auditHash}}
	})
	conn := a.Dial("device-log-0001")
	const phone = "13912345678"
	ctx := context.Background()
	withID := func(id string) context.Context { return metadata.AppendToOutgoingContext(ctx, "x-request-id", id) }

	// The appliance names every request itself; a caller's well-formed id is logged beside
	// its own.
	var hdr metadata.MD
	if _, err := conn.Accounts.SendSmsCode(withID("caller-Req_1.a"), &hufuv1.SendSmsCodeRequest{
		Phone: phone, Purpose: hufuv1.SmsPurpose_SMS_PURPOSE_SIGN_IN,
	}, grpc.Header(&hdr)); err != nil {
		t.Fatal(err)
	}
	smsID := ""
	if got := hdr.Get("x-request-id"); len(got) == 1 && got[0] != "caller-Req_1.a" && admin.ValidRequestID(got[0]) {
		smsID = got[0]
	} else {
		t.Fatalf("x-request-id header %q, want a fresh id of the appliance's", got)
	}

	// A malformed one is replaced; the answer names the replacement.
	hdr = nil
	resp, err := conn.Accounts.SignInWithSmsCode(withID("not ok; drop table"), &hufuv1.SignInWithSmsCodeRequest{
		Phone: phone, Code: a.SMSCode(phone, accounts.PurposeSignIn), Device: &hufuv1.Device{Id: "device-log-0001", Name: "test phone"},
	}, grpc.Header(&hdr))
	if err != nil {
		t.Fatal(err)
	}
	signInID := ""
	if got := hdr.Get("x-request-id"); len(got) == 1 && got[0] != "not ok; drop table" && admin.ValidRequestID(got[0]) {
		signInID = got[0]
	} else {
		t.Fatalf("x-request-id header %q, want a fresh well-formed id", got)
	}
	conn.SetAccessToken(resp.Session.AccessToken)

	// A user call without an id gets one.
	hdr = nil
	if _, err := conn.Accounts.GetAccount(ctx, &hufuv1.GetAccountRequest{}, grpc.Header(&hdr)); err != nil {
		t.Fatal(err)
	}
	userID := ""
	if got := hdr.Get("x-request-id"); len(got) == 1 && admin.ValidRequestID(got[0]) {
		userID = got[0]
	} else {
		t.Fatalf("x-request-id header %q, want a fresh id", got)
	}

	// A refused call is logged with its code and still answers with the id.
	anon := a.Dial("device-log-0002")
	hdr = nil
	_, err = anon.Accounts.GetAccount(withID("refused-1"), &hufuv1.GetAccountRequest{}, grpc.Header(&hdr))
	if status.Code(err) != codes.Unauthenticated {
		t.Fatalf("GetAccount without a token: %v", err)
	}
	refusedID := ""
	if got := hdr.Get("x-request-id"); len(got) == 1 && admin.ValidRequestID(got[0]) && got[0] != "refused-1" {
		refusedID = got[0]
	} else {
		t.Errorf("x-request-id header of a refused call %q, want a fresh id", got)
	}

	// Admin requests: a caller's id, an anonymous refusal, a malformed id.
	adminGet := func(path, id, token string) *http.Response {
		t.Helper()
		req, err := http.NewRequest(http.MethodGet, a.AdminURL()+path, nil)
		if err != nil {
			t.Fatal(err)
		}
		if id != "" {
			req.Header.Set("X-Request-Id", id)
		}
		if token != "" {
			req.Header.Set("Authorization", "Bearer "+token)
		}
		res, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		res.Body.Close()
		return res
	}
	res := adminGet("/metrics", "scrape-7", opTok)
	scrape7 := res.Header.Get("X-Request-Id")
	if res.StatusCode != 200 || scrape7 == "scrape-7" || !admin.ValidRequestID(scrape7) {
		t.Fatalf("/metrics: %d, X-Request-Id %q", res.StatusCode, scrape7)
	}
	res = adminGet("/metrics", "scrape-8", "")
	scrape8 := res.Header.Get("X-Request-Id")
	if res.StatusCode != 401 || scrape8 == "scrape-8" || !admin.ValidRequestID(scrape8) {
		t.Fatalf("/metrics without a token: %d, X-Request-Id %q", res.StatusCode, scrape8)
	}
	long := strings.Repeat("x", 65)
	res = adminGet("/crl/no-such-ca", long, "")
	crlID := res.Header.Get("X-Request-Id")
	if res.StatusCode != 404 || crlID == long || !admin.ValidRequestID(crlID) {
		t.Fatalf("/crl/no-such-ca: %d, X-Request-Id %q", res.StatusCode, crlID)
	}

	// The audit records of a call and of an admin request name its request id: the second
	// export holds the record of the first.
	res = adminGet("/audit/export", "export-1", auditTok)
	exportID := res.Header.Get("X-Request-Id")
	if res.StatusCode != 200 {
		t.Fatalf("/audit/export: %d", res.StatusCode)
	}
	records := auditRecordsByRequestID(t, a.AdminURL(), auditTok)
	if got := records[exportID]; len(got) != 1 || got[0] != "admin.audit.export" {
		t.Errorf("audit records of the admin request %s: %v, want the export's", exportID, got)
	}
	if got := records["export-1"]; len(got) != 0 {
		t.Errorf("the caller's own id names audit records: %v", got)
	}
	if got := records[signInID]; len(got) == 0 {
		t.Errorf("no audit record names the sign-in's request id %s: %v", signInID, records)
	}
	if got := records[smsID]; len(got) == 0 {
		t.Errorf("no audit record names the SMS request's id: %v", records)
	}

	// The daemon logs a call after answering it: stop it, so every line is written.
	a.Stop()
	rpc := logs.lines(t, "rpc")
	wantFields(t, byID(t, rpc, smsID), map[string]string{
		"method": "/hufu.v1.AccountService/SendSmsCode", "code": "OK", "caller": "anonymous", "caller_request_id": "caller-Req_1.a"})
	wantFields(t, byID(t, rpc, signInID), map[string]string{
		"method": "/hufu.v1.AccountService/SignInWithSmsCode", "code": "OK", "caller": "anonymous"})
	wantFields(t, byID(t, rpc, userID), map[string]string{
		"method": "/hufu.v1.AccountService/GetAccount", "code": "OK", "caller": "user"})
	wantFields(t, byID(t, rpc, refusedID), map[string]string{
		"method": "/hufu.v1.AccountService/GetAccount", "code": "Unauthenticated", "caller": "anonymous", "caller_request_id": "refused-1"})
	adm := logs.lines(t, "admin request")
	wantFields(t, byID(t, adm, scrape7), map[string]string{
		"method": "GET", "route": "GET /metrics", "caller": "operator", "caller_request_id": "scrape-7"})
	wantFields(t, byID(t, adm, scrape8), map[string]string{
		"method": "GET", "route": "GET /metrics", "caller": "anonymous", "caller_request_id": "scrape-8"})
	wantFields(t, byID(t, adm, crlID), map[string]string{"route": "GET /crl/{ca}", "caller": "anonymous"})
	if _, ok := byID(t, adm, crlID)["caller_request_id"]; ok {
		t.Error("a malformed caller id was logged")
	}
	for id, code := range map[string]float64{scrape7: 200, scrape8: 401, crlID: 404} {
		if got := byID(t, adm, id)["status"]; got != code {
			t.Errorf("request %s: status %v, want %v", id, got, code)
		}
	}

	all := logs.String()
	for what, secret := range map[string]string{
		"phone number": phone, "access token": resp.Session.AccessToken, "admin token": opTok,
		"malformed request id": "drop table",
	} {
		if strings.Contains(all, secret) {
			t.Errorf("the %s appears in the log", what)
		}
	}
	for _, l := range append(rpc, adm...) {
		b, _ := json.Marshal(l)
		if strings.Contains(string(b), resp.Account.Id) || strings.Contains(string(b), "olga") {
			t.Errorf("an access line names the caller: %s", b)
		}
	}
}

// auditRecordsByRequestID exports the audit log and returns the actions of its records by
// their request_id detail.
func auditRecordsByRequestID(t *testing.T, adminURL, token string) map[string][]string {
	t.Helper()
	req, _ := http.NewRequest(http.MethodGet, adminURL+"/audit/export", nil)
	req.Header.Set("Authorization", "Bearer "+token)
	res, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer res.Body.Close()
	out := map[string][]string{}
	dec := json.NewDecoder(res.Body)
	for dec.More() {
		var line struct {
			Type    string            `json:"type"`
			Action  string            `json:"action"`
			Details map[string]string `json:"details"`
		}
		if err := dec.Decode(&line); err != nil {
			t.Fatal(err)
		}
		if id := line.Details[store.RequestIDDetail]; line.Type == "record" && id != "" {
			out[id] = append(out[id], line.Action)
		}
	}
	return out
}
