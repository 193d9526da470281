package keys_test

import (
	"context"
	"crypto/rand"
	"errors"
	"testing"

	"google.golang.org/grpc/codes"

	"github.com/hufu-hsm/hufu/cosign"
	"github.com/hufu-hsm/hufu/daemon/keys"
	"github.com/hufu-hsm/hufu/store"
	"github.com/hufu-hsm/hufu/store/storepb"
)

// TestDelegationsOfSeveralKeysCommitTogether: a delegation of two keys (an enterprise's
// signing and encryption keys) is granted and recalled in one transaction: a refusal of
// either key's part — a wrong PIN, a bad grant, named after its field — leaves neither pair,
// and a recall ends both.
func TestDelegationsOfSeveralKeysCommitTogether(t *testing.T) {
	ctx := context.Background()
	e := newEnv(t)
	admin := newPhone(t, e, "u-admin", "d-admin")
	member := newPhone(t, e, "u-member", "d-member")
	createKey(t, e, admin, "111111")
	const encKeyID = "ent-enc-0001"
	kg, req, err := cosign.StartKeygen(rand.Reader, cosign.KeygenContext(admin.caller.UserID, encKeyID))
	must(t, "keygen", err)
	raw, _ := req.MarshalBinary()
	rec, err := e.svc.CreateKey(ctx, admin.caller, encKeyID, raw, "111111", "enterprise encryption key")
	must(t, "create the second key", err)
	var resp cosign.KeygenResponse
	must(t, "keygen response", resp.UnmarshalBinary(rec.KeygenResponse))
	encShare, _, err := kg.Finish(&resp)
	must(t, "finish keygen", err)

	part := func(id string, share *cosign.PhoneShare, pin, field string) keys.KeyGrant {
		g, envelope, err := share.Delegate(rand.Reader, &member.devicePub, cosign.DelegationContext(id, member.caller.UserID, member.caller.DeviceID))
		must(t, "delegate", err)
		raw, _ := g.MarshalBinary()
		return keys.KeyGrant{KeyID: id, Cred: keys.Credential{PIN: pin}, Grant: raw, Envelope: envelope, Field: field}
	}
	grantBoth := func(encPIN string, mutate func(*keys.KeyGrant)) ([]*storepb.DelegatedShare, error) {
		enc := part(encKeyID, encShare, encPIN, "encryption.")
		if mutate != nil {
			mutate(&enc)
		}
		return e.svc.GrantDelegations(ctx, admin.caller, member.caller.UserID, member.caller.DeviceID,
			[]keys.KeyGrant{part(keyID, admin.share, "111111", ""), enc}, nil, nil)
	}
	nonePending := func(when string) {
		t.Helper()
		for _, id := range []string{keyID, encKeyID} {
			pairs, err := e.svc.ListDelegations(ctx, id)
			must(t, "list", err)
			if len(pairs) != 0 {
				t.Fatalf("%s: key %s has pairs %v", when, id, pairs)
			}
		}
	}

	_, err = grantBoth("999999", nil)
	if code(err) != codes.PermissionDenied {
		t.Fatalf("a wrong PIN for the second key: %v", err)
	}
	nonePending("after a wrong PIN for the second key")
	_, err = grantBoth("111111", func(g *keys.KeyGrant) { g.Grant = g.Grant[:5] })
	wantInvalid(t, err, "encryption.grant")
	nonePending("after a bad grant of the second key")
	_, err = grantBoth("111111", func(g *keys.KeyGrant) { g.KeyID = keyID })
	wantInvalid(t, err, "encryption.key_id")

	// A refusal inside the one transaction: the member already holds a pending pair of the
	// encryption key (granted alone), which only commitGrant finds; the signing key's part,
	// committed first in the same transaction, must be undone with it.
	encOnly := part(encKeyID, encShare, "111111", "")
	_, err = e.svc.GrantDelegations(ctx, admin.caller, member.caller.UserID, member.caller.DeviceID, []keys.KeyGrant{encOnly}, nil, nil)
	must(t, "grant the encryption key alone", err)
	_, err = grantBoth("111111", nil)
	if code(err) != codes.FailedPrecondition {
		t.Fatalf("a second pair of the encryption key: %v", err)
	}
	if pairs, err := e.svc.ListDelegations(ctx, keyID); err != nil || len(pairs) != 0 {
		t.Fatalf("the signing key after a grant refused in the transaction: %v %v", pairs, err)
	}
	must(t, "recall the encryption key's pair", e.svc.RecallDelegation(ctx, admin.caller, encKeyID, member.caller.UserID, member.caller.DeviceID, nil))

	recs, err := grantBoth("111111", nil)
	if err != nil || len(recs) != 2 || recs[0].KeyId != keyID || recs[1].KeyId != encKeyID || len(recs[1].P2) != cosign.PointSize {
		t.Fatalf("grant of both keys: %v %v", recs, err)
	}
	must(t, "recall both", e.svc.RecallDelegations(ctx, admin.caller, []string{keyID, encKeyID}, member.caller.UserID, member.caller.DeviceID, nil))
	for _, id := range []string{keyID, encKeyID} {
		pairs, err := e.svc.ListDelegations(ctx, id)
		if err != nil || len(pairs) == 0 {
			t.Fatalf("key %s after the recall: %v %v", id, pairs, err)
		}
		for _, p := range pairs {
			if p.Status != storepb.DelegationStatus_DELEGATION_STATUS_RECALLED {
				t.Fatalf("key %s after the recall: %v", id, pairs)
			}
		}
	}
}

