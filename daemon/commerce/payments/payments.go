// Package payments is how money comes in and goes back: the payment providers behind one
// interface (Provider) — the development provider, the trading centre's payment gateway
// (daemon/webhook) and the offline provider for bank transfer or cash confirmed at a
// payment desk — the payment methods each platform offers (configuration), and the
// bookkeeping of every payment and refund in the ledger (daemon/commerce/ledger).
//
// Service is the certificate service's certs.Payments (it routes a charge to the provider
// of its method, after checking that one of the order's platforms offers the method) and
// its certs.Books (it writes the ledger entry of a payment inside the transaction that
// completes the order). Each payment of an order is one entry
//
//	debit clearing:<provider>   credit revenue:<category>   (certificates, verification)
//
// with idempotency key "pay:<order id>", so an order is booked once however often its
// payment is reported. A refund is the reversing entry ("refund:<order id>"); a charge
// that completed no order and was given back is booked as the charge and its reversal.
//
// # Offline payments
//
// The phone asks to pay an order offline (PayOffline): it gets the receiving account, the
// amount and a reference to quote (HP and 8 characters); the order stays awaiting payment
// (待支付). An operator at the payment desk (PaymentDeskService, a system client's
// permission that needs a second security officer) lists pending payments and confirms one
// with the bank transaction or receipt number and the amount received, which must equal the
// order's price. The confirmation pays the order through certs.Settle: the certificate,
// the order, the offline payment, the ledger entry and the audit records commit in one
// batch. A repeated confirmation (same operator reference) answers as the first and writes
// nothing; concurrent confirmations are serialised per order. A confirmation of a cancelled
// order, of a wrong amount, or with a reference already used for another payment is refused
// and the refusal recorded in the audit log.
//
// # Notifications
//
// The payment gateway reports payments hufu may not know of (payment.notify, Notify): the
// person paid in the payment app after the phone gave up, or a charge's answer was lost. A
// notification pays its order through certs.Settle, as PayOrder would have, once however
// often it comes; a payment that can no longer pay its order (paid by another payment,
// cancelled) is refunded through the gateway and booked as the charge and its reversal.
//
// # Offline refunds
//
// An order paid offline is refunded at the desk too (an after-sales refund, RefundOrder):
// the reversing entry credits payable:offline-refunds instead of the offline clearing
// account, since the money is still at the bank or the counter, and the offline payment
// becomes 待退款 (REFUND_DUE). The desk lists the refunds owed (ListRefundsDue), pays the
// money back by transfer or cash, and confirms the payout with its reference and the exact
// amount (ConfirmPayout): the payout entry (payable:offline-refunds to clearing:offline),
// the payment's state 已退款 (REFUNDED), the payer's message and the audit record commit in
// one batch. One reference pays out one refund.
//
// # Records
//
//	p/offline/<order id>                 storepb.OfflinePayment
//	x/offline-ref/<reference>            -> the payment the payer quotes (unique)
//	x/offline-opref/<operator reference> -> the payment a bank transaction or receipt
//	                                        confirmed (unique: one receipt pays one order)
//	x/offline-payout-ref/<operator reference> -> the refund an outgoing transfer or cash
//	                                        receipt paid out (unique)
package payments

import (
	"context"
	"crypto/rand"
	"errors"
	"fmt"
	"log/slog"
	"regexp"
	"slices"
	"strings"
	"sync"
	"time"

	hufuv1 "github.com/hufu-hsm/hufu/api/hufu/v1"
	"github.com/hufu-hsm/hufu/daemon/apierr"
	"github.com/hufu-hsm/hufu/daemon/authn"
	"github.com/hufu-hsm/hufu/daemon/certs"
	"github.com/hufu-hsm/hufu/daemon/commerce/ledger"
	"github.com/hufu-hsm/hufu/daemon/text"
	"github.com/hufu-hsm/hufu/store"
	"github.com/hufu-hsm/hufu/store/storepb"
	"github.com/prometheus/client_golang/prometheus"
)

// ReceivingAccount is where offline payments go.
type ReceivingAccount struct {
	AccountName, Bank, AccountNumber string
	// Note is shown with the instructions (the counter's opening hours, say).
	Note string
}

// Options are the payment policies, from the configuration (payments).
type Options struct {
	// Methods lists the method ids each platform offers, by platform id; "*" is every
	// platform not listed. Empty: development offers dev and offline; production offers
	// "gateway" and charges any method id through the gateway, as before methods were
	// configuration.
	Methods map[string][]string
	// Account receives offline payments.
	Account ReceivingAccount
	// Development enables the development provider (method "dev").
	Development bool
}

