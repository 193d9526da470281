package certs

import (
	"context"
	"errors"
	"fmt"

	hufuv1 "github.com/hufu-hsm/hufu/api/hufu/v1"
	"github.com/hufu-hsm/hufu/daemon/apierr"
	"github.com/hufu-hsm/hufu/daemon/authn"
	"github.com/hufu-hsm/hufu/store"
	"github.com/hufu-hsm/hufu/store/storepb"
)

// certKindVerification is the class of orders that carry no certificate: the enterprise
// verification of a corporate transfer (对公打款认证, seed §1.6.4).
const certKindVerification = "verification"

// VerificationOrder is the order an enterprise verification by corporate transfer makes.
type VerificationOrder struct {
	// UserID is the applicant, who pays (确认支付).
	UserID string
	// USCC and Name are the enterprise verified.
	USCC, Name string
	// RequestKey makes the order once per verification (e.g. "transfer-<id>").
	RequestKey string
	PriceFen   int64
	// Actor is who verified (the audit record's actor).
	Actor string
}

// CreateVerificationOrder writes, inside tx (the verification's own transaction), an order of
// kind ENTERPRISE_VERIFICATION awaiting payment, tells the applicant, and audits it. The
// order has no CA and no key; Pay completes it without a CA call.
func CreateVerificationOrder(tx *store.Tx, v VerificationOrder) (*storepb.Order, error) {
	if v.PriceFen < 0 {
		return nil, fmt.Errorf("certs: negative verification price")
	}
	if k, err := tx.Lookup(indexOrderRequest, v.UserID+"."+v.RequestKey); err == nil {
		o := new(storepb.Order)
		return o, tx.Get(k, o)
	} else if !errors.Is(err, store.ErrNotFound) {
		return nil, err
	}
	now := tx.Now().UnixNano()
	o := &storepb.Order{
		Id: store.NewestFirstID(tx.Now()), UserId: v.UserID, Kind: int32(hufuv1.OrderKind_ORDER_KIND_ENTERPRISE_VERIFICATION),
		Status: statusAwaiting, CertKind: certKindVerification, PriceFen: v.PriceFen, SubjectName: v.Name, SubjectIdMasked: v.USCC,
		EnterpriseUscc: v.USCC, RequestId: v.RequestKey, CreatedUnixNano: now, UpdatedUnixNano: now,
	}
	o.Steps = []*storepb.ReviewStep{step(tx, "verified", v.Actor, "corporate transfer")}
	key := orderKey(o.UserId, o.Id)
	if err := tx.Claim(indexOrderRequest, v.UserID+"."+v.RequestKey, key); err != nil {
		return nil, err
	}
	if err := tx.Claim(indexOrder, o.Id, key); err != nil {
		return nil, err
	}
	if err := orders.Put(tx, orderID(o.UserId, o.Id), o); err != nil {
		return nil, err
	}
	if err := notify(tx, o.UserId, hufuv1.MessageKind_MESSAGE_KIND_PAYMENT_DUE, "企业认证订单待支付",
		fmt.Sprintf("企业认证订单 %s 待确认支付 %s 元", o.Id, yuan(o.PriceFen)), o.Id, ""); err != nil {
		return nil, err
	}
	return o, tx.Audit(store.Event{Actor: v.Actor, Action: "order.create", Subject: key, Outcome: store.OutcomeOK,
		Details: map[string]string{"kind": hufuv1.OrderKind(o.Kind).String(), "enterprise": v.USCC, "amount_fen": fmt.Sprint(o.PriceFen)}})
}

// isVerification reports whether an order carries no certificate.
func isVerification(o *storepb.Order) bool {
	return o.Kind == int32(hufuv1.OrderKind_ORDER_KIND_ENTERPRISE_VERIFICATION)
}

// payVerification takes the payment of an order without a certificate and completes it: no
// CA is involved. A price of 0 charges nothing.
func (s *Service) payVerification(ctx context.Context, caller authn.Caller, o *storepb.Order, method, idem string) (*storepb.Order, error) {
	ref := "free"
	if o.PriceFen > 0 {
		var err error
		if ref, err = s.deps.Payments.Charge(ctx, Charge{OrderID: o.Id, UserID: o.UserId, Method: method, IdempotencyKey: idem, AmountFen: o.PriceFen}); err != nil {
			return nil, err
		}
	}
	return s.completeVerification(ctx, caller, o, payment{method: method, ref: ref, idem: idem, by: "user", charged: ref != "free"})
}

// completeVerification completes a paid order without a certificate, with its ledger entry.
func (s *Service) completeVerification(ctx context.Context, caller authn.Caller, o *storepb.Order, p payment) (*storepb.Order, error) {
	ref, idem := p.ref, p.idem
	order, err := s.transition(ctx, caller, o.UserId, o.Id, "order.pay", func(tx *store.Tx, o *storepb.Order) error {
		if o.Status == statusCompleted && o.PaymentIdempotencyKey == idem {
			return errAlreadyPaid
		}
		if o.Status != statusAwaiting {
			return wrongState(o, "pay")
		}
		o.Status, o.PaymentRef, o.PaymentIdempotencyKey, o.PaidUnixNano = statusCompleted, ref, idem, tx.Now().UnixNano()
		o.Steps = append(o.Steps, step(tx, "paid", p.by, ref))
		if err := s.book(tx, o, p, caller); err != nil {
			return err
		}
		return Notify(tx, o.UserId, hufuv1.MessageKind_MESSAGE_KIND_ENTERPRISE_NOTICE, "企业认证订单已完成",
			fmt.Sprintf("企业认证订单 %s 已完成支付", o.Id))
	}, map[string]string{"payment": ref, "amount_fen": fmt.Sprint(o.PriceFen), "method": p.method})
	if errors.Is(err, errAlreadyPaid) {
		return orders.Read(ctx, s.deps.Store, orderID(o.UserId, o.Id))
	}
	var refused *apierr.Error
	if errors.As(err, &refused) && refused.Kind == apierr.FailedPrecondition && p.charged {
		s.giveBack(ctx, caller, o, p)
	}
	return order, err
}
