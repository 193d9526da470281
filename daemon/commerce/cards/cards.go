// Package cards binds bank cards to accounts (银行卡管理, seed manual §1.8.5).
//
// A card is bound only to an account whose real name is verified, and only if it is that
// person's: the identity verifier's bank-card four-element check (the account's verified
// name and ID number, the card number, the phone number reserved at the bank) must
// confirm it. The number must pass the Luhn check first, so a typo never reaches the paid
// provider, and bind attempts are limited per account and day (the check would otherwise
// be an oracle for whose card a number is).
//
// # Card numbers at rest
//
// The number is stored only wrapped under the HSM's KEK (AES-256-GCM, associated data
// binding it to the account and the card id), like resident ID numbers, and rewrapped by a
// KEK rotation (RewrapAll). What is shown is the last four digits and, when the card's BIN
// is in a small built-in table, the bank's name. A card bound twice to the same account is
// found by a fingerprint — HMAC-SHA256 computed inside the HSM over the number in the
// context of the user id — so no blob is opened and fingerprints of one card differ
// between accounts. Nothing in a response, a log line or an audit record carries the full
// number.
//
// # Records
//
//	n/card/<user id>/<card id>      storepb.BankCard
//	n/holder/<user id>              storepb.BankCardHolder: the account's card ids (locked
//	                                by bind and unbind, so the per-account limit holds)
//	n/rate/<user id>                storepb.BankCardAttempts, expiring with its window
//	x/bank-card/<user>.<fp>         -> the card (unique): the same card bound twice
//	x/bank-card-request/<user>.<id> -> the card a BindBankCard request id bound (unique)
//
// Audit actions: "bankcard.bind.attempt", "bankcard.bind" (ok, or denied when the provider
// does not confirm), "bankcard.unbind", "bankcard.rewrap"; details carry the last four
// digits and the bank, never the number or the reserved phone in clear.
package cards

import (
	"context"
	"encoding/hex"
	"errors"
	"fmt"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/hufu-hsm/hufu/daemon/apierr"
	"github.com/hufu-hsm/hufu/daemon/authn"
	"github.com/hufu-hsm/hufu/daemon/identity"
	"github.com/hufu-hsm/hufu/store"
	"github.com/hufu-hsm/hufu/store/storepb"
)

// Accounts is what cards needs of the account domain.
type Accounts interface {
	// VerifiedPerson returns the user's verified name and ID number; FailedPrecondition if
	// the real name is not verified.
	VerifiedPerson(ctx context.Context, userID string) (identity.Person, error)
}

// Keyring wraps card numbers and computes their fingerprints (hsm.Keyring).
type Keyring interface {
	Wrap(ctx context.Context, plaintext, ad []byte) ([]byte, error)
	EnsureCurrent(ctx context.Context, blob, ad []byte) ([]byte, error)
	PINVerifier(ctx context.Context, salt, keyContext, pin []byte) ([]byte, error)
}

// Options are the bank-card policies.
type Options struct {
	// MaxCards bounds the cards of one account (default 10, at most 20).
	MaxCards int
	// MaxAttemptsPerDay bounds bind attempts of one account per 24 hours (default 10).
	MaxAttemptsPerDay int
}

// Deps are the collaborators of the service.
type Deps struct {
	Store    *store.Store
	Keyring  Keyring
	Accounts Accounts
	Verifier identity.Verifier
	Clock    interface{ Now() time.Time }
	// Registry receives the service's metrics; none are exported if nil.
	Registry prometheus.Registerer
}

// Service implements BankCardService.
type Service struct {
	opts Options
	deps Deps
	m    *metrics
}

// New returns the service.
func New(opts Options, deps Deps) (*Service, error) {
	if deps.Store == nil || deps.Keyring == nil || deps.Accounts == nil || deps.Verifier == nil || deps.Clock == nil {
		return nil, errors.New("cards: missing dependency")
	}
	if opts.MaxCards == 0 {
		opts.MaxCards = 10
	}
	if opts.MaxCards < 0 || opts.MaxCards > 20 {
		return nil, fmt.Errorf("cards: MaxCards %d outside 1..20", opts.MaxCards)
	}
	if opts.MaxAttemptsPerDay <= 0 {
		opts.MaxAttemptsPerDay = 10
	}
	return &Service{opts: opts, deps: deps, m: newMetrics(deps.Registry)}, nil
}

