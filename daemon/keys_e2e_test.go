package daemon_test

import (
	"context"
	"crypto/ecdsa"
	"crypto/rand"
	"errors"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/emmansun/gmsm/sm2"
	hufuv1 "github.com/hufu-hsm/hufu/api/hufu/v1"
	"github.com/hufu-hsm/hufu/client"
	"github.com/hufu-hsm/hufu/cosign"
	"github.com/hufu-hsm/hufu/daemon/accounts"
	"github.com/hufu-hsm/hufu/daemon/config"
	"google.golang.org/grpc/codes"
)

// phoneKey is the phone's side of one split key in these tests, driven with package cosign
// directly over the raw gRPC API (the SDK has its own tests).
type phoneKey struct {
	id     string
	public cosign.Point
	share  *cosign.PhoneShare
	keys   hufuv1.KeyServiceClient
	cosign hufuv1.CosignServiceClient
	cred   *hufuv1.Credential
}

// verifiedUser signs in a new account on device and verifies its identity.
func (a *appliance) verifiedUser(phone, device string) (*client.Conn, string) {
	a.t.Helper()
	conn := a.dial(device)
	resp := a.signIn(conn, phone, device)
	if _, err := conn.Identity.VerifyWithCfca(bg, &hufuv1.VerifyWithCfcaRequest{Name: "张三", IdNumber: "11010519491231002X"}); err != nil {
		a.t.Fatal(err)
	}
	return conn, resp.Account.Id
}

func createKey(t testing.TB, conn *client.Conn, userID, keyID, pin string) *phoneKey {
	t.Helper()
	phone, req, err := cosign.StartKeygen(rand.Reader, cosign.KeygenContext(userID, keyID))
	if err != nil {
		t.Fatal(err)
	}
	raw, _ := req.MarshalBinary()
	keys := hufuv1.NewKeyServiceClient(conn.ClientConn())
	resp, err := keys.CreateKey(bg, &hufuv1.CreateKeyRequest{KeyId: keyID, KeygenRequest: raw, Pin: pin, Label: "test"})
	if err != nil {
		t.Fatalf("create key: %v", err)
	}
	// The key id is an idempotency key: the same request again gets the same answer.
	again, err := keys.CreateKey(bg, &hufuv1.CreateKeyRequest{KeyId: keyID, KeygenRequest: raw, Pin: pin, Label: "test"})
	if err != nil || string(again.KeygenResponse) != string(resp.KeygenResponse) {
		t.Fatalf("repeated create: %v", err)
	}
	var kresp cosign.KeygenResponse
	if err := kresp.UnmarshalBinary(resp.KeygenResponse); err != nil {
		t.Fatal(err)
	}
	share, public, err := phone.Finish(&kresp)
	if err != nil {
		t.Fatalf("phone check of the server's answer: %v", err)
	}
	pk := &phoneKey{id: keyID, public: public, share: share, keys: keys, cosign: hufuv1.NewCosignServiceClient(conn.ClientConn())}
	ticket, err := keys.OpenTicket(bg, &hufuv1.OpenTicketRequest{KeyId: keyID, Pin: pin})
	if err != nil {
		t.Fatalf("open ticket: %v", err)
	}
	pk.cred = &hufuv1.Credential{Kind: &hufuv1.Credential_Ticket{Ticket: ticket.Ticket}}
	return pk
}

// Sign and Decrypt make phoneKey a cosign.Server, so cosign.Key gives crypto.Signer and
// crypto.Decrypter over the daemon.
func (p *phoneKey) Sign(ctx context.Context, req *cosign.SignRequest) (*cosign.SignResponse, error) {
	raw, _ := req.MarshalBinary()
	resp, err := p.cosign.Sign(ctx, &hufuv1.SignRequest{KeyId: p.id, Credential: p.cred, SignRequest: raw})
	if err != nil {
		return nil, err
	}
	var out cosign.SignResponse
	return &out, out.UnmarshalBinary(resp.SignResponse)
}

