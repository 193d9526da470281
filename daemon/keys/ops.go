package keys

import (
	"context"
	"crypto/rand"
	"crypto/sha256"
	"encoding/binary"
	"encoding/hex"
	"errors"
	"fmt"
	"math"
	"strings"
	"sync/atomic"
	"time"

	"github.com/hufu-hsm/hufu/cosign"
	"github.com/hufu-hsm/hufu/daemon/apierr"
	"github.com/hufu-hsm/hufu/daemon/authn"
	"github.com/hufu-hsm/hufu/daemon/fanout"
	"github.com/hufu-hsm/hufu/store"
	"github.com/hufu-hsm/hufu/store/storepb"
)

// Sign is the server step of two-party signing for one digest, with the key's primary pair
// for its holder or with the caller's delegated pair for a member.
func (s *Service) Sign(ctx context.Context, caller authn.Caller, keyID string, cred Credential, raw []byte) (cosign.SignResponse, uint32, error) {
	start := time.Now()
	e, err := s.use(ctx, caller, keyID)
	if err != nil {
		return cosign.SignResponse{}, 0, err
	}
	defer s.cache.release(e)
	var req cosign.SignRequest
	if err := req.UnmarshalBinary(raw); err != nil {
		return cosign.SignResponse{}, 0, err
	}
	// A pending delegated pair answers its challenge, and only that, without a credential:
	// the member has no PIN before accepting, and the signature is useless on any document.
	if !e.key.pendingPair() || req.E != e.key.challenge {
		if err := s.authorize(ctx, caller, e, cred, 1); err != nil {
			return cosign.SignResponse{}, 0, err
		}
	}
	share, version := e.key.shareFor(keyID, &req.E)
	resp, err := share.Sign(s.deps.Rand, &req)
	if err != nil {
		return cosign.SignResponse{}, 0, err
	}
	if e.key.pendingPair() {
		// The acceptance must come from this run (AcceptDelegation checks its r).
		if err := s.answeredChallenge(ctx, caller, keyID, resp.R[:]); err != nil {
			return cosign.SignResponse{}, 0, err
		}
	} else {
		digest := hex.EncodeToString(req.E[:])
		if err := s.record(ctx, caller, e.key, version, keyID, "sign", digest, map[string]string{"digest": digest}); err != nil {
			return cosign.SignResponse{}, 0, err // fail closed: no answer without its records
		}
	}
	s.observe("sign", 1, 0, start)
	return resp, version, nil
}

// shareFor picks the share that answers digest e: the pending one for a refresh challenge.
func (k *loadedKey) shareFor(keyID string, e *[cosign.ScalarSize]byte) (*cosign.ServerShare, uint32) {
	share := k.state.ShareFor([]byte(keyID), e)
	if k.state.Pending != nil && share == k.state.Pending.Share {
		return share, k.state.Pending.Offer.Version
	}
	return share, k.state.Version
}

// BatchResult is one item of a batch: a result or the error the item alone would have got.
type BatchResult struct {
	Result []byte
	Err    error
}

// SignBatch signs many digests with one credential check, in parallel. A bad item fails
// alone.
func (s *Service) SignBatch(ctx context.Context, caller authn.Caller, keyID string, cred Credential, raws [][]byte) ([]BatchResult, uint32, error) {
	start := time.Now()
	if err := s.checkBatch("sign_requests", len(raws)); err != nil {
		return nil, 0, err
	}
	e, err := s.use(ctx, caller, keyID)
	if err != nil {
		return nil, 0, err
	}
	defer s.cache.release(e)
	if err := s.authorize(ctx, caller, e, cred, len(raws)); err != nil {
		return nil, 0, err
	}
	out := make([]BatchResult, len(raws))
	digests := make([][]byte, len(raws))
	s.parallel(len(raws), func(i int) {
		var req cosign.SignRequest
		if err := req.UnmarshalBinary(raws[i]); err != nil {
			out[i].Err = itemError("sign_requests", i, err)
			return
		}
		share, _ := e.key.shareFor(keyID, &req.E)
		resp, err := share.Sign(s.deps.Rand, &req)
		if err != nil {
			out[i].Err = err
			return
		}
		out[i].Result, _ = resp.MarshalBinary()
		digests[i] = req.E[:]
	})
	if err := s.recordBatch(ctx, caller, e.key, keyID, "sign", digests, out); err != nil {
		return nil, 0, err
	}
	s.observe("sign", len(raws), countFailed(out), start)
	return out, e.key.state.Version, nil
}

