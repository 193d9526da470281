package client_test

import (
	"bytes"
	"crypto"
	"crypto/ecdsa"
	"crypto/rand"
	"errors"
	"math/big"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/emmansun/gmsm/sm2"
	hufuv1 "github.com/hufu-hsm/hufu/api/hufu/v1"
	"github.com/hufu-hsm/hufu/client"
	"github.com/hufu-hsm/hufu/client/keystore"
	"github.com/hufu-hsm/hufu/cosign"
	"github.com/hufu-hsm/hufu/daemon/accounts"
	"github.com/hufu-hsm/hufu/daemon/config"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
)

const pin = "246810"

func mustCreate(t *testing.T, p *phone, label string) *keystore.Entry {
	t.Helper()
	e, err := client.CreateKey(bg, p.conn, p.ks, pin, label)
	if err != nil {
		t.Fatalf("create key: %v", err)
	}
	return e
}

func mustOpen(t *testing.T, p *phone, id string) *client.Key {
	t.Helper()
	k, err := client.OpenKey(bg, p.conn, p.ks, id, pin)
	if err != nil {
		t.Fatalf("open key: %v", err)
	}
	return k
}

// signVerifies signs msg through the crypto.Signer interface and checks the result with
// gmsm's standard verification.
func signVerifies(t *testing.T, k *client.Key, msg []byte) {
	t.Helper()
	var signer crypto.Signer = k
	sig, err := signer.Sign(rand.Reader, msg, &cosign.SignerOpts{})
	if err != nil {
		t.Fatalf("sign: %v", err)
	}
	if !sm2.VerifyASN1WithSM2(k.Public().(*ecdsa.PublicKey), nil, msg, sig) {
		t.Fatal("gmsm does not verify the two-party signature")
	}
}

func wantCode(t *testing.T, err error, code codes.Code) {
	t.Helper()
	if got := status.Code(err); got != code {
		t.Fatalf("got %v (%v), want %v", got, err, code)
	}
}

