package admin_test

import (
	"context"
	"encoding/json"
	"errors"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/hufu-hsm/hufu/admin"
	"github.com/hufu-hsm/hufu/hsm"
	"github.com/hufu-hsm/hufu/store"
)

// errSimulatedCrash is what crashingKEKs answers instead of destroying a KEK.
var errSimulatedCrash = errors.New("simulated crash before the destruction")

// crashingKEKs is a fault-injecting fake around the real keyring: it refuses to destroy a
// KEK, standing in for a process that dies after the rotation, the rewrap and the
// compaction and before the destruction (a real HSM does not fail on cue there).
type crashingKEKs struct{ *hsm.Keyring }

func (crashingKEKs) DestroyKEK(context.Context, int) error { return errSimulatedCrash }

// heldBlobs is a test domain holding wrapped blobs, with a Rewrapper over them.
type heldBlobs struct {
	mu    sync.Mutex
	blobs map[string][]byte // associated data -> blob
}

func (h *heldBlobs) rewrapper() admin.Rewrapper {
	return admin.Rewrapper{Name: "held",
		RewrapAll: func(ctx context.Context, _ string, stale func([]byte) bool, rewrap func(context.Context, []byte, []byte) ([]byte, error), progress func(int, int)) (int, error) {
			h.mu.Lock()
			defer h.mu.Unlock()
			n := 0
			for ad, b := range h.blobs {
				if !stale(b) {
					continue
				}
				nb, err := rewrap(ctx, b, []byte(ad))
				if err != nil {
					return n, err
				}
				h.blobs[ad] = nb
				n++
			}
			return n, nil
		},
		CountStale: func(_ context.Context, stale func([]byte) bool) (int, error) {
			h.mu.Lock()
			defer h.mu.Unlock()
			n := 0
			for _, b := range h.blobs {
				if stale(b) {
					n++
				}
			}
			return n, nil
		},
	}
}

func kekLabels(k admin.KEKs) string {
	var out []string
	for _, i := range k.KEKs() {
		out = append(out, i.Label)
	}
	return strings.Join(out, ",")
}

