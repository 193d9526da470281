package daemon_test

import (
	"fmt"
	"time"

	"github.com/hufu-hsm/hufu/daemon/accounts"
	"net/http"
	"strings"

	"github.com/hufu-hsm/hufu/admin"
	"testing"

	hufuv1 "github.com/hufu-hsm/hufu/api/hufu/v1"
	"google.golang.org/grpc/codes"
)

// Input hygiene (issue 16): bad input is the caller's mistake and is answered as such, with
// the field named, never as an internal error.

func TestChangePinNamesABadKeyID(t *testing.T) {
	a := startAppliance(t, nil)
	conn := a.dial("device-0001")
	a.signIn(conn, phone, "device-0001")
	cases := []struct {
		name, keyID string
		code        codes.Code
		field       string
	}{
		{"missing", "", codes.InvalidArgument, "key_id"},
		{"malformed", "no/such key", codes.InvalidArgument, "key_id"},
		{"well-formed but unknown", "key-unknown-01", codes.NotFound, ""},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			_, err := conn.Keys.ChangePin(bg, &hufuv1.ChangePinRequest{KeyId: c.keyID, CurrentPin: "123456", NewPin: "654321"})
			wantCode(t, err, c.code, c.field)
		})
	}
}

func TestAuditExportRefusesARangePastTheLog(t *testing.T) {
	a := startAdminAppliance(t, nil)
	cases := []struct {
		name, query, want string
	}{
		{"to past the head", "?to=1000000", "to: 1000000 is past the last audit record"},
		{"to at the largest integer", "?from=1&to=18446744073709551615", "to: 18446744073709551615 is past the last audit record"},
		{"from past the head", "?from=1000000", "from: 1000000 is past the last audit record"},
		{"to not a number", "?to=-1", `to: "-1" is not an unsigned integer`},
		{"to before from", "?from=3&to=2", "to 2 is before from 3"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			code, body := a.call("GET", "/audit/export"+c.query, admin.Auditor)
			if code != http.StatusBadRequest || !strings.HasPrefix(string(body), c.want) {
				t.Fatalf("got %d %q, want 400 %q", code, body, c.want)
			}
		})
	}
	if code, body := a.call("GET", "/audit/export?from=1&to=2", admin.Auditor); code != http.StatusOK || len(records(t, body)) != 2 {
		t.Fatalf("an in-range export: %d %s", code, body)
	}
}

// TestWrongCodesCountAcrossCodes: a fresh code does not give a fresh set of guesses; the
// count per number runs for the failure window, the lockout is audited and counted.
func TestWrongCodesCountAcrossCodes(t *testing.T) {
	a := startAdminAppliance(t, nil)
	conn := a.dial("device-0001")
	dev := &hufuv1.Device{Id: "device-0001"}
	send := func(purpose hufuv1.SmsPurpose) {
		t.Helper()
		if _, err := conn.Accounts.SendSmsCode(bg, &hufuv1.SendSmsCodeRequest{Phone: phone, Purpose: purpose}); err != nil {
			t.Fatal(err)
		}
	}
	guess := func() error {
		code := a.code(phone, accounts.PurposeSignIn)
		wrong := "000000"
		if wrong == code {
			wrong = "000001"
		}
		_, err := conn.Accounts.SignInWithSmsCode(bg, &hufuv1.SignInWithSmsCodeRequest{Phone: phone, Code: wrong, Device: dev})
		return err
	}
	max := a.cfg.Account.CodeMaxAttempts
	// Guesses spread over fresh codes (each after the resend interval) still add up.
	for i := 1; i < max; i++ {
		send(hufuv1.SmsPurpose_SMS_PURPOSE_SIGN_IN)
		wantCode(t, guess(), codes.Unauthenticated, "")
		a.clock.Advance(a.cfg.Account.SMSResendInterval.Std() + time.Second)
		if i == 2 {
			a.clock.Advance(time.Hour) // past the hourly sending limit, not the failure window
		}
	}
	send(hufuv1.SmsPurpose_SMS_PURPOSE_SIGN_IN)
	wantCode(t, guess(), codes.ResourceExhausted, "")
	// After the lockout, in the window, the next wrong code locks again at once.
	a.clock.Advance(a.cfg.Account.CodeLockout.Std() + time.Second)
	send(hufuv1.SmsPurpose_SMS_PURPOSE_SIGN_IN)
	wantCode(t, guess(), codes.ResourceExhausted, "")
	// Past the window the count starts again, and a right code clears it.
	a.clock.Advance(a.cfg.Account.CodeFailureWindow.Std() + time.Second)
	send(hufuv1.SmsPurpose_SMS_PURPOSE_SIGN_IN)
	wantCode(t, guess(), codes.Unauthenticated, "")
	if _, err := conn.Accounts.SignInWithSmsCode(bg, &hufuv1.SignInWithSmsCodeRequest{Phone: phone, Code: a.code(phone, accounts.PurposeSignIn), Device: dev}); err != nil {
		t.Fatalf("the right code: %v", err)
	}

	var locked int
	for _, r := range records(t, a.export()) {
		d, _ := r["details"].(map[string]any)
		if r["action"] == "account.sms_code.verify" && r["outcome"] == "locked" {
			locked++
			if d["locked_for"] != a.cfg.Account.CodeLockout.Std().String() || strings.Contains(fmt.Sprint(r), phone) {
				t.Fatalf("lockout record: %v", r)
			}
		}
	}
	_, metrics := a.call("GET", "/metrics", admin.Operator)
	if locked != 2 || !strings.Contains(string(metrics), "hufu_accounts_sms_code_lockouts_total 2\n") ||
		!strings.Contains(string(metrics), fmt.Sprintf("hufu_accounts_sms_code_failures_total %d\n", max+2)) {
		t.Fatalf("%d lockout records; metrics:\n%s", locked, grepLines(metrics, "hufu_accounts_sms_code"))
	}
}

