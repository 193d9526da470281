package keys_test

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"strings"
	"sync"
	"sync/atomic"
	"testing"

	"github.com/prometheus/client_golang/prometheus"
	"google.golang.org/grpc/codes"

	"github.com/hufu-hsm/hufu/cosign"
	"github.com/hufu-hsm/hufu/daemon/keys"
	"github.com/hufu-hsm/hufu/hsm"
)

// unwrapCounter is the real SoftHSM keyring, counting the unwraps made through it.
type unwrapCounter struct {
	*hsm.Keyring
	unwraps atomic.Int64
}

func (u *unwrapCounter) Unwrap(ctx context.Context, blob, ad []byte) ([]byte, error) {
	u.unwraps.Add(1)
	return u.Keyring.Unwrap(ctx, blob, ad)
}

// A key id of another account, or of another device of the holder's account, is refused
// from its record alone: no unwrap in the HSM, nothing loaded into the cache.
func TestForeignKeyIDCostsNoHSMWork(t *testing.T) {
	e := newEnv(t)
	ctx := context.Background()
	owner := newPhone(t, e, "u-owner", "d-owner")
	public := createKey(t, e, owner, "111111")

	counter := &unwrapCounter{Keyring: e.keyring}
	svc := serviceOn(t, e, keys.Options{}, counter, prometheus.NewRegistry())

	raw := signRequest(t, owner, public)
	for _, tc := range []struct {
		name   string
		caller *phone
		want   codes.Code
	}{
		{"another account", newPhone(t, e, "u-stranger", "d-stranger"), codes.NotFound},
		{"another device of the holder", newPhone(t, e, "u-owner", "d-other"), codes.PermissionDenied},
	} {
		t.Run(tc.name, func(t *testing.T) {
			for _, cred := range []keys.Credential{{PIN: "111111"}, {Ticket: "hct_x"}} {
				_, _, err := svc.Sign(ctx, tc.caller.caller, keyID, cred, raw)
				if code(err) != tc.want {
					t.Fatalf("sign: %v; want %v", err, tc.want)
				}
				if _, err := svc.Decrypt(ctx, tc.caller.caller, keyID, cred, make([]byte, 65)); code(err) != tc.want {
					t.Fatalf("decrypt: %v; want %v", err, tc.want)
				}
				if _, err := svc.BeginRefresh(ctx, tc.caller.caller, keyID, cred); code(err) != tc.want {
					t.Fatalf("begin refresh: %v; want %v", err, tc.want)
				}
			}
			if n := counter.unwraps.Load(); n != 0 {
				t.Fatalf("%d HSM unwraps for a key the caller does not hold", n)
			}
			if n := svc.CachedKeys(); n != 0 {
				t.Fatalf("%d snapshots cached for a key the caller does not hold", n)
			}
		})
	}
	// The counter sees the holder's own use: the assertions above can fail.
	if _, _, err := svc.Sign(ctx, owner.caller, keyID, keys.Credential{PIN: "111111"}, raw); err != nil {
		t.Fatalf("the holder signs: %v", err)
	}
	if counter.unwraps.Load() == 0 || svc.CachedKeys() != 1 {
		t.Fatalf("the holder's sign: %d unwraps, %d cached; want some, 1", counter.unwraps.Load(), svc.CachedKeys())
	}
}