// TestKEKErasureResumesAfterACrashBeforeDestruction: an erasure that dies after rotating,
// rewrapping and compacting leaves the old KEK on the token (every blob still opens) and no
// record of a finished erasure; the next erasure, by a new server on the same store and
// token (a restart), takes it over without creating another KEK, destroys the old one,
// records its time, and the live blob opens under the new KEK.
func TestKEKErasureResumesAfterACrashBeforeDestruction(t *testing.T) {
	ctx := context.Background()
	held := &heldBlobs{blobs: map[string][]byte{}}
	var opts admin.Options
	var kr *hsm.Keyring
	s, tokens := newServer(t, nil, func(o *admin.Options) {
		kr = o.KEKs.(*hsm.Keyring)
		o.KEKs = crashingKEKs{kr}
		o.Rewrappers = []admin.Rewrapper{held.rewrapper()}
		opts = *o
	})
	blob, err := kr.Wrap(ctx, []byte("a live share"), []byte("ad-1"))
	if err != nil {
		t.Fatal(err)
	}
	held.blobs["ad-1"] = blob

	code, body := post(t, s.Handler(), "/kek/erase", tokens[admin.SecurityOfficer], "")
	if code != http.StatusServiceUnavailable || !strings.Contains(body, errSimulatedCrash.Error()) {
		t.Fatalf("erase with the destruction failing: %d %s", code, body)
	}
	if got := kekLabels(kr); got != "hufu-kek-v1,hufu-kek-v2" {
		t.Fatalf("KEKs after the crash %s, want v1 kept and v2 current", got)
	}
	if _, err := kr.Unwrap(ctx, held.blobs["ad-1"], []byte("ad-1")); err != nil {
		t.Fatalf("the live blob after the crash: %v", err)
	}
	if last, err := s.LastErasure(ctx); err != nil || !last.IsZero() {
		t.Fatalf("a failed erasure recorded itself as finished: %v %v", last, err)
	}
	_ = s.Close(ctx)

	// The restart: a new server on the same store and token, with the real keyring.
	opts.KEKs = kr
	reg := prometheus.NewRegistry()
	opts.Registerer, opts.Gatherer = reg, reg
	s2, err := admin.New(opts)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = s2.Close(ctx) })
	code, body = post(t, s2.Handler(), "/kek/erase", tokens[admin.SecurityOfficer], "")
	if code != http.StatusOK {
		t.Fatalf("resumed erase: %d %s", code, body)
	}
	var e admin.Erasure
	if err := json.Unmarshal([]byte(body), &e); err != nil {
		t.Fatal(err)
	}
	if !e.Resumed || e.Current != "hufu-kek-v2" || strings.Join(e.Destroyed, ",") != "hufu-kek-v1" ||
		!strings.Contains(e.Backups, "backups taken before this erasure can no longer be restored") {
		t.Fatalf("resumed erasure answered %+v", e)
	}
	if got := kekLabels(kr); got != "hufu-kek-v2" {
		t.Fatalf("KEKs after the resumed erasure %s, want only v2", got)
	}
	if _, err := kr.Unwrap(ctx, held.blobs["ad-1"], []byte("ad-1")); err != nil {
		t.Fatalf("the live blob after the erasure: %v", err)
	}
	if _, err := kr.Unwrap(ctx, blob, []byte("ad-1")); !errors.Is(err, hsm.ErrUnknownKEK) {
		t.Fatalf("the blob under the destroyed KEK: %v, want ErrUnknownKEK", err)
	}
	if last, err := s2.LastErasure(ctx); err != nil || last.IsZero() {
		t.Fatalf("finished erasure not recorded: %v %v", last, err)
	}
	if v := gauge(t, reg, "hufu_kek_last_erasure_timestamp_seconds"); v == 0 {
		t.Fatal("hufu_kek_last_erasure_timestamp_seconds is 0 after an erasure")
	}
	// The audit log tells the story: started, rotated, failed; started, resumed, compacted, ok.
	var got []string
	head, _ := opts.Store.Head()
	for i := uint64(1); i <= head; i++ {
		rec, err := opts.Store.AuditRecord(ctx, i)
		if err != nil {
			t.Fatal(err)
		}
		switch rec.Action {
		case "admin.kek.erase":
			got = append(got, rec.Outcome)
		case "admin.kek.destroy":
			got = append(got, "destroy "+rec.Details["kek"]+" "+rec.Outcome)
		}
	}
	want := "started,rotated,compacted,destroy hufu-kek-v1 started,failed,started,resumed,compacted,destroy hufu-kek-v1 started,destroy hufu-kek-v1 ok,ok"
	if strings.Join(got, ",") != want {
		t.Fatalf("audit of the erasures:\n got %s\nwant %s", strings.Join(got, ","), want)
	}
}

// gauge returns the value of the one sample of the gauge name gathered from reg.
func gauge(t *testing.T, reg *prometheus.Registry, name string) float64 {
	t.Helper()
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, mf := range mfs {
		if mf.GetName() == name && len(mf.Metric) == 1 {
			return mf.Metric[0].GetGauge().GetValue()
		}
	}
	t.Fatalf("no metric %s", name)
	return 0
}

// fakeClock is a settable clock for the schedule.
type fakeClock struct {
	mu  sync.Mutex
	now time.Time
}

func (c *fakeClock) Now() time.Time { c.mu.Lock(); defer c.mu.Unlock(); return c.now }
func (c *fakeClock) advance(d time.Duration) {
	c.mu.Lock()
	c.now = c.now.Add(d)
	c.mu.Unlock()
}

// scheduledServer is an admin server on clock with a daily erasure schedule, its store, KEKs
// and metrics registry.
func scheduledServer(t *testing.T, clock *fakeClock) (*admin.Server, *store.Store, admin.KEKs, *prometheus.Registry) {
	t.Helper()
	var st *store.Store
	var kr admin.KEKs
	reg := prometheus.NewRegistry()
	s, _ := newServer(t, nil, func(o *admin.Options) {
		o.Clock, o.ErasureInterval = clock, 24*time.Hour
		st, kr = o.Store, o.KEKs
		o.Registerer, o.Gatherer = reg, reg
	})
	return s, st, kr, reg
}