// Orders is what payments needs of the certificate orders.
type Orders interface {
	GetOrder(ctx context.Context, caller authn.Caller, id string) (*storepb.Order, error)
	OrderByID(ctx context.Context, id string) (*storepb.Order, error)
	Settle(ctx context.Context, caller authn.Caller, id string, st certs.Settlement) (*storepb.Order, *storepb.Certificate, error)
}

// Deps are the collaborators of the service.
type Deps struct {
	Store *store.Store
	// Gateway is the payment gateway (providers.payment); nil if none is configured.
	Gateway certs.Payments
	// Platform reports whether a platform id is configured.
	Platform func(id string) bool
	Clock    interface{ Now() time.Time }
	Log      *slog.Logger
	// Registry receives hufu_ledger_entries_total and hufu_payments_offline_pending.
	Registry prometheus.Registerer
}

// Service routes payments to providers, books them, and serves the offline payments.
type Service struct {
	opts    Options
	deps    Deps
	gateway Provider
	orders  Orders
	others  NotifiedOrders // SetNotifiedOrders: the wallet's orders
	// confirming serialises the desk's confirmations per order, so that concurrent
	// confirmations make one CA request.
	confirming sync.Map // order id -> *sync.Mutex
}

var (
	_ certs.Payments = (*Service)(nil)
	_ certs.Books    = (*Service)(nil)
)

var (
	offline = store.NewCollection(store.KindPayment, func() *storepb.OfflinePayment { return new(storepb.OfflinePayment) })

	methodRE = regexp.MustCompile(`^[a-z0-9_-]{1,32}$`)
	// operatorRefRE is a bank transaction number or a receipt number.
	operatorRefRE = regexp.MustCompile(`^[A-Za-z0-9_-]{1,64}$`)
	orderIDRE     = regexp.MustCompile(`^[0-9a-f]{22}$`)
)

const (
	indexRef       = "offline-ref"
	indexOpRef     = "offline-opref"
	indexPayoutRef = "offline-payout-ref"

	statePending   = int32(hufuv1.OfflinePaymentState_OFFLINE_PAYMENT_STATE_PENDING)
	stateConfirmed = int32(hufuv1.OfflinePaymentState_OFFLINE_PAYMENT_STATE_CONFIRMED)
	stateRejected  = int32(hufuv1.OfflinePaymentState_OFFLINE_PAYMENT_STATE_REJECTED)
	stateCancelled = int32(hufuv1.OfflinePaymentState_OFFLINE_PAYMENT_STATE_CANCELLED)
	stateRefundDue = int32(hufuv1.OfflinePaymentState_OFFLINE_PAYMENT_STATE_REFUND_DUE)
	stateRefunded  = int32(hufuv1.OfflinePaymentState_OFFLINE_PAYMENT_STATE_REFUNDED)

	orderAwaiting  = int32(hufuv1.OrderStatus_ORDER_STATUS_AWAITING_PAYMENT)
	orderCancelled = int32(hufuv1.OrderStatus_ORDER_STATUS_CANCELLED)

	maxReasonRunes = 200
)

// New returns the service. Connect the orders with SetOrders before serving.
func New(opts Options, deps Deps) (*Service, error) {
	if deps.Store == nil || deps.Clock == nil || deps.Platform == nil {
		return nil, errors.New("payments: missing dependency")
	}
	if deps.Log == nil {
		deps.Log = slog.Default()
	}
	s := &Service{opts: opts, deps: deps}
	if deps.Gateway != nil {
		s.gateway = GatewayProvider{P: deps.Gateway}
	}
	if deps.Registry != nil {
		deps.Registry.MustRegister(&collector{s: deps.Store})
	}
	return s, nil
}

// SetOrders connects the certificate orders, which are built with this service as their
// payments and books.
func (s *Service) SetOrders(o Orders) { s.orders = o }

// Method is a payment method as the phone shows it.
type Method struct {
	ID, Name string
	Offline  bool
}

var methodNames = map[string]string{Dev: "开发测试支付", Offline: "线下支付（银行转账或现金）", Gateway: "在线支付"}

// Methods lists the methods a platform offers.
func (s *Service) Methods(platform string) ([]Method, error) {
	if !s.deps.Platform(platform) {
		return nil, apierr.Invalidf("platform", "no platform %q", platform)
	}
	var out []Method
	for _, id := range s.methodsOf(platform) {
		name := methodNames[id]
		if name == "" {
			name = id
		}
		out = append(out, Method{ID: id, Name: name, Offline: id == Offline})
	}
	return out, nil
}

