package admin

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"strconv"
	"strings"
	"time"

	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/hufu-hsm/hufu/hsm"
	"github.com/hufu-hsm/hufu/store"
)

// KEK erasure: the step that makes revocation final.
//
// Revoking a key deletes its wrapped server share from the live store at once, so hufu
// never signs or decrypts with it again. But the deleted bytes stay in Pebble's files
// until a compaction drops them, and in every backup taken before, and the live KEK still
// unwraps them. An erasure ends that: it makes a new KEK current, rewraps every live blob
// under it (a revoked key, a superseded share, a recalled pair or a deleted account holds
// no blob any more, so nothing of theirs is rewrapped), proves no stored blob still names
// an old KEK, compacts the whole store so the deleted values leave its files, and then
// destroys the old KEKs in the HSM. From then on no copy of a revoked share — in an old
// file, a disk image or a backup — can be unwrapped; backups taken before the erasure
// cannot be restored at all (their data keys are wrapped under a destroyed KEK).
//
// It is durable and resumable without a record of its own progress: the HSM token says
// where it stands. More than one KEK on the token means an erasure (or a manual rotation)
// has not finished; the next erasure then rewraps to the current KEK instead of creating
// another, and destroys the old ones only after the count of blobs under them is zero. A
// crash at any point therefore leaves either the old KEK still on the token (the blobs it
// wraps still open; the next run resumes) or a finished erasure, never a referenced blob
// whose KEK is gone. The finished erasure's time is stored at z/erasure/last (a
// google.protobuf.Timestamp), in the batch of its audit record.
//
// Audit actions: admin.kek.erase (started, rotated or resumed, compacted, ok or failed, with
// counts), the domains' rewrap batches (key.rewrap and their kin, counts per batch) and
// admin.kek.destroy (started and ok per KEK, as for a finish).

var erasureRecords = store.NewCollection(store.KindAdmin, func() *timestamppb.Timestamp { return new(timestamppb.Timestamp) })

// lastErasureID is the record of the last finished erasure (z/erasure/last).
const lastErasureID = "erasure/last"

// erasureSinceID records when the erasure schedule first ran on a store that has had no
// erasure (z/erasure/since). The first scheduled erasure is due an interval after it, not
// after the store's creation: otherwise the first start of a build with the schedule on an
// older store would erase at once, and every backup taken before it would become
// unrestorable without the operator having had a chance to plan for it.
const erasureSinceID = "erasure/since"

// ErasureActor is the audit actor of a scheduled erasure.
const ErasureActor = "system:kek-erasure"

// erasureCheckEvery is how often the schedule looks whether an erasure is due.
const erasureCheckEvery = time.Minute

// ErrRotationBusy: a rotation, finish or erasure is already running.
var ErrRotationBusy = errors.New("admin: a KEK rotation, finish or erasure is running")

// Erasure is what one erasure did (POST /kek/erase answers it).
type Erasure struct {
	From      string    `json:"from_kek"`          // the KEK current when it started
	Current   string    `json:"current_kek"`       // the KEK every blob is wrapped under now
	Resumed   bool      `json:"resumed"`           // an unfinished rotation or erasure was taken over
	Rewrapped int       `json:"rewrapped_blobs"`   // blobs moved to the current KEK
	Destroyed []string  `json:"destroyed"`         // KEKs destroyed in the HSM
	Finished  time.Time `json:"finished"`          // when it finished
	Backups   string    `json:"backups,omitempty"` // what it means for backups, in words
}

// backupConsequence is said by every finished erasure.
func backupConsequence(destroyed []string) string {
	return fmt.Sprintf("backups taken before this erasure can no longer be restored (their data key is wrapped under %s, destroyed); take a new backup now",
		strings.Join(destroyed, ", "))
}

// LastErasure returns when the last erasure finished (zero if none has).
func (s *Server) LastErasure(ctx context.Context) (time.Time, error) {
	ts, err := erasureRecords.Read(ctx, s.opts.Store, lastErasureID)
	if errors.Is(err, store.ErrNotFound) {
		return time.Time{}, nil
	}
	if err != nil {
		return time.Time{}, fmt.Errorf("admin: last erasure: %w", err)
	}
	return ts.AsTime(), nil
}

