package daemon

import (
	"fmt"
	"net/http"

	"github.com/hufu-hsm/hufu/daemon/accounts"
	"github.com/hufu-hsm/hufu/daemon/certs"
	"github.com/hufu-hsm/hufu/daemon/config"
	"github.com/hufu-hsm/hufu/daemon/identity"
	"github.com/hufu-hsm/hufu/daemon/webhook"
)

// providers are the services outside the appliance that accounts and certs call: the
// signed HTTP gateways the configuration names (providers.*, package webhook) and, in
// development, the development providers for those it leaves out. Production without
// providers.login offers no WeChat or carrier sign-in (config.Validate requires the others).
type providers struct {
	sms      accounts.SMSSender
	wechat   accounts.WeChat
	carrier  accounts.Carrier
	verifier identity.Verifier
	// payment is the payment gateway (providers.payment), nil when none is configured; the
	// development and offline providers are commerce/payments' own.
	payment certs.Payments
	// paymentGateway is the same gateway as payment, for its notifications to hufu.
	paymentGateway *webhook.Provider
	gateways       []*webhook.Provider // closed with the daemon
}

func (d *Daemon) buildProviders() (*providers, error) {
	p := &providers{wechat: accounts.NotOffered{}, carrier: accounts.NotOffered{}}
	if d.cfg.Development {
		p.sms = &accounts.DevSender{Path: d.cfg.Account.DevOutbox}
		p.wechat, p.carrier, p.verifier = accounts.DevWeChat{}, accounts.DevCarrier{}, &identity.DevVerifier{}
	}
	var err error
	d.cfg.Providers.Each(func(name string, o *webhook.Options) {
		if err != nil {
			return
		}
		var gw *webhook.Provider
		if gw, err = webhook.New(name, *o, d.opts.Registry, d.opts.Log); err != nil {
			err = fmt.Errorf("providers.%s: %w", name, err)
			return
		}
		p.gateways = append(p.gateways, gw)
		switch name {
		case "sms":
			p.sms = gw
		case "identity":
			p.verifier = gw
		case "login":
			p.wechat, p.carrier = gw, gw
		case "payment":
			p.payment, p.paymentGateway = gw, gw
		}
	})
	if err != nil {
		p.close()
		return nil, err
	}
	if p.sms == nil || p.verifier == nil {
		p.close()
		return nil, fmt.Errorf("no SMS or identity provider: %w", config.Problems{{Path: "providers", Message: "sms and identity must be set outside development"}})
	}
	return p, nil
}

// providerCallbacks are the requests the gateways send to hufu, served on the admin
// listener and authenticated by the gateway's signature (webhook.Provider.Inbound), not by
// an admin token: the payment service's payment.notify.
func (d *Daemon) providerCallbacks() map[string]http.Handler {
	if d.providers.paymentGateway == nil {
		return nil
	}
	return map[string]http.Handler{
		"/providers/payment/" + webhook.OpPaymentNotify: d.providers.paymentGateway.Inbound(webhook.OpPaymentNotify, d.payments.NotifyHandler),
	}
}

func (p *providers) close() {
	for _, gw := range p.gateways {
		gw.Close()
	}
}