// methodsOf lists a platform's method ids: its own list, else "*", else every method a
// configured provider takes.
func (s *Service) methodsOf(platform string) []string {
	if ms, ok := s.opts.Methods[platform]; ok {
		return ms
	}
	if ms, ok := s.opts.Methods["*"]; ok {
		return ms
	}
	if len(s.opts.Methods) > 0 {
		return nil
	}
	var ms []string
	if s.opts.Development {
		ms = append(ms, Dev)
	}
	if s.gateway != nil {
		ms = append(ms, Gateway)
	}
	if s.opts.Development && s.opts.Account.AccountNumber != "" {
		ms = append(ms, Offline)
	}
	return ms
}

// offered reports whether one of platforms offers method (for an order without platforms,
// any platform). With no methods configured every method a provider takes is offered, as
// before methods were configuration.
func (s *Service) offered(method string, platforms []string) bool {
	if len(s.opts.Methods) == 0 {
		return method != Offline || (s.opts.Development && s.opts.Account.AccountNumber != "")
	}
	if len(platforms) == 0 {
		for _, ms := range s.opts.Methods {
			if slices.Contains(ms, method) {
				return true
			}
		}
		return false
	}
	for _, p := range platforms {
		if slices.Contains(s.methodsOf(p), method) {
			return true
		}
	}
	return false
}

// Charge routes a charge to the provider of its method (certs.Payments).
func (s *Service) Charge(ctx context.Context, c certs.Charge) (string, error) {
	p, err := s.providerFor(c.Method)
	if err != nil {
		return "", err
	}
	if !s.offered(c.Method, c.Platforms) {
		return "", apierr.Invalidf("method", "%q is not offered for this order's platforms (ListPaymentMethods)", c.Method)
	}
	return p.Charge(ctx, c)
}

// Refund gives back a payment through the provider that took it (certs.Payments).
func (s *Service) Refund(ctx context.Context, ref string, amountFen int64) error {
	p, err := s.providerOfRef(ref)
	if err != nil {
		return err
	}
	return p.Refund(ctx, ref, amountFen)
}

// category is the revenue category of an order.
func category(o *storepb.Order) string {
	if o.Kind == int32(hufuv1.OrderKind_ORDER_KIND_ENTERPRISE_VERIFICATION) {
		return "verification"
	}
	return "certificates"
}

func paymentEntry(o *storepb.Order, method, actor, idem string) ledger.Entry {
	return ledger.Entry{Debit: "clearing:" + providerName(method), Credit: "revenue:" + category(o), AmountFen: o.PriceFen,
		OrderID: o.Id, IdempotencyKey: idem, Kind: "payment", Memo: "payment of a " + category(o) + " order by " + providerName(method), Actor: actor}
}

// Paid books the payment of o inside the transaction that completes it (certs.Books); an
// offline payment's record learns its entry.
func (s *Service) Paid(tx *store.Tx, o *storepb.Order, method, ref, actor string) error {
	e, _, err := ledger.Post(tx, paymentEntry(o, method, actor, "pay:"+o.Id))
	if err != nil {
		return err
	}
	rec, err := offline.Get(tx, "offline/"+o.Id)
	switch {
	case errors.Is(err, store.ErrNotFound):
		return nil
	case err != nil:
		return err
	case method == Offline:
		rec.LedgerEntryId = e.Id
	case rec.State == statePending:
		// Paid online while an offline payment was pending: the desk will not confirm it.
		rec.State, rec.Reason, rec.UpdatedUnixNano = stateCancelled, "paid by "+providerName(method), tx.Now().UnixNano()
	default:
		return nil
	}
	return offline.Put(tx, "offline/"+o.Id, rec)
}

// Returned books a charge that completed no order and was given back (certs.Books): the
// charge and its reversal.
func (s *Service) Returned(tx *store.Tx, o *storepb.Order, method, ref, actor string) error {
	e, _, err := ledger.Post(tx, paymentEntry(o, method, actor, "charge:"+ref))
	if err != nil {
		return err
	}
	_, _, err = ledger.Reverse(tx, e.Id, "refund", "return:"+ref, "a charge that completed no order, given back", actor)
	return err
}

