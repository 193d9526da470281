package daemon_test

import (
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
