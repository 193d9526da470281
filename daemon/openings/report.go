package openings

import (
	"cmp"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"slices"
	"time"

	"google.golang.org/protobuf/proto"

	"github.com/hufu-hsm/hufu/bidopening"
	"github.com/hufu-hsm/hufu/cosign"
	"github.com/hufu-hsm/hufu/daemon/apierr"
	"github.com/hufu-hsm/hufu/daemon/authn"
	"github.com/hufu-hsm/hufu/store"
	"github.com/hufu-hsm/hufu/store/storepb"
)

// Close ends the caller's opening from its window start and makes its report
// (OpeningService.CloseOpening).
func (s *Service) Close(ctx context.Context, caller authn.Caller, id string) (*storepb.Opening, []byte, error) {
	o, err := s.read(ctx, caller, id)
	if err != nil {
		return nil, nil, err
	}
	if o, err = s.advance(ctx, o); err != nil {
		return nil, nil, err
	}
	if o.State == stateOpen || inWindow(o, s.deps.Clock.Now()) < 0 {
		return nil, nil, apierr.New(apierr.FailedPrecondition, "opening %s closes from its opening time, %s", o.Id, windowStart(o).Format(time.RFC3339))
	}
	return s.close(ctx, caller, o.Id)
}

// close marks a sealed opening closed, then makes and stores its report. A report lost to a
// crash between the two is made by the next GetReport.
func (s *Service) close(ctx context.Context, caller authn.Caller, id string) (*storepb.Opening, []byte, error) {
	actor := caller.Actor()
	if caller.System == "" {
		actor = "appliance" // closed because the window ended
	}
	// Consents in flight finish first (they hold the gate); none starts after.
	g := s.gate(id)
	g.Lock()
	defer g.Unlock()
	consented, err := s.consented(ctx, id)
	if err != nil {
		return nil, nil, err
	}
	var out *storepb.Opening
	closed := false
	err = s.deps.Store.Update(ctx, func(tx *store.Tx) error {
		o, err := openings.Get(tx, openingID(id))
		if err != nil {
			return err
		}
		out = o
		if o.State == stateClosed {
			return nil
		}
		if o.State != stateSealed {
			return apierr.New(apierr.FailedPrecondition, "opening %s is not sealed", id)
		}
		o.State, o.ClosedUnixNano, o.Consented, closed = stateClosed, tx.Now().UnixNano(), uint32(consented), true
		if err := openings.Put(tx, openingID(id), o); err != nil {
			return err
		}
		return tx.Audit(store.Event{Actor: actor, Action: "opening.close", Subject: openingKey(id), Outcome: store.OutcomeOK,
			Details: map[string]string{"envelopes": fmt.Sprint(o.Envelopes), "consented": fmt.Sprint(o.Consented),
				"released": fmt.Sprint(o.Released), "early_attempts": fmt.Sprint(o.EarlyAttempts)}})
	})
	if err != nil {
		return nil, nil, err
	}
	if closed {
		s.m.events.WithLabelValues("close").Inc()
	}
	r, err := s.report(ctx, out)
	if err != nil {
		return nil, nil, err
	}
	return out, r.Sha256, nil
}

// consented counts the envelopes of an opening that have a consent. Consents do not write
// the opening's record (they would queue on it); the count is made when asked, and kept at
// close.
func (s *Service) consented(ctx context.Context, id string) (int, error) {
	covered := map[string]bool{}
	err := listAll(ctx, s.deps.Store, consents, "consent/"+id+"/", func(c *storepb.OpeningConsent) error {
		for _, e := range c.EnvelopeIds {
			covered[e] = true
		}
		return nil
	})
	return len(covered), err
}

// Report returns the signed report of the caller's opening, once closed.
func (s *Service) Report(ctx context.Context, caller authn.Caller, id string) ([]byte, error) {
	o, err := s.read(ctx, caller, id)
	if err != nil {
		return nil, err
	}
	return s.reportOf(ctx, o)
}

// reportOf is Report of an opening read from the store.
func (s *Service) reportOf(ctx context.Context, o *storepb.Opening) ([]byte, error) {
	o, err := s.advance(ctx, o)
	if err != nil {
		return nil, err
	}
	if o.State != stateClosed {
		return nil, apierr.New(apierr.FailedPrecondition, "opening %s has no report until it is closed", o.Id)
	}
	r, err := s.report(ctx, o)
	if err != nil {
		return nil, err
	}
	return r.Report, nil
}