// RefundOrder gives back the payment of a completed order through its provider and books
// the reversing entry inside one transaction with with (the caller's state change, which
// audits it): after-sales refunds. Refunding again returns the same reversal. An order
// without a booked payment (free) books nothing. An order paid offline is not refunded
// online: the reversal books the money as owed (payable:offline-refunds), the offline
// payment becomes 待退款, and the payment desk pays it out (ConfirmPayout).
func (s *Service) RefundOrder(ctx context.Context, o *storepb.Order, actor string, with func(tx *store.Tx) error) (*storepb.LedgerEntry, error) {
	paidOffline := PaidOffline(o)
	if o.PaymentRef != "" && o.PriceFen > 0 && !paidOffline {
		if err := s.Refund(ctx, o.PaymentRef, o.PriceFen); err != nil {
			return nil, &apierr.Error{Kind: apierr.Unavailable, Message: "the payment provider did not refund; try again later", Cause: err}
		}
	}
	var out *storepb.LedgerEntry
	err := s.deps.Store.Update(ctx, func(tx *store.Tx) error {
		out = nil
		paid, err := ledger.ByKey(tx, "pay:"+o.Id)
		switch {
		case err == nil && paidOffline:
			if out, err = s.refundDue(tx, o, paid, actor); err != nil {
				return err
			}
		case err == nil:
			if out, _, err = ledger.Reverse(tx, paid.Id, "refund", "refund:"+o.Id, "refund of a "+category(o)+" order", actor); err != nil {
				return err
			}
		case !errors.Is(err, store.ErrNotFound):
			return err
		}
		if with != nil {
			return with(tx)
		}
		if out == nil {
			return nil
		}
		return tx.Audit(store.Event{Actor: actor, Action: "payment.refund", Subject: orderSubject(o), Outcome: store.OutcomeOK,
			Details: map[string]string{"order": o.Id, "amount_fen": fmt.Sprint(o.PriceFen), "entry": out.Id}})
	})
	return out, err
}

// PaidOffline reports whether an order was paid offline (its refund is paid out at the
// desk, not by a provider).
func PaidOffline(o *storepb.Order) bool { return strings.HasPrefix(o.PaymentRef, offlineRefPrefix) }

// OfflineRefunds is the ledger account of offline refunds owed and not yet paid out.
const OfflineRefunds = "payable:offline-refunds"

// refundDue books, inside tx, the refund of an order paid offline as owed, and marks its
// offline payment 待退款 for the desk. Again: the same entry, nothing written.
func (s *Service) refundDue(tx *store.Tx, o *storepb.Order, paid *storepb.LedgerEntry, actor string) (*storepb.LedgerEntry, error) {
	e, created, err := ledger.ReverseVia(tx, paid.Id, OfflineRefunds, "refund", "refund:"+o.Id, "refund of a "+category(o)+" order, owed at the payment desk", actor)
	if err != nil || !created {
		return e, err
	}
	rec, err := offline.Get(tx, "offline/"+o.Id)
	if err != nil {
		return nil, fmt.Errorf("payments: the offline payment of order %s: %w", o.Id, err)
	}
	if rec.State != stateConfirmed {
		return nil, fmt.Errorf("payments: the offline payment of order %s is in state %d, not confirmed", o.Id, rec.State)
	}
	now := tx.Now().UnixNano()
	rec.State, rec.RefundEntryId, rec.RefundDueUnixNano, rec.UpdatedUnixNano = stateRefundDue, e.Id, now, now
	if err := offline.Put(tx, "offline/"+o.Id, rec); err != nil {
		return nil, err
	}
	key, _ := offline.Key("offline/" + o.Id)
	return e, tx.Audit(store.Event{Actor: actor, Action: "payment.offline.refund-due", Subject: key, Outcome: store.OutcomeOK,
		Details: map[string]string{"order": o.Id, "amount_fen": fmt.Sprint(rec.AmountFen), "entry": e.Id}})
}

// --- offline payments -------------------------------------------------------------

// referenceAlphabet has no 0/O, 1/I/L: a reference is read out and typed.
const referenceAlphabet = "23456789ABCDEFGHJKMNPQRSTUVWXYZ"

func newReference() string {
	b := make([]byte, 8)
	_, _ = rand.Read(b)
	for i := range b {
		b[i] = referenceAlphabet[int(b[i])%len(referenceAlphabet)]
	}
	return "HP" + string(b)
}