// Decrypt is the server step of two-party decryption: T2 = d2⁻¹·C1.
func (s *Service) Decrypt(ctx context.Context, caller authn.Caller, keyID string, cred Credential, c1 []byte) (cosign.Point, error) {
	start := time.Now()
	e, err := s.use(ctx, caller, keyID)
	if err != nil {
		return cosign.Point{}, err
	}
	defer s.cache.release(e)
	if err := s.certificateDecrypts(ctx, keyID); err != nil {
		return cosign.Point{}, err
	}
	point, err := cosign.ParsePoint(c1)
	if err != nil {
		return cosign.Point{}, apierr.Invalid("c1", err)
	}
	if err := s.authorize(ctx, caller, e, cred, 1); err != nil {
		return cosign.Point{}, err
	}
	// The rate limit comes first, so that refused attempts are bounded like answers.
	if err := s.limits.take(keyID, 1); err != nil {
		return cosign.Point{}, err
	}
	if refusals, err := s.checkDecrypt(ctx, caller, keyID, []cosign.Point{point}); err != nil {
		return cosign.Point{}, err
	} else if refusals[0] != nil {
		return cosign.Point{}, refusals[0]
	}
	resp := e.key.state.Share.Decrypt(&cosign.DecryptRequest{C1: point})
	h := sha256.Sum256(c1)
	digest := hex.EncodeToString(h[:])
	if err := s.record(ctx, caller, e.key, e.key.state.Version, keyID, "decrypt", digest, map[string]string{"c1_sha256": digest}); err != nil {
		return cosign.Point{}, err
	}
	s.observe("decrypt", 1, 0, start)
	return resp.T2, nil
}

// DecryptBatch answers many C1s with one credential check, in parallel. A bad item, or a C1
// of a bid opening outside its window, fails alone.
func (s *Service) DecryptBatch(ctx context.Context, caller authn.Caller, keyID string, cred Credential, c1s [][]byte) ([]BatchResult, error) {
	start := time.Now()
	if err := s.checkBatch("c1s", len(c1s)); err != nil {
		return nil, err
	}
	e, err := s.use(ctx, caller, keyID)
	if err != nil {
		return nil, err
	}
	defer s.cache.release(e)
	if err := s.certificateDecrypts(ctx, keyID); err != nil {
		return nil, err
	}
	if err := s.authorize(ctx, caller, e, cred, len(c1s)); err != nil {
		return nil, err
	}
	// Parse first, so the rate limit counts only what the server will compute.
	out := make([]BatchResult, len(c1s))
	points := make([]cosign.Point, len(c1s))
	valid := 0
	for i, raw := range c1s {
		var err error
		if points[i], err = cosign.ParsePoint(raw); err != nil {
			out[i].Err = apierr.Invalid(fmt.Sprintf("c1s[%d]", i), err)
			continue
		}
		valid++
	}
	if err := s.limits.take(keyID, valid); err != nil {
		return nil, err
	}
	refusals, err := s.checkDecrypt(ctx, caller, keyID, points)
	if err != nil {
		return nil, err
	}
	for i, r := range refusals {
		if out[i].Err == nil && r != nil {
			out[i].Err = r
		}
	}
	digests := make([][]byte, len(c1s))
	s.parallel(len(c1s), func(i int) {
		if out[i].Err != nil {
			return
		}
		resp := e.key.state.Share.Decrypt(&cosign.DecryptRequest{C1: points[i]})
		out[i].Result = resp.T2[:]
		h := sha256.Sum256(c1s[i])
		digests[i] = h[:]
	})
	if err := s.recordBatch(ctx, caller, e.key, keyID, "decrypt", digests, out); err != nil {
		return nil, err
	}
	s.observe("decrypt", len(c1s), countFailed(out), start)
	return out, nil
}