// report reads the stored report of a closed opening, or makes, signs and stores it.
func (s *Service) report(ctx context.Context, o *storepb.Opening) (*storepb.OpeningReport, error) {
	if r, err := reports.Read(ctx, s.deps.Store, reportID(o.Id)); err == nil {
		return r, nil
	} else if !errors.Is(err, store.ErrNotFound) {
		return nil, err
	}
	body, err := s.buildReport(ctx, o)
	if err != nil {
		return nil, err
	}
	signed, err := body.Sign(ctx, s.deps.Signer)
	if err != nil {
		return nil, fmt.Errorf("openings: signing the report of %s: %w", o.Id, err)
	}
	sum := sha256.Sum256(signed)
	var out *storepb.OpeningReport
	err = s.deps.Store.Update(ctx, func(tx *store.Tx) error {
		if cur, err := reports.Get(tx, reportID(o.Id)); err == nil {
			out = cur // made meanwhile by another call
			return nil
		}
		out = &storepb.OpeningReport{Report: signed, Sha256: sum[:], CreatedUnixNano: tx.Now().UnixNano()}
		if err := reports.Put(tx, reportID(o.Id), out); err != nil {
			return err
		}
		return tx.Audit(store.Event{Actor: "appliance", Action: "opening.report", Subject: openingKey(o.Id), Outcome: store.OutcomeOK,
			Details: map[string]string{"report_sha256": hex.EncodeToString(sum[:]), "audit_seq": fmt.Sprint(body.Audit.Seq),
				"audit_head": hex.EncodeToString(body.Audit.Head[:])}})
	})
	return out, err
}

// buildReport gathers a closed opening's manifest, consents, releases and refused attempts,
// and the audit chain's position.
func (s *Service) buildReport(ctx context.Context, o *storepb.Opening) (*bidopening.Report, error) {
	seq, head := s.deps.Store.Head()
	r := &bidopening.Report{
		Opening: bidopening.Opening{ID: o.Id, System: o.System, ProjectCode: o.ProjectCode, ProjectName: o.ProjectName, Platform: o.PlatformId,
			WindowStart: windowStart(o), WindowEnd: windowEnd(o), SealedAt: time.Unix(0, o.SealedUnixNano).UTC(), ClosedAt: time.Unix(0, o.ClosedUnixNano).UTC()},
		Audit: bidopening.AuditPosition{Seq: seq, Head: head},
	}
	copy(r.Opening.ManifestSHA256[:], o.ManifestSha256)
	all, err := s.listEnvelopes(ctx, o.Id)
	if err != nil {
		return nil, err
	}
	r.Envelopes = manifestOf(all)
	certs := map[string][]byte{}
	if err := listAll(ctx, s.deps.Store, consents, "consent/"+o.Id+"/", func(c *storepb.OpeningConsent) error {
		der, ok := certs[c.CertificateSerial]
		if !ok {
			cert, _, err := s.deps.Certs.Certificate(ctx, c.CertificateSerial)
			if err != nil {
				return err
			}
			der, certs[c.CertificateSerial] = cert.Der, cert.Der
		}
		var sig cosign.Signature
		if err := sig.UnmarshalBinary(c.Signature); err != nil {
			return fmt.Errorf("openings: stored consent %s: %w", c.Id, err)
		}
		r.Consents = append(r.Consents, bidopening.Consent{Session: c.SessionId, Serial: c.CertificateSerial, Delegated: c.Delegated,
			AcceptedAt: time.Unix(0, c.AcceptedUnixNano).UTC(), Statement: c.Statement, Signature: sig, Certificate: der})
		return nil
	}); err != nil {
		return nil, err
	}
	slices.SortStableFunc(r.Consents, func(a, b bidopening.Consent) int {
		return cmp.Or(a.AcceptedAt.Compare(b.AcceptedAt), cmp.Compare(a.Session, b.Session))
	})
	if err := listAll(ctx, s.deps.Store, events, "event/"+o.Id+"/", func(e *storepb.OpeningEvent) error {
		at := time.Unix(0, e.AtUnixNano).UTC()
		if e.Type == "attempt" {
			r.Attempts = append(r.Attempts, bidopening.Attempt{At: at, Via: e.Via, Envelope: e.EnvelopeId, Reason: e.Outcome})
		} else if len(e.EnvelopeIds) > 0 { // a release chunk
			if len(e.Outcomes) != len(e.EnvelopeIds) {
				return fmt.Errorf("openings: a release record of %s lists %d envelopes and %d outcomes", o.Id, len(e.EnvelopeIds), len(e.Outcomes))
			}
			for i, id := range e.EnvelopeIds {
				r.Releases = append(r.Releases, bidopening.Release{Envelope: id, At: at, Outcome: e.Outcomes[i], Via: e.Via})
			}
		} else {
			r.Releases = append(r.Releases, bidopening.Release{Envelope: e.EnvelopeId, At: at, Outcome: e.Outcome, Via: e.Via})
		}
		return nil
	}); err != nil {
		return nil, err
	}
	return r, nil
}

// listAll calls fn on every record of a collection under an id prefix, in key order.
func listAll[M proto.Message](ctx context.Context, st *store.Store, c store.Collection[M], prefix string, fn func(M) error) error {
	cursor := ""
	for {
		page, err := c.List(ctx, st, prefix, store.ListOptions{Limit: store.MaxListLimit, Cursor: cursor}, nil)
		if err != nil {
			return err
		}
		for _, it := range page.Items {
			if err := fn(it.Value); err != nil {
				return err
			}
		}
		if page.Next == "" {
			return nil
		}
		cursor = page.Next
	}
}
