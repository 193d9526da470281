package openings

import (
	"context"
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/emmansun/gmsm/sm2"

	"github.com/hufu-hsm/hufu/cosign"
	"github.com/hufu-hsm/hufu/daemon/apierr"
	"github.com/hufu-hsm/hufu/daemon/authn"
	"github.com/hufu-hsm/hufu/daemon/fanout"
	"github.com/hufu-hsm/hufu/store"
	"github.com/hufu-hsm/hufu/store/storepb"
)

// Released is one envelope's answer: the SM4 key (in clear, or encrypted to the opening's
// result key), or why it failed.
type Released struct {
	EnvelopeID   string
	Key          []byte
	EncryptedKey []byte
	Err          string
	At           time.Time
}

// maxChunkListBytes keeps a chunk's audit record, which lists each envelope as
// "<id>:<first 8 bytes of its ciphertext's SHA-256, hex>", within the audit log's bounds.
const maxChunkListBytes = 6000

// chunkEntryLen is the length of an envelope's entry in that list, with its separator.
func chunkEntryLen(e *storepb.OpeningEnvelope) int { return len(e.Id) + 1 + 16 + 1 }

// job is one envelope to release, with the consent that covers it.
type job struct {
	env     *storepb.OpeningEnvelope
	consent *heldConsent
	out     Released
}

// heldConsent is a consent whose points are unwrapped and whose pair's server share is held,
// for as long as envelopes of it remain to compute.
type heldConsent struct {
	consent   string
	points    map[string]cosign.Point
	share     *cosign.ServerShare
	done      func()
	err       string // why none of its envelopes can be released
	remaining int
}

func (h *heldConsent) finish() {
	h.remaining--
	if h.remaining == 0 {
		if h.done != nil {
			h.done()
		}
		clear(h.points)
	}
}

// Release releases consented envelopes of the caller's opening inside its window, calling
// send with each answer after the answer's chunk is committed with its audit record.
func (s *Service) Release(ctx context.Context, caller authn.Caller, id string, ids []string, again bool, send func([]Released) error) error {
	o, err := s.read(ctx, caller, id)
	if err != nil {
		return err
	}
	if o, err = s.advance(ctx, o); err != nil {
		return err
	}
	if err := s.inWindowNow(ctx, caller, o, "release", ""); err != nil {
		return err
	}
	targets, err := s.targets(ctx, o, ids, again)
	if err != nil {
		return err
	}
	// Envelopes of one consent are next to each other, so its points are unwrapped once and
	// its share is held only while they are computed.
	slices.SortStableFunc(targets, func(a, b *storepb.OpeningEnvelope) int { return strings.Compare(a.ConsentId, b.ConsentId) })

	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	chunks := make(chan []*job, 1)
	var computeErr error
	go func() {
		defer close(chunks)
		computeErr = s.compute(ctx, o, targets, chunks)
	}()
	for chunk := range chunks {
		kept, err := s.commitChunk(ctx, caller, o, chunk, again)
		if err != nil {
			cancel()
			for range chunks {
			}
			return err
		}
		out := make([]Released, len(kept))
		for i, j := range kept {
			out[i] = j.out
		}
		for _, j := range chunk {
			if !slices.Contains(kept, j) {
				clear(j.out.Key) // dropped: another stream released it
			}
		}
		if err := send(out); err != nil {
			cancel()
			for range chunks {
			}
			return err
		}
	}
	return computeErr
}

// targets lists the envelopes to release: the given ones (each consented), or every
// consented one; without again, none released before.
func (s *Service) targets(ctx context.Context, o *storepb.Opening, ids []string, again bool) ([]*storepb.OpeningEnvelope, error) {
	var out []*storepb.OpeningEnvelope
	if len(ids) == 0 {
		all, err := s.listEnvelopes(ctx, o.Id)
		if err != nil {
			return nil, err
		}
		for _, e := range all {
			if e.ConsentId != "" && (again || !e.ReleasedOk) {
				out = append(out, e)
			}
		}
		return out, nil
	}
	if len(ids) > s.opts.MaxEnvelopes {
		return nil, apierr.Invalidf("envelope_ids", "at most %d", s.opts.MaxEnvelopes)
	}
	seen := map[string]bool{}
	for i, id := range ids {
		if !idRE.MatchString(id) {
			return nil, apierr.Invalidf(fmt.Sprintf("envelope_ids[%d]", i), "1 to 64 of [A-Za-z0-9._-]")
		}
		if seen[id] {
			continue
		}
		seen[id] = true
		e, err := envelopes.Read(ctx, s.deps.Store, envelopeID(o.Id, id))
		if errors.Is(err, store.ErrNotFound) {
			return nil, apierr.Invalidf(fmt.Sprintf("envelope_ids[%d]", i), "no envelope %q in opening %s", id, o.Id)
		}
		if err != nil {
			return nil, err
		}
		if e.ConsentId == "" {
			return nil, apierr.New(apierr.FailedPrecondition, "envelope %s has no consent from its bidder yet", id)
		}
		if again || !e.ReleasedOk {
			out = append(out, e)
		}
	}
	return out, nil
}