func (p *phoneKey) Decrypt(ctx context.Context, req *cosign.DecryptRequest) (*cosign.DecryptResponse, error) {
	resp, err := p.cosign.Decrypt(ctx, &hufuv1.DecryptRequest{KeyId: p.id, Credential: p.cred, C1: req.C1[:]})
	if err != nil {
		return nil, err
	}
	var out cosign.DecryptResponse
	return &out, out.UnmarshalBinary(resp.T2)
}

func (p *phoneKey) signer() *cosign.Key { return cosign.NewKey(p.public, p.share, p) }

func TestKeygenSignDecryptInteroperate(t *testing.T) {
	a := startAppliance(t, nil)
	conn, userID := a.verifiedUser(phone, "device-0001")
	pk := createKey(t, conn, userID, "key-interop-1", "123456")
	key := pk.signer()
	pub := key.Public().(*ecdsa.PublicKey)

	msg := []byte("投标文件 bid document")
	sig, err := key.Sign(rand.Reader, msg, &cosign.SignerOpts{ID: []byte("bidder@example.cn")})
	if err != nil {
		t.Fatal(err)
	}
	if !sm2.VerifyASN1WithSM2(pub, []byte("bidder@example.cn"), msg, sig) {
		t.Fatal("gmsm rejects the signature made through the daemon")
	}
	for _, opts := range []*sm2.EncrypterOpts{nil, sm2.ASN1EncrypterOpts} {
		ct, err := sm2.Encrypt(rand.Reader, pub, []byte("sealed bid 1,000,000 CNY"), opts)
		if err != nil {
			t.Fatal(err)
		}
		pt, err := key.Decrypt(nil, ct, nil)
		if err != nil || string(pt) != "sealed bid 1,000,000 CNY" {
			t.Fatalf("decrypt: %v", err)
		}
	}

	// Every operation left a usage record, newest first.
	usage, err := pk.keys.ListUsage(bg, &hufuv1.ListUsageRequest{KeyId: pk.id})
	if err != nil {
		t.Fatal(err)
	}
	var ops []string
	for _, r := range usage.Records {
		ops = append(ops, r.Operation)
	}
	if got := strings.Join(ops, ","); got != "decrypt,decrypt,sign,ticket,keygen" {
		t.Fatalf("usage records %s", got)
	}
	if usage.Records[2].Digest == "" || usage.Records[0].Digest == "" {
		t.Fatal("usage records lack the digest or C1 hash")
	}

	// A key needs a verified identity.
	unverified := a.dial("device-0009")
	acct := a.signIn(unverified, "13900000009", "device-0009")
	_, req, _ := cosign.StartKeygen(rand.Reader, cosign.KeygenContext(acct.Account.Id, "key-unverified"))
	raw, _ := req.MarshalBinary()
	_, err = hufuv1.NewKeyServiceClient(unverified.ClientConn()).CreateKey(bg, &hufuv1.CreateKeyRequest{KeyId: "key-unverified", KeygenRequest: raw, Pin: "123456"})
	wantCode(t, err, codes.FailedPrecondition, "")
}