func (s *Service) checkBatch(field string, n int) error {
	if n == 0 || n > s.opts.MaxBatch {
		return apierr.Invalidf(field, "a batch holds 1 to %d items, not %d", s.opts.MaxBatch, n)
	}
	return nil
}

// parallel runs fn(0..n-1) on at most Parallelism goroutines.
func (s *Service) parallel(n int, fn func(i int)) { fanout.Run(n, s.opts.Parallelism, fn) }

// itemError names the batch item in a decoding error: "sign_request.q1" of item 5 becomes
// "sign_requests[5].q1".
func itemError(field string, i int, err error) error {
	var ie *cosign.InputError
	if errors.As(err, &ie) {
		_, sub, _ := strings.Cut(ie.Field, ".")
		name := fmt.Sprintf("%s[%d]", field, i)
		if sub != "" {
			name += "." + sub
		}
		return apierr.Invalid(name, ie.Err)
	}
	return err
}

func countFailed(out []BatchResult) int {
	n := 0
	for _, r := range out {
		if r.Err != nil {
			n++
		}
	}
	return n
}

func (s *Service) observe(kind string, items, failed int, start time.Time) {
	s.metrics.duration.WithLabelValues(kind).Observe(time.Since(start).Seconds())
	if ok := items - failed; ok > 0 {
		s.metrics.ops.WithLabelValues(kind, "ok").Add(float64(ok))
	}
	if failed > 0 {
		s.metrics.ops.WithLabelValues(kind, "invalid").Add(float64(failed))
	}
}

// record commits the usage record and the audit record of one operation, grouped with
// those of concurrent operations (recorder.go), if version of k, the share the operation
// used, is still the pair's share (superseded.go); else it commits the audit record of the
// refusal and returns the refusal, and the operation must not answer.
func (s *Service) record(ctx context.Context, caller authn.Caller, k *loadedKey, version uint32, keyID, op, digest string, details map[string]string) error {
	var refused error
	err := s.recorder.record(ctx, func(tx *store.Tx) error {
		if refused = s.superseded(tx, k, version); refused != nil {
			return s.auditSuperseded(tx, caller, keyID, op, version, refused)
		}
		return s.recordTx(tx, caller, keyID, op, digest, "ok", details)
	})
	if err != nil {
		return err
	}
	if refused != nil {
		s.metrics.superseded.Inc()
	}
	return refused
}

// auditSuperseded writes the audit record of an answer withheld because the share changed.
func (s *Service) auditSuperseded(tx *store.Tx, caller authn.Caller, keyID, op string, version uint32, refused error) error {
	return tx.Audit(store.Event{Actor: caller.Actor(), Action: "key." + op, Subject: "k/" + keyID, Outcome: "denied",
		Details: map[string]string{"device": caller.DeviceID, "reason": "share superseded", "share_version": fmtVersion(version),
			"error": refused.Error()}})
}