var (
	cards    = store.NewCollection(store.KindBankCard, func() *storepb.BankCard { return new(storepb.BankCard) })
	holders  = store.NewCollection(store.KindBankCard, func() *storepb.BankCardHolder { return new(storepb.BankCardHolder) })
	attempts = store.NewCollection(store.KindBankCard, func() *storepb.BankCardAttempts { return new(storepb.BankCardAttempts) })
)

const (
	indexCard        = "bank-card"
	indexCardRequest = "bank-card-request"
	attemptWindow    = 24 * time.Hour
)

// fingerprintSalt is the fixed domain of card fingerprints (the PIN verifier's salt slot:
// the user id in the context slot makes them per account).
var fingerprintSalt = []byte("hufu/bank-card/v1 fingerprint")

var cardIDRE = regexp.MustCompile(`^[0-9a-f]{32}$`)

func cardID(user, id string) string { return "card/" + user + "/" + id }
func holderID(user string) string   { return "holder/" + user }
func rateID(user string) string     { return "rate/" + user }
func cardKey(user, id string) string {
	return string(store.KindBankCard) + "/" + cardID(user, id)
}

// numberAD binds a wrapped number to its account and card.
func numberAD(user, id string) []byte { return []byte("hufu/bank-card/v1 " + user + " " + id) }

func noCard(id string) error { return apierr.New(apierr.NotFound, "no bound card %q", id) }

func unavailable(err error) error {
	return &apierr.Error{Kind: apierr.Unavailable, Message: "HSM unavailable", Cause: err}
}

// NormaliseNumber removes the spaces and dashes people type in card numbers.
func NormaliseNumber(s string) string {
	return strings.Map(func(r rune) rune {
		if r == ' ' || r == '-' || r == '\u3000' {
			return -1
		}
		return r
	}, s)
}

