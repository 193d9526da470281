// Package authn says who is calling hufu and what each RPC requires of the caller. The gRPC
// server resolves the caller once per call (a user session from its bearer token and device,
// or a system from its verified client certificate), checks it against the method's policy,
// and puts the Caller in the context for the handler.
package authn

import (
	"context"
	"net"

	"google.golang.org/grpc"
)

// Requirement is what a method demands of its caller.
type Requirement uint8

const (
	// Deny is the zero value: a method nobody declared is refused.
	Deny Requirement = iota
	// Public methods need no credentials (sign-in, sending an SMS code).
	Public
	// User methods need a valid user session from the device it was issued to.
	User
	// System methods need a client certificate of a configured system client that is
	// allowed the method's service.
	System
)

// Policy maps full method names ("/hufu.v1.AccountService/SignOut") to requirements.
type Policy map[string]Requirement

// Add requires r of every method and stream of the service desc describes, and returns p.
func (p Policy) Add(desc *grpc.ServiceDesc, r Requirement) Policy {
	for _, m := range desc.Methods {
		p["/"+desc.ServiceName+"/"+m.MethodName] = r
	}
	for _, st := range desc.Streams {
		p["/"+desc.ServiceName+"/"+st.StreamName] = r
	}
	return p
}

// Caller is the authenticated party of a call.
type Caller struct {
	// For users: the account, the session and the device the session is bound to.
	UserID, SessionID, DeviceID string
	// For systems: the client's configured name (its certificate's common name).
	System string
	// For operators at the console (admin/console): the admin token's holder, signed in
	// with a role that may use the desk being called. The desks treat them as they treat a
	// desk system client, under their own name in the audit log.
	Admin string
	// Peer is the peer's address, for rate limits and audit (Source formats it).
	Peer net.Addr
}

// Source is the peer's address as text, "" if unknown. It is formatted on demand: only
// sign-in's rate limits read it, and formatting it on every call cost allocations (issue 18).
func (c Caller) Source() string {
	if c.Peer == nil {
		return ""
	}
	return c.Peer.String()
}

// Actor is how the caller appears in the audit log.
func (c Caller) Actor() string {
	switch {
	case c.UserID != "":
		return "user:" + c.UserID
	case c.System != "":
		return "system:" + c.System
	case c.Admin != "":
		return "admin:" + c.Admin
	}
	return "anonymous"
}

// AtDesk reports whether the caller may work an operators' desk (payments, after-sales,
// invoices, support): a system client the gRPC policy granted the desk service, or an
// operator at the console whose role the console checked. A user never is.
func (c Caller) AtDesk() bool {
	return c.UserID == "" && (c.System != "" || c.Admin != "")
}

// Desk names a desk caller in the records it decides (a case's decider, a reply's desk):
// the system client's name, or admin:<name> for an operator at the console.
func (c Caller) Desk() string {
	if c.System != "" {
		return c.System
	}
	if c.Admin != "" {
		return "admin:" + c.Admin
	}
	return ""
}

type callerKey struct{}

// WithCaller returns ctx carrying c.
func WithCaller(ctx context.Context, c Caller) context.Context {
	return context.WithValue(ctx, callerKey{}, c)
}

// CallerFrom returns the caller the server put in ctx (the zero Caller if none).
func CallerFrom(ctx context.Context) Caller {
	c, _ := ctx.Value(callerKey{}).(Caller)
	return c
}

// Sessions resolves bearer tokens; the accounts service implements it.
type Sessions interface {
	// Authenticate returns the caller for an access token presented from a device, or an
	// *apierr.Error of kind Unauthenticated.
	Authenticate(ctx context.Context, token, deviceID string) (Caller, error)
}