// PayOffline starts, or returns, the offline payment of one of the caller's orders.
func (s *Service) PayOffline(ctx context.Context, caller authn.Caller, orderID string) (*storepb.OfflinePayment, error) {
	o, err := s.orders.GetOrder(ctx, caller, orderID)
	if err != nil {
		return nil, err
	}
	if o.Status != orderAwaiting {
		return nil, apierr.New(apierr.FailedPrecondition, "only an order awaiting payment (待支付) can be paid")
	}
	if o.PriceFen <= 0 {
		return nil, apierr.New(apierr.FailedPrecondition, "the order is free: pay it with PayOrder")
	}
	if !s.offered(Offline, o.Platforms) || s.opts.Account.AccountNumber == "" {
		return nil, apierr.New(apierr.FailedPrecondition, "offline payment is not offered for this order's platforms (ListPaymentMethods)")
	}
	var out *storepb.OfflinePayment
	err = s.deps.Store.Update(ctx, func(tx *store.Tx) error {
		out = nil
		rec, err := offline.Get(tx, "offline/"+o.Id)
		switch {
		case err == nil && (rec.State == statePending || rec.State == stateConfirmed):
			out = rec
			return nil
		case err != nil && !errors.Is(err, store.ErrNotFound):
			return err
		}
		now := tx.Now().UnixNano()
		key, _ := offline.Key("offline/" + o.Id)
		ref := newReference()
		if err := tx.Claim(indexRef, ref, key); errors.Is(err, store.ErrTaken) {
			return apierr.New(apierr.Aborted, "reference collision; ask again")
		} else if err != nil {
			return err
		}
		rec = &storepb.OfflinePayment{OrderId: o.Id, UserId: o.UserId, AmountFen: o.PriceFen, Reference: ref, State: statePending,
			CreatedUnixNano: now, UpdatedUnixNano: now, Category: category(o)}
		if err := offline.Put(tx, "offline/"+o.Id, rec); err != nil {
			return err
		}
		out = rec
		return tx.Audit(store.Event{Actor: caller.Actor(), Action: "payment.offline.start", Subject: key, Outcome: store.OutcomeOK,
			Details: map[string]string{"order": o.Id, "amount_fen": fmt.Sprint(o.PriceFen), "reference": ref}})
	})
	return out, err
}

// ListPending lists offline payments awaiting the desk, by order, newest first.
func (s *Service) ListPending(ctx context.Context, size int, token string) ([]*storepb.OfflinePayment, string, error) {
	return s.listInState(ctx, statePending, size, token)
}

// ListRefundsDue lists the refunds of offline payments the desk owes (待退款), by order,
// newest first.
func (s *Service) ListRefundsDue(ctx context.Context, size int, token string) ([]*storepb.OfflinePayment, string, error) {
	return s.listInState(ctx, stateRefundDue, size, token)
}

func (s *Service) listInState(ctx context.Context, state int32, size int, token string) ([]*storepb.OfflinePayment, string, error) {
	if size < 0 || size > 100 {
		return nil, "", apierr.Invalidf("page_size", "want 0..100")
	}
	if size == 0 {
		size = 20
	}
	page, err := offline.List(ctx, s.deps.Store, "offline/", store.ListOptions{Cursor: token, Limit: size},
		func(_ string, p *storepb.OfflinePayment) bool { return p.State == state })
	if errors.Is(err, store.ErrBadCursor) {
		return nil, "", apierr.Invalidf("page_token", "not a token from the previous page")
	}
	if err != nil {
		return nil, "", err
	}
	out := make([]*storepb.OfflinePayment, len(page.Items))
	for i, it := range page.Items {
		out[i] = it.Value
	}
	return out, page.Next, nil
}

func (s *Service) lockOrder(id string) func() {
	m, _ := s.confirming.LoadOrStore(id, new(sync.Mutex))
	mu := m.(*sync.Mutex)
	mu.Lock()
	return mu.Unlock
}

func (s *Service) readOffline(ctx context.Context, orderID string) (*storepb.OfflinePayment, error) {
	if !orderIDRE.MatchString(orderID) {
		return nil, apierr.New(apierr.NotFound, "no offline payment for order %q", orderID)
	}
	rec, err := offline.Read(ctx, s.deps.Store, "offline/"+orderID)
	if errors.Is(err, store.ErrNotFound) {
		return nil, apierr.New(apierr.NotFound, "no offline payment for order %q", orderID)
	}
	return rec, err
}

// refuse records a refused desk decision in the audit log (and, if mark is set, the
// payment's new state) and returns refusal.
func (s *Service) refuse(ctx context.Context, desk authn.Caller, orderID, action string, details map[string]string, mark int32, refusal error) error {
	err := s.deps.Store.Update(ctx, func(tx *store.Tx) error {
		key, _ := offline.Key("offline/" + orderID)
		if mark != 0 {
			rec, err := offline.Get(tx, "offline/"+orderID)
			if err != nil {
				return err
			}
			if rec.State == statePending {
				rec.State, rec.UpdatedUnixNano, rec.DecidedBy = mark, tx.Now().UnixNano(), desk.Actor()
				if err := offline.Put(tx, "offline/"+orderID, rec); err != nil {
					return err
				}
			}
		}
		if err := tx.Audit(store.Event{Actor: desk.Actor(), Action: action, Subject: key, Outcome: store.OutcomeDenied, Details: details}); err != nil {
			return err
		}
		return store.Refuse(refusal)
	})
	return err
}

