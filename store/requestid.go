package store

import "context"

// RequestIDDetail is the audit detail that names the request (gRPC call or admin HTTP
// request) an audit record was written for: the id the access log line and the caller's
// x-request-id carry, so that one request can be followed from a caller's logs to our
// access log to the records it wrote.
const RequestIDDetail = "request_id"

type requestIDKey struct{}

// WithRequestID returns ctx carrying a request id. Every audit record written by a
// transaction run under that context (Update, Append, UpdateInBatches) gets the detail
// RequestIDDetail, unless the event sets that detail itself or already has the most
// details a record may have.
func WithRequestID(ctx context.Context, id string) context.Context {
	return context.WithValue(ctx, requestIDKey{}, id)
}

// RequestIDFrom returns the request id in ctx, or "".
func RequestIDFrom(ctx context.Context) string {
	id, _ := ctx.Value(requestIDKey{}).(string)
	return id
}
