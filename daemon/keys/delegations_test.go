package keys_test

import (
	"context"
	"crypto/rand"
	"testing"

	"google.golang.org/grpc/codes"

	"github.com/hufu-hsm/hufu/cosign"
	"github.com/hufu-hsm/hufu/daemon/keys"
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

	recs, err := grantBoth("111111", nil)
	if err != nil || len(recs) != 2 || recs[0].KeyId != keyID || recs[1].KeyId != encKeyID || len(recs[1].P2) != cosign.PointSize {
		t.Fatalf("grant of both keys: %v %v", recs, err)
	}
	must(t, "recall both", e.svc.RecallDelegations(ctx, admin.caller, []string{keyID, encKeyID}, member.caller.UserID, member.caller.DeviceID, nil))
	for _, id := range []string{keyID, encKeyID} {
		pairs, err := e.svc.ListDelegations(ctx, id)
		if err != nil || len(pairs) != 1 || pairs[0].Status != storepb.DelegationStatus_DELEGATION_STATUS_RECALLED {
			t.Fatalf("key %s after the recall: %v %v", id, pairs, err)
		}
	}
}
