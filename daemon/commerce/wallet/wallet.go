// Package wallet is the mutual-recognition account (互认账户, seed manual §1.8.2): the
// catalogue of mutual-recognition platforms and plans (configuration), the per-use wallet
// (按次账户: balance, top-ups, consumption records), the day passes (按日账户, 畅行包:
// purchases and remaining validity per platform), and the gate a scan session passes when
// the person answers it with a certificate that is not valid for the session's platform
// but belongs to the national mutual-recognition system (全国CA互认, §1.8.2.3, §2.3.1).
//
// # Money
//
// The per-use balance is the ledger account user:<user id> (daemon/commerce/ledger: the
// class the ledger reserves for a person's wallet); it is credit-normal, so the balance
// is its credits minus its debits. The movements:
//
//	top-up paid            debit clearing:<provider>  credit user:<user id>        "top-up"      key wallet-pay:<order id>
//	day pass paid          debit clearing:<provider>  credit revenue:recognition   "day-pass"    key wallet-pay:<order id>
//	one use of a session   debit user:<user id>       credit revenue:recognition   "recognition" key recognition:<session id>
//	a second charge        the charge and its reversal ("refund")                                key charge:<ref>, return:<ref>
//
// Top-ups and day passes are orders of this package, charged through the payment service's
// providers (daemon/commerce/payments: the same methods as certificate orders). The order's
// completion, its ledger entry, the pass's extension and the audit record commit in one
// batch; a payment that lost the race with another payment of the same order is given back
// through its provider and booked as the charge and its reversal.
//
// # The gate
//
// Admit runs inside the scan session's transaction that records the chosen certificate:
// with an active day pass for the session's platform the session is admitted free;
// otherwise the platform's per-use price is debited from the wallet with the idempotency
// key "recognition:<session id>", so a session is debited at most once however often the
// choice is retried; with neither, the choice is refused with FailedPrecondition and the
// ErrorInfo reason hufuv1.ReasonRecognitionServiceRequired, naming the platform and what
// to open.
//
// # Records
//
//	w/order/<user id>/<order id>         storepb.WalletOrder, ids newest first
//	w/use/<user id>/<id>                 storepb.WalletUse (消费记录), ids newest first
//	w/pass/<user id>/<platform>          storepb.DayPass
//	x/wallet-request/<user id>:<request> -> the order a request created (unique)
//	x/wallet-order/<order id>            -> the order's key (unique)
package wallet

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"regexp"
	"slices"
	"sync"
	"time"

	hufuv1 "github.com/hufu-hsm/hufu/api/hufu/v1"
	"github.com/hufu-hsm/hufu/daemon/apierr"
	"github.com/hufu-hsm/hufu/daemon/authn"
	"github.com/hufu-hsm/hufu/daemon/certs"
	"github.com/hufu-hsm/hufu/daemon/commerce/ledger"
	"github.com/hufu-hsm/hufu/store"
	"github.com/hufu-hsm/hufu/store/storepb"
)

// Pass is a day-pass package (畅行包).
type Pass struct {
	ID, Name string
	Days     int
	PriceFen int64
}

// Plan is what one mutual-recognition platform offers.
type Plan struct {
	Platform, PlatformName string
	// PerUsePriceFen is the price of one use; 0: no per-use service.
	PerUsePriceFen int64
	TopUpsFen      []int64
	Passes         []Pass
}

// Options are the catalogue, from the configuration (wallet).
type Options struct {
	// CAs are the CA ids of the national mutual-recognition system.
	CAs []string
	// PlanFor returns a platform's plans, or false if it admits no mutual recognition.
	PlanFor func(platform string) (Plan, bool)
	// Platforms lists the configured platforms, in order (the catalogue lists those with a plan).
	Platforms []string
}

// Payments charges and gives back payments (payments.Service).
type Payments interface {
	Charge(ctx context.Context, c certs.Charge) (string, error)
	Refund(ctx context.Context, ref string, amountFen int64) error
}

