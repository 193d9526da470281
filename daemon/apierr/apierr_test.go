package apierr

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/hufu-hsm/hufu/cosign"
	"github.com/hufu-hsm/hufu/store"
	"google.golang.org/genproto/googleapis/rpc/errdetails"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
)

func TestStatus(t *testing.T) {
	secret := errors.New("open /var/lib/hufu/k/secret: permission denied")
	cases := []struct {
		name      string
		err       error
		code      codes.Code
		msg       string
		internal  bool
		field     string
		retryWait time.Duration
	}{
		{"invalid field", Invalidf("device.id", "must be 8-64 characters"), codes.InvalidArgument, "device.id: must be 8-64 characters", false, "device.id", 0},
		{"wrapped api error", fmt.Errorf("signing: %w", New(FailedPrecondition, "key is revoked")), codes.FailedPrecondition, "key is revoked", false, "", 0},
		{"cause is not sent", &Error{Kind: Unavailable, Message: "HSM unavailable", Cause: secret}, codes.Unavailable, "HSM unavailable", false, "", 0},
		{"rate limit", Exhausted(90*time.Second, "too many codes"), codes.ResourceExhausted, "too many codes", false, "", 90 * time.Second},
		{"cosign input error", &cosign.InputError{Field: "sign_request.q1", Err: cosign.ErrNotOnCurve}, codes.InvalidArgument, "sign_request.q1: point is not on the curve", false, "sign_request.q1", 0},
		{"deadline", fmt.Errorf("store: %w", context.DeadlineExceeded), codes.DeadlineExceeded, "deadline exceeded", false, "", 0},
		{"grpc status passes", status.Error(codes.NotFound, "no such key"), codes.NotFound, "no such key", false, "", 0},
		{"store refused: disk below its margin", fmt.Errorf("accounts: %w", fmt.Errorf("%w: 1024 bytes free under /var/lib/hufu/store", store.ErrNoSpace)),
			codes.ResourceExhausted, "store: no space left on device", false, "", time.Minute},
		{"store failed on ENOSPC", fmt.Errorf("store: commit sync: %w", errors.Join(store.ErrFailed, fmt.Errorf("%w: write /var/lib/hufu/store/000007.log", store.ErrNoSpace))),
			codes.ResourceExhausted, "store: no space left on device", false, "", time.Minute},
		{"anything else is internal and hidden", secret, codes.Internal, "internal error", true, "", 0},
		{"explicit internal", &Error{Kind: Internal, Message: "internal error", Cause: secret}, codes.Internal, "internal error", true, "", 0},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			st, internal := Status(c.err)
			if st.Code() != c.code || st.Message() != c.msg || internal != c.internal {
				t.Fatalf("got %v %q internal=%v, want %v %q internal=%v", st.Code(), st.Message(), internal, c.code, c.msg, c.internal)
			}
			if strings.Contains(st.Message(), "/var/lib") {
				t.Fatal("internal detail leaked")
			}
			var field string
			var wait time.Duration
			for _, d := range st.Details() {
				switch d := d.(type) {
				case *errdetails.BadRequest:
					field = d.FieldViolations[0].Field
				case *errdetails.RetryInfo:
					wait = d.RetryDelay.AsDuration()
				}
			}
			if field != c.field || wait != c.retryWait {
				t.Fatalf("details: field %q retry %v, want %q %v", field, wait, c.field, c.retryWait)
			}
		})
	}
}
