package accounts

import (
	"context"
	"encoding/hex"
	"errors"
	"fmt"
	"strconv"
	"strings"

	"github.com/hufu-hsm/hufu/daemon/apierr"
	"github.com/hufu-hsm/hufu/daemon/identity"
	"github.com/hufu-hsm/hufu/store"
	"github.com/hufu-hsm/hufu/store/storepb"
	"google.golang.org/protobuf/proto"
)

// # Phone numbers in store keys
//
// No store key holds a phone number: anyone with a copy of the Pebble files (or a log line
// naming a key) would read them. Every record found by number — the phone index entry, SMS
// codes, the per-number SMS counter, wrong-code counters and lockouts — is keyed by the
// number's fingerprint instead: HMAC-SHA256 computed inside the HSM with the PIN-verifier
// key (the mechanism bank-card fingerprints use, under its own domain label), in lowercase
// hex. Without the HSM a fingerprint cannot be recomputed from a guessed number, so the
// small space of mobile numbers cannot be searched offline.
//
// The PIN-verifier key is a generic-secret key of its own, not a KEK: a KEK rotation
// (RotateKEK, rewrap) leaves it alone, so fingerprints stay stable across rotations. Losing
// or replacing that key would orphan every index entry (and every PIN verifier), which is
// why the HSM keeps it non-extractable and backups of the token must include it.
//
//	x/phone/<fp>                        -> u/<user id> (unique)
//	v/sms/<purpose>/<fp>                SmsCode, expiring with the code
//	v/rate/sms-phone/<fp>               RateCounter: codes sent to the number this hour
//	v/rate/code-fail/<fp>               RateCounter: wrong codes in the failure window
//	v/rate/code-lock/<fp>               RateCounter: the number is locked until it expires
//
// Values still hold the number where the record needs it (storepb.User.Phone), and the
// SMS code verifier's HMAC input still names the number (it is not a key).

// phoneIndexSalt is the domain of phone fingerprints, in the PIN verifier's salt slot; the
// context slot names the use, so no PIN verifier or card fingerprint can equal one.
var phoneIndexSalt = []byte("hufu phone index v1")

var phoneIndexContext = []byte("phone")

// phoneRef is a phone number and the fingerprint that stands for it in store keys.
type phoneRef struct {
	number string
	fp     string // lowercase hex HMAC-SHA256
}

// String keeps the number out of logs and errors if a phoneRef is ever printed.
func (p phoneRef) String() string { return "phone:" + identity.MaskPhone(p.number) }

// phoneKey fingerprints a number in the HSM. The number must have passed
// identity.CheckMobile.
func (s *Service) phoneKey(ctx context.Context, phone string) (phoneRef, error) {
	mac, err := s.Keyring.PINVerifier(ctx, phoneIndexSalt, phoneIndexContext, []byte(phone))
	if err != nil {
		return phoneRef{}, &apierr.Error{Kind: apierr.Unavailable, Message: "HSM unavailable", Cause: err}
	}
	return phoneRef{number: phone, fp: hex.EncodeToString(mac)}, nil
}

// phoneMigrationBatch bounds one migration transaction (and the HSM calls made before it).
const phoneMigrationBatch = 256

// oldPhoneKeyed lists the record families that held the number in clear before the
// fingerprint layout (see above); in each, the number was the last part of the key.
var oldPhoneKeyed = []struct {
	prefix string
	// list returns one page of the family's old keys (live records only: the sweep before
	// removed expired ones).
	list func(ctx context.Context, st *store.Store, prefix, cursor string) ([]string, string, error)
	// rewrite moves one old record to the fingerprint key inside tx; key is the old key.
	rewrite func(s *Service, tx *store.Tx, key string, ref phoneRef) (bool, error)
}{
	// Mobile numbers start with 1: the scan at each start reads the old entries and the
	// sixteenth of fingerprints that start with 1, not the whole index.
	{"x/" + indexPhone + "/1", listOldKeys(func() *storepb.IndexEntry { return new(storepb.IndexEntry) }), func(s *Service, tx *store.Tx, key string, ref phoneRef) (bool, error) {
		owner, err := tx.Lookup(indexPhone, ref.number)
		if errors.Is(err, store.ErrNotFound) {
			return false, nil // moved by a concurrent or earlier run
		}
		if err != nil {
			return false, err
		}
		if err := tx.Claim(indexPhone, ref.fp, owner); err != nil {
			if errors.Is(err, store.ErrTaken) {
				// Two accounts for one number: never pick one silently.
				return false, fmt.Errorf("accounts: phone index migration: a number's old and new index entries name different accounts (%s); resolve by hand", owner)
			}
			return false, err
		}
		return true, tx.Unclaim(indexPhone, ref.number, owner)
	}},
	{"v/sms/", listOldKeys(func() *storepb.SmsCode { return new(storepb.SmsCode) }), func(s *Service, tx *store.Tx, key string, ref phoneRef) (bool, error) {
		purpose := strings.TrimSuffix(strings.TrimPrefix(key, "v/sms/"), "/"+ref.number)
		old := codeID(ref.number, Purpose(purpose))
		rec, err := smsCodes.Get(tx, old)
		if errors.Is(err, store.ErrNotFound) {
			return false, nil
		}
		if err != nil {
			return false, err
		}
		if err := smsCodes.Put(tx, codeID(ref.fp, Purpose(purpose)), rec, store.ExpiresAt(fromNanos(rec.ExpiresUnixNano))); err != nil {
			return false, err
		}
		return true, smsCodes.Delete(tx, old)
	}},
	{"v/rate/sms-phone/", listOldKeys(newCounter), moveCounter("sms-phone")},
	{"v/rate/code-fail/", listOldKeys(newCounter), moveCounter("code-fail")},
	{"v/rate/code-lock/", listOldKeys(newCounter), moveCounter("code-lock")},
}

