package daemon_test

import (
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/hufu-hsm/hufu/admin"
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
		// Production names the key of the subject identity's keyed hash (the default policy).
		c.Certificates.SubjectIdentityKeyFile = filepath.Join(c.DataDir, "subject-identity.key")
		if err := os.WriteFile(c.Certificates.SubjectIdentityKeyFile, []byte(strings.Repeat("5a", 32)+"\n"), 0o600); err != nil {
			t.Fatal(err)
		}
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
		enc: createKey(t, conn, resp.Account.Id, "key-prod-0001-enc", "123456"), certs: hufuv1.NewCertificateServiceClient(conn.ClientConn())}
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

// TestPaymentNotifications: the payment gateway tells hufu of payments whose answer hufu
// never received (payment.notify on the admin listener, signed as the contract says). A
// notification pays its order once however often it comes; a payment that can no longer
// pay its order (paid otherwise, cancelled) is refunded at the gateway and booked in and
// out; forged, stale, replayed and malformed notifications change nothing.
func TestPaymentNotifications(t *testing.T) {
	gw := webhooktest.Start(t, webhooktest.Config{})
	auditor, hash, err := admin.NewToken()
	if err != nil {
		t.Fatal(err)
	}
	a := certAppliance(t, func(c *config.Config) {
		o := gw.Options()
		o.Circuit.FailureThreshold = 100 // every lost answer below is a failed attempt
		c.Providers.Payment = &o
		c.SystemClients = []config.SystemClient{{Name: devpki.CLIClientName, Services: []string{"hufu.v1.ReviewService", "hufu.v1.PaymentDeskService"}}}
		c.Admin.Tokens = []config.AdminToken{{Name: "alice", Role: string(admin.Auditor), SHA256: hash}}
	})
	review, desk := a.desk(), a.payDesk()
	t.Cleanup(func() {
		if r, err := desk.CheckLedger(bg, &hufuv1.CheckLedgerRequest{}); err != nil || !r.Balanced {
			t.Errorf("the ledger does not balance after the test: %v %v", r, err)
		}
	})
	p := newApplicant(t, a, phone, "device-nt-01", "key-nt-0001")
	url := a.live.AdminURL() + "/providers/payment/" + webhook.OpPaymentNotify
	client := http.DefaultClient
	// lostCharge pays an order through the gateway, which takes the money and loses every
	// answer: the phone is told Unavailable, the gateway holds the payment.
	lostCharge := func(o *hufuv1.Order, idem string) webhooktest.Notification {
		t.Helper()
		gw.Inject(webhook.OpPaymentCharge, webhooktest.LostAnswer, webhooktest.LostAnswer, webhooktest.LostAnswer)
		_, err := p.certs.PayOrder(bg, &hufuv1.PayOrderRequest{OrderId: o.Id, Method: "wechat", IdempotencyKey: idem})
		wantCode(t, err, codes.Unavailable, "")
		ref, ok := gw.ChargeRef(o.Id, idem)
		if !ok {
			t.Fatal("the gateway took no charge")
		}
		return webhooktest.Notification{OrderID: o.Id, IdempotencyKey: idem, PaymentRef: ref, AmountFen: o.PriceFen, Method: "wechat"}
	}
	status := func(o *hufuv1.Order) *hufuv1.Order {
		t.Helper()
		got, err := p.certs.GetOrder(bg, &hufuv1.GetOrderRequest{OrderId: o.Id})
		if err != nil {
			t.Fatal(err)
		}
		return got.Order
	}

	// 1. A payment whose answer was lost: the notification pays the order.
	o1 := p.approved(review)
	n1 := lostCharge(o1, "pay-nt-0001")
	if st := status(o1).Status; st != hufuv1.OrderStatus_ORDER_STATUS_AWAITING_PAYMENT {
		t.Fatalf("after the lost answer the order is %v", st)
	}
	for _, spoil := range []webhooktest.Fault{webhooktest.BadSignature, webhooktest.StaleTimestamp} {
		if ans, _ := gw.Notify(t, client, url, n1, spoil); ans.Status != http.StatusUnauthorized {
			t.Fatalf("a notification spoiled by %v: %+v", spoil, ans)
		}
	}
	if st := status(o1).Status; st != hufuv1.OrderStatus_ORDER_STATUS_AWAITING_PAYMENT {
		t.Fatalf("a forged notification changed the order: %v", st)
	}
	ans, sent := gw.Notify(t, client, url, n1, 0)
	if ans.Status != http.StatusOK || ans.Result != "ok" {
		t.Fatalf("notification: %+v", ans)
	}
	paid := status(o1)
	if paid.Status != hufuv1.OrderStatus_ORDER_STATUS_COMPLETED || paid.Serial == "" {
		t.Fatalf("after the notification: %v", paid)
	}
	if again := gw.Replay(t, client, url, sent); again.Status != http.StatusUnauthorized {
		t.Fatalf("a replayed notification: %+v", again)
	}
	if ans, _ := gw.Notify(t, client, url, n1, 0); ans.Result != "ok" {
		t.Fatalf("the same payment notified again: %+v", ans)
	}
	if r, err := p.certs.PayOrder(bg, &hufuv1.PayOrderRequest{OrderId: o1.Id, Method: "wechat", IdempotencyKey: "pay-nt-0001"}); err != nil ||
		r.Certificate.GetSerial() != paid.Serial {
		t.Fatalf("the phone pays again with its key: %v %v", r, err)
	}

	// 2. Paid twice: the answer of the first charge was lost, the person paid again; the
	// first payment, notified later, is refunded.
	o2 := p.approved(review)
	n2 := lostCharge(o2, "pay-nt-0002")
	if _, err := p.certs.PayOrder(bg, &hufuv1.PayOrderRequest{OrderId: o2.Id, Method: "wechat", IdempotencyKey: "pay-nt-0003"}); err != nil {
		t.Fatal(err)
	}
	for range 2 {
		if ans, _ := gw.Notify(t, client, url, n2, 0); ans.Result != "returned" {
			t.Fatalf("a second payment of a paid order: %+v", ans)
		}
	}
	if amount, ok := gw.Refunded(n2.PaymentRef); !ok || amount != o2.PriceFen {
		t.Fatalf("the second payment was not refunded at the gateway: %d %v", amount, ok)
	}

	// 3. Paid after the order was cancelled: refunded.
	o3 := p.approved(review)
	n3 := lostCharge(o3, "pay-nt-0004")
	if _, err := p.certs.CancelOrder(bg, &hufuv1.CancelOrderRequest{OrderId: o3.Id, Reason: "改用其他方式"}); err != nil {
		t.Fatal(err)
	}
	if ans, _ := gw.Notify(t, client, url, n3, 0); ans.Result != "returned" {
		t.Fatalf("a payment of a cancelled order: %+v", ans)
	}
	if _, ok := gw.Refunded(n3.PaymentRef); !ok {
		t.Fatal("the payment of a cancelled order was not refunded")
	}

	// 4. Nothing is paid by an unknown order, a wrong amount, or a malformed notification.
	unknown := n1
	unknown.OrderID = "0123456789abcdef012345"
	if ans, _ := gw.Notify(t, client, url, unknown, 0); ans.Result != "unknown_order" {
		t.Fatalf("an unknown order: %+v", ans)
	}
	o4 := p.approved(review)
	short := webhooktest.Notification{OrderID: o4.Id, IdempotencyKey: "pay-nt-0005", PaymentRef: "wx:short-1", AmountFen: o4.PriceFen - 1, Method: "wechat"}
	if ans, _ := gw.Notify(t, client, url, short, 0); ans.Result != "amount_mismatch" || status(o4).Status != hufuv1.OrderStatus_ORDER_STATUS_AWAITING_PAYMENT {
		t.Fatalf("a wrong amount: %+v", ans)
	}
	for name, bad := range map[string]webhooktest.Notification{
		"order id": {OrderID: "x", IdempotencyKey: "k-00000001", PaymentRef: "r", AmountFen: 1, Method: "wechat"},
		"method":   {OrderID: o4.Id, IdempotencyKey: "k-00000001", PaymentRef: "r", AmountFen: 1, Method: "offline"},
		"amount":   {OrderID: o4.Id, IdempotencyKey: "k-00000001", PaymentRef: "r", AmountFen: -5, Method: "wechat"},
	} {
		if ans, _ := gw.Notify(t, client, url, bad, 0); ans.Status != http.StatusBadRequest || !strings.Contains(ans.Text, name[:5]) {
			t.Errorf("malformed %s: %+v", name, ans)
		}
	}

	// 5. A wallet top-up whose answer was lost is credited once by its notification; a
	// second payment of it is refunded.
	wallet := hufuv1.NewWalletServiceClient(p.conn.ClientConn())
	top, err := wallet.CreateTopUp(bg, &hufuv1.CreateTopUpRequest{RequestId: "topup-nt-0001", PlatformId: "hangzhou", AmountFen: 5000})
	if err != nil {
		t.Fatal(err)
	}
	gw.Inject(webhook.OpPaymentCharge, webhooktest.LostAnswer, webhooktest.LostAnswer, webhooktest.LostAnswer)
	_, err = wallet.PayWalletOrder(bg, &hufuv1.PayWalletOrderRequest{OrderId: top.Order.Id, Method: "wechat", IdempotencyKey: "pay-nt-0006"})
	wantCode(t, err, codes.Unavailable, "")
	ref, _ := gw.ChargeRef(top.Order.Id, "pay-nt-0006")
	nw := webhooktest.Notification{OrderID: top.Order.Id, IdempotencyKey: "pay-nt-0006", PaymentRef: ref, AmountFen: 5000, Method: "wechat"}
	for range 2 {
		if ans, _ := gw.Notify(t, client, url, nw, 0); ans.Result != "ok" {
			t.Fatalf("a top-up's notification: %+v", ans)
		}
	}
	if b, err := wallet.GetWalletBalance(bg, &hufuv1.GetWalletBalanceRequest{}); err != nil || b.BalanceFen != 5000 {
		t.Fatalf("balance after the notified top-up: %v %v", b, err)
	}
	gw.Inject(webhook.OpPaymentCharge, webhooktest.LostAnswer, webhooktest.LostAnswer, webhooktest.LostAnswer)
	top2, err := wallet.CreateTopUp(bg, &hufuv1.CreateTopUpRequest{RequestId: "topup-nt-0002", PlatformId: "hangzhou", AmountFen: 5000})
	if err != nil {
		t.Fatal(err)
	}
	_, err = wallet.PayWalletOrder(bg, &hufuv1.PayWalletOrderRequest{OrderId: top2.Order.Id, Method: "wechat", IdempotencyKey: "pay-nt-0007"})
	wantCode(t, err, codes.Unavailable, "")
	lost, _ := gw.ChargeRef(top2.Order.Id, "pay-nt-0007")
	if _, err := wallet.PayWalletOrder(bg, &hufuv1.PayWalletOrderRequest{OrderId: top2.Order.Id, Method: "wechat", IdempotencyKey: "pay-nt-0008"}); err != nil {
		t.Fatal(err)
	}
	nw2 := webhooktest.Notification{OrderID: top2.Order.Id, IdempotencyKey: "pay-nt-0007", PaymentRef: lost, AmountFen: 5000, Method: "wechat"}
	if ans, _ := gw.Notify(t, client, url, nw2, 0); ans.Result != "returned" {
		t.Fatalf("a second payment of a top-up: %+v", ans)
	}
	if _, ok := gw.Refunded(lost); !ok {
		t.Fatal("the second payment of the top-up was not refunded")
	}
	if b, _ := wallet.GetWalletBalance(bg, &hufuv1.GetWalletBalanceRequest{}); b.BalanceFen != 10000 {
		t.Fatalf("balance after both top-ups: %d, want 10000", b.BalanceFen)
	}
	nw2.AmountFen = 4000
	if ans, _ := gw.Notify(t, client, url, nw2, 0); ans.Result != "amount_mismatch" {
		t.Fatalf("a top-up notified with another amount: %+v", ans)
	}

	// The books: one payment per paid order, each refunded payment booked in and out.
	export := a.auditExport(auditor)
	balances, lines := ledgerFromAudit(t, export)
	if n := len(entriesOf(lines, o1.Id)); n != 1 {
		t.Errorf("%d entries for the notified order, want 1", n)
	}
	if es := entriesOf(lines, o2.Id); len(es) != 3 {
		t.Errorf("entries for the order paid twice: %+v", es)
	}
	if es := entriesOf(lines, o3.Id); len(es) != 2 || es[1].reverses != es[0].entry {
		t.Errorf("entries for the cancelled order: %+v", es)
	}
	if want := o1.PriceFen + o2.PriceFen + 10000; balances["clearing:gateway"] != want {
		t.Errorf("the gateway holds %d, want %d", balances["clearing:gateway"], want)
	}
	if es := entriesOf(lines, top2.Order.Id); len(es) != 3 {
		t.Errorf("entries for the top-up paid twice: %+v", es)
	}
	for _, want := range []string{`"action":"payment.notify","subject":"o/order/0123456789abcdef012345","outcome":"denied"`,
		`"result":"amount_mismatch"`, `"result":"returned"`} {
		if !strings.Contains(string(export), want) {
			t.Errorf("the audit log lacks %s", want)
		}
	}
}