// checkDeskEntry checks what an operator types at the desk: a bank transaction or receipt
// number and an amount in fen.
func checkDeskEntry(operatorRef string, amountFen int64) error {
	if !operatorRefRE.MatchString(operatorRef) {
		return apierr.Invalidf("operator_reference", "the bank transaction or receipt number: 1 to 64 of A-Z, a-z, 0-9, '-', '_'")
	}
	if amountFen <= 0 || amountFen > ledger.MaxAmountFen {
		return apierr.Invalidf("amount_fen", "%d: want the amount in fen, 1..%d", amountFen, int64(ledger.MaxAmountFen))
	}
	return nil
}

// Confirm is the desk's confirmation that an offline payment arrived: operatorRef is the
// bank transaction or receipt number, amountFen what was received.
func (s *Service) Confirm(ctx context.Context, desk authn.Caller, orderID, operatorRef string, amountFen int64) (*storepb.OfflinePayment, string, error) {
	if err := checkDeskEntry(operatorRef, amountFen); err != nil {
		return nil, "", err
	}
	// Only orders with an offline payment get a lock (one small mutex per such order).
	if _, err := s.readOffline(ctx, orderID); err != nil {
		return nil, "", err
	}
	unlock := s.lockOrder(orderID)
	defer unlock()
	rec, err := s.readOffline(ctx, orderID)
	if err != nil {
		return nil, "", err
	}
	details := map[string]string{"order": orderID, "operator_reference": operatorRef, "received_fen": fmt.Sprint(amountFen), "amount_fen": fmt.Sprint(rec.AmountFen)}
	switch rec.State {
	case stateConfirmed:
		if rec.OperatorReference == operatorRef && rec.ReceivedFen == amountFen {
			o, err := s.orders.OrderByID(ctx, orderID)
			if err != nil {
				return nil, "", err
			}
			return rec, o.Serial, nil
		}
		return nil, "", apierr.New(apierr.FailedPrecondition, "the payment was confirmed already, with reference %s", rec.OperatorReference)
	case stateRejected:
		return nil, "", apierr.New(apierr.FailedPrecondition, "the payment was rejected; the payer starts a new one")
	case stateCancelled:
		return nil, "", apierr.New(apierr.FailedPrecondition, "the order was cancelled; return the money to the payer")
	}
	if amountFen != rec.AmountFen {
		details["refused"] = "amount"
		return nil, "", s.refuse(ctx, desk, orderID, "payment.offline.confirm", details, 0,
			apierr.Invalidf("amount_fen", "received %s yuan, the order's price is %s yuan: confirm only the exact amount", yuan(amountFen), yuan(rec.AmountFen)))
	}
	key, _ := offline.Key("offline/" + orderID)
	o, c, err := s.orders.Settle(ctx, desk, orderID, certs.Settlement{Method: Offline, Ref: offlineRefPrefix + operatorRef, IdempotencyKey: "offline:" + orderID,
		With: func(tx *store.Tx, o *storepb.Order) error {
			cur, err := offline.Get(tx, "offline/"+orderID)
			if err != nil {
				return err
			}
			if cur.State != statePending {
				return apierr.New(apierr.FailedPrecondition, "the payment is no longer pending")
			}
			if o.PriceFen != cur.AmountFen {
				return apierr.New(apierr.FailedPrecondition, "the order's price is not the amount of the offline payment")
			}
			if err := tx.Claim(indexOpRef, operatorRef, key); errors.Is(err, store.ErrTaken) {
				return apierr.New(apierr.FailedPrecondition, "reference %s confirmed another payment already", operatorRef)
			} else if err != nil {
				return err
			}
			cur.State, cur.OperatorReference, cur.ReceivedFen, cur.DecidedBy, cur.UpdatedUnixNano = stateConfirmed, operatorRef, amountFen, desk.Actor(), tx.Now().UnixNano()
			if err := offline.Put(tx, "offline/"+orderID, cur); err != nil {
				return err
			}
			return tx.Audit(store.Event{Actor: desk.Actor(), Action: "payment.offline.confirm", Subject: key, Outcome: store.OutcomeOK, Details: details})
		}})
	if err != nil {
		var refused *apierr.Error
		if errors.As(err, &refused) && refused.Kind == apierr.FailedPrecondition {
			mark := int32(0)
			if cur, rerr := s.orders.OrderByID(ctx, orderID); rerr == nil && cur.Status == orderCancelled {
				mark = stateCancelled
				refused = apierr.New(apierr.FailedPrecondition, "the order was cancelled; return the money to the payer")
			} else if rerr == nil && cur.Status != orderAwaiting {
				mark = stateCancelled
				refused = apierr.New(apierr.FailedPrecondition, "the order was paid otherwise; return the money to the payer")
			}
			details["refused"] = refused.Message
			return nil, "", s.refuse(ctx, desk, orderID, "payment.offline.confirm", details, mark, refused)
		}
		return nil, "", err
	}
	rec, err = s.readOffline(ctx, orderID)
	if err != nil {
		return nil, "", err
	}
	if rec.OperatorReference != operatorRef {
		return nil, "", apierr.New(apierr.FailedPrecondition, "the payment was confirmed already, with reference %s", rec.OperatorReference)
	}
	serial := o.Serial
	if c != nil {
		serial = c.Serial
	}
	return rec, serial, nil
}

