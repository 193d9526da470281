// Package ledger is hufu's double-entry ledger of money, in integer fen (分, 0.01 CNY). Every
// movement of money is one entry that debits one account and credits another by the same
// positive amount, written inside the caller's store.Tx: the entry, the two accounts'
// running balances, the entry's own audit record and the caller's state change (an order
// paid, a refund) commit in one Pebble batch, or none of them does.
//
// # Accounts
//
// An account is a class and, for most classes, a name after a colon:
//
//	user:<user id>          a person's wallet (per-use mutual-recognition balance, top-ups)
//	receivable:<category>   money owed to the trading centre and not yet received
//	clearing:<provider>     money held at a payment provider: "dev", "gateway", "offline"
//	                        (the receiving bank account or the counter's cash)
//	revenue:<category>      what was sold: "certificates", "verification", "recognition", ...
//	payable:<what>          money owed back and not yet paid out: "offline-refunds" (refunds
//	                        of offline payments, paid out by hand at the payment desk)
//	refunds                 money given back outside a reversal (goodwill, negotiated)
//
// A balance is debits minus credits: a clearing account is positive while it holds money, a
// revenue account negative (credit-normal). Names are at most 64 characters of
// [A-Za-z0-9._-] after the class; they never hold personal data.
//
// # Entries
//
// Each entry has an idempotency key, unique over the ledger: posting the same key again
// returns the first entry and writes nothing, posting it with other content (accounts,
// amount, order, session, kind) is ErrConflict. A refund is a reversing entry (Reverse):
// the same amount with debit and credit swapped, naming the entry it reverses; an entry is
// reversed at most once. A reversal whose money cannot leave at once (an offline payment,
// given back by hand) credits a payable account instead (ReverseVia), and the payout is a
// later entry from the payable to the clearing account.
//
// # Records
//
//	l/entry/<entry id>                   storepb.LedgerEntry, ids newest first
//	l/balance/<account>                  storepb.LedgerBalance: debits, credits, entry count
//	l/reversal/<entry id>                storepb.LedgerReversal: the entry was reversed
//	l/kind/<kind>                        storepb.LedgerBalance: entries of a kind and their sum
//	                                     (debits_fen), read by the metrics (Collector)
//	x/ledger-idem/<sha256 of the key>    -> the entry (unique)
//	x/ledger-order/<order or session id>/<entry key>  the entries of an order or session
//
// Check proves the books: every entry is well formed, the sum of debits equals the sum of
// credits, and every account's stored totals equal the sums of its entries.
package ledger

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"regexp"
	"slices"
	"strings"
	"unicode/utf8"

	"github.com/hufu-hsm/hufu/daemon/apierr"
	"github.com/hufu-hsm/hufu/store"
	"github.com/hufu-hsm/hufu/store/storepb"
)

// MaxAmountFen bounds one entry: 100 million yuan. With it no sum of entries an appliance
// can hold overflows int64.
const MaxAmountFen = 10_000_000_000

// Limits of an entry's text fields.
const (
	MaxMemoRunes = 200
	MaxKeyBytes  = 128
)

// Sentinel errors. Both are also *apierr.Error values when returned by Post, so that an API
// answers them precisely.
var (
	// ErrConflict: the idempotency key was used for a different movement.
	ErrConflict = errors.New("ledger: idempotency key used for a different entry")
	// ErrReversed: the entry has been reversed already.
	ErrReversed = errors.New("ledger: entry already reversed")
)

// Entry is a movement to post.
type Entry struct {
	Debit, Credit string
	AmountFen     int64
	// OrderID or SessionID: what the movement belongs to (at most one).
	OrderID, SessionID string
	IdempotencyKey     string
	// Kind is what the movement is ("payment", "refund", "top-up", ...): 1..32 of [a-z-].
	Kind string
	// Memo is free text without personal data.
	Memo  string
	Actor string
}

var (
	entries   = store.NewCollection(store.KindLedger, func() *storepb.LedgerEntry { return new(storepb.LedgerEntry) })
	balances  = store.NewCollection(store.KindLedger, func() *storepb.LedgerBalance { return new(storepb.LedgerBalance) })
	reversals = store.NewCollection(store.KindLedger, func() *storepb.LedgerReversal { return new(storepb.LedgerReversal) })
)

