package daemon_test

import (
	"context"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/cockroachdb/pebble/v2"
	"github.com/hufu-hsm/hufu/admin"
	hufuv1 "github.com/hufu-hsm/hufu/api/hufu/v1"
	"github.com/hufu-hsm/hufu/daemon/accounts"
	"github.com/hufu-hsm/hufu/hsm"
	"github.com/hufu-hsm/hufu/store"
	"github.com/hufu-hsm/hufu/store/storepb"
	"google.golang.org/grpc/codes"
	"google.golang.org/protobuf/proto"
)

// phoneFingerprintRE is what stands for a number in a store key: 64 lowercase hex digits.
var phoneFingerprintRE = regexp.MustCompile(`^[0-9a-f]{64}$`)

// TestNoPhoneNumberInStoreKeys (issue 16): after sign-in by SMS code and by password, a
// phone change, a deletion and re-registration, the SMS rate limit, a wrong-code lockout
// and a KEK rotation — each still working — no store key and no audit record holds any of
// the numbers in clear, and the phone index holds fingerprints.
func TestNoPhoneNumberInStoreKeys(t *testing.T) {
	a := startAdminAppliance(t, nil)
	const (
		first, moved = "13811110001", "13811110002" // an account that changes its number
		deleted      = "13811110003"                // deleted, then registered again
		locked       = "13811110004"                // locked out by wrong codes
		limited      = "13811110005"                // hits the per-number SMS limit
	)
	numbers := []string{first, moved, deleted, locked, limited}
	conn := a.dial("pidx-dev-01")
	send := func(phone string, purpose hufuv1.SmsPurpose) error {
		_, err := conn.Accounts.SendSmsCode(bg, &hufuv1.SendSmsCodeRequest{Phone: phone, Purpose: purpose})
		return err
	}
	signIn := func(phone, code string) (*hufuv1.SignInWithSmsCodeResponse, error) {
		return conn.Accounts.SignInWithSmsCode(bg, &hufuv1.SignInWithSmsCodeRequest{Phone: phone, Code: code, Device: &hufuv1.Device{Id: "pidx-dev-01"}})
	}

	// Sign-in by code registers, and finds the account again; so does a password sign-in.
	owner := a.signIn(conn, first, "pidx-dev-01")
	if !owner.Registered {
		t.Fatal("first sign-in did not register")
	}
	a.clock.Advance(2 * time.Minute)
	if again := a.signIn(conn, first, "pidx-dev-01"); again.Registered || again.Account.Id != owner.Account.Id {
		t.Fatalf("second sign-in: registered %v, account %s, want %s", again.Registered, again.Account.Id, owner.Account.Id)
	}
	must(t, errOnly(conn.Accounts.SetPassword(bg, &hufuv1.SetPasswordRequest{NewPassword: "hufu-index-2026"})))
	pw, err := conn.Accounts.SignInWithPassword(bg, &hufuv1.SignInWithPasswordRequest{Phone: first, Password: "hufu-index-2026", Device: &hufuv1.Device{Id: "pidx-dev-01"}})
	if err != nil || pw.Account.Id != owner.Account.Id {
		t.Fatalf("password sign-in: %v %v", pw, err)
	}
	conn.SetAccessToken(pw.Session.AccessToken)

	// Phone change: the new number finds the account, the old one is free again.
	a.clock.Advance(2 * time.Minute)
	must(t, send(first, hufuv1.SmsPurpose_SMS_PURPOSE_CHANGE_PHONE))
	must(t, send(moved, hufuv1.SmsPurpose_SMS_PURPOSE_CHANGE_PHONE))
	must(t, errOnly(conn.Accounts.ChangePhone(bg, &hufuv1.ChangePhoneRequest{NewPhone: moved,
		Code: a.code(moved, accounts.PurposeChangePhone), CurrentCode: a.code(first, accounts.PurposeChangePhone)})))
	a.clock.Advance(2 * time.Minute)
	if r := a.signIn(conn, moved, "pidx-dev-01"); r.Registered || r.Account.Id != owner.Account.Id {
		t.Fatalf("sign-in with the new number: registered %v, account %s", r.Registered, r.Account.Id)
	}
	if r := a.signIn(a.dial("pidx-dev-02"), first, "pidx-dev-02"); !r.Registered {
		t.Fatal("the old number still finds an account after the change")
	}

	// Deletion frees the number: it registers again as a new account.
	gone := a.dial("pidx-dev-03")
	doomed := a.signIn(gone, deleted, "pidx-dev-03")
	a.clock.Advance(2 * time.Minute)
	if _, err := gone.Accounts.SendSmsCode(bg, &hufuv1.SendSmsCodeRequest{Phone: deleted, Purpose: hufuv1.SmsPurpose_SMS_PURPOSE_DELETE_ACCOUNT}); err != nil {
		t.Fatal(err)
	}
	must(t, errOnly(gone.Accounts.DeleteAccount(bg, &hufuv1.DeleteAccountRequest{Code: a.code(deleted, accounts.PurposeDeleteAccount), ConfirmIrreversible: true})))
	a.clock.Advance(2 * time.Minute)
	if r := a.signIn(a.dial("pidx-dev-04"), deleted, "pidx-dev-04"); !r.Registered || r.Account.Id == doomed.Account.Id {
		t.Fatalf("re-registration after deletion: registered %v, account %s (deleted %s)", r.Registered, r.Account.Id, doomed.Account.Id)
	}

	// Wrong codes lock the number, right codes included, until the lockout ends.
	must(t, send(locked, hufuv1.SmsPurpose_SMS_PURPOSE_SIGN_IN))
	right := a.code(locked, accounts.PurposeSignIn)
	wrong := "000000"
	if wrong == right {
		wrong = "000001"
	}
	for i := 1; i < a.cfg.Account.CodeMaxAttempts; i++ {
		_, err := signIn(locked, wrong)
		wantCode(t, err, codes.Unauthenticated, "")
	}
	_, err = signIn(locked, wrong)
	wantCode(t, err, codes.ResourceExhausted, "")
	_, err = signIn(locked, right)
	wantCode(t, err, codes.ResourceExhausted, "")

	// The per-number hourly SMS limit still counts per number.
	for range a.cfg.Account.SMSMaxPerPhoneHour {
		must(t, send(limited, hufuv1.SmsPurpose_SMS_PURPOSE_SIGN_IN))
		a.clock.Advance(a.cfg.Account.SMSResendInterval.Std() + time.Second)
	}
	wantCode(t, send(limited, hufuv1.SmsPurpose_SMS_PURPOSE_SIGN_IN), codes.ResourceExhausted, "")

	// A KEK rotation leaves fingerprints alone: they are MACs under the PIN-verifier key,
	// which is not a KEK.
	rotateKEK(t, a)
	a.clock.Advance(2 * time.Minute)
	if r := a.signIn(conn, moved, "pidx-dev-01"); r.Registered || r.Account.Id != owner.Account.Id {
		t.Fatalf("sign-in after a KEK rotation: registered %v, account %s", r.Registered, r.Account.Id)
	}

	a.stop()
	dir := filepath.Join(a.cfg.DataDir, "store")
	if leaks := phoneLeaks(t, dir, numbers); len(leaks) > 0 {
		t.Fatalf("phone numbers in clear:\n%s", strings.Join(leaks, "\n"))
	}
	// Not vacuous: the index is there, keyed by fingerprints (the first, moved, deleted
	// numbers have accounts: 3 entries).
	if fps := phoneIndexParts(t, dir); len(fps) != 3 {
		t.Fatalf("phone index entries %v, want 3 fingerprints", fps)
	}
}

