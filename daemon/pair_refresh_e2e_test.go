package daemon_test

import (
	"bytes"
	"crypto/ecdsa"
	"crypto/rand"
	"errors"
	"fmt"
	"slices"
	"testing"

	"github.com/emmansun/gmsm/sm2"
	hufuv1 "github.com/hufu-hsm/hufu/api/hufu/v1"
	"github.com/hufu-hsm/hufu/client"
	"github.com/hufu-hsm/hufu/client/keystore"
	"github.com/hufu-hsm/hufu/cosign"
	"google.golang.org/grpc/codes"
)

// TestEnterpriseDelegatedPairRefresh: a staff member refreshes its own pair of the
// enterprise key with the SDK's RefreshKey, from the keystore entry AcceptDelegation saved;
// the stolen copy of its old share is useless afterwards, while the administrator and the
// other member keep signing under the enterprise certificate. An interrupted member refresh
// is completed by RefreshKey, and by AcceptAdminTransfer before the pair is promoted.
func TestEnterpriseDelegatedPairRefresh(t *testing.T) {
	a := certAppliance(t)
	desk := a.desk()
	boss, adminKS := keystoreMember(t, a, "13800138031", "prf-admin-01")
	staff, staffKS := keystoreMember(t, a, "13800138032", "prf-staff-01")
	other, otherKS := keystoreMember(t, a, "13800138033", "prf-other-01")
	const adminPIN, staffPIN, otherPIN = "246810", "135791", "112233"

	keystoreEnterpriseKeys(t, boss, adminKS, adminPIN)
	serial := boss.claimAndPay(desk, usccA, "福州示范科技有限公司")
	cert, _, _, _ := boss.download(serial)
	pub := cert.PublicKey.(*ecdsa.PublicKey)
	keyID := boss.key.id

	inv, err := boss.ent.CreateInvite(bg, &hufuv1.CreateInviteRequest{Uscc: usccA})
	if err != nil {
		t.Fatal(err)
	}
	for i, p := range []struct {
		m   *member
		ks  *keystore.Store
		pin string
	}{{staff, staffKS, staffPIN}, {other, otherKS, otherPIN}} {
		app, err := p.m.join(&hufuv1.ApplyToJoinRequest{RequestId: fmt.Sprintf("join-prf-%d", i), Invite: inv.Payload})
		if err != nil {
			t.Fatal(err)
		}
		if _, err := boss.ent.ApproveJoin(bg, &hufuv1.ApproveJoinRequest{ApplicationId: app.Id}); err != nil {
			t.Fatal(err)
		}
		if _, err := client.RegisterDelegationDevice(bg, p.m.conn, p.ks, usccA); err != nil {
			t.Fatal(err)
		}
		fp, err := client.ThisDeviceFingerprint(p.ks)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := client.GrantDelegation(bg, boss.conn, adminKS, usccA, p.m.userID, fp, client.PINCredential(adminPIN)); err != nil {
			t.Fatalf("grant: %v", err)
		}
		if _, err := client.AcceptDelegation(bg, p.m.conn, p.ks, usccA, p.pin); err != nil {
			t.Fatalf("accept: %v", err)
		}
	}
	msg := []byte("投标文件：福州示范科技有限公司")
	signsUnderCert := func(who string, conn *client.Conn, ks *keystore.Store, pin string) {
		t.Helper()
		sig, err := signWith(t, conn, ks, keyID, pin, msg)
		if err != nil {
			t.Fatalf("%s signs: %v", who, err)
		}
		if !sm2.VerifyASN1WithSM2(pub, nil, msg, sig) {
			t.Fatalf("%s's signature does not verify under the enterprise certificate", who)
		}
	}
	signsUnderCert("staff", staff.conn, staffKS, staffPIN)

	// The member refreshes its pair with the SDK, unchanged, from its keystore entry.
	before, err := staffKS.Load(keyID)
	if err != nil {
		t.Fatal(err)
	}
	var steps []string
	after, err := client.RefreshKey(bg, staff.conn, staffKS, keyID, client.PINCredential(staffPIN), func(s string) { steps = append(steps, s) })
	if err != nil {
		t.Fatalf("member refresh: %v (steps %q)", err, steps)
	}
	newRaw, _ := after.Share.MarshalBinary()
	oldRaw, _ := before.Share.MarshalBinary()
	if after.Version != before.Version+1 || after.Pending != nil || bytes.Equal(newRaw, oldRaw) {
		t.Fatalf("after the member's refresh: version %d (before %d), pending %v", after.Version, before.Version, after.Pending)
	}
	got, err := staff.conn.Keys.GetKey(bg, &hufuv1.GetKeyRequest{KeyId: keyID})
	if err != nil || got.Key.ShareVersion != after.Version || got.Key.PendingVersion != 0 || got.Key.DeviceId != staff.device {
		t.Fatalf("the key as the member sees it: %v, %v", got, err)
	}
	held, err := boss.conn.Keys.GetKey(bg, &hufuv1.GetKeyRequest{KeyId: keyID})
	if err != nil || held.Key.ShareVersion != 1 || held.Key.DeviceId != boss.device {
		t.Fatalf("the key as its holder sees it: %v, %v", held, err)
	}
	signsUnderCert("staff after its refresh", staff.conn, staffKS, staffPIN)
	signsUnderCert("administrator", boss.conn, adminKS, adminPIN)
	signsUnderCert("other member", other.conn, otherKS, otherPIN)
	// A copy of the old member share (a phone backup, say) is useless now: the appliance
	// answers with the new pair, and the phone's check of the signature fails.
	stolen := cosign.NewKey(before.Public, before.Share, &client.Remote{Conn: staff.conn, KeyID: keyID, Credential: client.PINCredential(staffPIN)})
	if _, err := stolen.Sign(rand.Reader, msg, &cosign.SignerOpts{}); !errors.Is(err, cosign.ErrBadSignature) {
		t.Fatalf("the old member share after the refresh: %v", err)
	}
	usage, err := boss.conn.Keys.ListUsage(bg, &hufuv1.ListUsageRequest{KeyId: keyID})
	if err != nil || !slices.ContainsFunc(usage.Records, func(r *hufuv1.UsageRecord) bool {
		return r.Operation == "refresh.commit" && r.DeviceId == staff.device
	}) {
		t.Fatalf("no usage record of the member's refresh: %v %v", usage, err)
	}

	// Interrupted: the appliance made an offer whose answer never reached the phone. The next
	// RefreshKey gets the same offer again and completes it.
	if _, err := other.conn.Keys.BeginRefresh(bg, &hufuv1.BeginRefreshRequest{KeyId: keyID, Credential: client.PINCredential(otherPIN)}); err != nil {
		t.Fatal(err)
	}
	if e, err := client.ResumeRefresh(bg, other.conn, otherKS, keyID); err != nil || e.Pending != nil {
		t.Fatalf("resume with nothing pending on the phone: %v", err)
	}
	signsUnderCert("other member during its pending refresh", other.conn, otherKS, otherPIN)
	if e, err := client.RefreshKey(bg, other.conn, otherKS, keyID, client.PINCredential(otherPIN), nil); err != nil || e.Version != 2 {
		t.Fatalf("completing the interrupted member refresh: %v", err)
	}
	signsUnderCert("other member after its refresh", other.conn, otherKS, otherPIN)

	// A pair with a refresh pending is not promoted; the SDK's AcceptAdminTransfer finishes
	// the refresh first, then the pair becomes the key's primary pair (and is refreshed).
	// The same for the member's pair of the enterprise encryption key, promoted with it.
	for _, id := range []string{keyID, boss.enc.id} {
		if _, err := staff.conn.Keys.BeginRefresh(bg, &hufuv1.BeginRefreshRequest{KeyId: id, Credential: client.PINCredential(staffPIN)}); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := boss.ent.TransferAdmin(bg, &hufuv1.TransferAdminRequest{Uscc: usccA, ToUserId: staff.userID}); err != nil {
		t.Fatalf("transfer: %v", err)
	}
	_, err = staff.ent.AcceptAdminTransfer(bg, &hufuv1.AcceptAdminTransferRequest{Uscc: usccA})
	wantCode(t, err, codes.FailedPrecondition, "")
	if _, err := client.AcceptAdminTransfer(bg, staff.conn, staffKS, usccA, client.PINCredential(staffPIN)); err != nil {
		t.Fatalf("accept transfer with a pending pair refresh: %v", err)
	}
	for _, id := range []string{keyID, boss.enc.id} {
		held, err = staff.conn.Keys.GetKey(bg, &hufuv1.GetKeyRequest{KeyId: id})
		if err != nil || held.Key.DeviceId != staff.device || held.Key.PendingVersion != 0 {
			t.Fatalf("key %s after the transfer: %v, %v", id, held, err)
		}
		if e, err := staffKS.Load(id); err != nil || e.Version != held.Key.ShareVersion || e.Pending != nil {
			t.Fatalf("the new holder's keystore of %s: %v, appliance at %d", id, err, held.Key.ShareVersion)
		}
	}
	signsUnderCert("new administrator", staff.conn, staffKS, staffPIN)
	if _, err := signWith(t, boss.conn, adminKS, keyID, adminPIN, msg); err == nil {
		t.Fatal("the old administrator's pair still signs after the transfer")
	}
}
