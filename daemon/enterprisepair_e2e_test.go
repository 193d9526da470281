package daemon_test

import (
	"bytes"
	"crypto/ecdsa"
	"testing"

	"google.golang.org/grpc/codes"

	hufuv1 "github.com/hufu-hsm/hufu/api/hufu/v1"
	"github.com/hufu-hsm/hufu/client"
)

// TestEnterpriseClaimedBeforePairsKeepsWorking: an enterprise claimed before certificate
// pairs (one key, one combined certificate, no encryption key on its record) still delegates
// its one key alone — a grant carrying an encryption part is refused naming it — and the
// staff pair signs and decrypts under that certificate until it is recalled.
func TestEnterpriseClaimedBeforePairsKeepsWorking(t *testing.T) {
	a := certAppliance(t)
	desk := a.desk()
	const bossPhone, bossDevice, adminPIN, staffPIN = "13800138091", "single-admin-01", "246810", "135791"
	boss, adminKS := keystoreMember(t, a, bossPhone, bossDevice)
	keystoreEnterpriseKeys(t, boss, adminKS, adminPIN)
	serial := boss.claimAndPay(desk, usccA, "福州示范科技有限公司")
	must(t, a.live.Daemon.UnpairEnterpriseForTest(bg, boss.userID, serial, usccA))
	a.restart()
	boss.conn = a.dial(bossDevice)
	a.signIn(boss.conn, bossPhone, bossDevice)
	boss.ent, boss.certs = hufuv1.NewEnterpriseServiceClient(boss.conn.ClientConn()), hufuv1.NewCertificateServiceClient(boss.conn.ClientConn())

	ent, err := boss.ent.GetEnterprise(bg, &hufuv1.GetEnterpriseRequest{Uscc: usccA})
	if err != nil || ent.Enterprise.KeyId != boss.key.id || ent.Enterprise.EncryptionKeyId != "" {
		t.Fatalf("an enterprise of one key: %v %v", ent, err)
	}
	cert, _, _, _ := boss.download(serial)

	staff, staffKS := keystoreMember(t, a, "13800138092", "single-staff-01")
	inv, err := boss.ent.CreateInvite(bg, &hufuv1.CreateInviteRequest{Uscc: usccA})
	must(t, err)
	app, err := staff.join(&hufuv1.ApplyToJoinRequest{RequestId: "join-single-1", Invite: inv.Payload})
	must(t, err)
	_, err = boss.ent.ApproveJoin(bg, &hufuv1.ApproveJoinRequest{ApplicationId: app.Id})
	must(t, err)
	_, err = client.RegisterDelegationDevice(bg, staff.conn, staffKS, usccA)
	must(t, err)

	// No encryption key: a grant with an encryption part is refused, naming it.
	_, err = boss.ent.GrantDelegation(bg, &hufuv1.GrantDelegationRequest{Uscc: usccA, MemberUserId: staff.userID,
		Credential: client.PINCredential(adminPIN), Grant: make([]byte, 32), Envelope: []byte{1},
		Encryption: &hufuv1.DelegationKeyGrant{Credential: client.PINCredential(adminPIN), Grant: make([]byte, 32), Envelope: []byte{1}}})
	wantCode(t, err, codes.InvalidArgument, "encryption")

	fp, err := client.ThisDeviceFingerprint(staffKS)
	must(t, err)
	if _, err := client.GrantDelegation(bg, boss.conn, adminKS, usccA, staff.userID, fp, client.PINCredential(adminPIN)); err != nil {
		t.Fatalf("grant of the one key: %v", err)
	}
	offer, err := staff.ent.GetDelegationOffer(bg, &hufuv1.GetDelegationOfferRequest{Uscc: usccA})
	if err != nil || offer.KeyId != boss.key.id || offer.Encryption != nil {
		t.Fatalf("the offer of one key: %v %v", offer, err)
	}
	if _, err := client.AcceptDelegation(bg, staff.conn, staffKS, usccA, staffPIN); err != nil {
		t.Fatalf("accept: %v", err)
	}

	// The staff pair of the one key signs and decrypts under the combined certificate.
	msg := []byte("单一证书的投标文件")
	sig, err := signWith(t, staff.conn, staffKS, boss.key.id, staffPIN, msg)
	if err != nil {
		t.Fatalf("staff sign: %v", err)
	}
	ct := verifyWithOpenSSL(t, cert.Raw, msg, sig)
	if ct == nil {
		ct = mustEncryptMsg(t, cert.PublicKey.(*ecdsa.PublicKey), msg)
	}
	k, err := client.OpenKey(bg, staff.conn, staffKS, boss.key.id, staffPIN)
	must(t, err)
	if got, err := k.Decrypt(nil, ct, nil); err != nil || !bytes.Equal(got, msg) {
		t.Fatalf("staff decrypt with the one key: %q %v", got, err)
	}
	if _, err := boss.ent.RecallDelegation(bg, &hufuv1.RecallDelegationRequest{Uscc: usccA, MemberUserId: staff.userID}); err != nil {
		t.Fatalf("recall: %v", err)
	}
	_, err = signWith(t, staff.conn, staffKS, boss.key.id, staffPIN, msg)
	wantCode(t, err, codes.PermissionDenied, "")
}