const (
	indexIdem  = "ledger-idem"
	indexOrder = "ledger-order"
)

var (
	accountRE = regexp.MustCompile(`^(?:(?:user|receivable|clearing|revenue|payable):[A-Za-z0-9._-]{1,64}|refunds)$`)
	kindRE    = regexp.MustCompile(`^[a-z][a-z-]{0,31}$`)
	refRE     = regexp.MustCompile(`^[A-Za-z0-9._:-]{1,64}$`)
)

// ValidAccount reports whether name is an account name (package doc).
func ValidAccount(name string) bool { return accountRE.MatchString(name) }

func invalid(field, format string, args ...any) error { return apierr.Invalidf(field, format, args...) }

// validate checks an entry; its errors name the entry's field.
func (e *Entry) validate() error {
	switch {
	case !ValidAccount(e.Debit):
		return invalid("debit", "%q is not a ledger account", e.Debit)
	case !ValidAccount(e.Credit):
		return invalid("credit", "%q is not a ledger account", e.Credit)
	case e.Debit == e.Credit:
		return invalid("credit", "debit and credit are the same account")
	case e.AmountFen <= 0 || e.AmountFen > MaxAmountFen:
		return invalid("amount_fen", "%d: want 1..%d fen", e.AmountFen, int64(MaxAmountFen))
	case e.OrderID != "" && e.SessionID != "":
		return invalid("session_id", "an entry belongs to an order or a session, not both")
	case e.OrderID != "" && !refRE.MatchString(e.OrderID):
		return invalid("order_id", "not an order id")
	case e.SessionID != "" && !refRE.MatchString(e.SessionID):
		return invalid("session_id", "not a session id")
	case e.IdempotencyKey == "" || len(e.IdempotencyKey) > MaxKeyBytes || !utf8.ValidString(e.IdempotencyKey):
		return invalid("idempotency_key", "1 to %d bytes of UTF-8", MaxKeyBytes)
	case !kindRE.MatchString(e.Kind):
		return invalid("kind", "%q: 1 to 32 of a-z and '-'", e.Kind)
	case utf8.RuneCountInString(e.Memo) > MaxMemoRunes || !utf8.ValidString(e.Memo):
		return invalid("memo", "at most %d characters", MaxMemoRunes)
	}
	return nil
}

func idemValue(key string) string {
	h := sha256.Sum256([]byte(key))
	return hex.EncodeToString(h[:])
}

func sameMovement(a *storepb.LedgerEntry, e *Entry) bool {
	return a.Debit == e.Debit && a.Credit == e.Credit && a.AmountFen == e.AmountFen && a.OrderId == e.OrderID &&
		a.SessionId == e.SessionID && a.Kind == e.Kind
}

// Post writes e inside tx, with the two balances and an audit record "ledger.post". It
// returns the entry and whether it is new: the same idempotency key again returns the first
// entry (false) and writes nothing; with different content it is ErrConflict (an
// *apierr.Error of kind AlreadyExists). Errors of a bad entry are InvalidArgument naming the
// field.
func Post(tx *store.Tx, e Entry) (*storepb.LedgerEntry, bool, error) {
	return post(tx, e, "")
}