// TestKEKErasureSchedule: the scheduled erasure is not due before keys.erasure.interval has
// passed since the schedule's first run, runs once it has (destroying the old KEK, actor
// system:kek-erasure), and is next due an interval after it; the due-time gauge says so.
func TestKEKErasureSchedule(t *testing.T) {
	ctx := context.Background()
	clock := &fakeClock{now: time.Now()}
	s, st, kr, reg := scheduledServer(t, clock)
	due := clock.Now().Truncate(time.Second).Add(24 * time.Hour).Unix()
	if v := gauge(t, reg, "hufu_kek_erasure_due_timestamp_seconds"); int64(v) != due {
		t.Fatalf("due gauge %v, want %d (a day after the schedule's first run)", v, due)
	}
	if ran, err := s.EraseIfDue(ctx); ran || err != nil {
		t.Fatalf("erasure before it is due: ran %v, %v", ran, err)
	}
	clock.advance(25 * time.Hour)
	if ran, err := s.EraseIfDue(ctx); !ran || err != nil {
		t.Fatalf("due erasure: ran %v, %v", ran, err)
	}
	if got := kekLabels(kr); got != "hufu-kek-v2" {
		t.Fatalf("KEKs after the scheduled erasure: %s", got)
	}
	if ran, err := s.EraseIfDue(ctx); ran || err != nil {
		t.Fatalf("second call right after: ran %v, %v", ran, err)
	}
	last, _ := s.LastErasure(ctx)
	if v := gauge(t, reg, "hufu_kek_erasure_due_timestamp_seconds"); int64(v) != last.Add(24*time.Hour).Unix() {
		t.Fatalf("due gauge %v after the erasure at %v", v, last)
	}
	head, _ := st.Head()
	rec, err := st.AuditRecord(ctx, head)
	if err != nil || rec.Action != "admin.kek.erase" || rec.Outcome != store.OutcomeOK || rec.Actor != admin.ErasureActor ||
		rec.Details["trigger"] != "schedule" || rec.Details["destroyed"] != "hufu-kek-v1" {
		t.Fatalf("last audit record %+v, %v", rec, err)
	}
}

// TestKEKErasureFirstScheduleCountsFromItsFirstRun: on a store older than the interval that
// has had no erasure (an upgrade to a build with the schedule), the first start does not
// erase; the first erasure is due an interval after the schedule first ran, recorded and
// audited once.
func TestKEKErasureFirstScheduleCountsFromItsFirstRun(t *testing.T) {
	ctx := context.Background()
	clock := &fakeClock{now: time.Now().Add(30 * 24 * time.Hour)} // the store is a month old
	s, st, kr, reg := scheduledServer(t, clock)
	first := clock.Now().Truncate(time.Second)
	if v := gauge(t, reg, "hufu_kek_erasure_due_timestamp_seconds"); int64(v) != first.Add(24*time.Hour).Unix() {
		t.Fatalf("due gauge %v, want %d (a day after the schedule's first run, not the store's creation %v)", v, first.Add(24*time.Hour).Unix(), st.CreatedAt())
	}
	if ran, err := s.EraseIfDue(ctx); ran || err != nil {
		t.Fatalf("the first start on an old store erased: ran %v, %v", ran, err)
	}
	if got := kekLabels(kr); got != "hufu-kek-v1" {
		t.Fatalf("KEKs after the first start: %s", got)
	}
	head, _ := st.Head()
	var schedules int
	for seq := uint64(1); seq <= head; seq++ {
		rec, err := st.AuditRecord(ctx, seq)
		if err != nil {
			t.Fatal(err)
		}
		if rec.Action == "admin.kek.erase.schedule" {
			schedules++
			if rec.Details["first_due"] != first.Add(24*time.Hour).UTC().Format(time.RFC3339) {
				t.Fatalf("schedule record %+v", rec)
			}
		}
	}
	if schedules != 1 {
		t.Fatalf("%d admin.kek.erase.schedule records, want 1", schedules)
	}
	clock.advance(12 * time.Hour)
	if ran, err := s.EraseIfDue(ctx); ran || err != nil {
		t.Fatalf("erasure half an interval after the first run: ran %v, %v", ran, err)
	}
	clock.advance(13 * time.Hour)
	if ran, err := s.EraseIfDue(ctx); !ran || err != nil {
		t.Fatalf("the first due erasure: ran %v, %v", ran, err)
	}
}