// recordBatch commits one usage record and one audit record for a batch: the count, each
// item's digest, and the SHA-256 over the successful items' digests that ties the two.
// Like record, it withholds the whole batch if the share changed meanwhile.
func (s *Service) recordBatch(ctx context.Context, caller authn.Caller, k *loadedKey, keyID, op string, digests [][]byte, out []BatchResult) error {
	items := make([]string, len(digests))
	all := sha256.New()
	for i, d := range digests {
		if out[i].Err == nil {
			items[i] = hex.EncodeToString(d)
			all.Write(d)
		}
	}
	sum := hex.EncodeToString(all.Sum(nil))
	failed := countFailed(out)
	var refused error
	err := s.recorder.record(ctx, func(tx *store.Tx) error {
		if refused = s.superseded(tx, k, k.state.Version); refused != nil {
			return s.auditSuperseded(tx, caller, keyID, op+"_batch", k.state.Version, refused)
		}
		now := tx.Now()
		rec := &storepb.UsageRecord{TimeUnixNano: now.UnixNano(), Operation: op + "_batch", Digest: sum, UserId: caller.UserID, DeviceId: caller.DeviceID,
			Context: usageContext(caller), Count: uint32(len(out)), ItemDigests: items, Outcome: "ok"}
		if failed > 0 {
			rec.Outcome = fmt.Sprintf("%d of %d items failed", failed, len(out))
		}
		if err := usage.Put(tx, usageID(keyID, now), rec); err != nil {
			return err
		}
		return tx.Audit(store.Event{
			Actor: caller.Actor(), Action: "key." + op + "_batch", Subject: "k/" + keyID, Outcome: store.OutcomeOK,
			Details: map[string]string{
				"device": caller.DeviceID, "items": fmt.Sprint(len(out)), "failed": fmt.Sprint(failed), "items_sha256": sum,
			},
		})
	})
	if err != nil {
		return err
	}
	if refused != nil {
		s.metrics.superseded.Inc()
	}
	return refused
}

// recordTx writes the usage record and the audit record of one operation inside tx; digest
// is the hex of what it signed or decrypted ("" for none).
func (s *Service) recordTx(tx *store.Tx, caller authn.Caller, keyID, op, digest, outcome string, details map[string]string) error {
	now := tx.Now()
	rec := &storepb.UsageRecord{TimeUnixNano: now.UnixNano(), Operation: op, UserId: caller.UserID, DeviceId: caller.DeviceID,
		Context: usageContext(caller), Count: 1, Digest: digest, Outcome: outcome}
	if err := usage.Put(tx, usageID(keyID, now), rec); err != nil {
		return err
	}
	if details == nil {
		details = map[string]string{}
	}
	details["device"] = caller.DeviceID
	auditOutcome := store.OutcomeOK
	if outcome != "ok" {
		auditOutcome = "denied"
		details["reason"] = outcome
	}
	return tx.Audit(store.Event{Actor: caller.Actor(), Action: "key." + op, Subject: "k/" + keyID, Outcome: auditOutcome, Details: details})
}

// usageSeq orders usage records written in the same nanosecond (a batch, a coarse clock).
var usageSeq atomic.Uint64

// usageID orders usage records newest first under the key: time and sequence are inverted.
// The random part keeps two daemons (or a restart within a nanosecond) from colliding.
func usageID(keyID string, t time.Time) string {
	var raw [18]byte
	binary.BigEndian.PutUint64(raw[0:], uint64(math.MaxInt64-t.UnixNano()))
	binary.BigEndian.PutUint64(raw[8:], math.MaxUint64-usageSeq.Add(1))
	rand.Read(raw[16:])
	// keyID/usage/%016x-%016x-%04x, built with one allocation: it runs on every operation.
	var h [2*len(raw) + 2]byte
	hex.Encode(h[0:16], raw[0:8])
	h[16] = '-'
	hex.Encode(h[17:33], raw[8:16])
	h[33] = '-'
	hex.Encode(h[34:], raw[16:])
	return keyID + "/usage/" + string(h[:])
}

func usageContext(caller authn.Caller) string {
	if caller.System != "" {
		return "system:" + caller.System
	}
	if caller.Admin != "" {
		return "admin:" + caller.Admin
	}
	return "phone"
}

func sha256Hex(b []byte) string {
	h := sha256.Sum256(b)
	return hex.EncodeToString(h[:])
}