func post(tx *store.Tx, e Entry, reverses string) (*storepb.LedgerEntry, bool, error) {
	if err := e.validate(); err != nil {
		return nil, false, err
	}
	idem := idemValue(e.IdempotencyKey)
	if owner, err := tx.Lookup(indexIdem, idem); err == nil {
		old := new(storepb.LedgerEntry)
		if err := tx.Get(owner, old); err != nil {
			return nil, false, err
		}
		if !sameMovement(old, &e) || old.Reverses != reverses {
			return nil, false, &apierr.Error{Kind: apierr.AlreadyExists, Field: "idempotency_key",
				Message: "this idempotency key was used for a different ledger entry", Cause: ErrConflict}
		}
		return old, false, nil
	} else if !errors.Is(err, store.ErrNotFound) {
		return nil, false, err
	}
	id := store.NewestFirstID(tx.Now())
	rec := &storepb.LedgerEntry{Id: id, TimeUnixNano: tx.Now().UnixNano(), Debit: e.Debit, Credit: e.Credit, AmountFen: e.AmountFen,
		OrderId: e.OrderID, SessionId: e.SessionID, IdempotencyKey: e.IdempotencyKey, Kind: e.Kind, Memo: e.Memo,
		Reverses: reverses, Actor: e.Actor}
	key, err := entries.Key("entry/" + id)
	if err != nil {
		return nil, false, err
	}
	if err := tx.Claim(indexIdem, idem, key); err != nil {
		return nil, false, err
	}
	if err := entries.Put(tx, "entry/"+id, rec); err != nil {
		return nil, false, err
	}
	if ref := e.OrderID + e.SessionID; ref != "" {
		if err := tx.AddIndex(indexOrder, ref, key); err != nil {
			return nil, false, err
		}
	}
	if err := addTo(tx, "balance/"+e.Debit, e.AmountFen, 0); err != nil {
		return nil, false, err
	}
	if err := addTo(tx, "balance/"+e.Credit, 0, e.AmountFen); err != nil {
		return nil, false, err
	}
	if err := addTo(tx, "kind/"+e.Kind, e.AmountFen, 0); err != nil {
		return nil, false, err
	}
	actor := e.Actor
	if actor == "" {
		actor = "hufu"
	}
	d := map[string]string{"entry": id, "kind": e.Kind, "debit": e.Debit, "credit": e.Credit, "amount_fen": fmt.Sprint(e.AmountFen)}
	if e.OrderID != "" {
		d["order"] = e.OrderID
	}
	if e.SessionID != "" {
		d["session"] = e.SessionID
	}
	if reverses != "" {
		d["reverses"] = reverses
	}
	return rec, true, tx.Audit(store.Event{Actor: actor, Action: "ledger.post", Subject: key, Outcome: store.OutcomeOK, Details: d})
}

// addTo adds to the totals at id: an account's ("balance/<account>") or a kind's count
// ("kind/<kind>").
func addTo(tx *store.Tx, id string, debit, credit int64) error {
	b, err := balances.Get(tx, id)
	if errors.Is(err, store.ErrNotFound) {
		_, name, _ := strings.Cut(id, "/")
		b = &storepb.LedgerBalance{Account: name}
	} else if err != nil {
		return err
	}
	b.DebitsFen += debit
	b.CreditsFen += credit
	b.Entries++
	return balances.Put(tx, id, b)
}

// Reverse posts, inside tx, the reversing entry of entry id: the same amount with debit and
// credit swapped, kind "refund" unless kind says otherwise, the same order or session. The
// same idempotency key again returns the first reversal; reversing an entry twice (with
// another key) is ErrReversed (FailedPrecondition).
func Reverse(tx *store.Tx, id, kind, idempotencyKey, memo, actor string) (*storepb.LedgerEntry, bool, error) {
	return reverse(tx, id, "", kind, idempotencyKey, memo, actor)
}

// ReverseVia is Reverse whose reversing entry credits via (a payable account) instead of
// the entry's debit: the money is owed back from then on, and leaves the original debit
// account only with the payout, a later entry debiting via. It counts as the entry's one
// reversal.
func ReverseVia(tx *store.Tx, id, via, kind, idempotencyKey, memo, actor string) (*storepb.LedgerEntry, bool, error) {
	if !strings.HasPrefix(via, "payable:") || !ValidAccount(via) {
		return nil, false, invalid("credit", "%q is not a payable account", via)
	}
	return reverse(tx, id, via, kind, idempotencyKey, memo, actor)
}