func TestBatchesFailItemsNotTheBatch(t *testing.T) {
	a := startAppliance(t, nil)
	conn, userID := a.verifiedUser(phone, "device-0001")
	pk := createKey(t, conn, userID, "key-batch-01", "123456")
	pub := pk.public.PublicKey()

	var sessions []*cosign.SignSession
	var raws [][]byte
	var digests [][cosign.ScalarSize]byte
	for i := range 8 {
		e, _ := cosign.Digest(&pk.public, nil, []byte(fmt.Sprintf("document %d", i)))
		sess, req, err := pk.share.StartSign(rand.Reader, &pk.public, &e)
		if err != nil {
			t.Fatal(err)
		}
		raw, _ := req.MarshalBinary()
		if i == 5 {
			raw[64] ^= 1 // Q1 off the curve
		}
		sessions, raws, digests = append(sessions, sess), append(raws, raw), append(digests, e)
	}
	resp, err := pk.cosign.SignBatch(bg, &hufuv1.SignBatchRequest{KeyId: pk.id, Credential: pk.cred, SignRequests: raws})
	if err != nil {
		t.Fatal(err)
	}
	for i, it := range resp.Items {
		if i == 5 {
			if codes.Code(it.ErrorCode) != codes.InvalidArgument || !strings.Contains(it.ErrorMessage, "sign_requests[5]") {
				t.Fatalf("bad item: %d %q", it.ErrorCode, it.ErrorMessage)
			}
			continue
		}
		var sr cosign.SignResponse
		if err := sr.UnmarshalBinary(it.Result); err != nil {
			t.Fatalf("item %d: %v (%s)", i, err, it.ErrorMessage)
		}
		sig, err := sessions[i].Finish(&sr)
		if err != nil || !cosign.Verify(&pk.public, &digests[i], &sig) {
			t.Fatalf("item %d does not verify: %v", i, err)
		}
	}

	var c1s [][]byte
	var cts []*cosign.Ciphertext
	for i := range 4 {
		raw, _ := sm2.Encrypt(rand.Reader, pub, []byte(fmt.Sprintf("envelope %d", i)), nil)
		ct, _ := cosign.ParseCiphertext(raw, cosign.C1C3C2)
		cts, c1s = append(cts, ct), append(c1s, ct.C1[:])
	}
	c1s = append(c1s, make([]byte, 65)) // the identity
	dresp, err := pk.cosign.DecryptBatch(bg, &hufuv1.DecryptBatchRequest{KeyId: pk.id, Credential: pk.cred, C1S: c1s})
	if err != nil {
		t.Fatal(err)
	}
	for i, it := range dresp.Items {
		if i == 4 {
			if codes.Code(it.ErrorCode) != codes.InvalidArgument {
				t.Fatalf("identity C1: %d %q", it.ErrorCode, it.ErrorMessage)
			}
			continue
		}
		var dr cosign.DecryptResponse
		if err := dr.UnmarshalBinary(it.Result); err != nil {
			t.Fatal(err)
		}
		pt, err := pk.share.FinishDecrypt(cts[i], &dr)
		if err != nil || string(pt) != fmt.Sprintf("envelope %d", i) {
			t.Fatalf("item %d: %v", i, err)
		}
	}
	_, err = pk.cosign.SignBatch(bg, &hufuv1.SignBatchRequest{KeyId: pk.id, Credential: pk.cred, SignRequests: make([][]byte, 257)})
	wantCode(t, err, codes.InvalidArgument, "sign_requests")

	// One usage record per batch, with every item's digest and the failed one blank.
	usage, err := pk.keys.ListUsage(bg, &hufuv1.ListUsageRequest{KeyId: pk.id, PageSize: 2})
	if err != nil {
		t.Fatal(err)
	}
	signs := usage.Records[1]
	if signs.Operation != "sign_batch" || signs.Count != 8 || len(signs.ItemDigests) != 8 || signs.ItemDigests[5] != "" ||
		signs.ItemDigests[0] == "" || !strings.Contains(signs.Outcome, "1 of 8") {
		t.Fatalf("batch usage record: %+v", signs)
	}
	if usage.Records[0].Operation != "decrypt_batch" || usage.NextPageToken == "" {
		t.Fatalf("newest first, paginated: %+v", usage)
	}
}