func TestSplitKeyEndToEnd(t *testing.T) {
	a := startAppliance(t, nil)
	p := a.newPhone("13800138000", "phone-0001")

	e := mustCreate(t, p, "bids 2026")
	got, err := p.conn.Keys.GetKey(bg, &hufuv1.GetKeyRequest{KeyId: e.ID})
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(got.Key.PublicKey, e.Public[:]) || got.Key.ShareVersion != 1 || got.Key.Label != "bids 2026" || got.Key.DeviceId != "phone-0001" {
		t.Fatalf("appliance's key record: %v", got.Key)
	}
	k := mustOpen(t, p, e.ID)
	pub := k.Public().(*ecdsa.PublicKey)

	t.Run("sign", func(t *testing.T) {
		msg := []byte("投标文件 bid document")
		for _, tt := range []struct {
			name string
			opts crypto.SignerOpts
			uid  []byte
		}{
			{"default signer ID", &cosign.SignerOpts{}, nil},
			{"gmsm default options", sm2.DefaultSM2SignerOpts, []byte(cosign.DefaultSignerID)},
			{"own signer ID", &cosign.SignerOpts{ID: []byte("bidder@example.cn")}, []byte("bidder@example.cn")},
		} {
			t.Run(tt.name, func(t *testing.T) {
				sig, err := k.Sign(rand.Reader, msg, tt.opts)
				if err != nil {
					t.Fatal(err)
				}
				if !sm2.VerifyASN1WithSM2(pub, tt.uid, msg, sig) {
					t.Fatal("gmsm does not verify the signature")
				}
				if sm2.VerifyASN1WithSM2(pub, tt.uid, []byte("another document"), sig) {
					t.Fatal("signature verifies on another message")
				}
			})
		}
	})

	t.Run("decrypt", func(t *testing.T) {
		msg := []byte("开标 bid opening: price 1,234,567.89")
		for _, tt := range []struct {
			name string
			opts *sm2.EncrypterOpts
		}{
			{"C1C3C2", nil},
			{"ASN.1", sm2.ASN1EncrypterOpts},
		} {
			t.Run(tt.name, func(t *testing.T) {
				ct, err := sm2.Encrypt(rand.Reader, pub, msg, tt.opts)
				if err != nil {
					t.Fatal(err)
				}
				var dec crypto.Decrypter = k
				plain, err := dec.Decrypt(nil, ct, nil)
				if err != nil || !bytes.Equal(plain, msg) {
					t.Fatalf("decrypt: %q %v", plain, err)
				}
			})
		}
	})

	t.Run("sign batch", func(t *testing.T) {
		digests := make([][cosign.ScalarSize]byte, 5)
		for i := range digests {
			rand.Read(digests[i][:])
		}
		var progress []int
		k.BatchSize, k.Progress = 2, func(done, total int) { progress = append(progress, done) }
		defer func() { k.BatchSize, k.Progress = 0, nil }()
		sigs, errs := k.SignDigests(bg, digests)
		for i := range digests {
			if errs[i] != nil {
				t.Fatalf("item %d: %v", i, errs[i])
			}
			if !sm2.Verify(pub, digests[i][:], new(big.Int).SetBytes(sigs[i].R[:]), new(big.Int).SetBytes(sigs[i].S[:])) {
				t.Fatalf("item %d does not verify", i)
			}
		}
		if !slices.Equal(progress, []int{2, 4, 5}) {
			t.Fatalf("progress %v", progress)
		}
	})

	t.Run("sign batch with a bad item", func(t *testing.T) {
		// The SDK never sends a malformed item, so build the batch by hand with the stored
		// share: item 1 carries a point that is not on the curve.
		stored, err := p.ks.Load(e.ID)
		if err != nil {
			t.Fatal(err)
		}
		sessions := make([]*cosign.SignSession, 3)
		reqs := make([][]byte, 3)
		for i := range reqs {
			var d [cosign.ScalarSize]byte
			rand.Read(d[:])
			s, req, err := stored.Share.StartSign(rand.Reader, &stored.Public, &d)
			if err != nil {
				t.Fatal(err)
			}
			sessions[i] = s
			reqs[i], _ = req.MarshalBinary()
		}
		reqs[1][40] ^= 1
		resp, err := p.conn.Cosign.SignBatch(bg, &hufuv1.SignBatchRequest{KeyId: e.ID, Credential: client.PINCredential(pin), SignRequests: reqs})
		if err != nil {
			t.Fatal(err)
		}
		for i, it := range resp.Items {
			if i == 1 {
				if codes.Code(it.ErrorCode) != codes.InvalidArgument || it.ErrorMessage == "" {
					t.Fatalf("bad item: %v %q", codes.Code(it.ErrorCode), it.ErrorMessage)
				}
				continue
			}
			var sr cosign.SignResponse
			if it.ErrorCode != 0 || sr.UnmarshalBinary(it.Result) != nil {
				t.Fatalf("item %d: %v %q", i, codes.Code(it.ErrorCode), it.ErrorMessage)
			}
			if _, err := sessions[i].Finish(&sr); err != nil {
				t.Fatalf("item %d: %v", i, err)
			}
		}
	})

	t.Run("decrypt batch with bad items", func(t *testing.T) {
		msgs := [][]byte{[]byte("envelope one"), []byte("envelope two"), []byte("envelope three")}
		cts := make([][]byte, 0, 5)
		for i, m := range msgs {
			opts := sm2.ASN1EncrypterOpts
			if i%2 == 0 {
				opts = nil
			}
			ct, err := sm2.Encrypt(rand.Reader, pub, m, opts)
			if err != nil {
				t.Fatal(err)
			}
			cts = append(cts, ct)
		}
		tampered := bytes.Clone(cts[0])
		tampered[70] ^= 1 // inside C3
		cts = append(cts, tampered, []byte("not a ciphertext"))
		plain, errs := k.DecryptMany(bg, cts)
		for i, m := range msgs {
			if errs[i] != nil || !bytes.Equal(plain[i], m) {
				t.Fatalf("item %d: %q %v", i, plain[i], errs[i])
			}
		}
		if !errors.Is(errs[3], cosign.ErrDecryption) {
			t.Fatalf("tampered item: %v", errs[3])
		}
		var inputErr *cosign.InputError
		if !errors.As(errs[4], &inputErr) {
			t.Fatalf("garbage item: %v", errs[4])
		}
	})

	t.Run("usage records", func(t *testing.T) {
		resp, err := p.conn.Keys.ListUsage(bg, &hufuv1.ListUsageRequest{KeyId: e.ID, PageSize: 1000})
		if err != nil {
			t.Fatal(err)
		}
		seen := map[string]bool{}
		for _, r := range resp.Records {
			seen[r.Operation] = true
			if r.DeviceId != "phone-0001" {
				t.Fatalf("record from device %q", r.DeviceId)
			}
		}
		for _, op := range []string{"keygen", "sign", "decrypt"} {
			if !seen[op] {
				t.Errorf("no %q usage record among %v", op, seen)
			}
		}
	})

	t.Run("other account cannot use the key", func(t *testing.T) {
		other := a.newPhone("13800138001", "phone-0002")
		_, err := other.conn.Keys.OpenTicket(bg, &hufuv1.OpenTicketRequest{KeyId: e.ID, Pin: pin})
		if err == nil {
			t.Fatal("another account opened a ticket on the key")
		}
		_, err = other.conn.Cosign.Decrypt(bg, &hufuv1.DecryptRequest{KeyId: e.ID, Credential: client.PINCredential(pin), C1: e.Public[:]})
		if err == nil {
			t.Fatal("another account used the key")
		}
	})

	t.Run("wrong PIN", func(t *testing.T) {
		_, err := client.OpenKey(bg, p.conn, p.ks, e.ID, "000000")
		wantCode(t, err, codes.PermissionDenied)
	})
}

