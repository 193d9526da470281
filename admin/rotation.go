package admin

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/hufu-hsm/hufu/hsm"
	"github.com/hufu-hsm/hufu/store"
)

// KEKs is what a rotation needs of the HSM keyring (*hsm.Keyring).
type KEKs interface {
	KEKs() []hsm.KEKInfo
	CurrentKEK() string
	RotateKEK(ctx context.Context) (hsm.KEKInfo, error)
	Rewrap(ctx context.Context, blob, ad []byte) ([]byte, error)
	DestroyKEK(ctx context.Context, version int) error
}

// Rewrapper is one domain's part in a rotation: it finds the blobs it stores that stale
// reports and rewraps them (daemon/keys and daemon/accounts RewrapAll and
// CountStaleBlobs).
type Rewrapper struct {
	Name       string
	RewrapAll  func(ctx context.Context, actor string, stale func(blob []byte) bool, rewrap func(ctx context.Context, blob, ad []byte) ([]byte, error), progress func(done, total int)) (int, error)
	CountStale func(ctx context.Context, stale func(blob []byte) bool) (int, error)
}

// Rotation states.
const (
	StateIdle      = "idle"      // no rotation since the daemon started
	StateRunning   = "running"   // rewrapping in the background
	StateRewrapped = "rewrapped" // every blob is under the current KEK; finish may destroy the old ones
	StateFailed    = "failed"    // the job stopped on an error; start again to resume
	StateFinished  = "finished"  // old KEKs destroyed
)

// RotationStatus is what GET /kek answers.
type RotationStatus struct {
	State    string               `json:"state"`
	Current  string               `json:"current_kek"`
	KEKs     []KEK                `json:"keks"`
	From     string               `json:"from_kek,omitempty"`
	To       string               `json:"to_kek,omitempty"`
	Actor    string               `json:"actor,omitempty"`
	Started  *time.Time           `json:"started,omitempty"`
	Ended    *time.Time           `json:"ended,omitempty"`
	Progress map[string]*Progress `json:"progress,omitempty"`
	Error    string               `json:"error,omitempty"`
	// LastErasure is when the last KEK erasure finished (erasure.go); ErasureDue when the
	// next scheduled one is due (absent without keys.erasure.interval).
	LastErasure *time.Time `json:"last_erasure,omitempty"`
	ErasureDue  *time.Time `json:"erasure_due,omitempty"`
}

// KEK is one KEK version on the token.
type KEK struct {
	Label   string `json:"label"`
	Version int    `json:"version"`
	Current bool   `json:"current"`
}

// Progress of one domain's rewrap.
type Progress struct {
	Done      int `json:"done"`      // records examined
	Total     int `json:"total"`     // records to examine
	Rewrapped int `json:"rewrapped"` // blobs moved to the current KEK
}

type rotation struct {
	s *Server

	mu    sync.Mutex
	state RotationStatus
}

// stale reports whether a blob is wrapped under a KEK other than the current one. A blob
// that does not parse counts as stale so that the rewrap reports it instead of a rotation
// silently leaving it behind.
func (rt *rotation) stale(blob []byte) bool {
	b, err := hsm.ParseBlob(blob)
	return err != nil || b.KEKLabel != rt.s.opts.KEKs.CurrentKEK()
}

func (rt *rotation) snapshot() RotationStatus {
	rt.mu.Lock()
	defer rt.mu.Unlock()
	st := rt.state
	if last, due := rt.s.erasureTimes(); !last.IsZero() || !due.IsZero() {
		if !last.IsZero() {
			st.LastErasure = &last
		}
		if !due.IsZero() {
			st.ErasureDue = &due
		}
	}
	st.Current = rt.s.opts.KEKs.CurrentKEK()
	st.KEKs = []KEK{}
	for _, k := range rt.s.opts.KEKs.KEKs() {
		st.KEKs = append(st.KEKs, KEK{Label: k.Label, Version: k.Version, Current: k.Current})
	}
	if st.Progress != nil {
		st.Progress = make(map[string]*Progress, len(rt.state.Progress))
		for k, v := range rt.state.Progress {
			p := *v
			st.Progress[k] = &p
		}
	}
	return st
}

func (rt *rotation) status(w http.ResponseWriter, _ *http.Request, _ Token) {
	writeJSON(w, http.StatusOK, rt.snapshot())
}