// compute turns targets into chunks of computed answers.
func (s *Service) compute(ctx context.Context, o *storepb.Opening, targets []*storepb.OpeningEnvelope, chunks chan<- []*job) error {
	var result *cosign.Point
	if len(o.ResultPublicKey) > 0 {
		p, err := cosign.ParsePoint(o.ResultPublicKey)
		if err != nil {
			return fmt.Errorf("openings: stored result key: %w", err)
		}
		result = &p
	}
	held := map[string]*heldConsent{}
	defer func() { // on an early return: let go of every share still held
		for _, h := range held {
			if h.remaining > 0 && h.done != nil {
				h.done()
			}
		}
	}()
	for start := 0; start < len(targets); {
		var chunk []*job
		var fresh []*heldConsent // consents first met in this chunk
		listBytes := 0
		for ; start < len(targets) && len(chunk) < s.opts.ReleaseChunk && listBytes+chunkEntryLen(targets[start]) <= maxChunkListBytes; start++ {
			e := targets[start]
			h, ok := held[e.ConsentId]
			if !ok {
				h = &heldConsent{consent: e.ConsentId}
				fresh = append(fresh, h)
				for _, t := range targets[start:] { // sorted by consent: its envelopes are next
					if t.ConsentId != e.ConsentId {
						break
					}
					h.remaining++
				}
				held[e.ConsentId] = h
			}
			chunk = append(chunk, &job{env: e, consent: h})
			listBytes += chunkEntryLen(e)
		}
		begin := time.Now()
		// Each consent costs a store read and an HSM unwrap: in parallel too.
		s.parallel(len(fresh), func(i int) { s.hold(ctx, o, fresh[i].consent, fresh[i]) })
		s.parallel(len(chunk), func(i int) { s.releaseOne(chunk[i], result) })
		s.m.chunk.Observe(time.Since(begin).Seconds())
		for _, j := range chunk {
			j.consent.finish()
		}
		select {
		case chunks <- chunk:
		case <-ctx.Done():
			return ctx.Err()
		}
	}
	return nil
}

// hold unwraps a consent's points and takes its pair's share. A consent that cannot be used
// fails its own envelopes only.
func (s *Service) hold(ctx context.Context, o *storepb.Opening, consent string, h *heldConsent) {
	c, err := consents.Read(ctx, s.deps.Store, consentID(o.Id, consent))
	if err != nil {
		h.err = "unavailable: consent unreadable"
		return
	}
	plain, err := s.deps.Keyring.Unwrap(ctx, c.PointsWrapped, consentAD(o.Id, c.SessionId))
	if err != nil || len(plain) != len(c.EnvelopeIds)*cosign.PointSize {
		h.err = "unavailable: HSM unavailable"
		return
	}
	defer clear(plain)
	h.points = make(map[string]cosign.Point, len(c.EnvelopeIds))
	for i, id := range c.EnvelopeIds {
		p, err := cosign.ParsePoint(plain[i*cosign.PointSize : (i+1)*cosign.PointSize])
		if err != nil {
			h.err = "unavailable: consent point invalid"
			return
		}
		h.points[id] = p
	}
	var version uint32
	h.share, version, h.done, err = s.deps.Keys.ReleaseShare(ctx, authn.Caller{UserID: c.UserId, DeviceID: c.DeviceId}, c.KeyId)
	if err != nil {
		var ae *apierr.Error
		if errors.As(err, &ae) && ae.Kind != apierr.Internal {
			h.err = "unavailable: the consenting pair cannot be used: " + ae.Message
		} else {
			h.err = "unavailable: the consenting pair cannot be used"
		}
		return
	}
	if version != c.ShareVersion {
		h.err = fmt.Sprintf("pair_changed: the key's shares were refreshed (version %d, consent made with %d); the bidder consents again", version, c.ShareVersion)
	}
}