// TestAdminAuthFailuresAreLimited: requests without a valid token from one address cost one
// audit record per window plus a summary, and are answered 429 past the limit, while a
// valid token from the same address is still served.
func TestAdminAuthFailuresAreLimited(t *testing.T) {
	a := startAdminAppliance(t, nil)
	const limit = 10 // admin.Options.AuthFailureLimit's default
	for i := 1; i <= limit; i++ {
		if code, body := a.call("GET", "/audit/checkpoints", "wrong"); code != http.StatusUnauthorized {
			t.Fatalf("failure %d: %d %s", i, code, body)
		}
	}
	req, _ := http.NewRequest("GET", a.adminURL+"/audit/checkpoints", nil)
	resp, err := a.http.Do(req)
	must(t, err)
	resp.Body.Close()
	if resp.StatusCode != http.StatusTooManyRequests || resp.Header.Get("Retry-After") == "" {
		t.Fatalf("past the limit: %d, Retry-After %q", resp.StatusCode, resp.Header.Get("Retry-After"))
	}
	if code, body := a.call("GET", "/audit/checkpoints", admin.Auditor); code != http.StatusOK {
		t.Fatalf("a valid token from the limited address: %d %s", code, body)
	}
	a.clock.Advance(time.Minute + time.Second)
	if code, _ := a.call("GET", "/audit/checkpoints", "wrong"); code != http.StatusUnauthorized {
		t.Fatalf("the next window: %d", code)
	}

	var denied, summaries int
	for _, r := range records(t, a.export()) {
		d, _ := r["details"].(map[string]any)
		switch {
		case r["action"] == "admin.audit.checkpoints" && r["outcome"] == "denied":
			denied++
		case r["action"] == "admin.auth.failures":
			summaries++
			if d["unaudited_failures"] != fmt.Sprint(limit-1) || d["failures"] != fmt.Sprint(limit+1) || d["remote"] != "127.0.0.1" {
				t.Fatalf("summary: %v", r)
			}
		}
	}
	_, metrics := a.call("GET", "/metrics", admin.Operator)
	want := []string{`hufu_admin_auth_failures_total{handling="audited"} 2`, `hufu_admin_auth_failures_total{handling="counted"} 9`,
		`hufu_admin_auth_failures_total{handling="limited"} 1`}
	for _, w := range want {
		if !strings.Contains(string(metrics), w+"\n") {
			t.Fatalf("metrics lack %s:\n%s", w, grepLines(metrics, "hufu_admin_auth"))
		}
	}
	if denied != 2 || summaries != 1 {
		t.Fatalf("%d denial records (want 2: one per window), %d summaries (want 1)", denied, summaries)
	}
}

