package payments

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"regexp"

	"github.com/hufu-hsm/hufu/daemon/apierr"
	"github.com/hufu-hsm/hufu/daemon/authn"
	"github.com/hufu-hsm/hufu/daemon/certs"
	"github.com/hufu-hsm/hufu/daemon/webhook"
	"github.com/hufu-hsm/hufu/store"
	"github.com/hufu-hsm/hufu/store/storepb"
)

// Notification is the payment gateway's report that a payment of an order completed
// (payment.notify, docs/providers.md §4): a payment the person finished in the payment app
// after PayOrder returned, or a charge whose answer never reached hufu.
type Notification struct {
	OrderID        string `json:"order_id"`
	IdempotencyKey string `json:"idempotency_key"`
	PaymentRef     string `json:"payment_ref"`
	AmountFen      int64  `json:"amount_fen"`
	Method         string `json:"method"`
}

// NotifyAnswer is hufu's answer to a notification; the gateway stops sending it on any
// answer.
type NotifyAnswer struct {
	// Result: "ok" (the order is paid by this payment, now or before), "returned" (the order
	// was paid by another payment or cancelled: this one was refunded through the gateway and
	// booked in and out), "unknown_order", "amount_mismatch" (nothing done: the centre's
	// finance staff reconcile it by hand).
	Result string `json:"result"`
}

// Notification results.
const (
	NotifyOK             = "ok"
	NotifyReturned       = "returned"
	NotifyUnknownOrder   = "unknown_order"
	NotifyAmountMismatch = "amount_mismatch"
)

// NotifiedOrders are the orders of another domain that notifications pay: the mutual-
// recognition wallet's (wallet.Service). SettleNotified, acting as gateway, reports found false for an id
// that is not one of its orders; otherwise it completes the order, or refunds and books a
// payment of an order completed otherwise (returned), once however often it is asked; an
// amount that is not the order's is InvalidArgument on amount_fen.
type NotifiedOrders interface {
	SettleNotified(ctx context.Context, gateway authn.Caller, orderID, method, ref, idem string, amountFen int64) (found, returned bool, err error)
}

// SetNotifiedOrders connects the other domains' orders (the wallet), which are built
// after this service.
func (s *Service) SetNotifiedOrders(o NotifiedOrders) { s.others = o }

// gatewayCaller is the actor of what a notification does.
var gatewayCaller = authn.Caller{System: "payment-gateway"}

var paymentRefRE = regexp.MustCompile(`^[A-Za-z0-9._:-]{1,128}$`)

// DecodeNotification parses a notification body strictly: one JSON object with exactly the
// contract's fields, each well formed. Its errors are webhook.ErrInboundInvalid.
func DecodeNotification(body []byte) (Notification, error) {
	var n Notification
	dec := json.NewDecoder(bytes.NewReader(body))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&n); err != nil {
		return n, fmt.Errorf("%w: %v", webhook.ErrInboundInvalid, err)
	}
	if dec.More() {
		return n, fmt.Errorf("%w: more than one JSON value", webhook.ErrInboundInvalid)
	}
	switch {
	case !orderIDRE.MatchString(n.OrderID):
		return n, fmt.Errorf("%w: order_id: want an order id (22 hex digits)", webhook.ErrInboundInvalid)
	case apierr.CheckRequestID("idempotency_key", n.IdempotencyKey) != nil:
		return n, fmt.Errorf("%w: idempotency_key: not the key hufu sent with payment.charge", webhook.ErrInboundInvalid)
	case !paymentRefRE.MatchString(n.PaymentRef):
		return n, fmt.Errorf("%w: payment_ref: want 1-128 of [A-Za-z0-9._:-]", webhook.ErrInboundInvalid)
	case n.AmountFen <= 0:
		return n, fmt.Errorf("%w: amount_fen: want a positive amount in fen", webhook.ErrInboundInvalid)
	case !methodRE.MatchString(n.Method) || n.Method == Dev || n.Method == Offline:
		return n, fmt.Errorf("%w: method: want a method of the payment gateway", webhook.ErrInboundInvalid)
	}
	return n, nil
}