// TestPhoneKeyMigration (issue 16): a store written with numbers in its keys — the phone
// index, an outstanding SMS code, per-number counters and a lockout, and enough index
// entries for more than one batch, next to entries already moved (a migration that
// stopped between batches) — is moved at start: sign-in finds the same accounts with the
// same codes, the lockout holds, the audit log says how many entries each batch moved and
// never a number, no key holds a number, and a second start changes nothing.
func TestPhoneKeyMigration(t *testing.T) {
	a := startAdminAppliance(t, nil)
	const (
		pending = "13922220001" // an account with a code outstanding at the upgrade
		moved   = "13922220002" // an account whose entries a first run already moved
		locked  = "13922220003" // a number locked out by wrong codes
	)
	conn := a.dial("mig-dev-01")
	ownerPending := a.signIn(conn, pending, "mig-dev-01").Account.Id
	ownerMoved := a.signIn(a.dial("mig-dev-02"), moved, "mig-dev-02").Account.Id
	a.clock.Advance(2 * time.Minute)
	must(t, errOnly(conn.Accounts.SendSmsCode(bg, &hufuv1.SendSmsCodeRequest{Phone: pending, Purpose: hufuv1.SmsPurpose_SMS_PURPOSE_SIGN_IN})))
	pendingCode := a.code(pending, accounts.PurposeSignIn)
	must(t, errOnly(conn.Accounts.SendSmsCode(bg, &hufuv1.SendSmsCodeRequest{Phone: locked, Purpose: hufuv1.SmsPurpose_SMS_PURPOSE_SIGN_IN})))
	for i := 0; i < a.cfg.Account.CodeMaxAttempts; i++ {
		_, err := conn.Accounts.SignInWithSmsCode(bg, &hufuv1.SignInWithSmsCodeRequest{Phone: locked, Code: "000000", Device: &hufuv1.Device{Id: "mig-dev-01"}})
		if i == a.cfg.Account.CodeMaxAttempts-1 {
			wantCode(t, err, codes.ResourceExhausted, "")
		}
	}
	a.stop()

	// Back to the old layout, written through the store: every entry of pending and locked
	// keyed by the number, 300 more accounts registered under the old layout, and moved's
	// entries left as they are.
	extra := make(map[string]string) // number -> user id
	for i := range 300 {
		extra[fmt.Sprintf("1370000%04d", i)] = fmt.Sprintf("%032x", i+1)
	}
	rewritten := 0
	withStore(t, a, func(ctx context.Context, kr *hsm.Keyring, st *store.Store) {
		must(t, st.Update(ctx, func(tx *store.Tx) error {
			for _, phone := range []string{pending, locked} {
				fp := phoneFingerprint(t, kr, phone)
				if owner, err := tx.Lookup("phone", fp); err == nil {
					must(t, tx.Claim("phone", phone, owner))
					must(t, tx.Unclaim("phone", fp, owner))
					rewritten++
				}
				code := new(storepb.SmsCode)
				rewritten += moveRecord(t, tx, "v/sms/sign-in/"+fp, "v/sms/sign-in/"+phone, code, func() int64 { return code.ExpiresUnixNano })
				for _, limit := range []string{"sms-phone", "code-fail", "code-lock"} {
					c := new(storepb.RateCounter)
					rewritten += moveRecord(t, tx, "v/rate/"+limit+"/"+fp, "v/rate/"+limit+"/"+phone, c, func() int64 { return c.WindowEndUnixNano })
				}
			}
			for phone, id := range extra {
				must(t, tx.Put("u/"+id, &storepb.User{Id: id, Phone: phone, CreatedUnixNano: tx.Now().UnixNano(), CurrentPlatformId: "demo"}))
				must(t, tx.Claim("phone", phone, "u/"+id))
				rewritten++
			}
			return tx.Audit(store.Event{Actor: "test", Action: "test.old_layout", Outcome: store.OutcomeOK})
		}))
	})
	// And written by the build before: schema version 1.
	setSchemaVersion(t, filepath.Join(a.cfg.DataDir, "store"), 1)
	// pending: index, code, SMS counter; locked: SMS counter, wrong-code count, lock.
	if rewritten != 3+3+300 {
		t.Fatalf("wrote %d old-layout entries, want 306: the flows above did not leave what the test moves", rewritten)
	}
	dir := filepath.Join(a.cfg.DataDir, "store")
	if leaks := phoneLeaks(t, dir, []string{pending, locked}); len(leaks) == 0 {
		t.Fatal("the old layout holds no number in a key: the test proves nothing")
	}

	a.start()
	conn = a.dial("mig-dev-01")
	r, err := conn.Accounts.SignInWithSmsCode(bg, &hufuv1.SignInWithSmsCodeRequest{Phone: pending, Code: pendingCode, Device: &hufuv1.Device{Id: "mig-dev-01"}})
	if err != nil || r.Registered || r.Account.Id != ownerPending {
		t.Fatalf("sign-in with the code sent before the upgrade: %v, want account %s", err, ownerPending)
	}
	a.clock.Advance(2 * time.Minute)
	if r := a.signIn(conn, moved, "mig-dev-01"); r.Registered || r.Account.Id != ownerMoved {
		t.Fatalf("already-moved account: registered %v, account %s, want %s", r.Registered, r.Account.Id, ownerMoved)
	}
	for _, phone := range []string{"13700000000", "13700000299"} {
		a.clock.Advance(2 * time.Minute)
		if r := a.signIn(conn, phone, "mig-dev-01"); r.Registered || r.Account.Id != extra[phone] {
			t.Fatalf("old-layout account %s: registered %v, account %s, want %s", phone, r.Registered, r.Account.Id, extra[phone])
		}
	}
	_, err = conn.Accounts.SendSmsCode(bg, &hufuv1.SendSmsCodeRequest{Phone: locked, Purpose: hufuv1.SmsPurpose_SMS_PURPOSE_SIGN_IN})
	wantCode(t, err, codes.ResourceExhausted, "") // the lockout survived the move

	a.stop()
	numbers := []string{pending, moved, locked}
	for phone := range extra {
		numbers = append(numbers, phone)
	}
	if leaks := phoneLeaks(t, dir, numbers); len(leaks) > 0 {
		t.Fatalf("phone numbers in clear after the migration (%d), first: %s", len(leaks), leaks[0])
	}
	if v := schemaVersion(t, dir); v != store.SchemaVersion {
		t.Fatalf("schema version after the migration: %d, want %d", v, store.SchemaVersion)
	}
	if up := storedAuditRecords(t, a, "store.schema.upgrade"); len(up) != 1 || up[0].Details["from"] != "1" {
		t.Fatalf("schema upgrade records: %+v", up)
	}
	batches := storedAuditRecords(t, a, "account.phone_keys.migrate")
	total := 0
	for _, rec := range batches {
		n, err := strconv.Atoi(rec.Details["rewritten"])
		if err != nil || n < 1 || n > 256 || rec.Subject != "store" || rec.Actor != "daemon" {
			t.Fatalf("migration record %+v", rec)
		}
		total += n
	}
	// 306 entries, at most 256 a batch, index entries apart from the others: 3 batches at
	// least (256 + 45 index entries, 5 others).
	if total != rewritten || len(batches) < 3 {
		t.Fatalf("migration records say %d entries in %d batches, want %d in at least 3", total, len(batches), rewritten)
	}

	// Idempotent: a second start finds nothing to move and writes no record.
	a.start()
	a.stop()
	if again := storedAuditRecords(t, a, "account.phone_keys.migrate"); len(again) != len(batches) {
		t.Fatalf("a second start wrote %d more migration records", len(again)-len(batches))
	}
}