// An operation that took its snapshot before a refresh commit, a revocation or a recall does
// not answer after it: its records' commit sees the new share version or status under the
// record's lock, writes the refusal's audit record instead, and refuses.
func TestInFlightAnswerWithheldAfterShareChange(t *testing.T) {
	for _, tc := range []struct {
		name   string
		member bool                                                                  // the operation uses a member's delegated pair
		change func(t *testing.T, e *env, admin, member *phone, public cosign.Point) // nil: nothing changes
		want   codes.Code
	}{
		{name: "nothing changed", want: codes.OK},
		{name: "a share refresh committed", want: codes.Aborted, change: func(t *testing.T, e *env, admin, _ *phone, public cosign.Point) {
			beginRefresh(t, e, admin, public).commit(t, e, admin, public)
		}},
		{name: "the key was revoked", want: codes.FailedPrecondition, change: func(t *testing.T, e *env, admin, _ *phone, _ cosign.Point) {
			must(t, "revoke", e.svc.Revoke(context.Background(), admin.caller, keyID, "lost phone", nil))
		}},
		{name: "the member's refresh committed", member: true, want: codes.Aborted, change: func(t *testing.T, e *env, _, member *phone, public cosign.Point) {
			beginRefresh(t, e, member, public).commit(t, e, member, public)
		}},
		{name: "the member's pair was recalled", member: true, want: codes.FailedPrecondition, change: func(t *testing.T, e *env, admin, member *phone, _ cosign.Point) {
			must(t, "recall", e.svc.RecallDelegation(context.Background(), admin.caller, keyID, member.caller.UserID, member.caller.DeviceID, nil))
		}},
		{name: "the holder refreshed while a member signed", member: true, want: codes.OK, change: func(t *testing.T, e *env, admin, _ *phone, public cosign.Point) {
			beginRefresh(t, e, admin, public).commit(t, e, admin, public)
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			e := newEnv(t)
			ctx := context.Background()
			admin := newPhone(t, e, "u-admin", "d-admin")
			public := createKey(t, e, admin, "111111")
			var member *phone
			user := admin
			if tc.member {
				member = newPhone(t, e, "u-staff", "d-staff")
				grant(t, e, admin, member, nil)
				accept(t, e, member, "222222")
				user = member
			}
			finish, err := e.svc.HoldSnapshot(ctx, user.caller, keyID)
			must(t, "take the snapshot", err)
			if tc.change != nil {
				tc.change(t, e, admin, member, public)
			}
			err = finish()
			if got := code(err); got != tc.want {
				t.Fatalf("the in-flight operation: %v (%v); want %v", got, err, tc.want)
			}
			head, _ := e.st.Head()
			last, err := e.st.AuditRecord(ctx, head)
			must(t, "last audit record", err)
			wantOutcome := "ok"
			if tc.want != codes.OK {
				wantOutcome = "denied"
			}
			if last.Action != "key.sign" || last.Outcome != wantOutcome || (tc.want != codes.OK && last.Details["reason"] != "share superseded") {
				t.Fatalf("last audit record %s %s %v; want key.sign %s", last.Action, last.Outcome, last.Details, wantOutcome)
			}
		})
	}
}

// Phones sign with the old share pair while the holder refreshes: every signature the old
// pair got is recorded before the refresh commit in the audit log, none after.
func TestRefreshCommitDuringSigning(t *testing.T) {
	e := newEnv(t)
	ctx := context.Background()
	admin := newPhone(t, e, "u-admin", "d-admin")
	public := createKey(t, e, admin, "111111")
	oldKey := admin.key // the phone's pair before the refresh

	const signers = 4
	var (
		mu    sync.Mutex
		valid = map[string]bool{} // digests the old pair got a verifying signature for
		stop  atomic.Bool
		wg    sync.WaitGroup
	)
	started := make(chan struct{}, signers)
	for range signers {
		wg.Go(func() {
			first := true
			for !stop.Load() {
				var d [32]byte
				rand.Read(d[:])
				if _, err := oldKey.SignDigest(ctx, rand.Reader, &d); err == nil {
					mu.Lock()
					valid[hex.EncodeToString(d[:])] = true
					mu.Unlock()
					if first {
						started <- struct{}{}
						first = false
					}
				}
			}
		})
	}
	for range signers {
		<-started // every signer is signing
	}
	beginRefresh(t, e, admin, public).commit(t, e, admin, public)
	// Signers go on for a while against the refreshed share: their answers are made with the
	// new server share, which the old phone share cannot finish.
	for range 20 {
		must(t, "the refreshed phone signs", signs(t, admin, public))
	}
	stop.Store(true)
	wg.Wait()

	head, _ := e.st.Head()
	commitSeq := uint64(0)
	signedAt := map[string]uint64{}
	for seq := uint64(1); seq <= head; seq++ {
		r, err := e.st.AuditRecord(ctx, seq)
		must(t, "audit record", err)
		switch {
		case r.Action == "key.refresh.commit":
			commitSeq = seq
		case r.Action == "key.sign" && r.Outcome == "ok":
			signedAt[r.Details["digest"]] = seq
		}
	}
	if commitSeq == 0 || len(valid) < signers {
		t.Fatalf("refresh commit at %d, %d signatures by the old pair", commitSeq, len(valid))
	}
	for d := range valid {
		seq, ok := signedAt[d]
		if !ok || seq > commitSeq {
			t.Fatalf("the old pair's signature on %s is recorded at %d (found %v), after the refresh commit at %d", d, seq, ok, commitSeq)
		}
	}
	t.Logf("%d signatures by the old pair, all recorded before the refresh commit", len(valid))
}