func reverse(tx *store.Tx, id, via, kind, idempotencyKey, memo, actor string) (*storepb.LedgerEntry, bool, error) {
	orig, err := entries.Get(tx, "entry/"+id)
	if errors.Is(err, store.ErrNotFound) {
		return nil, false, apierr.New(apierr.NotFound, "no ledger entry %q", id)
	}
	if err != nil {
		return nil, false, err
	}
	if orig.Reverses != "" {
		return nil, false, apierr.New(apierr.FailedPrecondition, "entry %s is itself a reversal", id)
	}
	if kind == "" {
		kind = "refund"
	}
	credit := orig.Debit
	if via != "" {
		credit = via
	}
	e := Entry{Debit: orig.Credit, Credit: credit, AmountFen: orig.AmountFen, OrderID: orig.OrderId, SessionID: orig.SessionId,
		IdempotencyKey: idempotencyKey, Kind: kind, Memo: memo, Actor: actor}
	if r, err := reversals.Get(tx, "reversal/"+id); err == nil {
		prior, err := entries.Get(tx, "entry/"+r.ReversalId)
		if err != nil {
			return nil, false, err
		}
		if prior.IdempotencyKey == idempotencyKey && sameMovement(prior, &e) {
			return prior, false, nil
		}
		return nil, false, &apierr.Error{Kind: apierr.FailedPrecondition, Message: fmt.Sprintf("entry %s was reversed by %s already", id, r.ReversalId), Cause: ErrReversed}
	} else if !errors.Is(err, store.ErrNotFound) {
		return nil, false, err
	}
	rec, created, err := post(tx, e, id)
	if err != nil || !created {
		return rec, created, err
	}
	return rec, true, reversals.Put(tx, "reversal/"+id, &storepb.LedgerReversal{EntryId: id, ReversalId: rec.Id})
}

// Entries lists the entries of an order or a session, newest first.
func Entries(ctx context.Context, s *store.Store, ref string) ([]*storepb.LedgerEntry, error) {
	if !refRE.MatchString(ref) {
		return nil, apierr.Invalidf("order_id", "not an order or session id")
	}
	var out []*storepb.LedgerEntry
	cursor := ""
	for {
		keys, next, err := s.ListIndex(ctx, indexOrder, ref, store.ListOptions{Cursor: cursor, Limit: store.MaxListLimit})
		if err != nil {
			return nil, err
		}
		for _, k := range keys {
			e, err := entries.Read(ctx, s, entries.ID(k))
			if err != nil {
				return nil, err
			}
			out = append(out, e)
		}
		if next == "" {
			break
		}
		cursor = next
	}
	sortNewestFirst(out)
	return out, nil
}

// sortNewestFirst sorts by id: ids sort newest first.
func sortNewestFirst(es []*storepb.LedgerEntry) {
	slices.SortFunc(es, func(a, b *storepb.LedgerEntry) int { return strings.Compare(a.Id, b.Id) })
}

// Balance returns an account's totals (zero if it has no entries).
func Balance(ctx context.Context, s *store.Store, account string) (*storepb.LedgerBalance, error) {
	if !ValidAccount(account) {
		return nil, apierr.Invalidf("account", "%q is not a ledger account", account)
	}
	b, err := balances.Read(ctx, s, "balance/"+account)
	if errors.Is(err, store.ErrNotFound) {
		return &storepb.LedgerBalance{Account: account}, nil
	}
	return b, err
}

// Report is what Check found.
type Report struct {
	Entries    uint64 `json:"entries"`
	Accounts   int    `json:"accounts"`
	DebitsFen  int64  `json:"debits_fen"`
	CreditsFen int64  `json:"credits_fen"`
	// Problems is empty when the books balance.
	Problems []string `json:"problems,omitempty"`
}

// OK reports whether the books balance.
func (r Report) OK() bool { return len(r.Problems) == 0 }

// Check reads every entry and every balance and proves the books: each entry well formed
// (accounts, positive bounded amount), total debits equal total credits, each account's
// stored totals equal the sums of its entries, and no balance without entries. It reads
// the committed state without stopping writers: a movement committed between its two scans
// can show as a difference, so a mismatch is checked again (up to three times) before it is
// reported.
func Check(ctx context.Context, s *store.Store) (Report, error) {
	var r Report
	var err error
	for range 3 {
		if r, err = check(ctx, s); err != nil || r.OK() {
			return r, err
		}
	}
	return r, nil
}

