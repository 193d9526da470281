package keys_test

import (
	"bytes"
	"context"
	"crypto/rand"
	"errors"
	"sync"
	"testing"
	"time"

	"github.com/emmansun/gmsm/sm2"
	"github.com/prometheus/client_golang/prometheus"
	"google.golang.org/grpc/codes"

	"github.com/hufu-hsm/hufu/cosign"
	"github.com/hufu-hsm/hufu/daemon/accounts"
	"github.com/hufu-hsm/hufu/daemon/apierr"
	"github.com/hufu-hsm/hufu/daemon/authn"
	"github.com/hufu-hsm/hufu/daemon/keys"
	"github.com/hufu-hsm/hufu/hsm"
	"github.com/hufu-hsm/hufu/softhsm/softhsmtest"
	"github.com/hufu-hsm/hufu/store"
	"github.com/hufu-hsm/hufu/store/storepb"
)

// These tests run the keys service on the real parts: a SoftHSM2 token through hsm.Keyring
// and a Pebble store in a temporary directory. The phones are played with cosign directly.

var _ keys.Keyring = (*hsm.Keyring)(nil)

type clock struct {
	mu  sync.Mutex
	now time.Time
}

func (c *clock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.now
}

func (c *clock) Advance(d time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.now = c.now.Add(d)
}

// accountsStandIn stands in for the accounts domain: every user is verified, and the SMS
// code "246810" is the right one for every number.
type accountsStandIn struct{}

func (accountsStandIn) VerifiedUser(_ context.Context, userID string) (*storepb.User, error) {
	return &storepb.User{Id: userID, Phone: "13800000000"}, nil
}

func (accountsStandIn) ConsumeCode(_ context.Context, _ *store.Tx, _ string, _ accounts.Purpose, code string) error {
	if code != "246810" {
		return apierr.Invalidf("code", "wrong code")
	}
	return nil
}

type env struct {
	t       *testing.T
	svc     *keys.Service
	st      *store.Store
	keyring *hsm.Keyring
	clock   *clock
}

func newEnv(t *testing.T) *env {
	t.Helper()
	ctx := context.Background()
	tok := softhsmtest.New(t)
	kr, err := hsm.Initialize(ctx, hsm.Config{ModulePath: tok.ModulePath, TokenLabel: tok.Label, PINFile: tok.PINFile})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = kr.Close() })
	clk := &clock{now: time.Date(2026, 3, 1, 9, 0, 0, 0, time.UTC)}
	st, err := store.Open(ctx, store.Options{Dir: t.TempDir(), Clock: clk})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = st.Close(context.Background()) })
	svc, err := keys.New(keys.Options{}, keys.Deps{
		Store: st, Keyring: kr, Accounts: accountsStandIn{}, Clock: clk, Registry: prometheus.NewRegistry(),
	})
	if err != nil {
		t.Fatal(err)
	}
	runCtx, cancel := context.WithCancel(ctx)
	done := make(chan struct{})
	go func() { svc.Run(runCtx); close(done) }()
	t.Cleanup(func() { cancel(); <-done })
	return &env{t: t, svc: svc, st: st, keyring: kr, clock: clk}
}

// appliance is the cosign.Server a phone talks to: the keys service as caller with cred.
type appliance struct {
	svc    *keys.Service
	caller authn.Caller
	keyID  string
	cred   *keys.Credential
}

func (a appliance) Sign(ctx context.Context, req *cosign.SignRequest) (*cosign.SignResponse, error) {
	raw, _ := req.MarshalBinary()
	resp, _, err := a.svc.Sign(ctx, a.caller, a.keyID, *a.cred, raw)
	return &resp, err
}

func (a appliance) Decrypt(ctx context.Context, req *cosign.DecryptRequest) (*cosign.DecryptResponse, error) {
	t2, err := a.svc.Decrypt(ctx, a.caller, a.keyID, *a.cred, req.C1[:])
	return &cosign.DecryptResponse{T2: t2}, err
}

// phone is one device playing its half of a key.
type phone struct {
	caller authn.Caller
	share  *cosign.PhoneShare
	cred   *keys.Credential
	key    *cosign.Key
	// the device's own SM2 key pair, to which delegation envelopes are sealed
	device    *sm2.PrivateKey
	devicePub cosign.Point
}

const keyID = "ent-key-0001"