// Notify decides a payment notification: the order is paid by it exactly as PayOrder would
// have paid it (certs.Settle: certificate, order, ledger entry and audit in one batch), once
// however often it is reported; a payment that can no longer pay its order (paid otherwise,
// cancelled) is refunded through the gateway and booked as the charge and its return. An
// error means nothing was decided and the gateway should send it again.
func (s *Service) Notify(ctx context.Context, n Notification) (NotifyAnswer, error) {
	if s.gateway == nil {
		return NotifyAnswer{}, errors.New("payments: a notification without a payment gateway")
	}
	o, err := s.orders.OrderByID(ctx, n.OrderID)
	var ae *apierr.Error
	if errors.As(err, &ae) && ae.Kind == apierr.NotFound {
		return s.notifyOther(ctx, n)
	}
	if err != nil {
		return NotifyAnswer{}, err
	}
	if n.AmountFen != o.PriceFen {
		return s.refuseNotification(ctx, n, orderSubject(o), NotifyAmountMismatch)
	}
	_, _, err = s.orders.Settle(ctx, gatewayCaller, o.Id, certs.Settlement{Method: n.Method, Ref: n.PaymentRef, IdempotencyKey: n.IdempotencyKey})
	if err == nil {
		return NotifyAnswer{Result: NotifyOK}, nil
	}
	if !errors.As(err, &ae) || ae.Kind != apierr.FailedPrecondition {
		return NotifyAnswer{}, err
	}
	// The order is no longer awaiting payment, and not by this key: the money goes back.
	if err := s.gateway.Refund(ctx, n.PaymentRef, o.PriceFen); err != nil {
		return NotifyAnswer{}, fmt.Errorf("payments: refunding a notified payment that can pay no order: %w", err)
	}
	err = s.deps.Store.Update(ctx, func(tx *store.Tx) error {
		if err := s.Returned(tx, o, n.Method, n.PaymentRef, gatewayCaller.Actor()); err != nil {
			return err
		}
		return tx.Audit(store.Event{Actor: gatewayCaller.Actor(), Action: "payment.notify", Subject: orderSubject(o), Outcome: store.OutcomeOK,
			Details: map[string]string{"order": o.Id, "payment": n.PaymentRef, "amount_fen": fmt.Sprint(n.AmountFen), "result": NotifyReturned}})
	})
	if err != nil {
		return NotifyAnswer{}, err
	}
	return NotifyAnswer{Result: NotifyReturned}, nil
}

// notifyOther decides a notification for an order that is no certificate or verification
// order: a wallet order, or none.
func (s *Service) notifyOther(ctx context.Context, n Notification) (NotifyAnswer, error) {
	if s.others == nil {
		return s.refuseNotification(ctx, n, "o/order/"+n.OrderID, NotifyUnknownOrder)
	}
	found, returned, err := s.others.SettleNotified(ctx, gatewayCaller, n.OrderID, n.Method, n.PaymentRef, n.IdempotencyKey, n.AmountFen)
	var ae *apierr.Error
	switch {
	case !found:
		return s.refuseNotification(ctx, n, "o/order/"+n.OrderID, NotifyUnknownOrder)
	case errors.As(err, &ae) && ae.Kind == apierr.InvalidArgument:
		return s.refuseNotification(ctx, n, "w/order/"+n.OrderID, NotifyAmountMismatch)
	case err != nil:
		return NotifyAnswer{}, err
	case returned:
		return NotifyAnswer{Result: NotifyReturned}, nil
	}
	return NotifyAnswer{Result: NotifyOK}, nil
}

func orderSubject(o *storepb.Order) string { return "o/order/" + o.UserId + "/" + o.Id }

// refuseNotification records a notification that paid nothing and answers result.
func (s *Service) refuseNotification(ctx context.Context, n Notification, subject, result string) (NotifyAnswer, error) {
	err := s.deps.Store.Append(ctx, store.Event{Actor: gatewayCaller.Actor(), Action: "payment.notify", Subject: subject,
		Outcome: store.OutcomeDenied, Details: map[string]string{"order": n.OrderID, "payment": n.PaymentRef, "amount_fen": fmt.Sprint(n.AmountFen), "result": result}})
	if err != nil {
		return NotifyAnswer{}, err
	}
	s.deps.Log.Warn("a payment notification paid nothing", "order", n.OrderID, "payment", n.PaymentRef, "result", result)
	return NotifyAnswer{Result: result}, nil
}

// NotifyHandler decides payment.notify bodies for webhook.Provider.Inbound.
func (s *Service) NotifyHandler(ctx context.Context, body []byte) (any, error) {
	n, err := DecodeNotification(body)
	if err != nil {
		return nil, err
	}
	return s.Notify(ctx, n)
}