// erasureTimes returns, from memory, when the last erasure finished and when the next
// scheduled one is due (each zero if none).
func (s *Server) erasureTimes() (last, due time.Time) {
	if u := s.lastErasure.Load(); u != 0 {
		last = time.Unix(u, 0).UTC()
	}
	if s.opts.ErasureInterval > 0 {
		base := last
		if base.IsZero() {
			base = time.Unix(s.erasureSince.Load(), 0).UTC()
		}
		due = base.Add(s.opts.ErasureInterval)
	}
	return last, due
}

// forgetErasureSince drops the schedule's first-run record when the daemon starts without a
// schedule, so that turning it on again months later counts the first erasure from then, not
// from a run long past (which would erase at once, unannounced).
func (s *Server) forgetErasureSince(ctx context.Context) error {
	err := s.opts.Store.Update(ctx, func(tx *store.Tx) error {
		if _, err := erasureRecords.Get(tx, erasureSinceID); errors.Is(err, store.ErrNotFound) {
			return nil
		} else if err != nil {
			return err
		}
		if err := erasureRecords.Delete(tx, erasureSinceID); err != nil {
			return err
		}
		return tx.Audit(store.Event{Actor: ErasureActor, Action: "admin.kek.erase.schedule", Subject: "z/" + erasureSinceID, Outcome: store.OutcomeOK,
			Details: map[string]string{"interval": "0s"}})
	})
	if err != nil {
		return fmt.Errorf("admin: stopping the erasure schedule: %w", err)
	}
	return nil
}

// ensureErasureSince returns when the schedule first ran on this store without a finished
// erasure, recording now (audited) if this is that first run.
func (s *Server) ensureErasureSince(ctx context.Context) (time.Time, error) {
	var since time.Time
	err := s.opts.Store.Update(ctx, func(tx *store.Tx) error {
		ts, err := erasureRecords.Get(tx, erasureSinceID)
		if err == nil {
			since = ts.AsTime()
			return nil
		}
		if !errors.Is(err, store.ErrNotFound) {
			return err
		}
		since = s.opts.Clock.Now().UTC().Truncate(time.Second)
		if err := erasureRecords.Put(tx, erasureSinceID, timestamppb.New(since)); err != nil {
			return err
		}
		return tx.Audit(store.Event{Actor: ErasureActor, Action: "admin.kek.erase.schedule", Subject: "z/" + erasureSinceID, Outcome: store.OutcomeOK,
			Details: map[string]string{"interval": s.opts.ErasureInterval.String(), "first_due": since.Add(s.opts.ErasureInterval).Format(time.RFC3339)}})
	})
	if err != nil {
		return time.Time{}, fmt.Errorf("admin: starting the erasure schedule: %w", err)
	}
	return since, nil
}

// erasureDue is when the next scheduled erasure is due: the interval after the last one,
// or, if none has run, after the schedule's first run on this store (erasureSinceID); zero
// without a schedule.
func (s *Server) erasureDue(ctx context.Context) (time.Time, error) {
	if s.opts.ErasureInterval <= 0 {
		return time.Time{}, nil
	}
	last, err := s.LastErasure(ctx)
	if err != nil {
		return time.Time{}, err
	}
	if last.IsZero() {
		if last, err = s.ensureErasureSince(ctx); err != nil {
			return time.Time{}, err
		}
	}
	return last.Add(s.opts.ErasureInterval), nil
}

// EraseIfDue runs the scheduled erasure if it is due (Options.ErasureInterval after the
// last one) and reports whether it ran. The schedule calls it every minute; a failed
// erasure is tried again at the next call.
func (s *Server) EraseIfDue(ctx context.Context) (ran bool, err error) {
	due, err := s.erasureDue(ctx)
	if err != nil || due.IsZero() || s.opts.Clock.Now().Before(due) {
		return false, err
	}
	e, err := s.rot.erase(ctx, ErasureActor, "schedule", nil)
	if err != nil {
		return true, err
	}
	s.opts.Log.Info("KEK erasure finished: revoked shares are now unrecoverable; "+e.Backups,
		"destroyed", strings.Join(e.Destroyed, ","), "current_kek", e.Current, "rewrapped_blobs", e.Rewrapped)
	return true, nil
}