// start creates the next KEK and starts rewrapping in the background. While a job runs it
// answers 409.
func (rt *rotation) start(w http.ResponseWriter, r *http.Request, who Token) {
	s := rt.s
	rt.mu.Lock()
	if rt.state.State == StateRunning {
		rt.mu.Unlock()
		writeText(w, http.StatusConflict, "a KEK rotation is running; follow it with GET /kek\n")
		return
	}
	rt.state.State = StateRunning // claim: a second start now sees 409
	rt.mu.Unlock()
	release := func() {
		rt.mu.Lock()
		rt.state.State = StateFailed
		rt.mu.Unlock()
	}
	from := s.opts.KEKs.CurrentKEK()
	// Audit first: no record, no new key.
	if err := s.audit(r, who, "admin.kek.rotate", "started", map[string]string{"from_kek": from}); err != nil {
		release()
		writeText(w, http.StatusServiceUnavailable, "the audit log cannot be written; refusing\n")
		return
	}
	info, err := s.opts.KEKs.RotateKEK(r.Context())
	if err != nil {
		release()
		s.opts.Log.Error("admin: rotate KEK", "err", err)
		_ = s.audit(r, who, "admin.kek.rotate", store.OutcomeFailed, map[string]string{"from_kek": from, "error": err.Error()})
		writeText(w, http.StatusServiceUnavailable, "creating the new KEK failed (see the daemon log)\n")
		return
	}
	now := s.opts.Clock.Now().UTC()
	actor := "admin:" + who.Name
	rt.mu.Lock()
	rt.state = RotationStatus{State: StateRunning, From: from, To: info.Label, Actor: actor, Started: &now, Progress: map[string]*Progress{}}
	for _, rw := range s.opts.Rewrappers {
		rt.state.Progress[rw.Name] = &Progress{}
	}
	rt.mu.Unlock()
	_ = s.audit(r, who, "admin.kek.rotate", store.OutcomeOK, map[string]string{"from_kek": from, "to_kek": info.Label})
	s.background.Go(func() { rt.run(s.jobs, actor, string(who.Role)) })
	writeJSON(w, http.StatusAccepted, rt.snapshot())
}

// rewrapAll runs every domain's rewrap once, recording progress.
func (rt *rotation) rewrapAll(ctx context.Context, actor string) (int, error) {
	total := 0
	for _, rw := range rt.s.opts.Rewrappers {
		n, err := rw.RewrapAll(ctx, actor, rt.stale, rt.s.opts.KEKs.Rewrap, func(done, of int) {
			rt.mu.Lock()
			if p := rt.state.Progress[rw.Name]; p != nil {
				p.Done, p.Total = done, of
			}
			rt.mu.Unlock()
		})
		rt.mu.Lock()
		if p := rt.state.Progress[rw.Name]; p != nil {
			p.Rewrapped += n
		}
		rt.mu.Unlock()
		total += n
		if err != nil {
			return total, fmt.Errorf("%s: %w", rw.Name, err)
		}
	}
	return total, nil
}

func (rt *rotation) run(ctx context.Context, actor, role string) {
	s := rt.s
	n, err := rt.rewrapAll(ctx, actor)
	now := s.opts.Clock.Now().UTC()
	rt.mu.Lock()
	rt.state.Ended = &now
	ev := store.Event{Actor: actor, Action: "admin.kek.rewrap", Subject: rt.state.To, Outcome: store.OutcomeOK,
		Details: map[string]string{"role": role, "token": strings.TrimPrefix(actor, "admin:"), "blobs": strconv.Itoa(n)}}
	if err != nil {
		rt.state.State, rt.state.Error = StateFailed, err.Error()
		ev.Outcome, ev.Details["error"] = store.OutcomeFailed, err.Error()
	} else {
		rt.state.State = StateRewrapped
	}
	rt.mu.Unlock()
	if err != nil {
		s.opts.Log.Error("admin: KEK rotation stopped", "err", err)
	} else {
		s.opts.Log.Info("admin: every blob rewrapped under the new KEK", "blobs", n)
	}
	// The daemon may be stopping (ctx done); the record is still worth trying.
	if aerr := s.opts.Store.Append(context.WithoutCancel(ctx), ev); aerr != nil {
		s.opts.Log.Error("admin: audit append failed", "action", ev.Action, "err", aerr)
	}
}