// Deps are the collaborators of the service.
type Deps struct {
	Store    *store.Store
	Payments Payments
	// Clearing is the ledger account of a method's provider (payments.ClearingAccount).
	Clearing func(method string) string
	Clock    interface{ Now() time.Time }
	Log      *slog.Logger
}

// Service is the mutual-recognition account.
type Service struct {
	opts Options
	deps Deps
	// paying serialises the payments of one order, so that a retried payment does not
	// charge twice while the first is in flight.
	paying sync.Map // order id -> *sync.Mutex
}

// New returns the service.
func New(opts Options, deps Deps) (*Service, error) {
	if deps.Store == nil || deps.Payments == nil || deps.Clearing == nil || deps.Clock == nil || opts.PlanFor == nil {
		return nil, errors.New("wallet: missing dependency")
	}
	if deps.Log == nil {
		deps.Log = slog.Default()
	}
	return &Service{opts: opts, deps: deps}, nil
}

var (
	orders = store.NewCollection(store.KindWallet, func() *storepb.WalletOrder { return new(storepb.WalletOrder) })
	uses   = store.NewCollection(store.KindWallet, func() *storepb.WalletUse { return new(storepb.WalletUse) })
	passes = store.NewCollection(store.KindWallet, func() *storepb.DayPass { return new(storepb.DayPass) })

	orderIDRE = regexp.MustCompile(`^[0-9a-f]{22}$`)
)

const (
	indexRequest = "wallet-request"
	indexOrder   = "wallet-order"

	kindTopUp = int32(hufuv1.WalletOrderKind_WALLET_ORDER_KIND_TOP_UP)
	kindPass  = int32(hufuv1.WalletOrderKind_WALLET_ORDER_KIND_DAY_PASS)

	stateAwaiting  = int32(hufuv1.WalletOrderState_WALLET_ORDER_STATE_AWAITING_PAYMENT)
	stateCompleted = int32(hufuv1.WalletOrderState_WALLET_ORDER_STATE_COMPLETED)

	// Revenue is the revenue account of mutual-recognition services.
	Revenue = "revenue:recognition"

	day = 24 * time.Hour
)

// Account is the ledger account of a person's per-use wallet.
func Account(userID string) string { return "user:" + userID }

func orderID(user, id string) string { return "order/" + user + "/" + id }
func passID(user, platform string) string {
	return "pass/" + user + "/" + platform
}

func yuan(fen int64) string { return fmt.Sprintf("%d.%02d", fen/100, fen%100) }

// Catalogue lists the platforms that admit mutual recognition, with their plans.
func (s *Service) Catalogue() []Plan {
	var out []Plan
	for _, p := range s.opts.Platforms {
		if plan, ok := s.opts.PlanFor(p); ok {
			out = append(out, plan)
		}
	}
	return out
}

func (s *Service) plan(platform string) (Plan, error) {
	plan, ok := s.opts.PlanFor(platform)
	if !ok {
		return Plan{}, apierr.Invalidf("platform_id", "%q is not a mutual-recognition platform (GetWalletCatalogue)", platform)
	}
	return plan, nil
}

// National reports whether a certificate belongs to the national mutual-recognition
// system: its CA is one of the catalogue's (scan.Recognition).
func (s *Service) National(c *storepb.Certificate) bool { return slices.Contains(s.opts.CAs, c.CaId) }

// Recognized reports whether a certificate belongs to the national mutual-recognition
// system and the platform admits it (scan.Recognition).
func (s *Service) Recognized(c *storepb.Certificate, platform string) bool {
	if !s.National(c) {
		return false
	}
	_, ok := s.opts.PlanFor(platform)
	return ok
}

// Balance is the per-use wallet's balance in fen.
func (s *Service) Balance(ctx context.Context, caller authn.Caller) (int64, error) {
	b, err := ledger.Balance(ctx, s.deps.Store, Account(caller.UserID))
	if err != nil {
		return 0, err
	}
	return b.CreditsFen - b.DebitsFen, nil
}

