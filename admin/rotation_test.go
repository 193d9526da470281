package admin_test

import (
	"context"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/hufu-hsm/hufu/admin"
	"github.com/hufu-hsm/hufu/hsm"
	"github.com/hufu-hsm/hufu/store"
)

// storeClosingKEKs is a fault-injecting fake around the real keyring: after it destroys a
// KEK (really, in SoftHSM2) it closes the store, so the audit record that must follow the
// destruction cannot be written. A real Pebble store does not fail on cue between two
// writes.
type storeClosingKEKs struct {
	*hsm.Keyring
	st *store.Store
}

func (k storeClosingKEKs) DestroyKEK(ctx context.Context, version int) error {
	err := k.Keyring.DestroyKEK(ctx, version)
	_ = k.st.Close(context.Background())
	return err
}

// TestKEKFinishAuditsEachDestruction: every KEK destruction is recorded before and after it
// happens, and when the record after a destruction cannot be written the finish stops
// there, says so with what was destroyed, and destroys nothing more.
func TestKEKFinishAuditsEachDestruction(t *testing.T) {
	ctx := context.Background()
	t.Run("recorded", func(t *testing.T) {
		var st *store.Store
		var keks admin.KEKs
		s, tokens := newServer(t, nil, func(o *admin.Options) { st, keks = o.Store, o.KEKs })
		for range 2 {
			if code, body := post(t, s.Handler(), "/kek/rotate", tokens[admin.SecurityOfficer], ""); code >= 300 {
				t.Fatalf("rotate: %d %s", code, body)
			}
			waitRotation(t, s, tokens[admin.SecurityOfficer])
		}
		if code, body := post(t, s.Handler(), "/kek/finish", tokens[admin.SecurityOfficer], ""); code != http.StatusOK {
			t.Fatalf("finish: %d %s", code, body)
		}
		if n := len(keks.KEKs()); n != 1 {
			t.Fatalf("%d KEKs after the finish, want 1", n)
		}
		seq, _ := st.Head()
		var got []string
		for i := uint64(1); i <= seq; i++ {
			rec, err := st.AuditRecord(ctx, i)
			if err != nil {
				t.Fatal(err)
			}
			if rec.Action == "admin.kek.destroy" {
				got = append(got, rec.Details["kek"]+" "+rec.Outcome)
			}
		}
		want := "hufu-kek-v1 started,hufu-kek-v1 ok,hufu-kek-v2 started,hufu-kek-v2 ok"
		if strings.Join(got, ",") != want {
			t.Fatalf("destroy records %v, want %s", got, want)
		}
	})
	t.Run("audit fails after a destruction", func(t *testing.T) {
		var keks admin.KEKs
		s, tokens := newServer(t, nil, func(o *admin.Options) {
			keks = o.KEKs
			o.KEKs = storeClosingKEKs{Keyring: o.KEKs.(*hsm.Keyring), st: o.Store}
		})
		for range 2 {
			if code, body := post(t, s.Handler(), "/kek/rotate", tokens[admin.SecurityOfficer], ""); code >= 300 {
				t.Fatalf("rotate: %d %s", code, body)
			}
			waitRotation(t, s, tokens[admin.SecurityOfficer])
		}
		code, body := post(t, s.Handler(), "/kek/finish", tokens[admin.SecurityOfficer], "")
		if code != http.StatusServiceUnavailable || !strings.Contains(body, "hufu-kek-v1 was destroyed but the audit log cannot record it; stopped") {
			t.Fatalf("finish with the audit failing after the first destruction: %d %q", code, body)
		}
		var left []string
		for _, k := range keks.KEKs() {
			left = append(left, k.Label)
		}
		if strings.Join(left, ",") != "hufu-kek-v2,hufu-kek-v3" {
			t.Fatalf("KEKs left %v; want v2 kept (the finish stopped) and v3", left)
		}
	})
}

// waitRotation waits until GET /kek no longer says running.
func waitRotation(t *testing.T, s *admin.Server, token string) {
	t.Helper()
	for range 2000 {
		code, body := get(t, s.Handler(), "/kek", token)
		if code != http.StatusOK {
			t.Fatalf("GET /kek: %d %s", code, body)
		}
		if !strings.Contains(body, `"state": "running"`) {
			return
		}
		// The rewrap job has no blobs to move here (no rewrappers); it ends at once.
		time.Sleep(5 * time.Millisecond)
	}
	t.Fatal("the rotation stays running")
}