func TestInvalidPointsAndScalars(t *testing.T) {
	a := startAppliance(t, nil)
	conn, userID := a.verifiedUser(phone, "device-0001")
	pk := createKey(t, conn, userID, "key-invalid-1", "123456")
	offCurve := append([]byte(nil), pk.public[:]...)
	offCurve[64] ^= 1
	cases := []struct {
		name  string
		call  func() error
		field string
	}{
		{"Q1 off the curve", func() error {
			_, err := pk.cosign.Sign(bg, &hufuv1.SignRequest{KeyId: pk.id, Credential: pk.cred, SignRequest: append(offCurve, make([]byte, 32)...)})
			return err
		}, "sign_request.q1"},
		{"truncated sign request", func() error {
			_, err := pk.cosign.Sign(bg, &hufuv1.SignRequest{KeyId: pk.id, Credential: pk.cred, SignRequest: pk.public[:]})
			return err
		}, "sign_request"},
		{"C1 identity", func() error {
			_, err := pk.cosign.Decrypt(bg, &hufuv1.DecryptRequest{KeyId: pk.id, Credential: pk.cred, C1: append([]byte{4}, make([]byte, 64)...)})
			return err
		}, "c1"},
		{"keygen proof scalar zero", func() error {
			_, err := pk.keys.CreateKey(bg, &hufuv1.CreateKeyRequest{KeyId: "key-invalid-2", Pin: "123456",
				KeygenRequest: append(append([]byte(nil), pk.public[:]...), make([]byte, 64)...)})
			return err
		}, "keygen_request.proof.c"},
		{"refresh confirmation s ≥ n", func() error {
			_, err := pk.keys.CommitRefresh(bg, &hufuv1.CommitRefreshRequest{KeyId: pk.id, Confirmation: append(make([]byte, 31), append([]byte{1}, make([]byte, 32)...)...)})
			return err
		}, "confirmation"},
		{"bad key id", func() error {
			_, err := pk.cosign.Sign(bg, &hufuv1.SignRequest{KeyId: "../etc", Credential: pk.cred})
			return err
		}, "key_id"},
		{"no credential", func() error {
			e := [32]byte{}
			_, req, _ := pk.share.StartSign(rand.Reader, &pk.public, &e)
			raw, _ := req.MarshalBinary()
			_, err := pk.cosign.Sign(bg, &hufuv1.SignRequest{KeyId: pk.id, SignRequest: raw})
			return err
		}, "credential"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) { wantCode(t, c.call(), codes.InvalidArgument, c.field) })
	}
}

func TestPINLockoutAndResetBySMS(t *testing.T) {
	a := startAppliance(t, func(c *config.Config) { c.Keys.PINMaxAttempts = 3 })
	conn, userID := a.verifiedUser(phone, "device-0001")
	pk := createKey(t, conn, userID, "key-pin-0001", "123456")
	for i := 1; i < 3; i++ {
		_, err := pk.keys.OpenTicket(bg, &hufuv1.OpenTicketRequest{KeyId: pk.id, Pin: "654321"})
		wantCode(t, err, codes.PermissionDenied, "")
	}
	_, err := pk.keys.OpenTicket(bg, &hufuv1.OpenTicketRequest{KeyId: pk.id, Pin: "654321"})
	wantCode(t, err, codes.ResourceExhausted, "")
	// Locked: even the right PIN and the ticket opened before are refused.
	_, err = pk.keys.OpenTicket(bg, &hufuv1.OpenTicketRequest{KeyId: pk.id, Pin: "123456"})
	wantCode(t, err, codes.ResourceExhausted, "")
	_, err = pk.signer().Sign(rand.Reader, []byte("m"), &cosign.SignerOpts{})
	wantCode(t, err, codes.ResourceExhausted, "")
	got, _ := pk.keys.GetKey(bg, &hufuv1.GetKeyRequest{KeyId: pk.id})
	if got.Key.Status != hufuv1.KeyStatus_KEY_STATUS_LOCKED {
		t.Fatalf("status %v", got.Key.Status)
	}

	if _, err := conn.Accounts.SendSmsCode(bg, &hufuv1.SendSmsCodeRequest{Phone: phone, Purpose: hufuv1.SmsPurpose_SMS_PURPOSE_RESET_CERTIFICATE_PIN}); err != nil {
		t.Fatal(err)
	}
	code := a.code(phone, accounts.PurposeResetCertificate)
	_, err = pk.keys.ResetPin(bg, &hufuv1.ResetPinRequest{KeyId: pk.id, Code: "000000", NewPin: "112233"})
	if code != "000000" {
		wantCode(t, err, codes.Unauthenticated, "")
	}
	if _, err := pk.keys.ResetPin(bg, &hufuv1.ResetPinRequest{KeyId: pk.id, Code: code, NewPin: "112233"}); err != nil {
		t.Fatal(err)
	}
	ticket, err := pk.keys.OpenTicket(bg, &hufuv1.OpenTicketRequest{KeyId: pk.id, Pin: "112233"})
	if err != nil {
		t.Fatalf("after reset: %v", err)
	}
	pk.cred = &hufuv1.Credential{Kind: &hufuv1.Credential_Ticket{Ticket: ticket.Ticket}}
	if _, err := pk.signer().Sign(rand.Reader, []byte("m"), &cosign.SignerOpts{}); err != nil {
		t.Fatal(err)
	}
	// The lock also ends by itself.
	for range 3 {
		pk.keys.OpenTicket(bg, &hufuv1.OpenTicketRequest{KeyId: pk.id, Pin: "000000"})
	}
	a.clock.Advance(a.cfg.Keys.PINLockout.Std() + time.Second)
	if _, err := pk.keys.OpenTicket(bg, &hufuv1.OpenTicketRequest{KeyId: pk.id, Pin: "112233"}); err != nil {
		t.Fatalf("after the lockout: %v", err)
	}
}