// Passes lists the caller's day passes, by platform.
func (s *Service) Passes(ctx context.Context, caller authn.Caller) ([]*storepb.DayPass, error) {
	page, err := passes.List(ctx, s.deps.Store, "pass/"+caller.UserID+"/", store.ListOptions{Limit: store.MaxListLimit}, nil)
	if err != nil {
		return nil, err
	}
	out := make([]*storepb.DayPass, len(page.Items))
	for i, it := range page.Items {
		out[i] = it.Value
	}
	return out, nil
}

// Now is the service's clock.
func (s *Service) Now() time.Time { return s.deps.Clock.Now() }

// CreateTopUp creates a top-up order of one of the platform's amounts.
func (s *Service) CreateTopUp(ctx context.Context, caller authn.Caller, requestID, platform string, amountFen int64) (*storepb.WalletOrder, error) {
	plan, err := s.plan(platform)
	if err != nil {
		return nil, err
	}
	if plan.PerUsePriceFen == 0 {
		return nil, apierr.New(apierr.FailedPrecondition, "platform %s offers no per-use service (按次); buy a day pass (畅行包)", platform)
	}
	if !slices.Contains(plan.TopUpsFen, amountFen) {
		return nil, apierr.Invalidf("amount_fen", "%d: not one of the platform's top-up amounts %v", amountFen, plan.TopUpsFen)
	}
	return s.create(ctx, caller, requestID, &storepb.WalletOrder{Kind: kindTopUp, Platform: platform, AmountFen: amountFen})
}

// BuyPass creates a day-pass order of one of the platform's packages.
func (s *Service) BuyPass(ctx context.Context, caller authn.Caller, requestID, platform, passID string) (*storepb.WalletOrder, error) {
	plan, err := s.plan(platform)
	if err != nil {
		return nil, err
	}
	i := slices.IndexFunc(plan.Passes, func(p Pass) bool { return p.ID == passID })
	if i < 0 {
		return nil, apierr.Invalidf("pass_id", "%q is not a day pass of platform %s (GetWalletCatalogue)", passID, platform)
	}
	p := plan.Passes[i]
	return s.create(ctx, caller, requestID, &storepb.WalletOrder{Kind: kindPass, Platform: platform, AmountFen: p.PriceFen, PassId: p.ID, PassDays: uint32(p.Days)})
}

func (s *Service) create(ctx context.Context, caller authn.Caller, requestID string, o *storepb.WalletOrder) (*storepb.WalletOrder, error) {
	if err := apierr.CheckRequestID("request_id", requestID); err != nil {
		return nil, err
	}
	var out *storepb.WalletOrder
	err := s.deps.Store.Update(ctx, func(tx *store.Tx) error {
		out = nil
		if owner, err := tx.Lookup(indexRequest, store.ScopedValue(caller.UserID, requestID)); err == nil {
			old := new(storepb.WalletOrder)
			if err := tx.Get(owner, old); err != nil {
				return err
			}
			if old.Kind != o.Kind || old.Platform != o.Platform || old.AmountFen != o.AmountFen || old.PassId != o.PassId {
				return &apierr.Error{Kind: apierr.AlreadyExists, Field: "request_id", Message: "this request id created another order"}
			}
			out = old
			return nil
		} else if !errors.Is(err, store.ErrNotFound) {
			return err
		}
		o.Id, o.UserId, o.State, o.CreatedUnixNano, o.RequestId = store.NewestFirstID(tx.Now()), caller.UserID, stateAwaiting, tx.Now().UnixNano(), requestID
		key, err := orders.Key(orderID(o.UserId, o.Id))
		if err != nil {
			return err
		}
		if err := tx.Claim(indexRequest, store.ScopedValue(caller.UserID, requestID), key); err != nil {
			return err
		}
		if err := tx.Claim(indexOrder, o.Id, key); err != nil {
			return err
		}
		if err := orders.Put(tx, orderID(o.UserId, o.Id), o); err != nil {
			return err
		}
		out = o
		return tx.Audit(store.Event{Actor: caller.Actor(), Action: "wallet.order.create", Subject: key, Outcome: store.OutcomeOK,
			Details: map[string]string{"order": o.Id, "kind": hufuv1.WalletOrderKind(o.Kind).String(), "platform": o.Platform,
				"amount_fen": fmt.Sprint(o.AmountFen), "pass": o.PassId}})
	})
	return out, err
}

