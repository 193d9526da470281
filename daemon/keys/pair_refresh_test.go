package keys_test

import (
	"bytes"
	"context"
	"crypto/rand"
	"errors"
	"testing"

	"github.com/prometheus/client_golang/prometheus"
	"google.golang.org/grpc/codes"

	"github.com/hufu-hsm/hufu/cosign"
	"github.com/hufu-hsm/hufu/daemon/keys"
	"github.com/hufu-hsm/hufu/hsm"
	"github.com/hufu-hsm/hufu/store/storepb"
)

// reopen plays a daemon restart: a new keys service (empty cache, no tickets) on the same
// store and HSM token, serving until the end of the test that made e. Phones must bind
// again to reach it.
func (e *env) reopen(t *testing.T) {
	t.Helper()
	svc, err := keys.New(keys.Options{}, keys.Deps{
		Store: e.st, Keyring: e.keyring, Accounts: accountsStandIn{}, Clock: e.clock, Registry: prometheus.NewRegistry(),
	})
	if err != nil {
		t.Fatal(err)
	}
	runCtx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { svc.Run(runCtx); close(done) }()
	e.t.Cleanup(func() { cancel(); <-done }) // the whole test's, not a subtest's
	e.svc = svc
}

// pairRefresh is the phone's side of a refresh in progress.
type pairRefresh struct {
	raw       []byte // the offer as the appliance sent it
	next      cosign.PhoneKey
	challenge [32]byte
}

// beginRefresh asks for a refresh of p's pair and accepts the offer on the phone, which
// keeps its active share and the pending one (cosign.PhoneKey).
func beginRefresh(t *testing.T, e *env, p *phone, public cosign.Point) pairRefresh {
	t.Helper()
	ctx := context.Background()
	raw, err := e.svc.BeginRefresh(ctx, p.caller, keyID, *p.cred)
	must(t, "begin refresh", err)
	var offer cosign.RefreshOffer
	must(t, "offer", offer.UnmarshalBinary(raw))
	view, err := e.svc.GetKey(ctx, p.caller, keyID)
	must(t, "get key", err)
	if view.GetPending().GetVersion() != offer.Version || offer.Version != view.ShareVersion+1 {
		t.Fatalf("offer of version %d, the key as %s sees it: version %d, pending %d",
			offer.Version, p.caller.UserID, view.ShareVersion, view.GetPending().GetVersion())
	}
	pk := cosign.PhoneKey{Public: public, Version: view.ShareVersion, Share: p.share}
	next, challenge, err := pk.AcceptOffer([]byte(keyID), &offer)
	must(t, "accept offer", err)
	return pairRefresh{raw: raw, next: next, challenge: challenge}
}

// confirmation signs the refresh challenge with the pending share, through the appliance.
func (r pairRefresh) confirmation(t *testing.T, e *env, p *phone, public cosign.Point) []byte {
	t.Helper()
	k := cosign.NewKey(public, r.next.Pending.Share, appliance{svc: e.svc, caller: p.caller, keyID: keyID, cred: p.cred})
	sig, err := k.SignDigest(context.Background(), rand.Reader, &r.challenge)
	must(t, "sign the refresh challenge with the new pair", err)
	raw, _ := sig.MarshalBinary()
	return raw
}

// commit confirms and commits the refresh, and moves the phone to its new share.
func (r pairRefresh) commit(t *testing.T, e *env, p *phone, public cosign.Point) {
	t.Helper()
	view, err := e.svc.CommitRefresh(context.Background(), p.caller, keyID, r.confirmation(t, e, p, public))
	must(t, "commit refresh", err)
	if view.ShareVersion != r.next.Pending.Version || view.Pending != nil {
		t.Fatalf("committed: version %d, pending %v; want %d", view.ShareVersion, view.Pending, r.next.Pending.Version)
	}
	next, err := r.next.Committed()
	must(t, "committed", err)
	p.bind(e, public, next.Share)
}

func storedPair(t *testing.T, e *env, user, device string) *storepb.DelegatedShare {
	t.Helper()
	var d storepb.DelegatedShare
	must(t, "read pair", e.st.Get(context.Background(), "k/"+keyID+"/delegate/"+user+"/"+device, &d))
	return &d
}