// Bind binds a card to the caller's account (request_id makes it idempotent).
func (s *Service) Bind(ctx context.Context, caller authn.Caller, requestID, number, reservedPhone string) (*storepb.BankCard, error) {
	if caller.UserID == "" {
		return nil, apierr.New(apierr.PermissionDenied, "bank cards belong to users")
	}
	if err := apierr.CheckRequestID("request_id", requestID); err != nil {
		return nil, err
	}
	number = NormaliseNumber(number)
	if err := identity.CheckCardNumber(number); err != nil {
		return nil, apierr.Invalid("card_number", err)
	}
	if err := identity.CheckMobile(reservedPhone); err != nil {
		return nil, apierr.Invalid("reserved_phone", err)
	}
	reqValue := store.ScopedValue(caller.UserID, requestID)
	if k, err := s.deps.Store.Lookup(ctx, indexCardRequest, reqValue); err == nil {
		out := new(storepb.BankCard)
		if err := s.deps.Store.Get(ctx, k, out); err == nil {
			return out, nil
		} else if !errors.Is(err, store.ErrNotFound) {
			return nil, err
		}
		// Bound by this request and unbound since: a new binding.
	} else if !errors.Is(err, store.ErrNotFound) {
		return nil, err
	}
	person, err := s.deps.Accounts.VerifiedPerson(ctx, caller.UserID)
	if err != nil {
		var ae *apierr.Error
		if errors.As(err, &ae) && ae.Kind == apierr.FailedPrecondition {
			s.m.events.WithLabelValues("refused_unverified").Inc()
		}
		return nil, err
	}
	fpMAC, err := s.deps.Keyring.PINVerifier(ctx, fingerprintSalt, []byte("user:"+caller.UserID), []byte(number))
	if err != nil {
		return nil, unavailable(err)
	}
	fp := hex.EncodeToString(fpMAC)
	fpValue := store.ScopedValue(caller.UserID, fp)
	if _, err := s.deps.Store.Lookup(ctx, indexCard, fpValue); err == nil {
		s.m.events.WithLabelValues("refused_duplicate").Inc()
		return nil, alreadyBound()
	} else if !errors.Is(err, store.ErrNotFound) {
		return nil, err
	}
	last4 := number[len(number)-4:]
	details := map[string]string{"last4": last4, "bank": BankName(number)}
	// The attempt is counted, and the limit of cards checked, before the provider is asked.
	err = s.deps.Store.Update(ctx, func(tx *store.Tx) error {
		h, err := holders.Get(tx, holderID(caller.UserID))
		if err != nil && !errors.Is(err, store.ErrNotFound) {
			return err
		}
		if len(h.GetCardIds()) >= s.opts.MaxCards {
			return s.tooMany()
		}
		if err := s.bump(tx, caller.UserID); err != nil {
			return err
		}
		return tx.Audit(store.Event{Actor: caller.Actor(), Action: "bankcard.bind.attempt", Subject: "u/" + caller.UserID,
			Outcome: store.OutcomeOK, Details: details})
	})
	if err != nil {
		s.countRefusal(err)
		return nil, err
	}
	err = s.deps.Verifier.VerifyBankCard(ctx, identity.BankCard{Person: person, CardNumber: number, ReservedPhone: reservedPhone})
	if errors.Is(err, identity.ErrMismatch) {
		s.m.events.WithLabelValues("refused_mismatch").Inc()
		if aerr := s.deps.Store.Update(ctx, func(tx *store.Tx) error {
			return tx.Audit(store.Event{Actor: caller.Actor(), Action: "bankcard.bind", Subject: "u/" + caller.UserID,
				Outcome: store.OutcomeDenied, Details: details})
		}); aerr != nil {
			return nil, aerr
		}
		return nil, apierr.New(apierr.FailedPrecondition,
			"the bank did not confirm that this card and reserved phone belong to the account's verified person")
	}
	if err != nil {
		s.m.events.WithLabelValues("provider_unavailable").Inc()
		return nil, &apierr.Error{Kind: apierr.Unavailable, Message: "the verification provider is unavailable; retry later", Cause: err}
	}
	card := &storepb.BankCard{
		Id: store.RandomID(16), UserId: caller.UserID, Last4: last4, BankName: BankName(number), Fingerprint: fp,
		ReservedPhoneMasked: identity.MaskPhone(reservedPhone),
	}
	if card.NumberSealed, err = s.deps.Keyring.Wrap(ctx, []byte(number), numberAD(caller.UserID, card.Id)); err != nil {
		return nil, unavailable(err)
	}
	var out *storepb.BankCard
	err = s.deps.Store.Update(ctx, func(tx *store.Tx) error {
		out = nil
		if k, err := tx.Lookup(indexCardRequest, reqValue); err == nil {
			prev := new(storepb.BankCard)
			switch err := tx.Get(k, prev); {
			case err == nil:
				out = prev
				return nil
			case !errors.Is(err, store.ErrNotFound):
				return err
			}
			// The card this request bound was unbound since: the request binds anew.
			if err := tx.Unclaim(indexCardRequest, reqValue, k); err != nil {
				return err
			}
		} else if !errors.Is(err, store.ErrNotFound) {
			return err
		}
		h, err := holders.Get(tx, holderID(caller.UserID))
		if err != nil && !errors.Is(err, store.ErrNotFound) {
			return err
		}
		if len(h.CardIds) >= s.opts.MaxCards {
			return s.tooMany()
		}
		k := cardKey(caller.UserID, card.Id)
		if err := tx.Claim(indexCard, fpValue, k); errors.Is(err, store.ErrTaken) {
			return alreadyBound()
		} else if err != nil {
			return err
		}
		if err := tx.Claim(indexCardRequest, reqValue, k); err != nil {
			return err
		}
		// Wrapped before the transaction: a KEK rotation may have begun since.
		if card.NumberSealed, err = s.deps.Keyring.EnsureCurrent(ctx, card.NumberSealed, numberAD(caller.UserID, card.Id)); err != nil {
			return unavailable(err)
		}
		card.BoundUnixNano = tx.Now().UnixNano()
		if err := cards.Put(tx, cardID(caller.UserID, card.Id), card); err != nil {
			return err
		}
		h.CardIds = append(h.CardIds, card.Id)
		if err := holders.Put(tx, holderID(caller.UserID), h); err != nil {
			return err
		}
		out = card
		d := map[string]string{"card": card.Id, "last4": last4, "bank": card.BankName, "reserved_phone": card.ReservedPhoneMasked}
		return tx.Audit(store.Event{Actor: caller.Actor(), Action: "bankcard.bind", Subject: k, Outcome: store.OutcomeOK, Details: d})
	})
	if err != nil {
		s.countRefusal(err)
		return nil, err
	}
	if out == card {
		s.m.events.WithLabelValues("bind").Inc()
	}
	return out, nil
}