// Order reads one of the caller's orders.
func (s *Service) Order(ctx context.Context, caller authn.Caller, id string) (*storepb.WalletOrder, error) {
	if !orderIDRE.MatchString(id) {
		return nil, apierr.New(apierr.NotFound, "no wallet order %q", id)
	}
	o, err := orders.Read(ctx, s.deps.Store, orderID(caller.UserID, id))
	if errors.Is(err, store.ErrNotFound) {
		return nil, apierr.New(apierr.NotFound, "no wallet order %q", id)
	}
	return o, err
}

var errAlreadyPaid = errors.New("wallet: paid with this idempotency key already")

func (s *Service) lockOrder(id string) func() {
	m, _ := s.paying.LoadOrStore(id, new(sync.Mutex))
	mu := m.(*sync.Mutex)
	mu.Lock()
	return mu.Unlock
}

// Pay charges an order through the provider of method and completes it: the wallet's
// credit or the pass's extension, the ledger entry and the audit record in one batch.
// Paying again with the same idempotency key returns the completed order; an order paid
// with another key is FailedPrecondition, and a charge that lost the race with another
// payment is given back.
func (s *Service) Pay(ctx context.Context, caller authn.Caller, id, method, idem string) (*storepb.WalletOrder, error) {
	if err := apierr.CheckRequestID("idempotency_key", idem); err != nil {
		return nil, err
	}
	if method == "offline" {
		return nil, apierr.Invalidf("method", "mutual-recognition orders are paid online; offline payment (bank transfer, cash) is for certificate orders")
	}
	o, err := s.Order(ctx, caller, id)
	if err != nil {
		return nil, err
	}
	unlock := s.lockOrder(o.Id)
	defer unlock()
	if o, err = s.Order(ctx, caller, id); err != nil {
		return nil, err
	}
	if o.State == stateCompleted {
		if o.PaymentIdempotencyKey == idem {
			return o, nil
		}
		return nil, apierr.New(apierr.FailedPrecondition, "wallet order %s was paid already", o.Id)
	}
	ref, err := s.deps.Payments.Charge(ctx, certs.Charge{OrderID: o.Id, UserID: o.UserId, Method: method, IdempotencyKey: idem,
		AmountFen: o.AmountFen, Platforms: []string{o.Platform}})
	if err != nil {
		return nil, err
	}
	out, err := s.complete(ctx, caller, o, method, ref, idem)
	var refused *apierr.Error
	if errors.As(err, &refused) && refused.Kind == apierr.FailedPrecondition {
		s.giveBack(ctx, caller, o, method, ref)
	}
	return out, err
}