func newCounter() *storepb.RateCounter { return new(storepb.RateCounter) }

// listOldKeys lists, of the records of type M under a prefix, those whose key ends in a
// phone number in clear.
func listOldKeys[M proto.Message](newM func() M) func(context.Context, *store.Store, string, string) ([]string, string, error) {
	return func(ctx context.Context, st *store.Store, prefix, cursor string) ([]string, string, error) {
		page, err := store.List(ctx, st, store.ListOptions{Prefix: prefix, Cursor: cursor, Limit: phoneMigrationBatch}, newM,
			func(key string, _ M) bool { return oldPhoneKey(key) })
		if err != nil {
			return nil, "", err
		}
		keys := make([]string, len(page.Items))
		for i, it := range page.Items {
			keys[i] = it.Key
		}
		return keys, page.Next, nil
	}
}

func moveCounter(limit string) func(*Service, *store.Tx, string, phoneRef) (bool, error) {
	return func(_ *Service, tx *store.Tx, _ string, ref phoneRef) (bool, error) {
		old := "rate/" + limit + "/" + ref.number
		c, err := counters.Get(tx, old)
		if errors.Is(err, store.ErrNotFound) {
			return false, nil
		}
		if err != nil {
			return false, err
		}
		// Every per-number counter expires at the end of its window (or lockout).
		if err := counters.Put(tx, "rate/"+limit+"/"+ref.fp, c, store.ExpiresAt(fromNanos(c.WindowEndUnixNano))); err != nil {
			return false, err
		}
		return true, counters.Delete(tx, old)
	}
}

// MigratePhoneKeys rewrites records that a store written before the fingerprint layout
// keys by a phone number in clear to their fingerprint keys (see the top of this file), and
// returns how many it rewrote. The daemon runs it at start, before serving, after raising
// the store's schema version to 2 (store.UpgradeSchema), so that an older build refuses a
// store whose index it would misread (it would register a second account for a number).
//
// It first sweeps expired records (their keys may name numbers too). Then it works in
// batches of at most phoneMigrationBatch records, each one transaction with an audit record
// ("account.phone_keys.migrate", outcome ok) naming how many entries it rewrote — never a
// number; the old and the new entry change in the same batch, so a crash between batches
// leaves a store whose remaining old entries the next start moves. A store with nothing
// left to move is not written to: running it again is a no-op.
func (s *Service) MigratePhoneKeys(ctx context.Context) (int, error) {
	if _, err := s.Store.Sweep(ctx); err != nil {
		return 0, fmt.Errorf("accounts: phone key migration: sweeping expired records: %w", err)
	}
	total := 0
	for _, family := range oldPhoneKeyed {
		cursor := ""
		for {
			keys, next, err := family.list(ctx, s.Store, family.prefix, cursor)
			if err != nil {
				return total, fmt.Errorf("accounts: phone key migration: listing %s: %w", family.prefix, err)
			}
			if len(keys) > 0 {
				n, err := s.migratePhoneBatch(ctx, family.rewrite, keys)
				total += n
				if err != nil {
					return total, err
				}
			}
			if next == "" {
				break
			}
			cursor = next
		}
	}
	return total, nil
}

func (s *Service) migratePhoneBatch(ctx context.Context, rewrite func(*Service, *store.Tx, string, phoneRef) (bool, error), keys []string) (int, error) {
	refs := make([]phoneRef, len(keys))
	for i, key := range keys {
		ref, err := s.phoneKey(ctx, lastPart(key))
		if err != nil {
			return 0, fmt.Errorf("accounts: phone key migration: %w", err)
		}
		refs[i] = ref
	}
	moved := 0
	err := s.Store.Update(ctx, func(tx *store.Tx) error {
		moved = 0
		for i, key := range keys {
			ok, err := rewrite(s, tx, key, refs[i])
			if err != nil {
				return err
			}
			if ok {
				moved++
			}
		}
		if moved == 0 {
			return nil
		}
		return tx.Audit(store.Event{Actor: "daemon", Action: "account.phone_keys.migrate", Subject: "store", Outcome: store.OutcomeOK,
			Details: map[string]string{"rewritten": strconv.Itoa(moved), "layout": string(phoneIndexSalt)}})
	})
	if err != nil {
		return 0, fmt.Errorf("accounts: phone key migration: %w", err)
	}
	return moved, nil
}

// oldPhoneKey reports whether a key ends in a phone number in clear (a fingerprint is 64
// hex digits, never a mobile number).
func oldPhoneKey(key string) bool { return identity.CheckMobile(lastPart(key)) == nil }

func lastPart(key string) string { return key[strings.LastIndexByte(key, '/')+1:] }