// moveRecord moves the record at from to to, keeping its expiry, and returns 1, or 0 if
// there is none.
func moveRecord(t *testing.T, tx *store.Tx, from, to string, m proto.Message, expiry func() int64) int {
	t.Helper()
	if err := tx.Get(from, m); errors.Is(err, store.ErrNotFound) {
		return 0
	} else if err != nil {
		t.Fatal(err)
	}
	must(t, tx.Put(to, m, store.ExpiresAt(time.Unix(0, expiry()))))
	must(t, tx.Delete(from))
	return 1
}

// phoneFingerprint is the documented derivation (daemon/accounts/phoneindex.go): a known
// answer that a change of label or key would break, orphaning every index entry.
func phoneFingerprint(t *testing.T, kr *hsm.Keyring, phone string) string {
	t.Helper()
	mac, err := kr.PINVerifier(context.Background(), []byte("hufu phone index v1"), []byte("phone"), []byte(phone))
	if err != nil {
		t.Fatal(err)
	}
	return hex.EncodeToString(mac)
}

// withStore opens a stopped appliance's keyring and store for fn.
func withStore(t *testing.T, a *adminAppliance, fn func(context.Context, *hsm.Keyring, *store.Store)) {
	t.Helper()
	ctx := context.Background()
	kr, err := hsm.Open(ctx, hsm.Config{ModulePath: a.cfg.HSM.Module, TokenLabel: a.cfg.HSM.TokenLabel, PINFile: a.cfg.HSM.PINFile})
	if err != nil {
		t.Fatal(err)
	}
	defer kr.Close()
	st, err := store.Open(ctx, store.Options{Dir: filepath.Join(a.cfg.DataDir, "store"), Clock: a.clock, Signer: kr.AuditSigner(), Anchor: kr})
	if err != nil {
		t.Fatal(err)
	}
	defer func() { must(t, st.Close(ctx)) }()
	fn(ctx, kr, st)
}