// StartErasureSchedule runs the scheduled erasure in the background until Close: it calls
// EraseIfDue at once and then every minute. Without Options.ErasureInterval it does
// nothing.
func (s *Server) StartErasureSchedule() {
	if s.opts.ErasureInterval > 0 {
		s.background.Go(func() { s.runErasureSchedule(s.jobs) })
	}
}

// runErasureSchedule calls EraseIfDue every erasureCheckEvery until ctx ends.
func (s *Server) runErasureSchedule(ctx context.Context) {
	tick := time.NewTicker(erasureCheckEvery)
	defer tick.Stop()
	for {
		if _, err := s.EraseIfDue(ctx); err != nil && ctx.Err() == nil {
			s.opts.Log.Error("scheduled KEK erasure failed; the old KEK stays and it is retried", "err", err)
		}
		select {
		case <-ctx.Done():
			return
		case <-tick.C:
		}
	}
}

// eraseNow is POST /kek/erase: an erasure run now by a security officer, answered when it
// is finished (it takes time in proportion to the store's size).
func (rt *rotation) eraseNow(w http.ResponseWriter, r *http.Request, who Token) {
	e, err := rt.erase(r.Context(), "admin:"+who.Name, "manual", map[string]string{
		"role": string(who.Role), "token": who.Name, "remote": r.RemoteAddr, "path": r.URL.Path,
	})
	switch {
	case errors.Is(err, ErrRotationBusy):
		writeText(w, http.StatusConflict, "a KEK rotation, finish or erasure is running; follow it with GET /kek\n")
	case err != nil:
		writeText(w, http.StatusServiceUnavailable, "the erasure stopped: "+err.Error()+"\n")
	default:
		writeJSON(w, http.StatusOK, e)
	}
}

