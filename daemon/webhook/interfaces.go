package webhook

import (
	"context"
	"errors"
	"fmt"
	"regexp"

	"github.com/hufu-hsm/hufu/daemon/accounts"
	"github.com/hufu-hsm/hufu/daemon/apierr"
	"github.com/hufu-hsm/hufu/daemon/certs"
	"github.com/hufu-hsm/hufu/daemon/identity"
)

var (
	_ accounts.SMSSender = (*Provider)(nil)
	_ accounts.WeChat    = (*Provider)(nil)
	_ accounts.Carrier   = (*Provider)(nil)
	_ identity.Verifier  = (*Provider)(nil)
	_ certs.Payments     = (*Provider)(nil)
)

// Decisions that have no sentinel in the interface they answer. The daemon reports a
// pending face verification as Unavailable ("retry later").
var (
	// ErrSMSRejected: the SMS gateway refused the message (result "rejected": a number it
	// will not send to); the daemon reports it as FailedPrecondition, not as an outage.
	ErrSMSRejected = accounts.ErrNumberRefused
	// ErrFacePending: the person has not finished the face verification yet.
	ErrFacePending = errors.New("webhook: the face verification is not finished")
	// ErrRefundDeclined: the payment service refused a refund.
	ErrRefundDeclined = errors.New("webhook: the payment service declined the refund")
)

// decision wraps a decision's sentinel with the provider and the gateway's error code.
func (p *Provider) decision(sentinel error, r Response) error {
	return fmt.Errorf("provider %s: %w%s", p.name, sentinel, codeSuffix(r.ErrorCode))
}

// Send asks the gateway to deliver an SMS code (sms.send).
func (p *Provider) Send(ctx context.Context, phone string, purpose accounts.Purpose, code string) error {
	r, err := p.call(ctx, OpSMSSend, SMSRequest{Phone: phone, Purpose: string(purpose), Code: code})
	if err != nil {
		return err
	}
	if r.Result == ResultRejected {
		return p.decision(ErrSMSRejected, r)
	}
	return nil
}

// VerifyNameID checks a name and resident ID number (identity.name-id).
func (p *Provider) VerifyNameID(ctx context.Context, person identity.Person) error {
	r, err := p.call(ctx, OpIdentityNameID, PersonRequest{Name: person.Name, IDNumber: person.IDNumber})
	if err != nil {
		return err
	}
	if r.Result == ResultMismatch {
		return p.decision(identity.ErrMismatch, r)
	}
	return nil
}

// StartFace starts a face verification (identity.face.start).
func (p *Provider) StartFace(ctx context.Context, person identity.Person) (id, url string, err error) {
	r, err := p.call(ctx, OpFaceStart, PersonRequest{Name: person.Name, IDNumber: person.IDNumber})
	if err != nil {
		return "", "", err
	}
	if r.Result == ResultMismatch {
		return "", "", p.decision(identity.ErrMismatch, r)
	}
	return r.CertifyID, r.URL, nil
}

// CompleteFace asks for the outcome of a face verification (identity.face.complete).
func (p *Provider) CompleteFace(ctx context.Context, id string) (identity.Person, error) {
	r, err := p.call(ctx, OpFaceComplete, FaceCompleteRequest{CertifyID: id})
	if err != nil {
		return identity.Person{}, err
	}
	switch r.Result {
	case ResultMismatch:
		return identity.Person{}, p.decision(identity.ErrMismatch, r)
	case ResultUnknownSession:
		return identity.Person{}, p.decision(identity.ErrUnknownSession, r)
	case ResultPending:
		return identity.Person{}, p.decision(ErrFacePending, r)
	}
	return identity.Person{Name: r.Name, IDNumber: r.IDNumber}, nil
}

// VerifyBankCard checks the four elements of a bank card (identity.bank-card).
func (p *Provider) VerifyBankCard(ctx context.Context, c identity.BankCard) error {
	r, err := p.call(ctx, OpIdentityBankCard, BankCardRequest{Name: c.Name, IDNumber: c.IDNumber,
		CardNumber: c.CardNumber, ReservedPhone: c.ReservedPhone})
	if err != nil {
		return err
	}
	if r.Result == ResultMismatch {
		return p.decision(identity.ErrMismatch, r)
	}
	return nil
}

// OpenID exchanges a WeChat authorisation code for the user's openid (login.wechat).
func (p *Provider) OpenID(ctx context.Context, authCode string) (string, error) {
	r, err := p.call(ctx, OpLoginWeChat, WeChatRequest{AuthCode: authCode})
	if err != nil {
		return "", err
	}
	if r.Result == ResultRejected {
		return "", p.decision(accounts.ErrProviderRejected, r)
	}
	return r.OpenID, nil
}

// PhoneNumber resolves a carrier one-click login token (login.carrier).
func (p *Provider) PhoneNumber(ctx context.Context, token string) (string, error) {
	r, err := p.call(ctx, OpLoginCarrier, CarrierRequest{Token: token})
	if err != nil {
		return "", err
	}
	if r.Result == ResultRejected {
		return "", p.decision(accounts.ErrProviderRejected, r)
	}
	return r.Phone, nil
}

var paymentMethodRE = regexp.MustCompile(`^[a-z0-9_-]{1,32}$`)

// Charge takes a payment (payment.charge). The payment service must charge at most once
// per (order_id, idempotency_key). Errors are *apierr.Error, because the certificate
// service returns them to the caller as they are: a declined payment is FailedPrecondition,
// a gateway that gave no answer Unavailable ("pay again with the same idempotency key").
func (p *Provider) Charge(ctx context.Context, c certs.Charge) (string, error) {
	if !paymentMethodRE.MatchString(c.Method) {
		return "", apierr.Invalidf("method", "must be 1 to 32 of a-z, 0-9, '_', '-'")
	}
	if c.AmountFen <= 0 {
		return "", fmt.Errorf("webhook: charging %d fen: the amount must be positive", c.AmountFen)
	}
	r, err := p.call(ctx, OpPaymentCharge, ChargeRequest{OrderID: c.OrderID, UserID: c.UserID, Method: c.Method,
		IdempotencyKey: c.IdempotencyKey, AmountFen: c.AmountFen})
	if err != nil {
		return "", paymentError(ctx, err)
	}
	if r.Result == ResultDeclined {
		return "", &apierr.Error{Kind: apierr.FailedPrecondition, Message: "the payment service declined the payment",
			Cause: p.decision(errors.New("declined"), r)}
	}
	return r.PaymentRef, nil
}

// Refund returns a charge (payment.refund); the payment service must refund a payment
// reference at most once.
func (p *Provider) Refund(ctx context.Context, ref string, amountFen int64) error {
	r, err := p.call(ctx, OpPaymentRefund, RefundRequest{PaymentRef: ref, AmountFen: amountFen})
	if err != nil {
		return err
	}
	if r.Result == ResultDeclined {
		return p.decision(ErrRefundDeclined, r)
	}
	return nil
}

// paymentError makes a failure of the payment service an API error. The caller's own
// deadline or cancellation stays what it is (apierr reports it as such); an attempt's own
// timeout, which also wraps context.DeadlineExceeded, is the service's failure.
func paymentError(ctx context.Context, err error) error {
	if ctx.Err() != nil {
		return err
	}
	e := &apierr.Error{Kind: apierr.Unavailable, Cause: err,
		Message: "the payment service is unavailable; pay again with the same idempotency key later"}
	var open *circuitOpenError
	if errors.As(err, &open) {
		e.RetryAfter = open.retryAfter
	}
	return e
}