func check(ctx context.Context, s *store.Store) (Report, error) {
	var r Report
	type sums struct{ d, c int64 }
	want := map[string]*sums{}
	at := func(a string) *sums {
		if want[a] == nil {
			want[a] = &sums{}
		}
		return want[a]
	}
	cursor := ""
	for {
		page, err := entries.List(ctx, s, "entry/", store.ListOptions{Cursor: cursor, Limit: store.MaxListLimit}, nil)
		if err != nil {
			return r, err
		}
		for _, it := range page.Items {
			e := it.Value
			r.Entries++
			if !ValidAccount(e.Debit) || !ValidAccount(e.Credit) || e.Debit == e.Credit || e.AmountFen <= 0 || e.AmountFen > MaxAmountFen {
				r.Problems = append(r.Problems, fmt.Sprintf("entry %s is malformed", e.Id))
				continue
			}
			r.DebitsFen += e.AmountFen
			r.CreditsFen += e.AmountFen
			at(e.Debit).d += e.AmountFen
			at(e.Credit).c += e.AmountFen
		}
		if page.Next == "" {
			break
		}
		cursor = page.Next
	}
	seen := map[string]bool{}
	var stored sums
	cursor = ""
	for {
		page, err := balances.List(ctx, s, "balance/", store.ListOptions{Cursor: cursor, Limit: store.MaxListLimit}, nil)
		if err != nil {
			return r, err
		}
		for _, it := range page.Items {
			b := it.Value
			name := strings.TrimPrefix(balances.ID(it.Key), "balance/")
			seen[name] = true
			r.Accounts++
			stored.d += b.DebitsFen
			stored.c += b.CreditsFen
			w := want[name]
			if w == nil {
				w = &sums{}
			}
			if b.DebitsFen != w.d || b.CreditsFen != w.c {
				r.Problems = append(r.Problems, fmt.Sprintf("account %s: stored debits %d credits %d, entries sum to %d and %d", name, b.DebitsFen, b.CreditsFen, w.d, w.c))
			}
		}
		if page.Next == "" {
			break
		}
		cursor = page.Next
	}
	for name := range want {
		if !seen[name] {
			r.Problems = append(r.Problems, fmt.Sprintf("account %s has entries but no stored balance", name))
		}
	}
	var kinds uint64
	cursor = ""
	for {
		page, err := balances.List(ctx, s, "kind/", store.ListOptions{Cursor: cursor, Limit: store.MaxListLimit}, nil)
		if err != nil {
			return r, err
		}
		for _, it := range page.Items {
			kinds += it.Value.Entries
		}
		if page.Next == "" {
			break
		}
		cursor = page.Next
	}
	if kinds != r.Entries {
		r.Problems = append(r.Problems, fmt.Sprintf("entries counted by kind: %d, entries: %d", kinds, r.Entries))
	}
	if stored.d != stored.c {
		r.Problems = append(r.Problems, fmt.Sprintf("stored debits %d != stored credits %d", stored.d, stored.c))
	}
	if r.DebitsFen != r.CreditsFen {
		r.Problems = append(r.Problems, fmt.Sprintf("entries: debits %d != credits %d", r.DebitsFen, r.CreditsFen))
	}
	return r, nil
}

// ByKey returns, inside tx, the entry posted with an idempotency key (ErrNotFound if none).
func ByKey(tx *store.Tx, idempotencyKey string) (*storepb.LedgerEntry, error) {
	owner, err := tx.Lookup(indexIdem, idemValue(idempotencyKey))
	if err != nil {
		return nil, err
	}
	e := new(storepb.LedgerEntry)
	return e, tx.Get(owner, e)
}

// KindCounts returns the number of entries of each kind.
func KindCounts(ctx context.Context, s *store.Store) (map[string]uint64, error) {
	page, err := balances.List(ctx, s, "kind/", store.ListOptions{Limit: store.MaxListLimit}, nil)
	if err != nil {
		return nil, err
	}
	out := make(map[string]uint64, len(page.Items))
	for _, it := range page.Items {
		out[strings.TrimPrefix(balances.ID(it.Key), "kind/")] = it.Value.Entries
	}
	return out, nil
}