// storedAuditRecords returns the audit records of a stopped appliance with the given action.
func storedAuditRecords(t *testing.T, a *adminAppliance, action string) []*store.Record {
	t.Helper()
	var out []*store.Record
	withStore(t, a, func(ctx context.Context, _ *hsm.Keyring, st *store.Store) {
		recs, err := st.AuditRecords(ctx, 1, store.MaxAuditRange)
		if err != nil {
			t.Fatal(err)
		}
		for _, r := range recs {
			if r.Action == action {
				out = append(out, r)
			}
		}
	})
	return out
}

// setSchemaVersion writes the schema version of a stopped appliance's store, as an older
// build would have left it.
func setSchemaVersion(t *testing.T, dir string, v uint32) {
	t.Helper()
	db, err := pebble.Open(dir, &pebble.Options{})
	if err != nil {
		t.Fatal(err)
	}
	b, err := proto.Marshal(&storepb.StoreMeta{SchemaVersion: v, CreatedUnixNano: time.Now().UnixNano()})
	must(t, err)
	must(t, db.Set([]byte("m/meta"), b, pebble.Sync))
	must(t, db.Close())
}

// schemaVersion reads the schema version of a stopped appliance's store.
func schemaVersion(t *testing.T, dir string) uint32 {
	t.Helper()
	db, err := pebble.Open(dir, &pebble.Options{ReadOnly: true})
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	v, closer, err := db.Get([]byte("m/meta"))
	if err != nil {
		t.Fatal(err)
	}
	defer closer.Close()
	var m storepb.StoreMeta
	must(t, proto.Unmarshal(v, &m))
	return m.SchemaVersion
}