// serviceOn starts another keys service on e's store, with opts and keyring, serving until
// the test ends.
func serviceOn(t *testing.T, e *env, opts keys.Options, keyring keys.Keyring, reg *prometheus.Registry) *keys.Service {
	t.Helper()
	svc, err := keys.New(opts, keys.Deps{Store: e.st, Keyring: keyring, Accounts: accountsStandIn{}, Clock: e.clock, Registry: reg})
	must(t, "new service", err)
	runCtx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { svc.Run(runCtx); close(done) }()
	t.Cleanup(func() { cancel(); <-done })
	return svc
}

// keygen runs a whole key generation of id for p against svc.
func keygen(svc *keys.Service, p *phone, id string) error {
	_, req, err := cosign.StartKeygen(rand.Reader, cosign.KeygenContext(p.caller.UserID, id))
	if err != nil {
		return err
	}
	raw, _ := req.MarshalBinary()
	_, err = svc.CreateKey(context.Background(), p.caller, id, raw, "111111", "")
	return err
}

func TestKeyQuota(t *testing.T) {
	e := newEnv(t)
	ctx := context.Background()
	reg := prometheus.NewRegistry()
	svc := serviceOn(t, e, keys.Options{MaxKeysPerAccount: 3}, e.keyring, reg)
	alice := newPhone(t, e, "u-alice", "d-alice")
	bob := newPhone(t, e, "u-bob", "d-bob")

	// Concurrent creations by one account: exactly the quota succeeds.
	var wg sync.WaitGroup
	errs := make([]error, 6)
	for i := range errs {
		wg.Go(func() { errs[i] = keygen(svc, alice, fmt.Sprintf("alice-key-%02d", i)) })
	}
	wg.Wait()
	created, refused := 0, 0
	for _, err := range errs {
		switch {
		case err == nil:
			created++
		case code(err) == codes.ResourceExhausted:
			if !strings.Contains(err.Error(), "keys.max_keys_per_account = 3") {
				t.Fatalf("the refusal does not name the quota: %v", err)
			}
			refused++
		default:
			t.Fatalf("create: %v", err)
		}
	}
	if created != 3 {
		t.Fatalf("%d keys created concurrently under a quota of 3 (%d refused)", created, refused)
	}
	if err := keygen(svc, alice, "alice-key-99"); code(err) != codes.ResourceExhausted {
		t.Fatalf("a fourth key: %v; want ResourceExhausted", err)
	}
	if got := counterValue(t, reg, "hufu_keys_quota_refusals_total"); got < 1 || int(got) != refused+1 {
		t.Fatalf("hufu_keys_quota_refusals_total = %v; want %d", got, refused+1)
	}
	// Another account has its own quota.
	must(t, "bob's first key", keygen(svc, bob, "bob-key-0001"))
	// A revoked key does not count.
	held, err := svc.ListKeys(ctx, alice.caller)
	must(t, "list", err)
	must(t, "revoke", svc.Revoke(ctx, alice.caller, held[0].Id, "no longer used", nil))
	must(t, "a key after revoking one", keygen(svc, alice, "alice-key-99"))
}

func counterValue(t *testing.T, reg *prometheus.Registry, name string) float64 {
	t.Helper()
	mfs, err := reg.Gather()
	must(t, "gather", err)
	for _, mf := range mfs {
		if mf.GetName() == name {
			return mf.GetMetric()[0].GetCounter().GetValue()
		}
	}
	return 0
}
