package client

import (
	"errors"
	"testing"

	"google.golang.org/genproto/googleapis/rpc/errdetails"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	hufuv1 "github.com/hufu-hsm/hufu/api/hufu/v1"
)

// withReason is an Unauthenticated status carrying an ErrorInfo of the domain and reason.
func withReason(t *testing.T, domain, reason string) error {
	st, err := status.New(codes.Unauthenticated, "access token is invalid, expired or revoked; sign in again").
		WithDetails(&errdetails.ErrorInfo{Domain: domain, Reason: reason})
	if err != nil {
		t.Fatal(err)
	}
	return st.Err()
}

// TestAccessTokenRejected: only the appliance's rejection of the access token leads to a
// refresh and a repeat; other Unauthenticated answers come from the call and are final.
func TestAccessTokenRejected(t *testing.T) {
	for _, tt := range []struct {
		name string
		err  error
		want bool
	}{
		{"expired access token", withReason(t, hufuv1.ErrorDomain, hufuv1.ReasonAccessTokenRejected), true},
		{"the message alone", status.Error(codes.Unauthenticated, "access token is invalid, expired or revoked; sign in again"), false},
		{"another domain's reason", withReason(t, "example.com", hufuv1.ReasonAccessTokenRejected), false},
		{"no access token", status.Error(codes.Unauthenticated, "sign in first: no access token"), false},
		{"wrong SMS code", status.Error(codes.Unauthenticated, "wrong code: 4 attempts left"), false},
		{"expired ticket", status.Error(codes.Unauthenticated, "the cosign ticket expired or is unknown; open a new one with the PIN"), false},
		{"other code", status.Error(codes.PermissionDenied, "access token is fine, the call is not"), false},
		{"not a status", errors.New("access token is invalid"), false},
		{"success", nil, false},
	} {
		t.Run(tt.name, func(t *testing.T) {
			if got := accessTokenRejected(tt.err); got != tt.want {
				t.Fatalf("accessTokenRejected(%v) = %v", tt.err, got)
			}
		})
	}
}