// finish is the explicit final call: sweep again, prove no stored blob refers to an old
// KEK, then destroy the old KEKs.
func (rt *rotation) finish(w http.ResponseWriter, r *http.Request, who Token) {
	s := rt.s
	rt.mu.Lock()
	if rt.state.State == StateRunning {
		rt.mu.Unlock()
		writeText(w, http.StatusConflict, "the rewrap is still running; finish when GET /kek says rewrapped\n")
		return
	}
	rt.state.State = StateRunning // hold off a concurrent start or finish
	if rt.state.Progress == nil {
		rt.state.Progress = map[string]*Progress{}
		for _, rw := range s.opts.Rewrappers {
			rt.state.Progress[rw.Name] = &Progress{}
		}
	}
	rt.mu.Unlock()
	outcome := StateFailed
	defer func() {
		rt.mu.Lock()
		rt.state.State = outcome
		rt.mu.Unlock()
	}()
	var old []hsm.KEKInfo
	for _, k := range s.opts.KEKs.KEKs() {
		if !k.Current {
			old = append(old, k)
		}
	}
	labels := make([]string, len(old))
	for i, k := range old {
		labels[i] = k.Label
	}
	current := s.opts.KEKs.CurrentKEK()
	if err := s.audit(r, who, "admin.kek.finish", "started", map[string]string{"current_kek": current, "old_keks": strings.Join(labels, ",")}); err != nil {
		writeText(w, http.StatusServiceUnavailable, "the audit log cannot be written; refusing\n")
		return
	}
	fail := func(code int, msg string, err error) {
		_ = s.audit(r, who, "admin.kek.finish", store.OutcomeFailed, map[string]string{"error": err.Error()})
		s.opts.Log.Error("admin: KEK finish", "err", err)
		writeText(w, code, msg+"\n")
	}
	if _, err := rt.rewrapAll(r.Context(), "admin:"+who.Name); err != nil {
		fail(http.StatusServiceUnavailable, "the final sweep failed; nothing was destroyed (see the daemon log)", err)
		return
	}
	remaining := map[string]int{}
	left := 0
	for _, rw := range s.opts.Rewrappers {
		n, err := rw.CountStale(r.Context(), rt.stale)
		if err != nil {
			fail(http.StatusServiceUnavailable, "counting old blobs failed; nothing was destroyed", err)
			return
		}
		remaining[rw.Name] = n
		left += n
	}
	if left > 0 {
		fail(http.StatusConflict, fmt.Sprintf("%d blobs still refer to an old KEK; nothing was destroyed", left),
			fmt.Errorf("blobs under old KEKs remain: %v", remaining))
		return
	}
	// Destroying a KEK cannot be undone, so each destruction is audited before it happens
	// (no record, no destruction) and after it; an audit write that fails stops the finish
	// there, and the answer says what was destroyed.
	var destroyed []string
	for _, k := range old {
		if err := s.audit(r, who, "admin.kek.destroy", "started", map[string]string{"kek": k.Label}); err != nil {
			fail(http.StatusServiceUnavailable, fmt.Sprintf("the audit log cannot be written; %s was not destroyed; destroyed so far: %v", k.Label, destroyed), err)
			return
		}
		if err := s.opts.KEKs.DestroyKEK(r.Context(), k.Version); err != nil && !errors.Is(err, hsm.ErrUnknownKEK) {
			fail(http.StatusServiceUnavailable, fmt.Sprintf("destroying %s failed; destroyed so far: %v", k.Label, destroyed), err)
			return
		}
		destroyed = append(destroyed, k.Label)
		if err := s.audit(r, who, "admin.kek.destroy", store.OutcomeOK, map[string]string{"kek": k.Label}); err != nil {
			fail(http.StatusServiceUnavailable, fmt.Sprintf("%s was destroyed but the audit log cannot record it; stopped; destroyed so far: %v", k.Label, destroyed), err)
			return
		}
	}
	if err := s.audit(r, who, "admin.kek.finish", store.OutcomeOK, map[string]string{"current_kek": current, "destroyed": strings.Join(destroyed, ",")}); err != nil {
		fail(http.StatusServiceUnavailable, fmt.Sprintf("destroyed %v but the audit log cannot record the finish", destroyed), err)
		return
	}
	outcome = StateFinished
	writeJSON(w, http.StatusOK, struct {
		Destroyed []string `json:"destroyed"`
		Current   string   `json:"current_kek"`
	}{Destroyed: append([]string{}, destroyed...), Current: current})
}