func TestKeysServeOnlyTheirOwnerDevice(t *testing.T) {
	a := startAppliance(t, nil)
	conn, userID := a.verifiedUser(phone, "device-0001")
	pk := createKey(t, conn, userID, "key-owner-01", "123456")
	e := [32]byte{7}
	_, req, _ := pk.share.StartSign(rand.Reader, &pk.public, &e)
	raw, _ := req.MarshalBinary()

	other, _ := a.verifiedUser("13700137000", "device-0002")
	_, err := hufuv1.NewCosignServiceClient(other.ClientConn()).Sign(bg, &hufuv1.SignRequest{KeyId: pk.id, Credential: pk.cred, SignRequest: raw})
	wantCode(t, err, codes.NotFound, "")

	sameUserOtherDevice := a.dial("device-0003")
	a.signIn(sameUserOtherDevice, phone, "device-0003")
	_, err = hufuv1.NewCosignServiceClient(sameUserOtherDevice.ClientConn()).Sign(bg, &hufuv1.SignRequest{KeyId: pk.id, Credential: pk.cred, SignRequest: raw})
	wantCode(t, err, codes.PermissionDenied, "")
}

// refreshTo runs the phone's side of a refresh: begin, accept, sign the challenge with the
// pending share through the daemon, commit.
func refreshTo(t *testing.T, pk *phoneKey, stopBeforeCommit bool) (cosign.PhoneKey, *hufuv1.Key) {
	t.Helper()
	begin, err := pk.keys.BeginRefresh(bg, &hufuv1.BeginRefreshRequest{KeyId: pk.id, Credential: pk.cred})
	if err != nil {
		t.Fatal(err)
	}
	var offer cosign.RefreshOffer
	if err := offer.UnmarshalBinary(begin.Offer); err != nil {
		t.Fatal(err)
	}
	state := cosign.PhoneKey{Public: pk.public, Version: offer.Version - 1, Share: pk.share}
	state, challenge, err := state.AcceptOffer([]byte(pk.id), &offer)
	if err != nil {
		t.Fatal(err)
	}
	if stopBeforeCommit {
		return state, nil
	}
	pending := &phoneKey{id: pk.id, public: pk.public, share: state.Pending.Share, keys: pk.keys, cosign: pk.cosign, cred: pk.cred}
	proof, err := pending.signer().SignDigest(bg, rand.Reader, &challenge)
	if err != nil {
		t.Fatalf("confirmation signature: %v", err)
	}
	raw, _ := proof.MarshalBinary()
	done, err := pk.keys.CommitRefresh(bg, &hufuv1.CommitRefreshRequest{KeyId: pk.id, Confirmation: raw})
	if err != nil {
		t.Fatalf("commit: %v", err)
	}
	state, err = state.Committed()
	if err != nil {
		t.Fatal(err)
	}
	return state, done.Key
}

