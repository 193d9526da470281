package store

import (
	"context"
	"fmt"
	"strings"
	"testing"
)

// TestRequestIDInAuditRecords: a transaction run under WithRequestID writes the id into each
// of its audit records as RequestIDDetail (hashed with the record); without one nothing is
// added; an event's own request_id detail and a record already holding the most details
// are left as they are.
func TestRequestIDInAuditRecords(t *testing.T) {
	ts := openTest(t)
	ctx := context.Background()
	full := map[string]string{}
	for i := range maxDetails {
		full[fmt.Sprintf("k%02d", i)] = "v"
	}
	steps := []struct {
		ctx     context.Context
		details map[string]string
		want    string // the record's request_id detail; "" none
	}{
		{ctx, nil, ""},
		{WithRequestID(ctx, "req-1"), nil, "req-1"},
		{WithRequestID(ctx, "req-2"), map[string]string{"kind": "x"}, "req-2"},
		{WithRequestID(ctx, "req-3"), map[string]string{RequestIDDetail: "the event's own"}, "the event's own"},
		{WithRequestID(ctx, "req-4"), full, ""},
		// At the length limit: valid without the id, recorded without it.
		{WithRequestID(ctx, "req-5"), map[string]string{"big": strings.Repeat("x", maxDetailsLen-len("big"))}, ""},
	}
	for i, s := range steps {
		if err := ts.Append(s.ctx, Event{Actor: "test", Action: "test.step", Outcome: "ok", Details: s.details}); err != nil {
			t.Fatal(err)
		}
		r, err := ts.AuditRecord(ctx, uint64(i+1))
		if err != nil {
			t.Fatal(err)
		}
		if got := r.Details[RequestIDDetail]; got != s.want {
			t.Errorf("step %d: request_id %q, want %q", i, got, s.want)
		}
		if len(s.details) == maxDetails && len(r.Details) != maxDetails {
			t.Errorf("step %d: %d details, want %d", i, len(r.Details), maxDetails)
		}
	}
	if _, ok := steps[2].details[RequestIDDetail]; ok {
		t.Error("the caller's details map was changed")
	}
	if _, err := ts.VerifyAudit(ctx, nil); err != nil {
		t.Fatalf("the chain over records with request ids: %v", err)
	}
}