func TestRefresh(t *testing.T) {
	a := startAppliance(t, nil)
	p := a.newPhone("13800138000", "phone-0001")
	e := mustCreate(t, p, "")
	old, err := p.ks.Load(e.ID)
	if err != nil {
		t.Fatal(err)
	}
	signVerifies(t, mustOpen(t, p, e.ID), []byte("before"))

	var steps []string
	next, err := client.RefreshKey(bg, p.conn, p.ks, e.ID, client.PINCredential(pin), func(s string) { steps = append(steps, s) })
	if err != nil {
		t.Fatal(err)
	}
	if next.Version != 2 || next.Public != old.Public || next.Pending != nil {
		t.Fatalf("after refresh: version %d, pending %v", next.Version, next.Pending)
	}
	if len(steps) != 4 {
		t.Fatalf("progress: %q", steps)
	}
	got, err := p.conn.Keys.GetKey(bg, &hufuv1.GetKeyRequest{KeyId: e.ID})
	if err != nil || got.Key.ShareVersion != 2 || got.Key.PendingVersion != 0 || !bytes.Equal(got.Key.PublicKey, old.Public[:]) {
		t.Fatalf("appliance after refresh: %v %v", got, err)
	}
	k := mustOpen(t, p, e.ID)
	signVerifies(t, k, []byte("after"))
	if bytes.Equal(mustMarshal(t, next.Share), mustMarshal(t, old.Share)) {
		t.Fatal("the share did not change")
	}

	// The old phone share no longer combines with the appliance's: signatures do not verify
	// and decryptions fail, even when the version check is skipped.
	ticket, err := p.conn.Keys.OpenTicket(bg, &hufuv1.OpenTicketRequest{KeyId: e.ID, Pin: pin})
	if err != nil {
		t.Fatal(err)
	}
	stale := cosign.NewKey(old.Public, old.Share, &client.Remote{Conn: p.conn, KeyID: e.ID, Credential: client.TicketCredential(ticket.Ticket)})
	var d [cosign.ScalarSize]byte
	if _, err := stale.SignDigest(bg, rand.Reader, &d); !errors.Is(err, cosign.ErrBadSignature) {
		t.Fatalf("old share signing: %v", err)
	}
	ct, _ := sm2.Encrypt(rand.Reader, old.Public.PublicKey(), []byte("secret"), nil)
	if _, err := stale.Decrypt(nil, ct, nil); !errors.Is(err, cosign.ErrDecryption) {
		t.Fatalf("old share decrypting: %v", err)
	}
	// With the version check, the SDK says why.
	checked := client.NewKey(p.conn, old, client.TicketCredential(ticket.Ticket))
	if _, err := checked.SignDigest(bg, rand.Reader, &d); !errors.Is(err, client.ErrVersionMismatch) {
		t.Fatalf("old share with version check: %v", err)
	}

	// A keystore restored from a backup made before the refresh is out of step.
	if err := p.ks.Save(old); err != nil {
		t.Fatal(err)
	}
	if _, err := client.RefreshKey(bg, p.conn, p.ks, e.ID, client.PINCredential(pin), nil); !errors.Is(err, client.ErrOutOfStep) {
		t.Fatalf("refresh from a stale keystore: %v", err)
	}
}

