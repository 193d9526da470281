package openings

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"time"

	"github.com/hufu-hsm/hufu/cosign"
	"github.com/hufu-hsm/hufu/daemon/apierr"
	"github.com/hufu-hsm/hufu/daemon/authn"
	"github.com/hufu-hsm/hufu/daemon/keys"
	"github.com/hufu-hsm/hufu/store"
	"github.com/hufu-hsm/hufu/store/storepb"
)

var _ keys.DecryptGuard = (*Service)(nil)

// maxAttemptEvents bounds the refused attempts an opening keeps one by one (and its report
// lists); beyond it they are only counted and audited.
const maxAttemptEvents = 10000

// phase is where an opening stands at t, whether or not the appliance has sealed or closed
// it yet: before its window, in it, or done (past its end, or closed).
type phase int

const (
	before phase = iota
	open
	done
)

func phaseAt(o *storepb.Opening, t time.Time) phase {
	switch {
	case o.State == stateClosed || inWindow(o, t) > 0:
		return done
	case inWindow(o, t) < 0:
		return before
	}
	return open
}

// CheckDecrypt binds the plain two-party decryption to bid openings. The binding is by key,
// not only by C1: a phone could blind a registered C1 (send r·C1, unblind the answer) and
// the appliance would not recognise it. So from its first registered envelope until its
// opening's window starts, a key decrypts nothing at all. In the window its holder may
// decrypt their own envelopes (recorded as releases via the phone); after the window, a
// registered C1 is refused, and so is one of another key's envelopes asked of a key that
// has envelopes itself (asked of a key with none, it decrypts to nothing, and is not looked
// up). Refusals before the window are recorded and counted as early attempts.
func (s *Service) CheckDecrypt(ctx context.Context, caller authn.Caller, keyID string, c1s []cosign.Point) ([]error, error) {
	now := s.deps.Clock.Now()
	refusals := make([]error, len(c1s))
	// A key with no envelope anywhere is free, and has no C1 to look up: a C1 registered
	// for another key decrypts to nothing under this one. The set in memory answers for
	// most such keys without reading the store.
	if !s.withEnvelopes.mayHave(ctx, s.deps.Store, now, keyID) {
		return refusals, nil
	}
	bound, hasOpenings, err := s.boundOpening(ctx, keyID, now)
	if err != nil || !hasOpenings {
		return refusals, err
	}
	rec := newGuardRecords()
	for i := range c1s {
		h := sha256.Sum256(c1s[i][:])
		k, err := s.deps.Store.Lookup(ctx, indexC1, hex.EncodeToString(h[:]))
		if err != nil && !errors.Is(err, store.ErrNotFound) {
			return nil, err
		}
		var e *storepb.OpeningEnvelope
		if err == nil {
			if e, err = envelopes.Read(ctx, s.deps.Store, envelopes.ID(k)); err != nil {
				return nil, err
			}
		}
		if bound != nil {
			refusals[i] = errBound(bound, keyID)
			rec.attempt(bound.Id, envelopeOf(e, bound.Id), "before_window")
			continue
		}
		if e == nil {
			continue // not an envelope, and the key is bound to no opening
		}
		o, err := openings.Read(ctx, s.deps.Store, openingID(e.OpeningId))
		if err != nil {
			return nil, err
		}
		switch {
		case e.KeyId != keyID:
			refusals[i] = apierr.New(apierr.FailedPrecondition, "this ciphertext is an envelope of opening %s for another certificate", o.Id)
			rec.attempt(o.Id, e.Id, "other_key")
		case phaseAt(o, now) == open:
			rec.release(o.Id, e)
		case phaseAt(o, now) == done:
			refusals[i] = apierr.New(apierr.FailedPrecondition, "this ciphertext is an envelope of opening %s, which ended at %s",
				o.Id, windowEnd(o).Format(time.RFC3339))
		default: // unreachable: a key with an envelope before its window is bound
			refusals[i] = errEarly(o)
		}
	}
	if err := s.recordGuard(ctx, caller, rec); err != nil {
		return nil, err // no answer, and no refusal, without its record
	}
	return refusals, nil
}

// boundOpening is the opening the key is bound to at t — one with an envelope of the key,
// before its window (the earliest such) — and whether the key has envelopes in any opening.
func (s *Service) boundOpening(ctx context.Context, keyID string, t time.Time) (bound *storepb.Opening, hasOpenings bool, err error) {
	ks, _, err := s.deps.Store.ListIndex(ctx, indexKey, keyID, store.ListOptions{Limit: store.MaxListLimit})
	if err != nil || len(ks) == 0 {
		return nil, false, err
	}
	for _, k := range ks {
		o, err := openings.Read(ctx, s.deps.Store, openings.ID(k))
		if errors.Is(err, store.ErrNotFound) {
			continue
		}
		if err != nil {
			return nil, false, err
		}
		if phaseAt(o, t) == before && (bound == nil || o.WindowStartUnixNano < bound.WindowStartUnixNano) {
			bound = o
		}
	}
	return bound, true, nil
}