func newPhone(t *testing.T, e *env, user, device string) *phone {
	t.Helper()
	priv, err := sm2.GenerateKey(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	pub, err := cosign.PointFromPublicKey(&priv.PublicKey)
	if err != nil {
		t.Fatal(err)
	}
	return &phone{caller: authn.Caller{UserID: user, DeviceID: device, SessionID: "s-" + device}, cred: &keys.Credential{}, device: priv, devicePub: pub}
}

func (p *phone) bind(e *env, public cosign.Point, share *cosign.PhoneShare) {
	p.share = share
	p.key = cosign.NewKey(public, share, appliance{svc: e.svc, caller: p.caller, keyID: keyID, cred: p.cred})
}

// createKey makes the enterprise key with the admin's phone.
func createKey(t *testing.T, e *env, admin *phone, pin string) cosign.Point {
	t.Helper()
	kg, req, err := cosign.StartKeygen(rand.Reader, cosign.KeygenContext(admin.caller.UserID, keyID))
	if err != nil {
		t.Fatal(err)
	}
	raw, _ := req.MarshalBinary()
	rec, err := e.svc.CreateKey(context.Background(), admin.caller, keyID, raw, pin, "enterprise key")
	if err != nil {
		t.Fatal(err)
	}
	var resp cosign.KeygenResponse
	if err := resp.UnmarshalBinary(rec.KeygenResponse); err != nil {
		t.Fatal(err)
	}
	share, public, err := kg.Finish(&resp)
	if err != nil {
		t.Fatal(err)
	}
	admin.bind(e, public, share)
	*admin.cred = keys.Credential{PIN: pin}
	return public
}

// grant runs the grantor's side: the delegation from grantor's phone to member's device.
// keyWithTwoStaffPairs makes u-admin's key (PIN 111111) with accepted pairs on u-staff1's
// (PIN 222222) and u-staff2's (PIN 333333) devices.
func keyWithTwoStaffPairs(t *testing.T, e *env) (admin, staff1, staff2 *phone, public cosign.Point) {
	t.Helper()
	admin = newPhone(t, e, "u-admin", "d-admin")
	staff1 = newPhone(t, e, "u-staff1", "d-staff1")
	staff2 = newPhone(t, e, "u-staff2", "d-staff2")
	public = createKey(t, e, admin, "111111")
	grant(t, e, admin, staff1, nil)
	accept(t, e, staff1, "222222")
	grant(t, e, admin, staff2, nil)
	accept(t, e, staff2, "333333")
	return admin, staff1, staff2, public
}

func grant(t *testing.T, e *env, grantor, member *phone, with func(*store.Tx) error) *storepb.DelegatedShare {
	t.Helper()
	ctx := cosign.DelegationContext(keyID, member.caller.UserID, member.caller.DeviceID)
	g, envelope, err := grantor.share.Delegate(rand.Reader, &member.devicePub, ctx)
	if err != nil {
		t.Fatal(err)
	}
	raw, _ := g.MarshalBinary()
	rec, p2, err := e.svc.GrantDelegation(context.Background(), grantor.caller, keyID, *grantor.cred,
		member.caller.UserID, member.caller.DeviceID, raw, envelope, []string{"bid.sign", "bid.decrypt"}, with)
	if err != nil {
		t.Fatalf("grant: %v", err)
	}
	if len(p2) != cosign.PointSize || rec.Status != storepb.DelegationStatus_DELEGATION_STATUS_PENDING || len(rec.ShareWrapped) != 0 {
		t.Fatalf("grant returned %v", rec)
	}
	return rec
}

// accept runs the member's side: fetch the offer, open and check, prove, accept with pin.
// An impostor, if given, is another holder of a pair of the key: its signature on the
// challenge must not accept the member's pair, before or after the member's own answer.
func accept(t *testing.T, e *env, member *phone, pin string, impostor ...*phone) {
	t.Helper()
	ctx := context.Background()
	rec, publicRaw, p2Raw, challengeRaw, err := e.svc.DelegationOffer(ctx, member.caller, keyID)
	if err != nil {
		t.Fatalf("offer: %v", err)
	}
	public, err := cosign.ParsePoint(publicRaw)
	if err != nil {
		t.Fatal(err)
	}
	p2, err := cosign.ParsePoint(p2Raw)
	if err != nil {
		t.Fatal(err)
	}
	share, err := cosign.AcceptDelegation(member.device, rec.Envelope, cosign.DelegationContext(keyID, member.caller.UserID, member.caller.DeviceID), &public, &p2)
	if err != nil {
		t.Fatalf("member opens the envelope: %v", err)
	}
	member.bind(e, public, share)
	want := cosign.DelegationChallenge(cosign.DelegationContext(keyID, member.caller.UserID, member.caller.DeviceID), (*[32]byte)(rec.ChallengeNonce))
	if !bytes.Equal(challengeRaw, want[:]) {
		t.Fatal("the offer's challenge is not the one the member computes")
	}

	// Pending: only the challenge is answered, and without a credential.
	*member.cred = keys.Credential{}
	if _, err := member.key.Sign(rand.Reader, []byte("a bid"), &cosign.SignerOpts{}); code(err) != codes.FailedPrecondition {
		t.Fatalf("pending pair signed another digest: %v", err)
	}
	*member.cred = keys.Credential{PIN: pin}
	if _, err := member.key.Sign(rand.Reader, []byte("a bid"), &cosign.SignerOpts{}); code(err) != codes.FailedPrecondition {
		t.Fatalf("pending pair signed another digest with a PIN: %v", err)
	}
	ct, _ := sm2.Encrypt(rand.Reader, public.PublicKey(), []byte("bid"), nil)
	if _, err := member.key.Decrypt(nil, ct, nil); code(err) != codes.FailedPrecondition {
		t.Fatalf("pending pair decrypted: %v", err)
	}
	if _, _, _, err := e.svc.OpenTicket(ctx, member.caller, keyID, pin); code(err) != codes.FailedPrecondition {
		t.Fatalf("pending pair opened a ticket: %v", err)
	}
	var forged []byte
	for _, other := range impostor {
		sig, err := other.key.SignDigest(ctx, rand.Reader, &want)
		if err != nil {
			t.Fatalf("impostor signs the challenge: %v", err)
		}
		forged, _ = sig.MarshalBinary()
		if err := e.svc.AcceptDelegation(ctx, member.caller, keyID, pin, forged, nil); code(err) != codes.FailedPrecondition {
			t.Fatalf("accepted with another pair's signature before the new pair answered: %v", err)
		}
	}
	*member.cred = keys.Credential{}
	sig, err := member.key.SignDigest(ctx, rand.Reader, &want)
	if err != nil {
		t.Fatalf("sign the challenge: %v", err)
	}
	raw, _ := sig.MarshalBinary()
	if forged != nil {
		wantInvalid(t, e.svc.AcceptDelegation(ctx, member.caller, keyID, pin, forged, nil), "confirmation")
	}
	if err := e.svc.AcceptDelegation(ctx, member.caller, keyID, pin, raw, nil); err != nil {
		t.Fatalf("accept: %v", err)
	}
	*member.cred = keys.Credential{PIN: pin}
}

func code(err error) codes.Code {
	st, _ := apierr.Status(err)
	return st.Code()
}

func wantInvalid(t *testing.T, err error, field string) {
	t.Helper()
	var ae *apierr.Error
	if !errors.As(err, &ae) || ae.Kind != apierr.InvalidArgument || ae.Field != field {
		t.Fatalf("got %v, want InvalidArgument naming %q", err, field)
	}
}

func signs(t *testing.T, p *phone, public cosign.Point) error {
	t.Helper()
	msg := []byte("投标文件 of " + p.caller.UserID)
	sig, err := p.key.Sign(rand.Reader, msg, &cosign.SignerOpts{})
	if err != nil {
		return err
	}
	if !sm2.VerifyASN1WithSM2(public.PublicKey(), nil, msg, sig) {
		t.Fatalf("%s: gmsm rejects the signature", p.caller.UserID)
	}
	return nil
}

func decrypts(t *testing.T, p *phone, public cosign.Point) error {
	t.Helper()
	msg := []byte("sealed bid for " + p.caller.UserID)
	ct, err := sm2.Encrypt(rand.Reader, public.PublicKey(), msg, nil)
	if err != nil {
		t.Fatal(err)
	}
	got, err := p.key.Decrypt(nil, ct, nil)
	if err != nil {
		return err
	}
	if !bytes.Equal(got, msg) {
		t.Fatalf("%s: plaintext differs", p.caller.UserID)
	}
	return nil
}

// signRequest is a valid sign request of p for an arbitrary digest.
func signRequest(t *testing.T, p *phone, public cosign.Point) []byte {
	t.Helper()
	_, req, err := p.share.StartSign(rand.Reader, &public, &[32]byte{7})
	if err != nil {
		t.Fatal(err)
	}
	raw, _ := req.MarshalBinary()
	return raw
}

func must(t *testing.T, what string, err error) {
	t.Helper()
	if err != nil {
		t.Fatalf("%s: %v", what, err)
	}
}

// auditLog reads the whole audit log back.
func auditLog(t *testing.T, e *env) []*store.Record {
	t.Helper()
	head, _ := e.st.Head()
	var out []*store.Record
	for seq := uint64(1); seq <= head; seq++ {
		r, err := e.st.AuditRecord(context.Background(), seq)
		if err != nil {
			t.Fatal(err)
		}
		out = append(out, r)
	}
	return out
}

func TestDelegatedPairs(t *testing.T) {
	e := newEnv(t)
	ctx := context.Background()
	admin := newPhone(t, e, "u-admin", "d-admin")
	staff1 := newPhone(t, e, "u-staff1", "d-staff1")
	staff2 := newPhone(t, e, "u-staff2", "d-staff2")
	public := createKey(t, e, admin, "111111")

	withRan := 0
	with := func(tx *store.Tx) error { withRan++; return nil }
	rec := grant(t, e, admin, staff1, with)
	if withRan != 1 || rec.GrantedBy != "u-admin" || rec.ShareVersion != 1 || len(rec.Scope) != 2 {
		t.Fatalf("grant record %v, with ran %d times", rec, withRan)
	}
	accept(t, e, staff1, "222222")

	t.Run("member signs and decrypts under the key", func(t *testing.T) {
		must(t, "member signs", signs(t, staff1, public))
		must(t, "member decrypts", decrypts(t, staff1, public))
		must(t, "holder signs", signs(t, admin, public))
		must(t, "holder decrypts", decrypts(t, admin, public))
	})

	t.Run("member tickets and batches", func(t *testing.T) {
		ticket, _, _, err := e.svc.OpenTicket(ctx, staff1.caller, keyID, "222222")
		must(t, "open ticket", err)
		cred := keys.Credential{Ticket: ticket}
		if _, _, err := e.svc.Sign(ctx, admin.caller, keyID, cred, signRequest(t, admin, public)); code(err) != codes.PermissionDenied {
			t.Fatal("the holder used a member's ticket")
		}
		var sessions []*cosign.SignSession
		var raws [][]byte
		var digests [][32]byte
		for i := range 3 {
			d := [32]byte{byte(i + 1)}
			s, req, err := staff1.share.StartSign(rand.Reader, &public, &d)
			must(t, "start sign", err)
			raw, _ := req.MarshalBinary()
			sessions, raws, digests = append(sessions, s), append(raws, raw), append(digests, d)
		}
		out, _, err := e.svc.SignBatch(ctx, staff1.caller, keyID, cred, raws)
		must(t, "sign batch", err)
		for i, it := range out {
			var resp cosign.SignResponse
			must(t, "batch item", errors.Join(it.Err, resp.UnmarshalBinary(it.Result)))
			sig, err := sessions[i].Finish(&resp)
			must(t, "finish", err)
			if !cosign.Verify(&public, &digests[i], &sig) {
				t.Fatal("batch signature does not verify")
			}
		}
		ct, _ := sm2.Encrypt(rand.Reader, public.PublicKey(), []byte("bid 7"), nil)
		parsed, err := cosign.ParseCiphertext(ct, cosign.C1C3C2)
		must(t, "parse", err)
		res, err := e.svc.DecryptBatch(ctx, staff1.caller, keyID, cred, [][]byte{parsed.C1[:]})
		must(t, "decrypt batch", err)
		t2, err := cosign.ParsePoint(res[0].Result)
		must(t, "t2", err)
		if pt, err := staff1.share.FinishDecrypt(parsed, &cosign.DecryptResponse{T2: t2}); err != nil || string(pt) != "bid 7" {
			t.Fatalf("batch decrypt: %v", err)
		}
	})

	t.Run("usage records name the member and device", func(t *testing.T) {
		recs, _, err := e.svc.ListUsage(ctx, admin.caller, keyID, 100, "")
		must(t, "list usage", err)
		seen := map[string]bool{}
		for _, r := range recs {
			seen[r.UserId+"/"+r.DeviceId+"/"+r.Operation] = true
		}
		for _, want := range []string{"u-staff1/d-staff1/sign", "u-staff1/d-staff1/decrypt", "u-staff1/d-staff1/sign_batch",
			"u-admin/d-admin/sign", "u-admin/d-admin/delegate.grant", "u-staff1/d-staff1/delegate.accept"} {
			if !seen[want] {
				t.Errorf("no usage record %s", want)
			}
		}
	})

	t.Run("member changes and resets its own PIN", func(t *testing.T) {
		must(t, "change", e.svc.ChangePin(ctx, staff1.caller, keyID, "222222", "333333"))
		*staff1.cred = keys.Credential{PIN: "222222"}
		if err := signs(t, staff1, public); code(err) != codes.PermissionDenied {
			t.Fatalf("old PIN: %v", err)
		}
		*staff1.cred = keys.Credential{PIN: "333333"}
		must(t, "new PIN", signs(t, staff1, public))
		must(t, "reset", e.svc.ResetPin(ctx, staff1.caller, keyID, "246810", "444444"))
		*staff1.cred = keys.Credential{PIN: "444444"}
		must(t, "reset PIN", signs(t, staff1, public))
		*admin.cred = keys.Credential{PIN: "111111"}
		must(t, "the holder's PIN is unchanged", signs(t, admin, public))
	})

	grant(t, e, admin, staff2, nil)
	accept(t, e, staff2, "555555", admin)

	t.Run("a second pair to a member with one is refused", func(t *testing.T) {
		g, envelope, err := admin.share.Delegate(rand.Reader, &staff2.devicePub, cosign.DelegationContext(keyID, "u-staff2", "d-staff2"))
		must(t, "delegate", err)
		raw, _ := g.MarshalBinary()
		_, _, err = e.svc.GrantDelegation(ctx, admin.caller, keyID, *admin.cred, "u-staff2", "d-staff2", raw, envelope, nil, nil)
		if code(err) != codes.FailedPrecondition {
			t.Fatalf("got %v", err)
		}
		_, _, err = e.svc.GrantDelegation(ctx, staff1.caller, keyID, *staff1.cred, "u-staff3", "d-staff3", raw, envelope, nil, nil)
		if code(err) != codes.PermissionDenied {
			t.Fatalf("a member granted: %v", err)
		}
	})

	t.Run("strangers and other devices", func(t *testing.T) {
		stranger := newPhone(t, e, "u-stranger", "d-stranger")
		stranger.bind(e, public, staff1.share)
		*stranger.cred = keys.Credential{PIN: "444444"}
		if err := signs(t, stranger, public); code(err) != codes.NotFound {
			t.Fatalf("stranger: %v", err)
		}
		other := newPhone(t, e, "u-staff1", "d-staff1-tablet")
		other.bind(e, public, staff1.share)
		*other.cred = keys.Credential{PIN: "444444"}
		if err := signs(t, other, public); code(err) != codes.NotFound {
			t.Fatalf("member's other device: %v", err)
		}
		if _, _, _, _, err := e.svc.DelegationOffer(ctx, stranger.caller, keyID); code(err) != codes.NotFound {
			t.Fatalf("offer for a stranger: %v", err)
		}
		if _, _, _, _, err := e.svc.DelegationOffer(ctx, staff1.caller, keyID); code(err) != codes.FailedPrecondition {
			t.Fatalf("offer after acceptance: %v", err)
		}
		if _, err := e.svc.BeginRefresh(ctx, other.caller, keyID, *other.cred); code(err) != codes.NotFound {
			t.Fatalf("a member's other device refreshes: %v", err)
		}
		if _, err := e.svc.GetKey(ctx, stranger.caller, keyID); code(err) != codes.NotFound {
			t.Fatalf("a stranger reads the key: %v", err)
		}
	})

	t.Run("a member's wrong PINs lock only that member", func(t *testing.T) {
		*staff2.cred = keys.Credential{PIN: "000000"}
		for i := range 5 {
			err := signs(t, staff2, public)
			if want := map[bool]codes.Code{true: codes.ResourceExhausted, false: codes.PermissionDenied}[i == 4]; code(err) != want {
				t.Fatalf("attempt %d: %v", i+1, err)
			}
		}
		*staff2.cred = keys.Credential{PIN: "555555"}
		if err := signs(t, staff2, public); code(err) != codes.ResourceExhausted {
			t.Fatalf("locked member with the right PIN: %v", err)
		}
		must(t, "holder", signs(t, admin, public))
		must(t, "other member", signs(t, staff1, public))
		e.clock.Advance(31 * time.Minute)
		must(t, "after the lockout", signs(t, staff2, public))
	})

	t.Run("recall", func(t *testing.T) {
		ticket, _, _, err := e.svc.OpenTicket(ctx, staff1.caller, keyID, "444444")
		must(t, "ticket", err)
		must(t, "member signs before", signs(t, staff1, public)) // the pair is cached now
		withRan = 0
		must(t, "recall", e.svc.RecallDelegation(ctx, admin.caller, keyID, "u-staff1", "d-staff1", with))
		if withRan != 1 {
			t.Fatal("with did not run")
		}
		if err := signs(t, staff1, public); code(err) != codes.PermissionDenied {
			t.Fatalf("recalled member signs: %v", err)
		}
		if err := decrypts(t, staff1, public); code(err) != codes.PermissionDenied {
			t.Fatalf("recalled member decrypts: %v", err)
		}
		if _, _, _, err := e.svc.OpenTicket(ctx, staff1.caller, keyID, "444444"); code(err) != codes.PermissionDenied {
			t.Fatalf("recalled member opens a ticket: %v", err)
		}
		if _, _, err := e.svc.Sign(ctx, staff1.caller, keyID, keys.Credential{Ticket: ticket}, signRequest(t, staff1, public)); code(err) != codes.PermissionDenied {
			t.Fatalf("recalled member's ticket: %v", err)
		}
		must(t, "holder after recall", signs(t, admin, public))
		must(t, "other member after recall", signs(t, staff2, public))
		must(t, "recalling again only runs with", e.svc.RecallDelegation(ctx, admin.caller, keyID, "u-staff1", "d-staff1", nil))
		var stored storepb.DelegatedShare
		must(t, "read", e.st.Get(ctx, "k/"+keyID+"/delegate/u-staff1/d-staff1", &stored))
		if stored.Status != storepb.DelegationStatus_DELEGATION_STATUS_RECALLED || len(stored.ShareWrapped) != 0 || len(stored.Envelope) != 0 || len(stored.PinVerifier) != 0 {
			t.Fatalf("recalled pair still holds %v", &stored)
		}
		// A new grant to the same member and device gets a higher version.
		rec := grant(t, e, admin, staff1, nil)
		if rec.ShareVersion != 2 {
			t.Fatalf("re-grant version %d", rec.ShareVersion)
		}
		accept(t, e, staff1, "121212")
		must(t, "re-granted member", signs(t, staff1, public))
	})

	t.Run("KEK rotation rewraps the pairs' shares", func(t *testing.T) {
		old := e.keyring.CurrentKEK()
		info, err := e.keyring.RotateKEK(ctx)
		must(t, "rotate", err)
		stale := func(blob []byte) bool {
			b, err := hsm.ParseBlob(blob)
			return err != nil || b.KEKLabel != info.Label
		}
		n, err := e.svc.CountStaleBlobs(ctx, stale)
		must(t, "count", err)
		if n != 3 { // the key's share and two members' shares
			t.Fatalf("%d stale blobs, want 3", n)
		}
		moved, err := e.svc.RewrapAll(ctx, "operator:test", stale, e.keyring.Rewrap, nil)
		if err != nil || moved != 3 {
			t.Fatalf("rewrapped %d: %v", moved, err)
		}
		for _, k := range e.keyring.KEKs() {
			if k.Label == old {
				must(t, "destroy old KEK", e.keyring.DestroyKEK(ctx, k.Version))
			}
		}
		must(t, "holder after rotation", signs(t, admin, public))
		must(t, "member after rotation", signs(t, staff1, public))
		must(t, "member decrypts after rotation", decrypts(t, staff2, public))
	})

	t.Run("promote", func(t *testing.T) {
		if err := e.svc.PromoteDelegation(ctx, admin.caller, keyID, "u-staff9", "d-staff9", nil); code(err) != codes.NotFound {
			t.Fatalf("promote nobody: %v", err)
		}
		withRan = 0
		must(t, "promote", e.svc.PromoteDelegation(ctx, admin.caller, keyID, "u-staff2", "d-staff2", with))
		if withRan != 1 {
			t.Fatal("with did not run")
		}
		if err := signs(t, admin, public); code(err) != codes.NotFound {
			t.Fatalf("old holder signs: %v", err)
		}
		must(t, "new holder signs", signs(t, staff2, public))
		must(t, "new holder decrypts", decrypts(t, staff2, public))
		// The old holder's device made the other members' phone shares: their pairs are
		// recalled with the promotion, for the new holder to grant anew.
		if err := signs(t, staff1, public); code(err) != codes.PermissionDenied {
			t.Fatalf("another member's pair after the promotion: %v", err)
		}
		rec, err := e.svc.GetKey(ctx, staff2.caller, keyID)
		must(t, "get key", err)
		if rec.UserId != "u-staff2" || rec.DeviceId != "d-staff2" || rec.ShareVersion != 2 || len(rec.Delegates) != 0 {
			t.Fatalf("promoted key record: %v", rec)
		}
		mine, err := e.svc.ListKeys(ctx, staff2.caller)
		must(t, "list", err)
		theirs, err := e.svc.ListKeys(ctx, admin.caller)
		must(t, "list", err)
		if len(mine) != 1 || len(theirs) != 0 {
			t.Fatalf("new holder lists %d keys, old holder %d", len(mine), len(theirs))
		}
		// The new holder's PIN is the one it set as a member, counted like any holder's.
		must(t, "new holder opens a ticket", func() error { _, _, _, err := e.svc.OpenTicket(ctx, staff2.caller, keyID, "555555"); return err }())
		// The new holder delegates in turn.
		staff3 := newPhone(t, e, "u-staff3", "d-staff3")
		grant(t, e, staff2, staff3, nil)
		accept(t, e, staff3, "363636")
		must(t, "the new holder's member signs", signs(t, staff3, public))
		if err := e.svc.PromoteDelegation(ctx, admin.caller, keyID, "u-staff2", "d-staff2", nil); code(err) != codes.FailedPrecondition {
			t.Fatalf("promote a promoted pair: %v", err)
		}
	})

	t.Run("revoke destroys every pair", func(t *testing.T) {
		must(t, "revoke", e.svc.Revoke(ctx, staff2.caller, keyID, "left the company", nil))
		for _, p := range []*phone{staff1, staff2} {
			if err := signs(t, p, public); code(err) != codes.FailedPrecondition {
				t.Fatalf("%s after revocation: %v", p.caller.UserID, err)
			}
		}
		pairs, err := e.svc.ListDelegations(ctx, keyID)
		must(t, "list", err)
		status := map[string]storepb.DelegationStatus{}
		for _, p := range pairs {
			status[p.MemberUserId] = p.Status
			var stored storepb.DelegatedShare
			must(t, "read", e.st.Get(ctx, "k/"+keyID+"/delegate/"+p.MemberUserId+"/"+p.MemberDeviceId, &stored))
			if len(stored.ShareWrapped) != 0 {
				t.Fatalf("%s's share survived the revocation", p.MemberUserId)
			}
		}
		if status["u-staff1"] != storepb.DelegationStatus_DELEGATION_STATUS_RECALLED ||
			status["u-staff2"] != storepb.DelegationStatus_DELEGATION_STATUS_PROMOTED ||
			status["u-staff3"] != storepb.DelegationStatus_DELEGATION_STATUS_RECALLED || len(pairs) != 3 {
			t.Fatalf("statuses after revocation: %v", status)
		}
	})

	t.Run("every state change is audited", func(t *testing.T) {
		count := map[string]int{}
		var revoke *store.Record
		for _, r := range auditLog(t, e) {
			count[r.Action+" "+r.Actor]++
			if r.Action == "key.revoke" {
				revoke = r
			}
			if r.Action == "key.delegate.grant" && (r.Details["member_user"] == "" || r.Details["member_device"] == "" || r.Subject != "k/"+keyID) {
				t.Errorf("grant record without the pair: %+v", r)
			}
		}
		for want, n := range map[string]int{
			"key.delegate.grant user:u-admin":    3,
			"key.delegate.grant user:u-staff2":   1,
			"key.delegate.accept user:u-staff1":  2,
			"key.delegate.accept user:u-staff2":  1,
			"key.delegate.accept user:u-staff3":  1,
			"key.delegate.recall user:u-admin":   1,
			"key.delegate.promote user:u-admin":  1,
			"key.revoke user:u-staff2":           1,
			"key.pin.change user:u-staff1":       1,
			"key.pin.reset user:u-staff1":        1,
			"key.sign user:u-staff1":             1, // at least
			"key.decrypt user:u-staff1":          1,
			"key.ticket user:u-staff1":           1,
			"key.sign_batch user:u-staff1":       1,
			"key.decrypt_batch user:u-staff1":    1,
			"key.pin.verify user:u-staff2":       1,
			"key.delegate.grant user:u-stranger": 0,
		} {
			if got := count[want]; (n == 0 && got != 0) || got < n || (n > 1 && got != n) {
				t.Errorf("%s: %d audit records, want %d", want, got, n)
			}
		}
		if revoke == nil || revoke.Details["delegated_pairs"] != "1" {
			t.Fatalf("revocation record: %+v", revoke)
		}
	})
}

func TestDelegationBadInputs(t *testing.T) {
	e := newEnv(t)
	ctx := context.Background()
	admin := newPhone(t, e, "u-admin", "d-admin")
	member := newPhone(t, e, "u-member", "d-member")
	createKey(t, e, admin, "111111")
	dctx := cosign.DelegationContext(keyID, "u-member", "d-member")
	g, envelope, err := admin.share.Delegate(rand.Reader, &member.devicePub, dctx)
	must(t, "delegate", err)
	goodGrant, _ := g.MarshalBinary()
	n := make([]byte, 32)
	copy(n, []byte{0xFF, 0xFF, 0xFF, 0xFE, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF,
		0x72, 0x03, 0xDF, 0x6B, 0x21, 0xC6, 0x05, 0x2B, 0x53, 0xBB, 0xF4, 0x09, 0x39, 0xD5, 0x41, 0x23})

	grants := []struct {
		name            string
		keyID           string
		user, device    string
		grant, envelope []byte
		scope           []string
		field           string
	}{
		{"grant truncated", keyID, "u-member", "d-member", goodGrant[:31], envelope, nil, "grant"},
		{"grant zero", keyID, "u-member", "d-member", make([]byte, 32), envelope, nil, "grant.rho"},
		{"grant = n", keyID, "u-member", "d-member", n, envelope, nil, "grant.rho"},
		{"no envelope", keyID, "u-member", "d-member", goodGrant, nil, nil, "envelope"},
		{"envelope over 1 KiB", keyID, "u-member", "d-member", goodGrant, make([]byte, 1025), nil, "envelope"},
		{"member user id", keyID, "u/member", "d-member", goodGrant, envelope, nil, "member_user_id"},
		{"member device id", keyID, "u-member", "", goodGrant, envelope, nil, "member_device_id"},
		{"the holder's own device", keyID, "u-admin", "d-admin", goodGrant, envelope, nil, "member_device_id"},
		{"scope item empty", keyID, "u-member", "d-member", goodGrant, envelope, []string{"x", ""}, "scope[1]"},
		{"scope too long", keyID, "u-member", "d-member", goodGrant, envelope, make([]string, 33), "scope"},
		{"key id", "k", "u-member", "d-member", goodGrant, envelope, nil, "key_id"},
	}
	for _, c := range grants {
		t.Run("grant/"+c.name, func(t *testing.T) {
			_, _, err := e.svc.GrantDelegation(ctx, admin.caller, c.keyID, *admin.cred, c.user, c.device, c.grant, c.envelope, c.scope, nil)
			wantInvalid(t, err, c.field)
		})
	}
	t.Run("grant needs the holder's credential", func(t *testing.T) {
		_, _, err := e.svc.GrantDelegation(ctx, admin.caller, keyID, keys.Credential{PIN: "999999"}, "u-member", "d-member", goodGrant, envelope, nil, nil)
		if code(err) != codes.PermissionDenied {
			t.Fatalf("wrong PIN: %v", err)
		}
		_, _, err = e.svc.GrantDelegation(ctx, admin.caller, keyID, keys.Credential{}, "u-member", "d-member", goodGrant, envelope, nil, nil)
		wantInvalid(t, err, "credential")
	})

	t.Run("a grant with another rho than the envelope's gives no pair", func(t *testing.T) {
		wrong := cosign.DelegationGrant{Rho: [32]byte{31: 3}}
		raw, _ := wrong.MarshalBinary()
		if _, _, err := e.svc.GrantDelegation(ctx, admin.caller, keyID, *admin.cred, "u-member", "d-member", raw, envelope, nil, nil); err != nil {
			t.Fatal(err)
		}
		_, pub, p2, _, err := e.svc.DelegationOffer(ctx, member.caller, keyID)
		must(t, "offer", err)
		public, _ := cosign.ParsePoint(pub)
		p2Point, _ := cosign.ParsePoint(p2)
		if _, err := cosign.AcceptDelegation(member.device, envelope, dctx, &public, &p2Point); !errors.Is(err, cosign.ErrKeyMismatch) {
			t.Fatalf("member's check: %v", err)
		}
		must(t, "recall the bad pair", e.svc.RecallDelegation(ctx, admin.caller, keyID, "u-member", "d-member", nil))
	})

	grant(t, e, admin, member, nil)
	rec, _, _, challenge, err := e.svc.DelegationOffer(ctx, member.caller, keyID)
	must(t, "offer", err)
	public := admin.key.PublicPoint()
	share, err := cosign.OpenDelegation(member.device, rec.Envelope, dctx)
	must(t, "open", err)
	member.bind(e, public, share)
	var e32 [32]byte
	copy(e32[:], challenge)
	sig, err := member.key.SignDigest(ctx, rand.Reader, &e32)
	must(t, "sign challenge", err)
	good, _ := sig.MarshalBinary()
	otherDigest := [32]byte{1}
	adminSig, err := admin.key.SignDigest(ctx, rand.Reader, &otherDigest)
	must(t, "admin signs", err)
	notChallenge, _ := adminSig.MarshalBinary()

	accepts := []struct {
		name, pin    string
		confirmation []byte
		field        string
	}{
		{"confirmation truncated", "222222", good[:63], "confirmation"},
		{"confirmation s zero", "222222", append(bytes.Clone(good[:32]), make([]byte, 32)...), "confirmation.s"},
		{"confirmation on another digest", "222222", notChallenge, "confirmation"},
		{"PIN not 6 digits", "22222", good, "pin"},
	}
	for _, c := range accepts {
		t.Run("accept/"+c.name, func(t *testing.T) {
			wantInvalid(t, e.svc.AcceptDelegation(ctx, member.caller, keyID, c.pin, c.confirmation, nil), c.field)
		})
	}
	if err := e.svc.AcceptDelegation(ctx, admin.caller, keyID, "222222", good, nil); code(err) != codes.NotFound {
		t.Fatalf("the holder accepts the member's pair: %v", err)
	}
	must(t, "accept", e.svc.AcceptDelegation(ctx, member.caller, keyID, "222222", good, nil))
	if err := e.svc.AcceptDelegation(ctx, member.caller, keyID, "222222", good, nil); code(err) != codes.FailedPrecondition {
		t.Fatalf("accept twice: %v", err)
	}
	for name, err := range map[string]error{
		"recall":  e.svc.RecallDelegation(ctx, admin.caller, keyID, "u-member", "d/x", nil),
		"promote": e.svc.PromoteDelegation(ctx, admin.caller, keyID, "", "d-member", nil),
	} {
		var ae *apierr.Error
		if !errors.As(err, &ae) || ae.Kind != apierr.InvalidArgument {
			t.Fatalf("%s: %v", name, err)
		}
	}
	if err := e.svc.RecallDelegation(ctx, admin.caller, keyID, "u-nobody", "d-nobody", nil); code(err) != codes.NotFound {
		t.Fatalf("recall nobody: %v", err)
	}
}
