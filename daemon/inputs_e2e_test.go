package daemon_test

import (
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
