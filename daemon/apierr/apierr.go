// Package apierr is hufu's one typed error for the API and the one place where errors become
// gRPC statuses. Domain code returns *Error for anything the caller should see; every other
// error is an internal error whose text never leaves the daemon (it may name files, keys or
// HSM details) and is logged instead.
package apierr

import (
	"context"
	"errors"
	"fmt"
	"regexp"
	"time"

	hufuv1 "github.com/hufu-hsm/hufu/api/hufu/v1"
	"github.com/hufu-hsm/hufu/cosign"
	"github.com/hufu-hsm/hufu/store"
	"google.golang.org/genproto/googleapis/rpc/errdetails"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/protoadapt"
	"google.golang.org/protobuf/types/known/durationpb"
)

// Kind is the class of an API error; each maps to one gRPC code.
type Kind uint8

const (
	Internal           Kind = iota // codes.Internal
	InvalidArgument                // codes.InvalidArgument, with the field named
	NotFound                       // codes.NotFound
	AlreadyExists                  // codes.AlreadyExists
	FailedPrecondition             // codes.FailedPrecondition: wrong state for the request
	PermissionDenied               // codes.PermissionDenied: authenticated, not allowed
	Unauthenticated                // codes.Unauthenticated: no or bad credentials
	ResourceExhausted              // codes.ResourceExhausted: rate limits and lockouts
	Unavailable                    // codes.Unavailable: a dependency is down; retry later
	Aborted                        // codes.Aborted: a concurrent change won; retry the call
)

var codeOf = [...]codes.Code{
	Internal: codes.Internal, InvalidArgument: codes.InvalidArgument, NotFound: codes.NotFound,
	AlreadyExists: codes.AlreadyExists, FailedPrecondition: codes.FailedPrecondition,
	PermissionDenied: codes.PermissionDenied, Unauthenticated: codes.Unauthenticated,
	ResourceExhausted: codes.ResourceExhausted, Unavailable: codes.Unavailable, Aborted: codes.Aborted,
}

// Error is an error the caller may see. Message is shown as is, so it must not contain
// secrets or other people's data; Cause is for the log only.
type Error struct {
	Kind       Kind
	Field      string        // InvalidArgument: the request field, e.g. "device.id"
	Message    string        // for the caller
	RetryAfter time.Duration // ResourceExhausted, Unavailable: when trying again makes sense
	// Reason, if set, is sent as a google.rpc.ErrorInfo (domain hufuv1.ErrorDomain) for
	// clients that act on it (hufuv1.ReasonAccessTokenRejected).
	Reason string
	Cause  error // logged, never sent
}

func (e *Error) Error() string {
	msg := e.Message
	if e.Field != "" {
		msg = e.Field + ": " + msg
	}
	if e.Cause != nil {
		msg += " (" + e.Cause.Error() + ")"
	}
	return msg
}

func (e *Error) Unwrap() error { return e.Cause }

// GRPCStatus makes *Error a gRPC status error: the code of its kind, the message with the
// field, and the standard details (BadRequest naming the field, RetryInfo, ErrorInfo).
func (e *Error) GRPCStatus() *status.Status {
	msg := e.Message
	if e.Field != "" {
		msg = e.Field + ": " + msg
	}
	st := status.New(codeOf[e.Kind], msg)
	var details []protoadapt.MessageV1
	if e.Field != "" {
		details = append(details, &errdetails.BadRequest{FieldViolations: []*errdetails.BadRequest_FieldViolation{
			{Field: e.Field, Description: e.Message},
		}})
	}
	if e.RetryAfter > 0 {
		details = append(details, &errdetails.RetryInfo{RetryDelay: durationpb.New(e.RetryAfter)})
	}
	if e.Reason != "" {
		details = append(details, &errdetails.ErrorInfo{Reason: e.Reason, Domain: hufuv1.ErrorDomain})
	}
	if len(details) > 0 {
		if withDetails, err := st.WithDetails(details...); err == nil {
			return withDetails
		}
	}
	return st
}

// Invalid reports a bad request field. cause, if any, is appended to the message: use it for
// validation errors whose text is meant for the caller.
func Invalid(field string, cause error) *Error {
	msg := "invalid value"
	if cause != nil {
		msg = cause.Error()
	}
	return &Error{Kind: InvalidArgument, Field: field, Message: msg}
}

// Invalidf reports a bad request field with a formatted message.
func Invalidf(field, format string, args ...any) *Error {
	return &Error{Kind: InvalidArgument, Field: field, Message: fmt.Sprintf(format, args...)}
}

// requestIDRE is the one rule of the API's idempotency keys (request_id and the like).
var requestIDRE = regexp.MustCompile(`^[A-Za-z0-9._-]{8,64}$`)

// CheckRequestID checks an idempotency key given in field: 8 to 64 of [A-Za-z0-9._-].
func CheckRequestID(field, id string) error {
	if !requestIDRE.MatchString(id) {
		return Invalidf(field, "must be 8 to 64 characters of A-Z, a-z, 0-9, '.', '_' or '-'")
	}
	return nil
}

// New returns an error of the given kind with a message for the caller.
func New(kind Kind, format string, args ...any) *Error {
	return &Error{Kind: kind, Message: fmt.Sprintf(format, args...)}
}

// Exhausted reports a rate limit or lockout and when it ends.
func Exhausted(retryAfter time.Duration, format string, args ...any) *Error {
	return &Error{Kind: ResourceExhausted, Message: fmt.Sprintf(format, args...), RetryAfter: retryAfter}
}

// diskFull is what a caller sees of store.ErrNoSpace, in whatever error it arrives.
var diskFull = &Error{Kind: ResourceExhausted, Message: store.ErrNoSpace.Error(), RetryAfter: time.Minute}

// Status converts any error returned by a handler into the status sent to the caller, and
// reports whether the error was internal (and so must be logged with its full text).
func Status(err error) (st *status.Status, internal bool) {
	var (
		apiErr   *Error
		inputErr *cosign.InputError
	)
	switch {
	case err == nil:
		return status.New(codes.OK, ""), false
	case errors.Is(err, store.ErrNoSpace):
		// The appliance's disk is full: not the caller's fault nor a bug; it clears by itself
		// when an operator frees space (docs/operations.md), and readiness says so meanwhile.
		// Not logged per call: the store and readiness log it once.
		return diskFull.GRPCStatus(), false
	case errors.As(err, &apiErr):
		return apiErr.GRPCStatus(), apiErr.Kind == Internal
	case errors.As(err, &inputErr):
		return Invalid(inputErr.Field, inputErr.Err).GRPCStatus(), false
	case errors.Is(err, context.Canceled):
		return status.New(codes.Canceled, "request canceled"), false
	case errors.Is(err, context.DeadlineExceeded):
		return status.New(codes.DeadlineExceeded, "deadline exceeded"), false
	}
	if st, ok := status.FromError(err); ok && st.Code() != codes.Unknown {
		return st, false // already a status, e.g. from grpc itself
	}
	return status.New(codes.Internal, "internal error"), true
}