// TestPromotionUndoneByWithKeepsTickets: a promotion that the domain's with refuses changes
// nothing — the holder keeps the key, the member its pair, and nobody's tickets are revoked
// (the previous holder's, the member's, or those of the members the promotion would recall).
func TestPromotionUndoneByWithKeepsTickets(t *testing.T) {
	ctx := context.Background()
	e := newEnv(t)
	admin, staff1, staff2, public := keyWithTwoStaffPairs(t, e)
	tickets := map[*phone]string{}
	for p, pin := range map[*phone]string{admin: "111111", staff1: "222222", staff2: "333333"} {
		ticket, _, _, err := e.svc.OpenTicket(ctx, p.caller, keyID, pin)
		must(t, "open a ticket", err)
		tickets[p] = ticket
	}

	refused := errors.New("the enterprise refuses the transfer")
	ran := 0
	err := e.svc.PromoteDelegation(ctx, admin.caller, keyID, staff1.caller.UserID, staff1.caller.DeviceID, func(*store.Tx) error { ran++; return refused })
	if !errors.Is(err, refused) || ran == 0 {
		t.Fatalf("promotion refused by with: %v (with ran %d times)", err, ran)
	}
	rec, err := e.svc.GetKey(ctx, admin.caller, keyID)
	if err != nil || rec.UserId != admin.caller.UserID || rec.ShareVersion != 1 || len(rec.Delegates) != 2 {
		t.Fatalf("the key after a promotion undone: %v %v", rec, err)
	}
	pairs, err := e.svc.ListDelegations(ctx, keyID)
	must(t, "list", err)
	for _, p := range pairs {
		if p.Status != storepb.DelegationStatus_DELEGATION_STATUS_ACTIVE {
			t.Fatalf("pair of %s after a promotion undone: %v", p.MemberUserId, p.Status)
		}
	}
	for _, p := range []*phone{admin, staff1, staff2} {
		if _, _, err := e.svc.Sign(ctx, p.caller, keyID, keys.Credential{Ticket: tickets[p]}, signRequest(t, p, public)); err != nil {
			t.Fatalf("%s's ticket after a promotion undone: %v", p.caller.UserID, err)
		}
	}

	must(t, "promote", e.svc.PromoteDelegation(ctx, admin.caller, keyID, staff1.caller.UserID, staff1.caller.DeviceID, nil))
	if _, _, err := e.svc.Sign(ctx, staff1.caller, keyID, keys.Credential{Ticket: tickets[staff1]}, signRequest(t, staff1, public)); code(err) != codes.Unauthenticated {
		t.Fatalf("the member's ticket of its pair, used as the new holder (revoked with the promotion): %v", err)
	}
}
