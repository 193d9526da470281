package client

import (
	"errors"
	"testing"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
)

// TestAccessTokenRejected: only the appliance's rejection of the access token leads to a
// refresh and a repeat; other Unauthenticated answers come from the call and are final.
func TestAccessTokenRejected(t *testing.T) {
	for _, tt := range []struct {
		name string
		err  error
		want bool
	}{
		{"expired access token", status.Error(codes.Unauthenticated, "access token is invalid, expired or revoked; sign in again"), true},
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