// releaseOne computes one envelope: d·C1 = d2⁻¹·T1 − C1, the KDF and the C3 check.
func (s *Service) releaseOne(j *job, result *cosign.Point) {
	j.out.EnvelopeID = j.env.Id
	if j.consent.err != "" {
		j.out.Err = j.consent.err
		return
	}
	t1, ok := j.consent.points[j.env.Id]
	if !ok {
		j.out.Err = "unavailable: no consent point for the envelope"
		return
	}
	ct, err := cosign.ParseCiphertext(j.env.Ciphertext, cosign.DetectEncoding(j.env.Ciphertext))
	if err != nil {
		j.out.Err = "unavailable: stored ciphertext unreadable"
		return
	}
	key, err := j.consent.share.Release(ct, &t1)
	if err != nil {
		j.out.Err = "c3_mismatch: the consent point does not open this envelope"
		return
	}
	if result == nil {
		j.out.Key = key
		return
	}
	defer clear(key)
	if j.out.EncryptedKey, err = sm2.Encrypt(rand.Reader, result.PublicKey(), key, sm2.NewPlainEncrypterOpts(sm2.MarshalUncompressed, sm2.C1C3C2)); err != nil {
		j.out.Err = "unavailable: encrypting to the result key failed"
	}
}

// outcome is the short form of an answer for records, reports and metrics: "ok", or the
// token every error message starts with ("c3_mismatch", "pair_changed", "unavailable").
func outcome(r *Released) string {
	if r.Err == "" {
		return "ok"
	}
	token, _, _ := strings.Cut(r.Err, ":")
	return token
}

// commitChunk records a chunk's answers (per envelope its release, one event listing them
// for the report, and one audit record listing the chunk's envelopes with their ciphertext hashes, and the SHA-256
// over every envelope's id, full hash and outcome) in one batch, inside the window, and
// returns the answers recorded: without again, an envelope another release stream released
// meanwhile is dropped, not released twice.
func (s *Service) commitChunk(ctx context.Context, caller authn.Caller, o *storepb.Opening, chunk []*job, again bool) ([]*job, error) {
	var kept []*job
	err := s.deps.Store.Update(ctx, func(tx *store.Tx) error {
		kept = kept[:0]
		cur, err := openings.Get(tx, openingID(o.Id))
		if err != nil {
			return err
		}
		if cur.State == stateClosed {
			return errClosed(cur)
		}
		if inWindow(cur, tx.Now()) > 0 {
			return errEnded(cur)
		}
		ids := make([]string, 0, len(chunk))
		ev := &storepb.OpeningEvent{Type: "release", AtUnixNano: tx.Now().UnixNano(), Via: "release"}
		sum := sha256.New()
		ok, repeats := 0, 0
		for _, j := range chunk {
			e, err := envelopes.Get(tx, envelopeID(o.Id, j.env.Id))
			if err != nil {
				return err
			}
			if e.ReleasedOk && !again {
				continue
			}
			if e.Releases > 0 {
				repeats++
			}
			result := outcome(&j.out)
			if result == "ok" {
				if !e.ReleasedOk {
					cur.Released++
				}
				e.ReleasedOk = true
				ok++
			}
			e.Releases++
			e.ReleasedUnixNano, e.ReleaseOutcome = tx.Now().UnixNano(), result
			if err := envelopes.Put(tx, envelopeID(o.Id, e.Id), e); err != nil {
				return err
			}
			ev.EnvelopeIds, ev.Outcomes = append(ev.EnvelopeIds, e.Id), append(ev.Outcomes, result)
			ids = append(ids, e.Id+":"+hex.EncodeToString(e.CiphertextSha256[:8]))
			fmt.Fprintf(sum, "%s\x00%x\x00%s\n", e.Id, e.CiphertextSha256, result)
			j.out.At = tx.Now()
			kept = append(kept, j)
		}
		if len(kept) == 0 {
			return nil
		}
		if err := events.Put(tx, eventID(o.Id, tx.Now()), ev); err != nil {
			return err
		}
		if err := openings.Put(tx, openingID(o.Id), cur); err != nil {
			return err
		}
		return tx.Audit(store.Event{Actor: caller.Actor(), Action: "opening.release", Subject: openingKey(o.Id), Outcome: store.OutcomeOK,
			Details: map[string]string{"envelopes": strings.Join(ids, ","), "items": fmt.Sprint(len(kept)), "ok": fmt.Sprint(ok),
				"failed": fmt.Sprint(len(kept) - ok), "repeats": fmt.Sprint(repeats), "items_sha256": hex.EncodeToString(sum.Sum(nil))}})
	})
	if err != nil {
		return nil, err
	}
	for _, j := range kept {
		s.m.released.WithLabelValues(outcome(&j.out)).Inc()
	}
	return kept, nil
}

// parallel runs fn(0..n-1) on at most Parallelism goroutines.
func (s *Service) parallel(n int, fn func(i int)) { fanout.Run(n, s.opts.Parallelism, fn) }