func errBound(o *storepb.Opening, keyID string) error {
	return apierr.New(apierr.FailedPrecondition, "key %s has envelopes in opening %s, which opens at %s: the key decrypts nothing before",
		keyID, o.Id, windowStart(o).Format(time.RFC3339))
}

// envelopeOf names the envelope a refused C1 is in, when it is one of the opening's.
func envelopeOf(e *storepb.OpeningEnvelope, opening string) string {
	if e != nil && e.OpeningId == opening {
		return e.Id
	}
	return ""
}

// guardRecords is what one CheckDecrypt records, per opening: one early attempt however many
// items were refused, and the phone releases.
type guardRecords struct {
	attempts map[string][2]string // opening -> envelope, reason
	count    map[string]int
	releases map[string][]*storepb.OpeningEnvelope
}

func newGuardRecords() *guardRecords {
	return &guardRecords{attempts: map[string][2]string{}, count: map[string]int{}, releases: map[string][]*storepb.OpeningEnvelope{}}
}

func (r *guardRecords) attempt(opening, envelope, reason string) {
	if _, ok := r.attempts[opening]; !ok || r.attempts[opening][0] == "" {
		r.attempts[opening] = [2]string{envelope, reason}
	}
	r.count[opening]++
}

func (r *guardRecords) release(opening string, e *storepb.OpeningEnvelope) {
	r.releases[opening] = append(r.releases[opening], e)
}

// recordGuard commits a check's records in one batch. An opening that closed or ended
// meanwhile takes no record (its report is made from what it had), and its releases are
// refused by the failure this returns.
func (s *Service) recordGuard(ctx context.Context, caller authn.Caller, r *guardRecords) error {
	if len(r.attempts) == 0 && len(r.releases) == 0 {
		return nil
	}
	err := s.deps.Store.Update(ctx, func(tx *store.Tx) error {
		for id, a := range r.attempts {
			if err := s.attemptTx(tx, caller, id, "decrypt", a[0], a[1], r.count[id]); err != nil {
				return err
			}
		}
		for id, es := range r.releases {
			o, err := openings.Get(tx, openingID(id))
			if err != nil {
				return err
			}
			if phaseAt(o, tx.Now()) != open {
				return apierr.New(apierr.FailedPrecondition, "opening %s ended at %s", o.Id, windowEnd(o).Format(time.RFC3339))
			}
			for _, e := range es {
				ev := &storepb.OpeningEvent{Type: "release", AtUnixNano: tx.Now().UnixNano(), EnvelopeId: e.Id, Outcome: "ok", Via: "phone"}
				if err := events.Put(tx, eventID(o.Id, tx.Now()), ev); err != nil {
					return err
				}
				if err := tx.Audit(store.Event{Actor: caller.Actor(), Action: "opening.release.phone", Subject: envelopeKey(o.Id, e.Id), Outcome: store.OutcomeOK,
					Details: map[string]string{"device": caller.DeviceID, "ciphertext_sha256": hex.EncodeToString(e.CiphertextSha256)}}); err != nil {
					return err
				}
			}
		}
		return nil
	})
	if err == nil {
		for _, n := range r.count {
			s.m.early.WithLabelValues("decrypt").Add(float64(n))
		}
	}
	return err
}

// attemptTx records a refused attempt of n items on an opening: counted always, audited
// always, kept as an event (for the report) up to maxAttemptEvents, and not at all once the
// opening is closed (its report is made).
func (s *Service) attemptTx(tx *store.Tx, caller authn.Caller, opening, via, envelope, reason string, n int) error {
	o, err := openings.Get(tx, openingID(opening))
	if err != nil {
		return err
	}
	if o.State == stateClosed {
		return nil
	}
	o.EarlyAttempts += uint32(n)
	if o.AttemptEvents < maxAttemptEvents {
		o.AttemptEvents++
		ev := &storepb.OpeningEvent{Type: "attempt", AtUnixNano: tx.Now().UnixNano(), EnvelopeId: envelope, Outcome: reason, Via: via}
		if err := events.Put(tx, eventID(opening, tx.Now()), ev); err != nil {
			return err
		}
	}
	if err := openings.Put(tx, openingID(opening), o); err != nil {
		return err
	}
	return tx.Audit(store.Event{Actor: caller.Actor(), Action: "opening.attempt", Subject: openingKey(opening), Outcome: "denied",
		Details: map[string]string{"via": via, "envelope": envelope, "reason": reason, "items": fmt.Sprint(n), "device": caller.DeviceID}})
}