func alreadyBound() error {
	return apierr.New(apierr.AlreadyExists, "this card is already bound to the account")
}

func (s *Service) tooMany() error {
	return apierr.New(apierr.FailedPrecondition, "the account has %d bound cards, the most allowed; unbind one first", s.opts.MaxCards)
}

func (s *Service) countRefusal(err error) {
	var ae *apierr.Error
	if !errors.As(err, &ae) {
		return
	}
	switch ae.Kind {
	case apierr.AlreadyExists:
		s.m.events.WithLabelValues("refused_duplicate").Inc()
	case apierr.FailedPrecondition:
		s.m.events.WithLabelValues("refused_limit").Inc()
	case apierr.ResourceExhausted:
		s.m.events.WithLabelValues("refused_rate").Inc()
	}
}

// bump counts a bind attempt against the daily limit.
func (s *Service) bump(tx *store.Tx, user string) error {
	c, err := attempts.Get(tx, rateID(user))
	if errors.Is(err, store.ErrNotFound) {
		c = &storepb.BankCardAttempts{WindowEndUnixNano: tx.Now().Add(attemptWindow).UnixNano()}
	} else if err != nil {
		return err
	}
	end := time.Unix(0, c.WindowEndUnixNano)
	if int(c.Count) >= s.opts.MaxAttemptsPerDay {
		wait := end.Sub(tx.Now())
		return apierr.Exhausted(wait, "too many bank card binding attempts today; retry in %v", wait.Round(time.Second))
	}
	c.Count++
	return attempts.Put(tx, rateID(user), c, store.ExpiresAt(end))
}

// List returns the caller's cards in the order they were bound.
func (s *Service) List(ctx context.Context, caller authn.Caller) ([]*storepb.BankCard, error) {
	if caller.UserID == "" {
		return nil, apierr.New(apierr.PermissionDenied, "bank cards belong to users")
	}
	h, err := holders.Read(ctx, s.deps.Store, holderID(caller.UserID))
	if err != nil && !errors.Is(err, store.ErrNotFound) {
		return nil, err
	}
	page, err := cards.List(ctx, s.deps.Store, "card/"+caller.UserID+"/", store.ListOptions{Limit: store.MaxListLimit}, nil)
	if err != nil {
		return nil, err
	}
	out := make([]*storepb.BankCard, len(page.Items))
	for i, it := range page.Items {
		out[i] = it.Value
	}
	// The holder record lists the cards in binding order (one clock tick may bind several).
	order := func(c *storepb.BankCard) int {
		if i := slices.Index(h.GetCardIds(), c.Id); i >= 0 {
			return i
		}
		return len(h.GetCardIds())
	}
	slices.SortStableFunc(out, func(a, b *storepb.BankCard) int {
		if d := order(a) - order(b); d != 0 {
			return d
		}
		return strings.Compare(a.Id, b.Id)
	})
	return out, nil
}