// phoneLeaks lists the keys of a stopped appliance's store that contain one of numbers,
// and the audit records (keys a/) whose bytes do.
func phoneLeaks(t *testing.T, dir string, numbers []string) []string {
	t.Helper()
	db, err := pebble.Open(dir, &pebble.Options{ReadOnly: true})
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	it, err := db.NewIter(nil)
	if err != nil {
		t.Fatal(err)
	}
	defer it.Close()
	var out []string
	for it.First(); it.Valid(); it.Next() {
		k := string(it.Key())
		audit := strings.HasPrefix(k, "a/")
		for _, n := range numbers {
			if strings.Contains(k, n) || (audit && strings.Contains(string(it.Value()), n)) {
				out = append(out, k+" holds "+n)
			}
		}
	}
	return out
}

// phoneIndexParts returns the values of the phone index of a stopped appliance's store,
// failing on any that is not a fingerprint.
func phoneIndexParts(t *testing.T, dir string) []string {
	t.Helper()
	db, err := pebble.Open(dir, &pebble.Options{ReadOnly: true})
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	it, err := db.NewIter(&pebble.IterOptions{LowerBound: []byte("x/phone/"), UpperBound: []byte("x/phone0")})
	if err != nil {
		t.Fatal(err)
	}
	defer it.Close()
	var out []string
	for it.First(); it.Valid(); it.Next() {
		v := strings.TrimPrefix(string(it.Key()), "x/phone/")
		if !phoneFingerprintRE.MatchString(v) {
			t.Fatalf("phone index entry %q is not a fingerprint", v)
		}
		out = append(out, v)
	}
	return out
}

// rotateKEK rotates the KEK on the admin surface, waits for the rewrap and finishes.
func rotateKEK(t *testing.T, a *adminAppliance) {
	t.Helper()
	if code, body := a.call("POST", "/kek/rotate", admin.SecurityOfficer); code != http.StatusAccepted {
		t.Fatalf("rotate: %d %s", code, body)
	}
	var st admin.RotationStatus
	for deadline := time.Now().Add(time.Minute); ; time.Sleep(10 * time.Millisecond) {
		_, body := a.call("GET", "/kek", admin.SecurityOfficer)
		if err := json.Unmarshal(body, &st); err != nil {
			t.Fatal(err)
		}
		if st.State != admin.StateRunning || time.Now().After(deadline) {
			break
		}
	}
	if st.State != admin.StateRewrapped {
		t.Fatalf("rotation %q (%s)", st.State, st.Error)
	}
	if code, body := a.call("POST", "/kek/finish", admin.SecurityOfficer); code != http.StatusOK {
		t.Fatalf("finish: %d %s", code, body)
	}
}

func errOnly[T any](_ T, err error) error { return err }