// Reject closes a pending offline payment with a reason shown to the payer.
func (s *Service) Reject(ctx context.Context, desk authn.Caller, orderID, reason string) (*storepb.OfflinePayment, error) {
	reason, err := text.Lines("reason", reason, maxReasonRunes, true)
	if err != nil {
		return nil, err
	}
	if _, err := s.readOffline(ctx, orderID); err != nil {
		return nil, err
	}
	unlock := s.lockOrder(orderID)
	defer unlock()
	var out *storepb.OfflinePayment
	err = s.deps.Store.Update(ctx, func(tx *store.Tx) error {
		rec, err := offline.Get(tx, "offline/"+orderID)
		if err != nil {
			return err
		}
		out = rec
		switch {
		case rec.State == stateRejected && rec.Reason == reason:
			return nil
		case rec.State != statePending:
			return apierr.New(apierr.FailedPrecondition, "only a pending payment can be rejected")
		}
		rec.State, rec.Reason, rec.DecidedBy, rec.UpdatedUnixNano = stateRejected, reason, desk.Actor(), tx.Now().UnixNano()
		if err := offline.Put(tx, "offline/"+orderID, rec); err != nil {
			return err
		}
		if err := certs.Notify(tx, rec.UserId, hufuv1.MessageKind_MESSAGE_KIND_PAYMENT_DUE, "线下支付未确认",
			fmt.Sprintf("订单 %s 的线下支付（参考号 %s）未确认：%s", orderID, rec.Reference, reason)); err != nil {
			return err
		}
		key, _ := offline.Key("offline/" + orderID)
		return tx.Audit(store.Event{Actor: desk.Actor(), Action: "payment.offline.reject", Subject: key, Outcome: store.OutcomeOK,
			Details: map[string]string{"order": orderID, "reason": reason}})
	})
	return out, err
}

// ConfirmPayout is the desk's record that an owed refund (待退款) was paid out: operatorRef
// is the outgoing transfer's or the cash receipt's number, amountFen what was paid, which
// must be the refund. The payout entry (payable:offline-refunds to clearing:offline), the
// payment's new state, the payer's message and the audit record commit together. The same
// reference and amount again answer as the first and write nothing.
func (s *Service) ConfirmPayout(ctx context.Context, desk authn.Caller, orderID, operatorRef string, amountFen int64) (*storepb.OfflinePayment, error) {
	if err := checkDeskEntry(operatorRef, amountFen); err != nil {
		return nil, err
	}
	if _, err := s.readOffline(ctx, orderID); err != nil {
		return nil, err
	}
	unlock := s.lockOrder(orderID)
	defer unlock()
	rec, err := s.readOffline(ctx, orderID)
	if err != nil {
		return nil, err
	}
	details := map[string]string{"order": orderID, "operator_reference": operatorRef, "paid_fen": fmt.Sprint(amountFen), "amount_fen": fmt.Sprint(rec.AmountFen)}
	switch rec.State {
	case stateRefunded:
		if rec.PayoutReference == operatorRef && rec.AmountFen == amountFen {
			return rec, nil
		}
		return nil, apierr.New(apierr.FailedPrecondition, "the refund was paid out already, with reference %s", rec.PayoutReference)
	case stateRefundDue:
	default:
		return nil, apierr.New(apierr.FailedPrecondition, "no refund of this payment is owed: a refund is agreed after-sales first")
	}
	if amountFen != rec.AmountFen {
		details["refused"] = "amount"
		return nil, s.refuse(ctx, desk, orderID, "payment.offline.payout", details, 0,
			apierr.Invalidf("amount_fen", "paid %s yuan, the refund is %s yuan: pay out and confirm the exact amount", yuan(amountFen), yuan(rec.AmountFen)))
	}
	var out *storepb.OfflinePayment
	err = s.deps.Store.Update(ctx, func(tx *store.Tx) error {
		out = nil
		cur, err := offline.Get(tx, "offline/"+orderID)
		if err != nil {
			return err
		}
		if cur.State != stateRefundDue {
			return apierr.New(apierr.Aborted, "the payment changed meanwhile; retry")
		}
		key, _ := offline.Key("offline/" + orderID)
		if err := tx.Claim(indexPayoutRef, operatorRef, key); errors.Is(err, store.ErrTaken) {
			return apierr.New(apierr.FailedPrecondition, "reference %s confirmed another payout already", operatorRef)
		} else if err != nil {
			return err
		}
		e, _, err := ledger.Post(tx, ledger.Entry{Debit: OfflineRefunds, Credit: ClearingAccount(Offline), AmountFen: cur.AmountFen, OrderID: orderID,
			IdempotencyKey: "payout:" + orderID, Kind: "payout", Memo: "an offline refund paid out at the payment desk", Actor: desk.Actor()})
		if err != nil {
			return err
		}
		now := tx.Now().UnixNano()
		cur.State, cur.PayoutReference, cur.PayoutBy, cur.PayoutEntryId, cur.RefundedUnixNano, cur.UpdatedUnixNano =
			stateRefunded, operatorRef, desk.Actor(), e.Id, now, now
		if err := offline.Put(tx, "offline/"+orderID, cur); err != nil {
			return err
		}
		if err := certs.Notify(tx, cur.UserId, hufuv1.MessageKind_MESSAGE_KIND_AFTER_SALES, "退款已退回",
			fmt.Sprintf("订单 %s 的退款 %s 元已由付款台线下退回（凭证号 %s）。", orderID, yuan(cur.AmountFen), operatorRef)); err != nil {
			return err
		}
		out = cur
		details["entry"] = e.Id
		return tx.Audit(store.Event{Actor: desk.Actor(), Action: "payment.offline.payout", Subject: key, Outcome: store.OutcomeOK, Details: details})
	})
	return out, err
}