func TestRefreshKeepsThePublicKeyAndRetiresTheOldShare(t *testing.T) {
	a := startAppliance(t, nil)
	conn, userID := a.verifiedUser(phone, "device-0001")
	pk := createKey(t, conn, userID, "key-refresh1", "123456")
	pub := pk.public.PublicKey()
	ct, _ := sm2.Encrypt(rand.Reader, pub, []byte("encrypted before the refresh"), nil)

	// Warm the cache with the old share, then refresh.
	if _, err := pk.signer().Sign(rand.Reader, []byte("before"), &cosign.SignerOpts{}); err != nil {
		t.Fatal(err)
	}
	state, key := refreshTo(t, pk, false)
	if key.ShareVersion != 2 || key.PendingVersion != 0 || string(key.PublicKey) != string(pk.public[:]) {
		t.Fatalf("after refresh: %+v", key)
	}
	fresh := &phoneKey{id: pk.id, public: pk.public, share: state.Share, keys: pk.keys, cosign: pk.cosign, cred: pk.cred}
	sig, err := fresh.signer().Sign(rand.Reader, []byte("after"), &cosign.SignerOpts{})
	if err != nil || !sm2.VerifyASN1WithSM2(pub, nil, []byte("after"), sig) {
		t.Fatalf("new pair: %v", err)
	}
	if pt, err := fresh.signer().Decrypt(nil, ct, nil); err != nil || string(pt) != "encrypted before the refresh" {
		t.Fatalf("old ciphertext with the new pair: %v", err)
	}
	// The cache must not serve the old server share: the old phone share no longer works.
	if _, err := pk.signer().Sign(rand.Reader, []byte("stale"), &cosign.SignerOpts{}); !errors.Is(err, cosign.ErrBadSignature) {
		t.Fatalf("old phone share after refresh: %v", err)
	}
	if _, err := pk.signer().Decrypt(nil, ct, nil); !errors.Is(err, cosign.ErrDecryption) {
		t.Fatalf("old phone share decrypts after refresh: %v", err)
	}
}

func TestRefreshSurvivesADaemonRestartBetweenPhases(t *testing.T) {
	a := startAppliance(t, nil)
	conn, userID := a.verifiedUser(phone, "device-0001")
	pk := createKey(t, conn, userID, "key-refresh2", "123456")
	state, _ := refreshTo(t, pk, true) // begun, not committed

	a.restart()
	conn = a.dial("device-0001")
	conn.SetAccessToken(a.signIn(conn, phone, "device-0001").Session.AccessToken)
	pk.keys, pk.cosign = hufuv1.NewKeyServiceClient(conn.ClientConn()), hufuv1.NewCosignServiceClient(conn.ClientConn())
	ticket, err := pk.keys.OpenTicket(bg, &hufuv1.OpenTicketRequest{KeyId: pk.id, Pin: "123456"})
	if err != nil {
		t.Fatal(err)
	}
	pk.cred = &hufuv1.Credential{Kind: &hufuv1.Credential_Ticket{Ticket: ticket.Ticket}}

	// Exactly one pair works: the old one. The pending share answers only the challenge.
	if _, err := pk.signer().Sign(rand.Reader, []byte("old pair"), &cosign.SignerOpts{}); err != nil {
		t.Fatalf("old pair after restart: %v", err)
	}
	pending := &phoneKey{id: pk.id, public: pk.public, share: state.Pending.Share, keys: pk.keys, cosign: pk.cosign, cred: pk.cred}
	if _, err := pending.signer().Sign(rand.Reader, []byte("ordinary"), &cosign.SignerOpts{}); !errors.Is(err, cosign.ErrBadSignature) {
		t.Fatalf("the pending pair signed an ordinary document: %v", err)
	}
	got, _ := pk.keys.GetKey(bg, &hufuv1.GetKeyRequest{KeyId: pk.id})
	if got.Key.PendingVersion != 2 || got.Key.ShareVersion != 1 {
		t.Fatalf("key after restart: %+v", got.Key)
	}
	// The phone resumes: the same offer comes back, and the commit goes through.
	state2, key := refreshTo(t, pk, false)
	before, _ := state.Pending.Share.MarshalBinary()
	after, _ := state2.Share.MarshalBinary()
	if key.ShareVersion != 2 || string(before) != string(after) {
		t.Fatalf("resumed refresh: %+v", key)
	}
}