func TestDelegatedPairRefresh(t *testing.T) {
	e := newEnv(t)
	ctx := context.Background()
	admin, staff1, staff2, public := keyWithTwoStaffPairs(t, e)
	everyoneSigns := func(t *testing.T, who ...*phone) {
		t.Helper()
		for _, p := range who {
			must(t, p.caller.UserID+" signs", signs(t, p, public))
			must(t, p.caller.UserID+" decrypts", decrypts(t, p, public))
		}
	}

	t.Run("a member refreshes its pair", func(t *testing.T) {
		ticket, _, _, err := e.svc.OpenTicket(ctx, staff1.caller, keyID, "222222")
		must(t, "ticket", err)
		oldShare := staff1.share
		r := beginRefresh(t, e, staff1, public)
		again, err := e.svc.BeginRefresh(ctx, staff1.caller, keyID, *staff1.cred)
		must(t, "begin again", err)
		if !bytes.Equal(again, r.raw) {
			t.Fatal("a repeated BeginRefresh made another offer")
		}
		// Pending: the active pair works, everyone else's too; the pending pair answers only
		// the challenge.
		everyoneSigns(t, staff1, staff2, admin)
		pending := &phone{caller: staff1.caller, cred: staff1.cred}
		pending.bind(e, public, r.next.Pending.Share)
		if err := signs(t, pending, public); !errors.Is(err, cosign.ErrBadSignature) {
			t.Fatalf("the pending pair signed a document: %v", err)
		}
		// The holder's refresh is the holder's: the member's offer is not pending there.
		if rec, err := e.svc.GetKey(ctx, admin.caller, keyID); err != nil || rec.Pending != nil || rec.ShareVersion != 1 {
			t.Fatalf("the holder's view: %v, %v", rec, err)
		}
		otherDigest := [32]byte{9}
		sig, err := staff1.key.SignDigest(ctx, rand.Reader, &otherDigest)
		must(t, "sign", err)
		raw, _ := sig.MarshalBinary()
		if _, err := e.svc.CommitRefresh(ctx, staff1.caller, keyID, raw); code(err) != codes.InvalidArgument {
			t.Fatalf("commit with a signature on another digest: %v", err)
		}
		if _, err := e.svc.CommitRefresh(ctx, staff2.caller, keyID, r.confirmation(t, e, staff1, public)); code(err) != codes.FailedPrecondition {
			t.Fatalf("another member commits the refresh: %v", err)
		}

		r.commit(t, e, staff1, public)
		if _, err := e.svc.CommitRefresh(ctx, staff1.caller, keyID, r.confirmation(t, e, staff1, public)); code(err) != codes.FailedPrecondition {
			t.Fatalf("commit twice: %v", err)
		}
		// The old member share is useless now; the new one, the holder and the other member work.
		old := &phone{caller: staff1.caller, cred: staff1.cred}
		old.bind(e, public, oldShare)
		if err := signs(t, old, public); !errors.Is(err, cosign.ErrBadSignature) {
			t.Fatalf("the old member share signs after the commit: %v", err)
		}
		if err := decrypts(t, old, public); !errors.Is(err, cosign.ErrDecryption) {
			t.Fatalf("the old member share decrypts after the commit: %v", err)
		}
		everyoneSigns(t, staff1, staff2, admin)
		// PIN and tickets unchanged.
		if _, _, err := e.svc.Sign(ctx, staff1.caller, keyID, keys.Credential{Ticket: ticket}, signRequest(t, staff1, public)); err != nil {
			t.Fatalf("the member's ticket after its refresh: %v", err)
		}
		d := storedPair(t, e, "u-staff1", "d-staff1")
		if d.ShareVersion != 2 || d.Pending != nil || len(d.PinVerifier) == 0 || d.Status != storepb.DelegationStatus_DELEGATION_STATUS_ACTIVE {
			t.Fatalf("stored pair after the refresh: version %d, pending %v, status %v", d.ShareVersion, d.Pending, d.Status)
		}
		recs, _, err := e.svc.ListUsage(ctx, admin.caller, keyID, 100, "")
		must(t, "usage", err)
		seen := map[string]bool{}
		for _, u := range recs {
			seen[u.UserId+"/"+u.DeviceId+"/"+u.Operation] = true
		}
		for _, want := range []string{"u-staff1/d-staff1/refresh.begin", "u-staff1/d-staff1/refresh.commit"} {
			if !seen[want] {
				t.Errorf("no usage record %s", want)
			}
		}
	})

	t.Run("the holder's refresh leaves the pairs alone", func(t *testing.T) {
		r := beginRefresh(t, e, admin, public)
		everyoneSigns(t, staff1, staff2, admin)
		if v, err := e.svc.GetKey(ctx, staff1.caller, keyID); err != nil || v.Pending != nil || v.ShareVersion != 2 {
			t.Fatalf("the member's view during the holder's refresh: %v, %v", v, err)
		}
		r.commit(t, e, admin, public)
		everyoneSigns(t, staff1, staff2, admin)
	})

	t.Run("a crash between begin and commit resumes", func(t *testing.T) {
		r := beginRefresh(t, e, staff2, public)
		e.reopen(t)
		for _, p := range []*phone{admin, staff1, staff2} {
			p.bind(e, public, p.share)
		}
		must(t, "the active pair works after the restart", signs(t, staff2, public))
		again, err := e.svc.BeginRefresh(ctx, staff2.caller, keyID, *staff2.cred)
		must(t, "begin after the restart", err)
		if !bytes.Equal(again, r.raw) {
			t.Fatal("the restarted appliance made another offer")
		}
		r.commit(t, e, staff2, public)
		everyoneSigns(t, staff1, staff2, admin)
	})

	t.Run("KEK rotation covers a pending pair refresh", func(t *testing.T) {
		r := beginRefresh(t, e, staff1, public)
		old := e.keyring.CurrentKEK()
		info, err := e.keyring.RotateKEK(ctx)
		must(t, "rotate", err)
		stale := func(blob []byte) bool {
			b, err := hsm.ParseBlob(blob)
			return err != nil || b.KEKLabel != info.Label
		}
		n, err := e.svc.CountStaleBlobs(ctx, stale)
		must(t, "count", err)
		if n != 5 { // the key's share, staff2's share, staff1's share, pending share and offer
			t.Fatalf("%d stale blobs, want 5", n)
		}
		moved, err := e.svc.RewrapAll(ctx, "operator:test", stale, e.keyring.Rewrap, nil)
		if err != nil || moved != 5 {
			t.Fatalf("rewrapped %d: %v", moved, err)
		}
		for _, k := range e.keyring.KEKs() {
			if k.Label == old {
				must(t, "destroy old KEK", e.keyring.DestroyKEK(ctx, k.Version))
			}
		}
		if n, err := e.svc.CountStaleBlobs(ctx, stale); err != nil || n != 0 {
			t.Fatalf("%d stale blobs after the rotation: %v", n, err)
		}
		e.reopen(t) // nothing cached from before the rotation
		for _, p := range []*phone{admin, staff1, staff2} {
			p.bind(e, public, p.share)
		}
		again, err := e.svc.BeginRefresh(ctx, staff1.caller, keyID, *staff1.cred)
		must(t, "begin after the rotation", err)
		if !bytes.Equal(again, r.raw) {
			t.Fatal("the offer changed with the rotation")
		}

		// A pair with a refresh pending is not promoted.
		if err := e.svc.PromoteDelegation(ctx, admin.caller, keyID, "u-staff1", "d-staff1", nil); code(err) != codes.FailedPrecondition {
			t.Fatalf("promote a pair with a pending refresh: %v", err)
		}
		r.commit(t, e, staff1, public)
		everyoneSigns(t, staff1, staff2, admin)
	})

	t.Run("recall during a pending refresh destroys both shares", func(t *testing.T) {
		r := beginRefresh(t, e, staff2, public)
		active := staff2.share
		must(t, "recall", e.svc.RecallDelegation(ctx, admin.caller, keyID, "u-staff2", "d-staff2", nil))
		d := storedPair(t, e, "u-staff2", "d-staff2")
		if d.Status != storepb.DelegationStatus_DELEGATION_STATUS_RECALLED || len(d.ShareWrapped) != 0 || d.Pending != nil ||
			d.ShareVersion != r.next.Pending.Version {
			t.Fatalf("recalled pair: status %v, share %d bytes, pending %v, version %d", d.Status, len(d.ShareWrapped), d.Pending, d.ShareVersion)
		}
		if err := signs(t, staff2, public); code(err) != codes.PermissionDenied {
			t.Fatalf("the recalled active pair signs: %v", err)
		}
		k := cosign.NewKey(public, r.next.Pending.Share, appliance{svc: e.svc, caller: staff2.caller, keyID: keyID, cred: staff2.cred})
		if _, err := k.SignDigest(ctx, rand.Reader, &r.challenge); code(err) != codes.PermissionDenied {
			t.Fatalf("the recalled pending pair answers its challenge: %v", err)
		}
		if _, err := e.svc.CommitRefresh(ctx, staff2.caller, keyID, make([]byte, 64)); code(err) != codes.InvalidArgument {
			t.Fatalf("commit a zero signature: %v", err)
		}
		if _, err := e.svc.CommitRefresh(ctx, staff2.caller, keyID, someSignature()); code(err) != codes.PermissionDenied {
			t.Fatalf("commit after the recall: %v", err)
		}
		if _, err := e.svc.GetKey(ctx, staff2.caller, keyID); code(err) != codes.PermissionDenied {
			t.Fatalf("the recalled member reads the key: %v", err)
		}
		everyoneSigns(t, staff1, admin)
		// A new grant wraps under a version no erased blob had.
		rec := grant(t, e, admin, staff2, nil)
		if rec.ShareVersion != r.next.Pending.Version+1 {
			t.Fatalf("re-grant version %d after a recalled refresh to %d", rec.ShareVersion, r.next.Pending.Version)
		}
		// A pending (not accepted) pair cannot be refreshed.
		if _, err := e.svc.BeginRefresh(ctx, staff2.caller, keyID, keys.Credential{PIN: "333333"}); code(err) != codes.FailedPrecondition {
			t.Fatalf("a pending pair refreshes: %v", err)
		}
		accept(t, e, staff2, "444444")
		old := &phone{caller: staff2.caller, cred: staff2.cred}
		old.bind(e, public, active)
		if err := signs(t, old, public); !errors.Is(err, cosign.ErrBadSignature) {
			t.Fatalf("the recalled share works with the new grant: %v", err)
		}
		everyoneSigns(t, staff1, staff2, admin)
	})

	t.Run("revocation destroys a pending pair refresh", func(t *testing.T) {
		r := beginRefresh(t, e, staff1, public)
		must(t, "revoke", e.svc.Revoke(ctx, admin.caller, keyID, "test", nil))
		d := storedPair(t, e, "u-staff1", "d-staff1")
		if len(d.ShareWrapped) != 0 || d.Pending != nil || d.ShareVersion != r.next.Pending.Version {
			t.Fatalf("revoked key's pair: share %d bytes, pending %v, version %d", len(d.ShareWrapped), d.Pending, d.ShareVersion)
		}
		if _, err := e.svc.CommitRefresh(ctx, staff1.caller, keyID, someSignature()); code(err) != codes.FailedPrecondition {
			t.Fatalf("commit after the revocation: %v", err)
		}
	})

	t.Run("audited with the member and device", func(t *testing.T) {
		n := map[string]int{}
		for _, rec := range auditLog(t, e) {
			if rec.Action == "key.refresh.begin" || rec.Action == "key.refresh.commit" {
				n[rec.Action+" "+rec.Actor+" "+rec.Details["member_user"]+"/"+rec.Details["member_device"]+" "+rec.Details["device"]]++
			}
		}
		for want, c := range map[string]int{
			"key.refresh.begin user:u-staff1 u-staff1/d-staff1 d-staff1":  3,
			"key.refresh.commit user:u-staff1 u-staff1/d-staff1 d-staff1": 2,
			"key.refresh.begin user:u-staff2 u-staff2/d-staff2 d-staff2":  2,
			"key.refresh.commit user:u-staff2 u-staff2/d-staff2 d-staff2": 1,
			"key.refresh.begin user:u-admin / d-admin":                    1,
			"key.refresh.commit user:u-admin / d-admin":                   1,
		} {
			if n[want] != c {
				t.Errorf("%s: %d audit records, want %d (all: %v)", want, n[want], c, n)
			}
		}
	})
}

// someSignature is a well-formed signature that verifies on nothing of interest.
func someSignature() []byte {
	sig := cosign.Signature{R: [32]byte{31: 1}, S: [32]byte{31: 1}}
	raw, _ := sig.MarshalBinary()
	return raw
}