// Account is the receiving account of offline payments.
func (s *Service) Account() ReceivingAccount { return s.opts.Account }

func yuan(fen int64) string { return fmt.Sprintf("%d.%02d", fen/100, fen%100) }

// collector exports the ledger's entries by kind and the pending offline payments, read
// from the store at each scrape (both are durable, so a restart loses no count).
type collector struct{ s *store.Store }

var (
	entriesDesc    = prometheus.NewDesc("hufu_ledger_entries_total", "Ledger entries written, by kind (payment, refund, ...).", []string{"kind"}, nil)
	pendingDesc    = prometheus.NewDesc("hufu_payments_offline_pending", "Offline payments awaiting the payment desk.", nil, nil)
	refundsDueDesc = prometheus.NewDesc("hufu_payments_offline_refunds_due", "Refunds of offline payments agreed and not yet paid out at the payment desk (待退款).", nil, nil)
)

func (c *collector) Describe(ch chan<- *prometheus.Desc) {
	ch <- entriesDesc
	ch <- pendingDesc
	ch <- refundsDueDesc
}

func (c *collector) Collect(ch chan<- prometheus.Metric) {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	if kinds, err := ledger.KindCounts(ctx, c.s); err == nil {
		for k, n := range kinds {
			ch <- prometheus.MustNewConstMetric(entriesDesc, prometheus.CounterValue, float64(n), k)
		}
	}
	pending, due, cursor := 0, 0, ""
	for range 100 {
		page, err := offline.List(ctx, c.s, "offline/", store.ListOptions{Cursor: cursor, Limit: store.MaxListLimit},
			func(_ string, p *storepb.OfflinePayment) bool {
				return p.State == statePending || p.State == stateRefundDue
			})
		if err != nil {
			return
		}
		for _, it := range page.Items {
			if it.Value.State == statePending {
				pending++
			} else {
				due++
			}
		}
		if cursor = page.Next; cursor == "" {
			break
		}
	}
	ch <- prometheus.MustNewConstMetric(pendingDesc, prometheus.GaugeValue, float64(pending))
	ch <- prometheus.MustNewConstMetric(refundsDueDesc, prometheus.GaugeValue, float64(due))
}

// CheckLedger runs ledger.Check and records who checked and what was found.
func (s *Service) CheckLedger(ctx context.Context, caller authn.Caller) (ledger.Report, error) {
	r, err := ledger.Check(ctx, s.deps.Store)
	if err != nil {
		return r, err
	}
	outcome := store.OutcomeOK
	if !r.OK() {
		outcome = store.OutcomeFailed
		s.deps.Log.Error("the ledger does not balance", "problems", r.Problems)
	}
	err = s.deps.Store.Append(ctx, store.Event{Actor: caller.Actor(), Action: "ledger.check", Subject: "l/", Outcome: outcome,
		Details: map[string]string{"entries": fmt.Sprint(r.Entries), "accounts": fmt.Sprint(r.Accounts), "debits_fen": fmt.Sprint(r.DebitsFen),
			"problems": fmt.Sprint(len(r.Problems))}})
	return r, err
}
