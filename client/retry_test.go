package client

import (
	"context"
	"testing"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
)

func TestRetry(t *testing.T) {
	for _, tt := range []struct {
		name      string
		errs      []error
		wantCalls int
		wantCode  codes.Code
	}{
		{"success", []error{nil}, 1, codes.OK},
		{"unavailable then success", []error{status.Error(codes.Unavailable, "down"), nil}, 2, codes.OK},
		{"aborted twice then success", []error{status.Error(codes.Aborted, "x"), status.Error(codes.Aborted, "x"), nil}, 3, codes.OK},
		{"permanent error is not repeated", []error{status.Error(codes.InvalidArgument, "bad")}, 1, codes.InvalidArgument},
		{"gives up after four", []error{
			status.Error(codes.Unavailable, "1"), status.Error(codes.Unavailable, "2"),
			status.Error(codes.Unavailable, "3"), status.Error(codes.Unavailable, "4"), nil,
		}, 4, codes.Unavailable},
	} {
		t.Run(tt.name, func(t *testing.T) {
			calls := 0
			_, err := retry(context.Background(), func() (int, error) {
				calls++
				return 0, tt.errs[calls-1]
			})
			if calls != tt.wantCalls || status.Code(err) != tt.wantCode {
				t.Fatalf("%d calls, %v", calls, err)
			}
		})
	}
	t.Run("cancelled context stops waiting", func(t *testing.T) {
		ctx, cancel := context.WithCancel(context.Background())
		cancel()
		calls := 0
		_, err := retry(ctx, func() (int, error) { calls++; return 0, status.Error(codes.Unavailable, "down") })
		if calls != 1 || status.Code(err) != codes.Unavailable {
			t.Fatalf("%d calls, %v", calls, err)
		}
	})
}