// complete completes an order paid by the charge ref (method, idempotency key idem): the
// wallet's credit or the pass's extension, the ledger entry and the audit record in one
// batch. The same payment again returns the completed order; an order completed by another
// payment is FailedPrecondition (the caller gives the charge back).
func (s *Service) complete(ctx context.Context, caller authn.Caller, o *storepb.WalletOrder, method, ref, idem string) (*storepb.WalletOrder, error) {
	var out *storepb.WalletOrder
	err := s.deps.Store.Update(ctx, func(tx *store.Tx) error {
		out = nil
		cur, err := orders.Get(tx, orderID(o.UserId, o.Id))
		if err != nil {
			return err
		}
		if cur.State == stateCompleted {
			if cur.PaymentIdempotencyKey == idem {
				out = cur
				return errAlreadyPaid
			}
			return apierr.New(apierr.FailedPrecondition, "wallet order %s was paid already", o.Id)
		}
		now := tx.Now()
		cur.State, cur.Method, cur.PaymentRef, cur.PaymentIdempotencyKey, cur.PaidUnixNano = stateCompleted, method, ref, idem, now.UnixNano()
		e := ledger.Entry{Debit: s.deps.Clearing(method), AmountFen: cur.AmountFen, OrderID: cur.Id, IdempotencyKey: "wallet-pay:" + cur.Id, Actor: caller.Actor()}
		if cur.Kind == kindTopUp {
			e.Credit, e.Kind, e.Memo = Account(cur.UserId), "top-up", "top-up of the per-use mutual-recognition wallet"
		} else {
			e.Credit, e.Kind, e.Memo = Revenue, "day-pass", "day pass of mutual recognition for platform "+cur.Platform
		}
		entry, _, err := ledger.Post(tx, e)
		if err != nil {
			return err
		}
		cur.LedgerEntryId = entry.Id
		if cur.Kind == kindPass {
			p, err := passes.Get(tx, passID(cur.UserId, cur.Platform))
			if errors.Is(err, store.ErrNotFound) {
				p = &storepb.DayPass{UserId: cur.UserId, Platform: cur.Platform}
			} else if err != nil {
				return err
			}
			from := now.UnixNano()
			if p.UntilUnixNano > from {
				from = p.UntilUnixNano // extends an active pass from its end
			} else {
				p.FromUnixNano = from
			}
			p.UntilUnixNano = from + int64(time.Duration(cur.PassDays)*day)
			p.Purchases++
			cur.PassFromUnixNano, cur.PassUntilUnixNano = from, p.UntilUnixNano
			if err := passes.Put(tx, passID(cur.UserId, cur.Platform), p); err != nil {
				return err
			}
		}
		if err := orders.Put(tx, orderID(cur.UserId, cur.Id), cur); err != nil {
			return err
		}
		out = cur
		key, _ := orders.Key(orderID(cur.UserId, cur.Id))
		return tx.Audit(store.Event{Actor: caller.Actor(), Action: "wallet.order.pay", Subject: key, Outcome: store.OutcomeOK,
			Details: map[string]string{"order": cur.Id, "method": method, "payment": ref, "amount_fen": fmt.Sprint(cur.AmountFen), "entry": entry.Id}})
	})
	if errors.Is(err, errAlreadyPaid) {
		return out, nil
	}
	return out, err
}

// SettleNotified completes a wallet order with a payment the payment gateway reported
// (payment.notify, payments.Service.Notify, acting as gateway), as Pay completes it after
// its charge, once however often it is reported. found is false for an id that is no
// wallet order. An order completed by another payment gets the notified payment refunded
// through the provider and booked in and out (returned). A notified amount that is not the
// order's is InvalidArgument on amount_fen, and nothing is done.
func (s *Service) SettleNotified(ctx context.Context, gateway authn.Caller, orderID, method, ref, idem string, amountFen int64) (found, returned bool, err error) {
	if !orderIDRE.MatchString(orderID) {
		return false, false, nil
	}
	key, err := s.deps.Store.Lookup(ctx, indexOrder, orderID)
	if errors.Is(err, store.ErrNotFound) {
		return false, false, nil
	}
	if err != nil {
		return true, false, err
	}
	o := new(storepb.WalletOrder)
	if err := s.deps.Store.Get(ctx, key, o); err != nil {
		return true, false, err
	}
	if amountFen != o.AmountFen {
		return true, false, apierr.Invalidf("amount_fen", "the notified amount is not the wallet order's")
	}
	unlock := s.lockOrder(o.Id)
	defer unlock()
	_, err = s.complete(ctx, gateway, o, method, ref, idem)
	var refused *apierr.Error
	if !errors.As(err, &refused) || refused.Kind != apierr.FailedPrecondition {
		return true, false, err
	}
	if err := s.deps.Payments.Refund(ctx, ref, o.AmountFen); err != nil {
		return true, false, fmt.Errorf("wallet: refunding a notified payment of a paid order: %w", err)
	}
	err = s.deps.Store.Update(ctx, func(tx *store.Tx) error {
		if err := s.Returned(tx, o, method, ref, gateway.Actor()); err != nil {
			return err
		}
		return tx.Audit(store.Event{Actor: gateway.Actor(), Action: "payment.notify", Subject: key, Outcome: store.OutcomeOK,
			Details: map[string]string{"order": o.Id, "payment": ref, "amount_fen": fmt.Sprint(o.AmountFen), "result": "returned"}})
	})
	return true, err == nil, err
}

