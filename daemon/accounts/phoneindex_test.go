package accounts

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"testing"
	"time"

	"github.com/hufu-hsm/hufu/daemon/identity"
	"github.com/hufu-hsm/hufu/hsm"
	"github.com/hufu-hsm/hufu/softhsm/softhsmtest"
	"github.com/hufu-hsm/hufu/store"
	"github.com/hufu-hsm/hufu/store/storepb"
)

func TestMain(m *testing.M) { softhsmtest.Main(m) }

type fixedClock struct{ t time.Time }

func (c fixedClock) Now() time.Time { return c.t }

// hsmOutageAfter is a fault-injecting Keyring: the real one until calls PINVerifier calls
// have been made, then an HSM that no longer answers — a failure in the middle of a
// migration that the real token cannot be made to produce on cue.
type hsmOutageAfter struct {
	Keyring
	calls int
}

func (k *hsmOutageAfter) PINVerifier(ctx context.Context, salt, keyContext, pin []byte) ([]byte, error) {
	if k.calls == 0 {
		return nil, hsm.ErrUnavailable
	}
	k.calls--
	return k.Keyring.PINVerifier(ctx, salt, keyContext, pin)
}

func newMigrationService(t *testing.T, st *store.Store, clk Clock, kr Keyring) *Service {
	t.Helper()
	s, err := New(Options{CodeFailureWindow: time.Hour, Platforms: []Platform{{ID: "demo", Name: "示范平台"}}},
		Deps{Store: st, Keyring: kr, SMS: &DevSender{Path: t.TempDir() + "/outbox"}, WeChat: NotOffered{}, Carrier: NotOffered{},
			Verifier: &identity.DevVerifier{}, Clock: clk})
	if err != nil {
		t.Fatal(err)
	}
	return s
}

// TestPhoneKeyMigrationResumesAfterAnInterruption: an HSM outage after the first batch
// stops the migration with that batch committed (old and new entries side by side, each
// number under exactly one of them); the next run moves the rest, and a third run moves
// nothing and writes nothing.
func TestPhoneKeyMigrationResumesAfterAnInterruption(t *testing.T) {
	ctx := context.Background()
	tok := softhsmtest.New(t)
	kr, err := hsm.Initialize(ctx, hsm.Config{ModulePath: tok.ModulePath, TokenLabel: tok.Label, PINFile: tok.PINFile})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = kr.Close() })
	clk := fixedClock{time.Date(2026, 3, 1, 9, 0, 0, 0, time.UTC)}
	st, err := store.Open(ctx, store.Options{Dir: t.TempDir(), Clock: clk})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = st.Close(context.Background()) })

	// The old layout: 300 accounts indexed by number, one number locked out.
	const accounts = 300
	owners := map[string]string{}
	err = st.Update(ctx, func(tx *store.Tx) error {
		for i := range accounts {
			phone, id := fmt.Sprintf("1360000%04d", i), fmt.Sprintf("%032x", i+1)
			owners[phone] = userKey(id)
			if err := users.Put(tx, id, &storepb.User{Id: id, Phone: phone}); err != nil {
				return err
			}
			if err := tx.Claim(indexPhone, phone, userKey(id)); err != nil {
				return err
			}
		}
		end := clk.t.Add(15 * time.Minute)
		if err := counters.Put(tx, "rate/code-lock/13600000007", &storepb.RateCounter{Count: 1, WindowEndUnixNano: end.UnixNano()}, store.ExpiresAt(end)); err != nil {
			return err
		}
		return tx.Audit(store.Event{Actor: "test", Action: "test.old_layout", Outcome: store.OutcomeOK})
	})
	if err != nil {
		t.Fatal(err)
	}

	// Enough HSM answers for the first batch of index entries and a few more.
	n, err := newMigrationService(t, st, clk, &hsmOutageAfter{Keyring: kr, calls: phoneMigrationBatch + 10}).MigratePhoneKeys(ctx)
	if !errors.Is(err, hsm.ErrUnavailable) || n != phoneMigrationBatch {
		t.Fatalf("interrupted run = %d, %v; want %d moved and the HSM error", n, err, phoneMigrationBatch)
	}
	s := newMigrationService(t, st, clk, kr)
	fp := func(phone string) string {
		ref, err := s.phoneKey(ctx, phone)
		if err != nil {
			t.Fatal(err)
		}
		return ref.fp
	}
	moved := 0
	for phone, owner := range owners {
		oldOwner, oldErr := st.Lookup(ctx, indexPhone, phone)
		newOwner, newErr := st.Lookup(ctx, indexPhone, fp(phone))
		switch {
		case oldErr == nil && errors.Is(newErr, store.ErrNotFound) && oldOwner == owner:
		case newErr == nil && errors.Is(oldErr, store.ErrNotFound) && newOwner == owner:
			moved++
		default:
			t.Fatalf("after the interruption %s: old %q %v, new %q %v, want exactly one naming %s", phone, oldOwner, oldErr, newOwner, newErr, owner)
		}
	}
	if moved != phoneMigrationBatch {
		t.Fatalf("%d numbers moved by the interrupted run, want %d", moved, phoneMigrationBatch)
	}

	if n, err := s.MigratePhoneKeys(ctx); err != nil || n != accounts-phoneMigrationBatch+1 {
		t.Fatalf("resumed run = %d, %v; want %d", n, err, accounts-phoneMigrationBatch+1)
	}
	for phone, owner := range owners {
		if got, err := st.Lookup(ctx, indexPhone, fp(phone)); err != nil || got != owner {
			t.Fatalf("%s after the migration: %q %v, want %s", phone, got, err, owner)
		}
		if _, err := st.Lookup(ctx, indexPhone, phone); !errors.Is(err, store.ErrNotFound) {
			t.Fatalf("%s still indexed by number: %v", phone, err)
		}
	}
	if _, err := counters.Read(ctx, st, "rate/code-lock/"+fp("13600000007")); err != nil {
		t.Fatalf("the lockout did not move: %v", err)
	}

	head, _ := st.Head()
	if n, err := s.MigratePhoneKeys(ctx); err != nil || n != 0 {
		t.Fatalf("third run = %d, %v; want nothing to move", n, err)
	}
	if again, _ := st.Head(); again != head {
		t.Fatalf("a run with nothing to move wrote %d audit records", again-head)
	}
	total := 0
	recs, err := st.AuditRecords(ctx, 1, store.MaxAuditRange)
	if err != nil {
		t.Fatal(err)
	}
	for _, r := range recs {
		if r.Action == "account.phone_keys.migrate" {
			k, _ := strconv.Atoi(r.Details["rewritten"])
			total += k
		}
	}
	if total != accounts+1 {
		t.Fatalf("migration records name %d entries, want %d", total, accounts+1)
	}
}