// TestUnknownEnumValuesAreRefused: an enum number the enum does not define (a state filter,
// a purpose) is InvalidArgument naming the field, for any request.
func TestUnknownEnumValuesAreRefused(t *testing.T) {
	a := startAppliance(t, nil)
	conn := a.dial("device-0001")
	cases := []struct {
		name  string
		call  func() error
		field string
	}{
		{"SMS purpose", func() error {
			_, err := conn.Accounts.SendSmsCode(bg, &hufuv1.SendSmsCodeRequest{Phone: phone, Purpose: 99})
			return err
		}, "purpose"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) { wantCode(t, c.call(), codes.InvalidArgument, c.field) })
	}

	a.signIn(conn, phone, "device-0001")
	cc := conn.ClientConn()
	userCases := []struct {
		name  string
		call  func() error
		field string
	}{
		{"order status filter", func() error {
			_, err := hufuv1.NewCertificateServiceClient(cc).ListOrders(bg, &hufuv1.ListOrdersRequest{Status: 99})
			return err
		}, "status"},
		{"after-sales state filter", func() error {
			_, err := hufuv1.NewAfterSalesServiceClient(cc).ListAfterSales(bg, &hufuv1.ListAfterSalesRequest{State: 99})
			return err
		}, "state"},
		{"invoice state filter", func() error {
			_, err := hufuv1.NewInvoiceServiceClient(cc).ListInvoices(bg, &hufuv1.ListInvoicesRequest{State: -1})
			return err
		}, "state"},
		{"join application status filter", func() error {
			_, err := conn.Enterprises.ListJoinApplications(bg, &hufuv1.ListJoinApplicationsRequest{Uscc: "91330000MA27U0XX1A", Status: 42})
			return err
		}, "status"},
	}
	for _, c := range userCases {
		t.Run(c.name, func(t *testing.T) { wantCode(t, c.call(), codes.InvalidArgument, c.field) })
	}
	// The defined values, "unspecified" (no filter) included, pass.
	if _, err := hufuv1.NewCertificateServiceClient(cc).ListOrders(bg, &hufuv1.ListOrdersRequest{}); err != nil {
		t.Fatalf("no filter: %v", err)
	}
	if _, err := hufuv1.NewCertificateServiceClient(cc).ListOrders(bg, &hufuv1.ListOrdersRequest{Status: hufuv1.OrderStatus_ORDER_STATUS_COMPLETED}); err != nil {
		t.Fatalf("a defined status: %v", err)
	}
}

// TestFreeTextIsChecked: free text refuses control characters (line breaks only where the
// field is multi-line), bidirectional overrides and oversize input, naming the field
// (daemon/text; its unit test covers the characters one by one).
func TestFreeTextIsChecked(t *testing.T) {
	a := startAppliance(t, nil)
	conn := a.dial("device-0001")
	signIn := func(name string) error {
		_, err := conn.Accounts.SignInWithSmsCode(bg, &hufuv1.SignInWithSmsCodeRequest{Phone: phone, Code: "123456",
			Device: &hufuv1.Device{Id: "device-0001", Name: name}})
		return err
	}
	wantCode(t, signIn("my phone\u202Eenohp"), codes.InvalidArgument, "device.name")
	wantCode(t, signIn("line\nbreak"), codes.InvalidArgument, "device.name")

	a.signIn(conn, phone, "device-0001")
	cc := conn.ClientConn()
	support := hufuv1.NewSupportServiceClient(cc)
	invoices := hufuv1.NewInvoiceServiceClient(cc)
	feedback := func(text string) error {
		_, err := support.SubmitFeedback(bg, &hufuv1.SubmitFeedbackRequest{RequestId: "feedback-0001", Text: text})
		return err
	}
	title := func(name, address string) error {
		_, err := invoices.AddInvoiceTitle(bg, &hufuv1.AddInvoiceTitleRequest{RequestId: "title-00001", Title: &hufuv1.InvoiceTitle{
			Kind: hufuv1.InvoiceTitleKind_INVOICE_TITLE_KIND_PERSONAL, Name: name, Address: address}})
		return err
	}
	cases := []struct {
		name  string
		err   error
		field string
	}{
		{"feedback with an escape sequence", feedback("hello \x1b[2J"), "text"},
		{"feedback with a bidi override", feedback("see file \u202Efdp.exe"), "text"},
		{"feedback too long", feedback(strings.Repeat("长", 100000)), "text"},
		{"title name with a line break", title("张三\n李四", ""), "title.name"},
		{"title address with an isolate", title("张三", "杭州\u2067市"), "title.address"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) { wantCode(t, c.err, codes.InvalidArgument, c.field) })
	}
	// Multi-line fields keep their line breaks.
	if err := feedback("第一行\n第二行"); err != nil {
		t.Fatalf("multi-line feedback: %v", err)
	}
}