// Unbind unbinds one of the caller's cards and deletes its wrapped number.
func (s *Service) Unbind(ctx context.Context, caller authn.Caller, id string) error {
	if caller.UserID == "" {
		return apierr.New(apierr.PermissionDenied, "bank cards belong to users")
	}
	if !cardIDRE.MatchString(id) {
		return apierr.Invalidf("card_id", "not a card id (32 hex digits)")
	}
	err := s.deps.Store.Update(ctx, func(tx *store.Tx) error {
		h, err := holders.Get(tx, holderID(caller.UserID))
		if err != nil && !errors.Is(err, store.ErrNotFound) {
			return err
		}
		card, err := cards.Get(tx, cardID(caller.UserID, id))
		if errors.Is(err, store.ErrNotFound) {
			return noCard(id)
		}
		if err != nil {
			return err
		}
		k := cardKey(caller.UserID, id)
		if err := tx.Unclaim(indexCard, store.ScopedValue(caller.UserID, card.Fingerprint), k); err != nil {
			return err
		}
		if err := cards.Delete(tx, cardID(caller.UserID, id)); err != nil {
			return err
		}
		h.CardIds = slices.DeleteFunc(h.CardIds, func(c string) bool { return c == id })
		if len(h.CardIds) == 0 {
			err = holders.Delete(tx, holderID(caller.UserID))
		} else {
			err = holders.Put(tx, holderID(caller.UserID), h)
		}
		if err != nil {
			return err
		}
		return tx.Audit(store.Event{Actor: caller.Actor(), Action: "bankcard.unbind", Subject: k, Outcome: store.OutcomeOK,
			Details: map[string]string{"card": id, "last4": card.Last4, "bank": card.BankName}})
	})
	if err != nil {
		return err
	}
	s.m.events.WithLabelValues("unbind").Inc()
	return nil
}

// HasCards reports whether a user has bound cards: a precondition of deleting the account
// (seed §1.9.4).
func (s *Service) HasCards(ctx context.Context, userID string) (bool, error) {
	h, err := holders.Read(ctx, s.deps.Store, holderID(userID))
	if errors.Is(err, store.ErrNotFound) {
		return false, nil
	}
	if err != nil {
		return false, err
	}
	return len(h.CardIds) > 0, nil
}

// staleCards lists the ids (user/card) of cards whose wrapped number stale reports.
func (s *Service) staleCards(ctx context.Context, stale func(blob []byte) bool) ([]string, error) {
	var ids []string
	opts := store.ListOptions{Limit: store.MaxListLimit}
	for {
		page, err := cards.List(ctx, s.deps.Store, "card/", opts, func(_ string, c *storepb.BankCard) bool {
			return len(c.NumberSealed) > 0 && stale(c.NumberSealed)
		})
		if err != nil {
			return nil, fmt.Errorf("cards: list: %w", err)
		}
		for _, it := range page.Items {
			ids = append(ids, strings.TrimPrefix(cards.ID(it.Key), "card/"))
		}
		if page.Next == "" {
			return ids, nil
		}
		opts.Cursor = page.Next
	}
}

// CountStaleBlobs returns how many wrapped card numbers stale reports (a KEK rotation).
func (s *Service) CountStaleBlobs(ctx context.Context, stale func(blob []byte) bool) (int, error) {
	ids, err := s.staleCards(ctx, stale)
	return len(ids), err
}

// RewrapAll rewraps every card number stale reports with rewrap, 32 cards per locked
// transaction, each batch audited as "bankcard.rewrap" by actor.
func (s *Service) RewrapAll(ctx context.Context, actor string, stale func(blob []byte) bool, rewrap func(ctx context.Context, blob, ad []byte) ([]byte, error), progress func(done, total int)) (int, error) {
	ids, err := s.staleCards(ctx, stale)
	if err != nil {
		return 0, err
	}
	return s.deps.Store.UpdateInBatches(ctx, ids, 32, func(tx *store.Tx, batch []string) (int, error) {
		n := 0
		for _, uc := range batch {
			user, id, _ := strings.Cut(uc, "/")
			c, err := cards.Get(tx, cardID(user, id))
			if errors.Is(err, store.ErrNotFound) {
				continue
			}
			if err != nil {
				return 0, err
			}
			if !stale(c.NumberSealed) {
				continue
			}
			if c.NumberSealed, err = rewrap(ctx, c.NumberSealed, numberAD(user, id)); err != nil {
				return 0, fmt.Errorf("cards: rewrap %s: %w", id, err)
			}
			if err := cards.Put(tx, cardID(user, id), c); err != nil {
				return 0, err
			}
			n++
		}
		if n == 0 {
			return 0, nil
		}
		return n, tx.Audit(store.Event{Actor: actor, Action: "bankcard.rewrap", Subject: "n/card/", Outcome: store.OutcomeOK,
			Details: map[string]string{"cards": strconv.Itoa(n)}})
	}, progress)
}