// Returned books, inside tx, a charge of a wallet order that completed nothing and was
// given back: the charge and its reversal, against the order's own account.
func (s *Service) Returned(tx *store.Tx, o *storepb.WalletOrder, method, ref, actor string) error {
	credit := Revenue
	if o.Kind == kindTopUp {
		credit = Account(o.UserId)
	}
	e, _, err := ledger.Post(tx, ledger.Entry{Debit: s.deps.Clearing(method), Credit: credit, AmountFen: o.AmountFen, OrderID: o.Id,
		IdempotencyKey: "charge:" + ref, Kind: "payment", Memo: "a second charge of a mutual-recognition order", Actor: actor})
	if err != nil {
		return err
	}
	_, _, err = ledger.Reverse(tx, e.Id, "refund", "return:"+ref, "a second charge of a mutual-recognition order, given back", actor)
	return err
}

// giveBack refunds a charge that completed no order and books it as the charge and its
// reversal. A failure is logged: the provider's reference is in the audit record.
func (s *Service) giveBack(ctx context.Context, caller authn.Caller, o *storepb.WalletOrder, method, ref string) {
	if err := s.deps.Payments.Refund(ctx, ref, o.AmountFen); err != nil {
		s.deps.Log.Error("wallet: a second charge of an order could not be given back", "order", o.Id, "payment", ref, "err", err)
		return
	}
	err := s.deps.Store.Update(ctx, func(tx *store.Tx) error {
		return s.Returned(tx, o, method, ref, caller.Actor())
	})
	if err != nil {
		s.deps.Log.Error("wallet: booking a returned charge", "order", o.Id, "payment", ref, "err", err)
	}
}

// Orders lists the caller's orders of a kind (0: both), newest first.
func (s *Service) Orders(ctx context.Context, caller authn.Caller, kind int32, size int, token string) ([]*storepb.WalletOrder, string, error) {
	if size < 0 || size > 100 {
		return nil, "", apierr.Invalidf("page_size", "want 0..100")
	}
	if size == 0 {
		size = 20
	}
	page, err := orders.List(ctx, s.deps.Store, "order/"+caller.UserID+"/", store.ListOptions{Cursor: token, Limit: size},
		func(_ string, o *storepb.WalletOrder) bool { return kind == 0 || o.Kind == kind })
	if errors.Is(err, store.ErrBadCursor) {
		return nil, "", apierr.Invalidf("page_token", "not a token from the previous page")
	}
	if err != nil {
		return nil, "", err
	}
	out := make([]*storepb.WalletOrder, len(page.Items))
	for i, it := range page.Items {
		out[i] = it.Value
	}
	return out, page.Next, nil
}