// erase runs one erasure (see the top of this file) as actor; trigger is "manual" or
// "schedule", extra details go into its audit records.
func (rt *rotation) erase(ctx context.Context, actor, trigger string, extra map[string]string) (Erasure, error) {
	s := rt.s
	rt.mu.Lock()
	if rt.state.State == StateRunning {
		rt.mu.Unlock()
		return Erasure{}, ErrRotationBusy
	}
	rt.state.State = StateRunning
	rt.mu.Unlock()
	outcome := StateFailed
	defer func() {
		now := s.opts.Clock.Now().UTC()
		rt.mu.Lock()
		rt.state.State, rt.state.Ended = outcome, &now
		rt.mu.Unlock()
	}()

	record := func(outcome string, details map[string]string) error {
		d := map[string]string{"trigger": trigger}
		for k, v := range extra {
			d[k] = v
		}
		for k, v := range details {
			d[k] = v
		}
		err := s.opts.Store.Append(context.WithoutCancel(ctx), store.Event{Actor: actor, Action: "admin.kek.erase", Subject: "kek", Outcome: outcome, Details: d})
		if err != nil {
			s.opts.Log.Error("admin: audit append failed", "action", "admin.kek.erase", "err", err)
		}
		return err
	}
	e := Erasure{From: s.opts.KEKs.CurrentKEK()}
	fail := func(err error) (Erasure, error) {
		rt.mu.Lock()
		rt.state.Error = err.Error()
		rt.mu.Unlock()
		_ = record(store.OutcomeFailed, map[string]string{"error": err.Error(), "current_kek": s.opts.KEKs.CurrentKEK()})
		return Erasure{}, err
	}
	if err := record("started", map[string]string{"from_kek": e.From}); err != nil {
		return Erasure{}, fmt.Errorf("the audit log cannot be written; nothing done: %w", err)
	}

	// 1. A new current KEK, unless an unfinished rotation or erasure left one.
	e.Resumed = len(s.opts.KEKs.KEKs()) > 1
	if !e.Resumed {
		info, err := s.opts.KEKs.RotateKEK(ctx)
		if err != nil {
			return fail(fmt.Errorf("creating the new KEK: %w", err))
		}
		if err := record("rotated", map[string]string{"from_kek": e.From, "to_kek": info.Label}); err != nil {
			return fail(err)
		}
	} else if err := record("resumed", map[string]string{"current_kek": e.From}); err != nil {
		return fail(err)
	}
	e.Current = s.opts.KEKs.CurrentKEK()
	now := s.opts.Clock.Now().UTC()
	rt.mu.Lock()
	rt.state = RotationStatus{State: StateRunning, From: e.From, To: e.Current, Actor: actor, Started: &now, Progress: map[string]*Progress{}}
	for _, rw := range s.opts.Rewrappers {
		rt.state.Progress[rw.Name] = &Progress{}
	}
	rt.mu.Unlock()

	// 2. Every live blob under the current KEK, and proof that none is left under an old one.
	n, err := rt.rewrapAll(ctx, actor)
	e.Rewrapped = n
	if err != nil {
		return fail(fmt.Errorf("rewrapping: %w; nothing destroyed", err))
	}
	left := 0
	var remaining []string
	for _, rw := range s.opts.Rewrappers {
		c, err := rw.CountStale(ctx, rt.stale)
		if err != nil {
			return fail(fmt.Errorf("counting blobs under old KEKs (%s): %w; nothing destroyed", rw.Name, err))
		}
		if c > 0 {
			remaining = append(remaining, rw.Name+"="+strconv.Itoa(c))
		}
		left += c
	}
	if left > 0 {
		return fail(fmt.Errorf("%d blobs still refer to an old KEK (%s); nothing destroyed", left, strings.Join(remaining, ",")))
	}

	// 3. Deleted values out of the store's files.
	started := time.Now()
	if err := s.opts.Store.CompactAll(ctx); err != nil {
		return fail(fmt.Errorf("compacting the store: %w; nothing destroyed", err))
	}
	if err := record("compacted", map[string]string{"rewrapped_blobs": strconv.Itoa(n),
		"compaction_ms": strconv.FormatInt(time.Since(started).Milliseconds(), 10)}); err != nil {
		return fail(err)
	}

	// 4. The old KEKs destroyed, each audited before and after.
	var old []hsm.KEKInfo
	for _, k := range s.opts.KEKs.KEKs() {
		if !k.Current {
			old = append(old, k)
		}
	}
	for _, k := range old {
		if err := s.opts.Store.Append(ctx, store.Event{Actor: actor, Action: "admin.kek.destroy", Subject: "kek", Outcome: "started",
			Details: map[string]string{"kek": k.Label, "trigger": trigger}}); err != nil {
			return fail(fmt.Errorf("the audit log cannot be written; %s was not destroyed; destroyed so far: %v: %w", k.Label, e.Destroyed, err))
		}
		if err := s.opts.KEKs.DestroyKEK(ctx, k.Version); err != nil && !errors.Is(err, hsm.ErrUnknownKEK) {
			return fail(fmt.Errorf("destroying %s: %w; destroyed so far: %v", k.Label, err, e.Destroyed))
		}
		e.Destroyed = append(e.Destroyed, k.Label)
		if err := s.opts.Store.Append(ctx, store.Event{Actor: actor, Action: "admin.kek.destroy", Subject: "kek", Outcome: store.OutcomeOK,
			Details: map[string]string{"kek": k.Label, "trigger": trigger}}); err != nil {
			return fail(fmt.Errorf("%s was destroyed but the audit log cannot record it; stopped; destroyed so far: %v: %w", k.Label, e.Destroyed, err))
		}
	}

	// 5. Finished: its time, in the batch of its record.
	e.Finished = s.opts.Clock.Now().UTC()
	e.Backups = backupConsequence(e.Destroyed)
	details := map[string]string{"trigger": trigger, "from_kek": e.From, "current_kek": e.Current, "resumed": strconv.FormatBool(e.Resumed),
		"rewrapped_blobs": strconv.Itoa(e.Rewrapped), "destroyed": strings.Join(e.Destroyed, ",")}
	for k, v := range extra {
		details[k] = v
	}
	err = s.opts.Store.Update(context.WithoutCancel(ctx), func(tx *store.Tx) error {
		if err := erasureRecords.Put(tx, lastErasureID, timestamppb.New(e.Finished)); err != nil {
			return err
		}
		return tx.Audit(store.Event{Actor: actor, Action: "admin.kek.erase", Subject: "kek", Outcome: store.OutcomeOK, Details: details})
	})
	if err != nil {
		return fail(fmt.Errorf("destroyed %v but the audit log cannot record the finished erasure: %w", e.Destroyed, err))
	}
	s.lastErasure.Store(e.Finished.Unix())
	outcome = StateFinished
	return e, nil
}