func mustMarshal(t *testing.T, s *cosign.PhoneShare) []byte {
	t.Helper()
	b, err := s.MarshalBinary()
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// TestRefreshInterrupted stops a refresh after each step, as a crash of the phone there
// would, and checks that exactly one share pair works meanwhile and that the next
// RefreshKey finishes the same refresh.
func TestRefreshInterrupted(t *testing.T) {
	a := startAppliance(t, nil)
	p := a.newPhone("13800138000", "phone-0001")
	for _, tt := range []struct {
		step              string
		localPending      bool   // the keystore holds the pending share
		server, serverPnd uint32 // the appliance's share and pending versions
	}{
		{"begin", false, 1, 2},
		{"accept", true, 1, 2},
		{"confirm", true, 1, 2},
		{"commit", true, 2, 0},
	} {
		t.Run("after "+tt.step, func(t *testing.T) {
			e := mustCreate(t, p, tt.step)
			if _, err := client.RefreshStoppingAfter(bg, p.conn, p.ks, e.ID, client.PINCredential(pin), tt.step); !errors.Is(err, client.ErrRefreshStopped) {
				t.Fatalf("refresh: %v", err)
			}
			local, err := p.ks.Load(e.ID)
			if err != nil {
				t.Fatal(err)
			}
			if (local.Pending != nil) != tt.localPending || local.Version != 1 {
				t.Fatalf("keystore: version %d, pending %v", local.Version, local.Pending)
			}
			got, err := p.conn.Keys.GetKey(bg, &hufuv1.GetKeyRequest{KeyId: e.ID})
			if err != nil || got.Key.ShareVersion != tt.server || got.Key.PendingVersion != tt.serverPnd {
				t.Fatalf("appliance: %v %v", got, err)
			}

			// Meanwhile the active share works until the appliance commits; after the
			// commit it does not, and the phone holds the new share as pending.
			var d [cosign.ScalarSize]byte
			rand.Read(d[:])
			_, err = client.NewKey(p.conn, local, client.PINCredential(pin)).SignDigest(bg, rand.Reader, &d)
			if tt.server == 1 && err != nil {
				t.Fatalf("active share before the commit: %v", err)
			}
			if tt.server == 2 && !errors.Is(err, client.ErrVersionMismatch) {
				t.Fatalf("active share after the commit: %v", err)
			}

			next, err := client.RefreshKey(bg, p.conn, p.ks, e.ID, client.PINCredential(pin), nil)
			if err != nil {
				t.Fatalf("resume: %v", err)
			}
			if next.Version != 2 || next.Pending != nil || next.Public != e.Public {
				t.Fatalf("after resuming: version %d, pending %v", next.Version, next.Pending)
			}
			got, err = p.conn.Keys.GetKey(bg, &hufuv1.GetKeyRequest{KeyId: e.ID})
			if err != nil || got.Key.ShareVersion != 2 || got.Key.PendingVersion != 0 {
				t.Fatalf("appliance after resuming: %v %v", got, err)
			}
			signVerifies(t, mustOpen(t, p, e.ID), []byte("after "+tt.step))
		})
	}

	t.Run("appliance dropped the refresh", func(t *testing.T) {
		// The appliance has no refresh pending but the keystore holds a pending share, as
		// after a refresh the appliance abandoned: the pending share is dropped and a new
		// refresh runs.
		e := mustCreate(t, p, "dropped")
		offer := cosign.RefreshOffer{Version: 2}
		offer.Rho[31] = 5
		next, _, err := e.AcceptOffer([]byte(e.ID), &offer)
		if err != nil {
			t.Fatal(err)
		}
		e.PhoneKey = next
		if err := p.ks.Save(e); err != nil {
			t.Fatal(err)
		}
		var steps []string
		done, err := client.RefreshKey(bg, p.conn, p.ks, e.ID, client.PINCredential(pin), func(s string) { steps = append(steps, s) })
		if err != nil {
			t.Fatal(err)
		}
		if done.Version != 2 || done.Pending != nil || !strings.Contains(steps[0], "dropped") {
			t.Fatalf("version %d, pending %v, steps %q", done.Version, done.Pending, steps)
		}
		signVerifies(t, mustOpen(t, p, e.ID), []byte("after a dropped refresh"))
	})

	t.Run("open settles a committed refresh", func(t *testing.T) {
		e := mustCreate(t, p, "open")
		if _, err := client.RefreshStoppingAfter(bg, p.conn, p.ks, e.ID, client.PINCredential(pin), "commit"); !errors.Is(err, client.ErrRefreshStopped) {
			t.Fatalf("refresh: %v", err)
		}
		k := mustOpen(t, p, e.ID)
		if k.Version != 2 {
			t.Fatalf("opened at version %d", k.Version)
		}
		signVerifies(t, k, []byte("settled by OpenKey"))
	})
}

// TestTicketRenewal runs more operations than one ticket allows, and past its expiry by the
// appliance's clock: the key opens new tickets as needed. After the PIN is changed elsewhere
// it stops asking after one refusal.
func TestTicketRenewal(t *testing.T) {
	a := startAppliance(t, func(c *config.Config) { c.Keys.TicketUses = 3 })
	p := a.newPhone("13800138000", "phone-0001")
	e := mustCreate(t, p, "")
	k := mustOpen(t, p, e.ID)

	// Seven items: batches are cut to the ticket's three uses, each on a new ticket.
	digests := make([][cosign.ScalarSize]byte, 7)
	var progress []int
	k.Progress = func(done, _ int) { progress = append(progress, done) }
	_, errs := k.SignDigests(bg, digests)
	if !slices.Equal(progress, []int{3, 6, 7}) {
		t.Fatalf("progress %v", progress)
	}
	for i, err := range errs {
		if err != nil {
			t.Fatalf("item %d: %v", i, err)
		}
	}
	signVerifies(t, k, []byte("one more"))

	a.clock.Advance(a.cfg.Keys.TicketTTL.Std() + time.Second) // the appliance's clock only
	signVerifies(t, k, []byte("after the ticket expired"))

	if _, err := p.conn.Keys.ChangePin(bg, &hufuv1.ChangePinRequest{KeyId: e.ID, CurrentPin: pin, NewPin: "975310"}); err != nil {
		t.Fatal(err)
	}
	before, err := p.conn.Keys.GetKey(bg, &hufuv1.GetKeyRequest{KeyId: e.ID})
	if err != nil {
		t.Fatal(err)
	}
	for range 3 {
		if _, err := k.Sign(rand.Reader, []byte("x"), &cosign.SignerOpts{}); err == nil {
			t.Fatal("signed with a ticket from the old PIN after a PIN change")
		}
	}
	after, err := p.conn.Keys.GetKey(bg, &hufuv1.GetKeyRequest{KeyId: e.ID})
	if err != nil {
		t.Fatal(err)
	}
	if after.Key.PinFailures > before.Key.PinFailures+1 {
		t.Fatalf("the stale PIN was tried %d times", after.Key.PinFailures-before.Key.PinFailures)
	}
}

// TestConcurrentRefreshes runs two refreshes of one key at once, as two CLI runs would: the
// keystore lock makes them take turns, and the key ends two versions on, in step.
func TestConcurrentRefreshes(t *testing.T) {
	a := startAppliance(t, nil)
	p := a.newPhone("13800138000", "phone-0001")
	e := mustCreate(t, p, "")
	errs := make(chan error, 2)
	for range 2 {
		go func() {
			_, err := client.RefreshKey(bg, p.conn, p.ks, e.ID, client.PINCredential(pin), nil)
			errs <- err
		}()
	}
	for range 2 {
		if err := <-errs; err != nil {
			t.Fatal(err)
		}
	}
	k := mustOpen(t, p, e.ID)
	if k.Version != 3 {
		t.Fatalf("version %d after two refreshes", k.Version)
	}
	signVerifies(t, k, []byte("after two refreshes"))
}

// TestPINLockoutAndReset locks a key with wrong PINs and unlocks it with the SMS code of
// "forgot certificate PIN"; and the account's other device cannot use the key.
func TestPINLockoutAndReset(t *testing.T) {
	a := startAppliance(t, func(c *config.Config) { c.Keys.PINMaxAttempts = 3 })
	p := a.newPhone("13800138000", "phone-0001")
	e := mustCreate(t, p, "")

	for i := 1; i <= 3; i++ {
		_, err := client.OpenKey(bg, p.conn, p.ks, e.ID, "000000")
		if i < 3 {
			wantCode(t, err, codes.PermissionDenied)
		} else {
			wantCode(t, err, codes.ResourceExhausted)
		}
	}
	_, err := client.OpenKey(bg, p.conn, p.ks, e.ID, pin) // the right PIN does not help now
	wantCode(t, err, codes.ResourceExhausted)
	got, err := p.conn.Keys.GetKey(bg, &hufuv1.GetKeyRequest{KeyId: e.ID})
	if err != nil || got.Key.Status != hufuv1.KeyStatus_KEY_STATUS_LOCKED || got.Key.LockedUntil == nil {
		t.Fatalf("locked key: %v %v", got, err)
	}

	if _, err := p.conn.Accounts.SendSmsCode(bg, &hufuv1.SendSmsCodeRequest{Phone: p.number, Purpose: hufuv1.SmsPurpose_SMS_PURPOSE_RESET_CERTIFICATE_PIN}); err != nil {
		t.Fatal(err)
	}
	code := a.code(p.number, accounts.PurposeResetCertificate)
	if _, err := p.conn.Keys.ResetPin(bg, &hufuv1.ResetPinRequest{KeyId: e.ID, Code: code, NewPin: "112233"}); err != nil {
		t.Fatal(err)
	}
	k, err := client.OpenKey(bg, p.conn, p.ks, e.ID, "112233")
	if err != nil {
		t.Fatalf("after reset: %v", err)
	}
	signVerifies(t, k, []byte("unlocked"))

	// The same account signed in on another device, with a copy of the keystore even,
	// cannot use the key: keys answer only the device that created them.
	other := a.dial("phone-0002")
	if _, err := other.Accounts.SendSmsCode(bg, &hufuv1.SendSmsCodeRequest{Phone: p.number, Purpose: hufuv1.SmsPurpose_SMS_PURPOSE_SIGN_IN}); err != nil {
		a.clock.Advance(time.Minute) // the resend interval
		if _, err := other.Accounts.SendSmsCode(bg, &hufuv1.SendSmsCodeRequest{Phone: p.number, Purpose: hufuv1.SmsPurpose_SMS_PURPOSE_SIGN_IN}); err != nil {
			t.Fatal(err)
		}
	}
	s, err := other.Accounts.SignInWithSmsCode(bg, &hufuv1.SignInWithSmsCodeRequest{
		Phone: p.number, Code: a.code(p.number, accounts.PurposeSignIn), Device: &hufuv1.Device{Id: "phone-0002"},
	})
	if err != nil {
		t.Fatal(err)
	}
	other.SetAccessToken(s.Session.AccessToken)
	_, err = client.OpenKey(bg, other, p.ks, e.ID, "112233")
	wantCode(t, err, codes.PermissionDenied)
}

// TestRefreshAcrossDaemonRestart stops the phone after it signed the confirmation and
// restarts the appliance between the two phases: the pending refresh survives, the active
// pair still works, and the phone finishes the same refresh.
func TestRefreshAcrossDaemonRestart(t *testing.T) {
	a := startAppliance(t, nil)
	p := a.newPhone("13800138000", "phone-0001")
	e := mustCreate(t, p, "")
	if _, err := client.RefreshStoppingAfter(bg, p.conn, p.ks, e.ID, client.PINCredential(pin), "confirm"); !errors.Is(err, client.ErrRefreshStopped) {
		t.Fatalf("refresh: %v", err)
	}
	a.restart()
	a.redial(p)
	got, err := p.conn.Keys.GetKey(bg, &hufuv1.GetKeyRequest{KeyId: e.ID})
	if err != nil || got.Key.ShareVersion != 1 || got.Key.PendingVersion != 2 {
		t.Fatalf("after restart: %v %v", got, err)
	}
	k := mustOpen(t, p, e.ID)
	if k.Version != 1 {
		t.Fatalf("opened at version %d", k.Version)
	}
	signVerifies(t, k, []byte("active pair after a restart"))
	done, err := client.RefreshKey(bg, p.conn, p.ks, e.ID, client.PINCredential(pin), nil)
	if err != nil || done.Version != 2 {
		t.Fatalf("resume after restart: %v %v", done, err)
	}
	signVerifies(t, mustOpen(t, p, e.ID), []byte("new pair after a restart"))
}
