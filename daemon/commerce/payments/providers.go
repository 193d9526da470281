package payments

import (
	"context"
	"fmt"

	"github.com/hufu-hsm/hufu/daemon/apierr"
	"github.com/hufu-hsm/hufu/daemon/certs"
)

// Provider takes and gives back payments of one kind. Charge must be idempotent per
// (order, idempotency key); Refund per reference: a repeated call has the effect of one.
type Provider interface {
	// Name is the provider in the ledger: its money is held in clearing:<name>.
	Name() string
	Charge(ctx context.Context, c certs.Charge) (ref string, err error)
	Refund(ctx context.Context, ref string, amountFen int64) error
}

// Provider names, and the method ids that are not the gateway's.
const (
	Dev     = "dev"
	Gateway = "gateway"
	Offline = "offline"
)

var (
	_ Provider = DevProvider{}
	_ Provider = GatewayProvider{}
	_ Provider = OfflineProvider{}
)

// DevProvider is the development provider (certs.DevPayments): every charge with method
// "dev" succeeds, the same idempotency key gets the same reference ("dev-..."), refunds
// succeed.
type DevProvider struct{}

func (DevProvider) Name() string { return Dev }
func (DevProvider) Charge(ctx context.Context, c certs.Charge) (string, error) {
	return certs.DevPayments{}.Charge(ctx, c)
}
func (DevProvider) Refund(ctx context.Context, ref string, amountFen int64) error {
	return certs.DevPayments{}.Refund(ctx, ref, amountFen)
}

// GatewayProvider is the trading centre's payment service through the signed webhook
// gateway (daemon/webhook, providers.payment): the method is passed to the gateway as it is
// ("gateway", "wechat", ...). The gateway charges at most once per (order, idempotency key)
// and refunds a reference at most once (docs/providers.md).
type GatewayProvider struct{ P certs.Payments }

func (GatewayProvider) Name() string { return Gateway }
func (g GatewayProvider) Charge(ctx context.Context, c certs.Charge) (string, error) {
	return g.P.Charge(ctx, c)
}
func (g GatewayProvider) Refund(ctx context.Context, ref string, amountFen int64) error {
	return g.P.Refund(ctx, ref, amountFen)
}

// OfflineProvider is bank transfer or cash, confirmed by an operator at the payment desk:
// nothing is charged or refunded online. Charge refuses and says how to pay offline; Refund
// refuses, because the money goes back by hand: Service.RefundOrder books it as owed and
// the desk confirms the payout (Service.ConfirmPayout).
type OfflineProvider struct{}

// offlineRefPrefix marks the references of offline payments: "offline:<operator reference>".
const offlineRefPrefix = "offline:"

func (OfflineProvider) Name() string { return Offline }
func (OfflineProvider) Charge(context.Context, certs.Charge) (string, error) {
	return "", apierr.New(apierr.FailedPrecondition,
		"an offline payment is not charged online: ask for the instructions with PaymentService.PayOffline (hufu payment pay-offline), pay by bank transfer or at the counter, and the payment desk confirms it")
}
func (OfflineProvider) Refund(context.Context, string, int64) error {
	return apierr.New(apierr.FailedPrecondition, "an offline payment is refunded at the payment desk: the refund is owed (ListRefundsDue) until the desk confirms the payout (ConfirmRefundPayout)")
}

// providerFor is the provider of a method id.
func (s *Service) providerFor(method string) (Provider, error) {
	switch method {
	case Offline:
		return OfflineProvider{}, nil
	case Dev:
		if s.opts.Development {
			return DevProvider{}, nil
		}
	}
	// Any other id is a method of the gateway, which is told the method ("dev" too, outside
	// development: a production appliance has no development provider).
	if s.gateway != nil && methodRE.MatchString(method) {
		return s.gateway, nil
	}
	return nil, apierr.Invalidf("method", "%q is not a payment method of this appliance (ListPaymentMethods)", method)
}

// providerOfRef is the provider that issued a payment reference.
func (s *Service) providerOfRef(ref string) (Provider, error) {
	switch {
	case len(ref) > 4 && ref[:4] == "dev-":
		return DevProvider{}, nil
	case len(ref) > len(offlineRefPrefix) && ref[:len(offlineRefPrefix)] == offlineRefPrefix:
		return OfflineProvider{}, nil
	case s.gateway != nil:
		return s.gateway, nil
	}
	return nil, fmt.Errorf("payments: no provider issued reference %q", ref)
}

// providerName is the ledger name of the provider of a method (its clearing account).
func providerName(method string) string {
	switch method {
	case Dev, Offline:
		return method
	}
	return Gateway
}
