package daemon_test

import (
	"os"
	"path/filepath"
	"testing"
	"time"

	hufuv1 "github.com/hufu-hsm/hufu/api/hufu/v1"
	"github.com/hufu-hsm/hufu/daemon/config"
	"github.com/hufu-hsm/hufu/daemon/devpki"
	"github.com/hufu-hsm/hufu/daemon/webhook"
	"github.com/hufu-hsm/hufu/daemon/webhook/webhooktest"
	"google.golang.org/grpc/codes"
)

// productionAppliance is an appliance with development: false: TLS material it is given,
// and its SMS, identity, payment and (if login) login providers at the contract gateway gw.
func productionAppliance(t *testing.T, gw *webhooktest.Server, login bool) *certAppl {
	t.Helper()
	return certAppliance(t, func(c *config.Config) {
		c.Development = false
		dir := filepath.Join(c.DataDir, "tls")
		files, _, err := devpki.Ensure(dir, nil, time.Now())
		if err != nil {
			t.Fatal(err)
		}
		c.TLS.CertFile, c.TLS.KeyFile, c.TLS.ClientCAFile = files.ServerCert, files.ServerKey, files.CACert
		c.Scan.Address = "hufu.example.cn:7443"
		opts := func() *webhook.Options { o := gw.Options(); return &o }
		c.Providers = config.Providers{SMS: opts(), Identity: opts(), Payment: opts()}
		if login {
			c.Providers.Login = opts()
		}
	})
}

// TestProductionProviders: a production appliance sends codes, verifies identities, checks
// carrier logins and takes payments through the signed gateways, writes no development
// outbox, and reports a gateway outage as Unavailable; without providers.login, WeChat and
// carrier sign-in are refused as not offered.
func TestProductionProviders(t *testing.T) {
	gw := webhooktest.Start(t, webhooktest.Config{})
	a := productionAppliance(t, gw, true)
	if a.cfg.Development || a.cfg.Account.DevOutbox != "" {
		t.Fatalf("not a production appliance: development %v, outbox %q", a.cfg.Development, a.cfg.Account.DevOutbox)
	}
	conn := a.dial("device-prod-0001")
	if _, err := conn.Accounts.SendSmsCode(bg, &hufuv1.SendSmsCodeRequest{Phone: phone, Purpose: hufuv1.SmsPurpose_SMS_PURPOSE_SIGN_IN}); err != nil {
		t.Fatalf("send code: %v", err)
	}
	code, ok := gw.LatestCode(phone, "sign-in")
	if !ok {
		t.Fatalf("the gateway received no sign-in code for the number: %v", gw.Outbox())
	}
	resp, err := conn.Accounts.SignInWithSmsCode(bg, &hufuv1.SignInWithSmsCodeRequest{
		Phone: phone, Code: code, Device: &hufuv1.Device{Id: "device-prod-0001", Name: "test phone"}})
	if err != nil {
		t.Fatalf("sign in with the gateway's code: %v", err)
	}
	conn.SetAccessToken(resp.Session.AccessToken)
	if _, err := os.Stat(filepath.Join(a.cfg.DataDir, "dev-sms.jsonl")); !os.IsNotExist(err) {
		t.Errorf("a production appliance wrote a development outbox: %v", err)
	}

	_, err = conn.Identity.VerifyWithCfca(bg, &hufuv1.VerifyWithCfcaRequest{Name: "错名", IdNumber: "11010519491231002X"})
	if statusCode(err) != codes.FailedPrecondition {
		t.Errorf("a name the identity service does not confirm: %v, want FailedPrecondition", err)
	}
	if _, err := conn.Identity.VerifyWithCfca(bg, &hufuv1.VerifyWithCfcaRequest{Name: "张三", IdNumber: "11010519491231002X"}); err != nil {
		t.Fatalf("verify identity through the gateway: %v", err)
	}
	if n := gw.Attempts("identity.name-id"); n != 2 {
		t.Errorf("%d identity requests at the gateway, want 2", n)
	}

	// A certificate paid through the payment gateway, once.
	p := &applicant{t: t, conn: conn, key: createKey(t, conn, resp.Account.Id, "key-prod-0001", "123456"),
		certs: hufuv1.NewCertificateServiceClient(conn.ClientConn())}
	if serial := p.issue(a.desk()); serial == "" {
		t.Fatal("no certificate")
	}
	if n := gw.Charges(); n != 1 {
		t.Errorf("%d charges at the payment gateway, want 1", n)
	}

	carrier := a.dial("device-prod-0002")
	if _, err := carrier.Accounts.SignInWithCarrier(bg, &hufuv1.SignInWithCarrierRequest{CarrierToken: "dev-13800000001",
		Device: &hufuv1.Device{Id: "device-prod-0002", Name: "test phone"}}); err != nil {
		t.Fatalf("carrier login through the gateway: %v", err)
	}

	// An outage is Unavailable, with a message, and the call returns.
	gw.SetDown(true)
	_, err = carrier.Accounts.SendSmsCode(bg, &hufuv1.SendSmsCodeRequest{Phone: "13800000002", Purpose: hufuv1.SmsPurpose_SMS_PURPOSE_SIGN_IN})
	if statusCode(err) != codes.Unavailable || errMessage(err) == "" {
		t.Errorf("send code while the gateway is down: %v, want Unavailable", err)
	}
	gw.SetDown(false)

	// A number the gateway will not send to is FailedPrecondition: retrying does not help.
	gw.Handle(webhook.OpSMSSend, func(webhooktest.Request) webhook.Response {
		return webhook.Response{Result: webhook.ResultRejected, ErrorCode: "blocked"}
	})
	_, err = carrier.Accounts.SendSmsCode(bg, &hufuv1.SendSmsCodeRequest{Phone: "13800000004", Purpose: hufuv1.SmsPurpose_SMS_PURPOSE_SIGN_IN})
	if statusCode(err) != codes.FailedPrecondition {
		t.Errorf("send code to a number the gateway refuses: %v, want FailedPrecondition", err)
	}

	noLogin := productionAppliance(t, webhooktest.Start(t, webhooktest.Config{}), false)
	c := noLogin.dial("device-prod-0003")
	_, err = c.Accounts.SignInWithWechat(bg, &hufuv1.SignInWithWechatRequest{AuthCode: "dev-openid-1", Device: &hufuv1.Device{Id: "device-prod-0003", Name: "p"}})
	if statusCode(err) != codes.FailedPrecondition || !hasPrefix(errMessage(err), "WeChat login is not offered") {
		t.Errorf("WeChat sign-in without a login provider: %v, want FailedPrecondition, not offered", err)
	}
	_, err = c.Accounts.SignInWithCarrier(bg, &hufuv1.SignInWithCarrierRequest{CarrierToken: "dev-13800000003", Device: &hufuv1.Device{Id: "device-prod-0003", Name: "p"}})
	if statusCode(err) != codes.FailedPrecondition {
		t.Errorf("carrier sign-in without a login provider: %v, want FailedPrecondition", err)
	}
}