// Uses lists the caller's per-use debits, newest first.
func (s *Service) Uses(ctx context.Context, caller authn.Caller, size int, token string) ([]*storepb.WalletUse, string, error) {
	if size < 0 || size > 100 {
		return nil, "", apierr.Invalidf("page_size", "want 0..100")
	}
	if size == 0 {
		size = 20
	}
	page, err := uses.List(ctx, s.deps.Store, "use/"+caller.UserID+"/", store.ListOptions{Cursor: token, Limit: size}, nil)
	if errors.Is(err, store.ErrBadCursor) {
		return nil, "", apierr.Invalidf("page_token", "not a token from the previous page")
	}
	if err != nil {
		return nil, "", err
	}
	out := make([]*storepb.WalletUse, len(page.Items))
	for i, it := range page.Items {
		out[i] = it.Value
	}
	return out, page.Next, nil
}

// Admit opens the mutual-recognition service for a scan session inside its transaction
// (scan.Recognition): an active day pass for the platform, else one per-use debit keyed by
// the session (a retry finds the first), else FailedPrecondition with the reason
// hufuv1.ReasonRecognitionServiceRequired.
func (s *Service) Admit(tx *store.Tx, caller authn.Caller, ss *storepb.ScanSession, serial string) (string, error) {
	userID := caller.UserID
	plan, err := s.plan(ss.PlatformId)
	if err != nil {
		return "", refuse("platform %s admits no certificate of another platform", ss.PlatformId)
	}
	now := tx.Now().UnixNano()
	p, err := passes.Get(tx, passID(userID, ss.PlatformId))
	if err != nil && !errors.Is(err, store.ErrNotFound) {
		return "", err
	}
	if err == nil && now < p.UntilUnixNano {
		return "day-pass", nil
	}
	key := "recognition:" + ss.Id
	if prior, err := ledger.ByKey(tx, key); err == nil {
		return "per-use " + prior.Id, nil // this session was debited already
	} else if !errors.Is(err, store.ErrNotFound) {
		return "", err
	}
	if plan.PerUsePriceFen == 0 {
		return "", refuse("certificate %s is not valid for platform %s but is recognised nationally (全国CA互认): buy a day pass (畅行包) for platform %s to use it there (hufu wallet buy-pass)",
			serial, ss.PlatformId, ss.PlatformId)
	}
	b, err := ledger.BalanceIn(tx, Account(userID))
	if err != nil {
		return "", err
	}
	if bal := b.CreditsFen - b.DebitsFen; bal < plan.PerUsePriceFen {
		what := "top up the per-use wallet (按次, hufu wallet top-up)"
		if len(plan.Passes) > 0 {
			what = "buy a day pass (畅行包, hufu wallet buy-pass) or top up the per-use wallet (按次, hufu wallet top-up)"
		}
		return "", refuse("certificate %s is not valid for platform %s but is recognised nationally (全国CA互认): open the mutual-recognition service for platform %s — %s; one use costs %s yuan, the wallet holds %s yuan",
			serial, ss.PlatformId, ss.PlatformId, what, yuan(plan.PerUsePriceFen), yuan(bal))
	}
	e, created, err := ledger.Post(tx, ledger.Entry{Debit: Account(userID), Credit: Revenue, AmountFen: plan.PerUsePriceFen, SessionID: ss.Id,
		IdempotencyKey: key, Kind: "recognition", Memo: "one use of mutual recognition on platform " + ss.PlatformId, Actor: caller.Actor()})
	if err != nil {
		return "", err
	}
	if created {
		u := &storepb.WalletUse{Id: store.NewestFirstID(tx.Now()), UserId: userID, SessionId: ss.Id, Platform: ss.PlatformId, System: ss.System,
			CertificateSerial: serial, AmountFen: e.AmountFen, TimeUnixNano: now, LedgerEntryId: e.Id}
		if err := uses.Put(tx, "use/"+userID+"/"+u.Id, u); err != nil {
			return "", err
		}
	}
	return "per-use " + e.Id, nil
}

func refuse(format string, args ...any) error {
	return &apierr.Error{Kind: apierr.FailedPrecondition, Reason: hufuv1.ReasonRecognitionServiceRequired, Message: fmt.Sprintf(format, args...)}
}
