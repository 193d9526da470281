package daemon_test

import (
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	"google.golang.org/genproto/googleapis/rpc/errdetails"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	hufuv1 "github.com/hufu-hsm/hufu/api/hufu/v1"
	"github.com/hufu-hsm/hufu/cosign"
	"github.com/hufu-hsm/hufu/daemon/config"
	"github.com/hufu-hsm/hufu/daemon/devpki"
)

// walletAppliance is an appliance on the development catalogue (every platform admits the
// embedded CA's certificates: 2 yuan a use, day passes of 1, 7, 30 days) whose development
// CLI certificate is the review desk, a business system and the payment desk (ledger check).
func walletAppliance(t *testing.T) *certAppl {
	return certAppliance(t, func(c *config.Config) {
		c.SystemClients = []config.SystemClient{{Name: devpki.CLIClientName,
			Services: []string{"hufu.v1.ReviewService", "hufu.v1.ScanService", "hufu.v1.PaymentDeskService"}}}
	})
}

// walletPerson is a verified person with a certificate valid for platform "demo" only.
type walletPerson struct {
	*applicant
	serial string
	wallet hufuv1.WalletServiceClient
	scan   hufuv1.PhoneScanServiceClient
}

func newWalletPerson(t *testing.T, a *certAppl, phone, device, keyID string) *walletPerson {
	p := newApplicant(t, a, phone, device, keyID)
	serial := p.issue(a.desk())
	return &walletPerson{applicant: p, serial: serial, wallet: hufuv1.NewWalletServiceClient(p.conn.ClientConn()),
		scan: hufuv1.NewPhoneScanServiceClient(p.conn.ClientConn())}
}

func (p *walletPerson) balance() int64 {
	p.t.Helper()
	b, err := p.wallet.GetWalletBalance(bg, &hufuv1.GetWalletBalanceRequest{})
	if err != nil {
		p.t.Fatalf("balance: %v", err)
	}
	return b.BalanceFen
}

func (p *walletPerson) uses() []*hufuv1.WalletUse {
	p.t.Helper()
	u, err := p.wallet.ListWalletUses(bg, &hufuv1.ListWalletUsesRequest{})
	if err != nil {
		p.t.Fatalf("uses: %v", err)
	}
	return u.Uses
}

// order creates and pays a wallet order with the development provider.
func (p *walletPerson) topUp(req string, amount int64) *hufuv1.PayWalletOrderResponse {
	p.t.Helper()
	o, err := p.wallet.CreateTopUp(bg, &hufuv1.CreateTopUpRequest{RequestId: req, PlatformId: "hangzhou", AmountFen: amount})
	if err != nil {
		p.t.Fatalf("top-up: %v", err)
	}
	paid, err := p.wallet.PayWalletOrder(bg, &hufuv1.PayWalletOrderRequest{OrderId: o.Order.Id, Method: "dev", IdempotencyKey: "pay-" + req})
	if err != nil {
		p.t.Fatalf("pay top-up: %v", err)
	}
	return paid
}

// bindSession creates a BIND session of the person's identity on a platform and scans it.
func (p *walletPerson) bindSession(rp hufuv1.ScanServiceClient, platform, req string) (string, *hufuv1.Candidate) {
	p.t.Helper()
	resp, err := rp.CreateSession(bg, &hufuv1.CreateSessionRequest{RequestId: req, Kind: hufuv1.SessionKind_SESSION_KIND_BIND, PlatformId: platform,
		Reference: "unit-wallet", Subject: &hufuv1.BindSubject{PersonName: "张三", IdNumber: "11010519491231002X"}})
	if err != nil {
		p.t.Fatalf("create session: %v", err)
	}
	scanned, err := p.scan.Scan(bg, &hufuv1.ScanRequest{QrPayload: resp.Session.QrPayload})
	if err != nil || len(scanned.Candidates) != 1 || scanned.Candidates[0].Serial != p.serial {
		p.t.Fatalf("scan: %v %v", scanned, err)
	}
	return resp.Session.Id, scanned.Candidates[0]
}

func (a *certAppl) checkLedger(t *testing.T) *hufuv1.CheckLedgerResponse {
	t.Helper()
	r, err := a.payDesk().CheckLedger(bg, &hufuv1.CheckLedgerRequest{})
	if err != nil || !r.Balanced {
		t.Fatalf("ledger check: %v %v", r, err)
	}
	return r
}

// wantRecognitionRequired checks the gate's refusal: FailedPrecondition, the ErrorInfo
// reason the phone acts on, and a message naming the platform and what to open.
func wantRecognitionRequired(t *testing.T, err error, platform string, mentions ...string) {
	t.Helper()
	st, _ := status.FromError(err)
	if st.Code() != codes.FailedPrecondition {
		t.Fatalf("want FailedPrecondition, got %v", err)
	}
	reason := ""
	for _, d := range st.Details() {
		if info, ok := d.(*errdetails.ErrorInfo); ok && info.Domain == hufuv1.ErrorDomain {
			reason = info.Reason
		}
	}
	if reason != hufuv1.ReasonRecognitionServiceRequired {
		t.Fatalf("reason %q, want %q (%v)", reason, hufuv1.ReasonRecognitionServiceRequired, err)
	}
	for _, m := range append([]string{"platform " + platform}, mentions...) {
		if !strings.Contains(st.Message(), m) {
			t.Fatalf("message %q does not say %q", st.Message(), m)
		}
	}
}

func TestWalletPerUseDebitOnceUnderConcurrentRetries(t *testing.T) {
	a := walletAppliance(t)
	rp := a.rp()
	p := newWalletPerson(t, a, "13800007001", "wallet-dev-01", "key-wallet-0001")

	cat, err := p.wallet.GetWalletCatalogue(bg, &hufuv1.GetWalletCatalogueRequest{})
	if err != nil || len(cat.Platforms) != 2 || cat.Platforms[1].PlatformId != "hangzhou" || cat.Platforms[1].PerUsePriceFen != 200 {
		t.Fatalf("catalogue: %v %v", cat, err)
	}
	if paid := p.topUp("topup-0001", 1000); paid.BalanceFen != 1000 || paid.Order.State != hufuv1.WalletOrderState_WALLET_ORDER_STATE_COMPLETED {
		t.Fatalf("top-up: %v", paid)
	}
	before := a.checkLedger(t)

	id, cand := p.bindSession(rp, "hangzhou", "bind-wallet-01")
	if !cand.MutualRecognition || cand.Refusal != "" {
		t.Fatalf("candidate on another platform: %v", cand)
	}
	// The phone retries its choice concurrently (lost answers): every retry gets the same
	// pins, and the session is debited once.
	const retries = 8
	var wg sync.WaitGroup
	challenges := make([][]byte, retries)
	errs := make([]error, retries)
	for i := range retries {
		wg.Add(1)
		go func() {
			defer wg.Done()
			c, err := p.scan.Choose(bg, &hufuv1.ChooseRequest{SessionId: id, CertificateSerial: p.serial})
			if err == nil {
				challenges[i] = c.Challenge
			}
			errs[i] = err
		}()
	}
	wg.Wait()
	for i, err := range errs {
		if err != nil {
			t.Fatalf("choice %d: %v", i, err)
		}
		if string(challenges[i]) != string(challenges[0]) {
			t.Fatalf("choice %d pinned another challenge", i)
		}
	}
	if b := p.balance(); b != 800 {
		t.Fatalf("balance after one use: %d, want 800", b)
	}
	uses := p.uses()
	if len(uses) != 1 || uses[0].SessionId != id || uses[0].AmountFen != 200 || uses[0].PlatformId != "hangzhou" || uses[0].CertificateSerial != p.serial {
		t.Fatalf("consumption records: %v", uses)
	}
	after := a.checkLedger(t)
	if after.Entries != before.Entries+1 {
		t.Fatalf("ledger entries %d -> %d: want exactly one debit", before.Entries, after.Entries)
	}

	// The session completes as any other: the certificate signs the challenge.
	e, err := cosign.Digest(&p.key.public, nil, challenges[0])
	if err != nil {
		t.Fatal(err)
	}
	sigs, err := cosignDigests(t, p.scan, p.key, id, [][cosign.ScalarSize]byte{e})
	if err != nil {
		t.Fatalf("cosign: %v", err)
	}
	if _, err := p.scan.Complete(bg, &hufuv1.CompleteRequest{SessionId: id, Signatures: sigs}); err != nil {
		t.Fatalf("complete: %v", err)
	}
	if b := p.balance(); b != 800 || len(p.uses()) != 1 {
		t.Fatalf("completion debited again: balance %d", b)
	}

	// Sign modes (§2.3): 扫码认证 takes only the platform's certificates; 全国CA互认APP takes
	// this one through the gate, which debits the new session once.
	_, err = rp.CreateSession(bg, &hufuv1.CreateSessionRequest{RequestId: "bind-mode-1", Kind: hufuv1.SessionKind_SESSION_KIND_BIND, PlatformId: "hangzhou",
		Reference: "unit-wallet", Subject: &hufuv1.BindSubject{PersonName: "张三", IdNumber: "11010519491231002X"}, SignMode: hufuv1.SignMode_SIGN_MODE_SCAN})
	wantCode(t, err, codes.InvalidArgument, "sign_mode")
	signIn := func(req string, mode hufuv1.SignMode) (string, *hufuv1.Candidate) {
		t.Helper()
		resp, err := rp.CreateSession(bg, &hufuv1.CreateSessionRequest{RequestId: req, Kind: hufuv1.SessionKind_SESSION_KIND_SIGN, PlatformId: "hangzhou",
			Reference: "unit-wallet", SignMode: mode, Documents: []*hufuv1.Document{{Name: "投标函.pdf", Sm3: make([]byte, 32)}}})
		if err != nil {
			t.Fatalf("create sign session: %v", err)
		}
		scanned, err := p.scan.Scan(bg, &hufuv1.ScanRequest{QrPayload: resp.Session.QrPayload})
		if err != nil || len(scanned.Candidates) != 1 || scanned.SignMode != mode {
			t.Fatalf("scan: %v %v", scanned, err)
		}
		return resp.Session.Id, scanned.Candidates[0]
	}
	if _, cand := signIn("sign-mode-scan", hufuv1.SignMode_SIGN_MODE_SCAN); cand.MutualRecognition || !strings.Contains(cand.Refusal, "扫码认证") {
		t.Fatalf("candidate in the 扫码认证 mode: %v", cand)
	}
	sid, cand := signIn("sign-mode-mr", hufuv1.SignMode_SIGN_MODE_MUTUAL_RECOGNITION)
	if !cand.MutualRecognition || cand.Refusal != "" {
		t.Fatalf("candidate in the 全国CA互认APP mode: %v", cand)
	}
	if _, err := p.scan.Choose(bg, &hufuv1.ChooseRequest{SessionId: sid, CertificateSerial: p.serial}); err != nil {
		t.Fatalf("choose in the 全国CA互认APP mode: %v", err)
	}
	if b, u := p.balance(), p.uses(); b != 600 || len(u) != 2 || u[0].SessionId != sid {
		t.Fatalf("after a 全国CA互认APP signature: balance %d, uses %v", b, u)
	}
	a.checkLedger(t)
}

func TestWalletDayPassAndNoService(t *testing.T) {
	a := walletAppliance(t)
	rp := a.rp()
	p := newWalletPerson(t, a, "13800007002", "wallet-dev-02", "key-wallet-0002")

	// No service: the choice is refused, naming the platform and what to open.
	id, _ := p.bindSession(rp, "hangzhou", "bind-wallet-10")
	_, err := p.scan.Choose(bg, &hufuv1.ChooseRequest{SessionId: id, CertificateSerial: p.serial})
	wantRecognitionRequired(t, err, "hangzhou", "day pass", "top up", "2.00 yuan")

	// A day pass opens it; the session's choice can be made again, free.
	o, err := p.wallet.BuyDayPass(bg, &hufuv1.BuyDayPassRequest{RequestId: "pass-0001", PlatformId: "hangzhou", PassId: "day-1"})
	if err != nil || o.Order.AmountFen != 500 || o.Order.State != hufuv1.WalletOrderState_WALLET_ORDER_STATE_AWAITING_PAYMENT {
		t.Fatalf("buy pass: %v %v", o, err)
	}
	if _, err := p.wallet.PayWalletOrder(bg, &hufuv1.PayWalletOrderRequest{OrderId: o.Order.Id, Method: "dev", IdempotencyKey: "pay-pass-0001"}); err != nil {
		t.Fatalf("pay pass: %v", err)
	}
	ps, err := p.wallet.ListDayPasses(bg, &hufuv1.ListDayPassesRequest{})
	if err != nil || len(ps.Passes) != 1 || !ps.Passes[0].Active || ps.Passes[0].Remaining.AsDuration() != 24*time.Hour {
		t.Fatalf("passes: %v %v", ps, err)
	}
	if _, err := p.scan.Choose(bg, &hufuv1.ChooseRequest{SessionId: id, CertificateSerial: p.serial}); err != nil {
		t.Fatalf("choice with a day pass: %v", err)
	}
	if b, u := p.balance(), p.uses(); b != 0 || len(u) != 0 {
		t.Fatalf("a day pass debited the wallet: %d %v", b, u)
	}

	// A day later the pass has lapsed: the next session is refused again.
	a.clock.Advance(24*time.Hour + time.Minute)
	a.signIn(p.conn, "13800007002", "wallet-dev-02") // the access token expired too
	ps, err = p.wallet.ListDayPasses(bg, &hufuv1.ListDayPassesRequest{})
	if err != nil || len(ps.Passes) != 1 || ps.Passes[0].Active || ps.Passes[0].Remaining.AsDuration() != 0 {
		t.Fatalf("passes after expiry: %v %v", ps, err)
	}
	id2, _ := p.bindSession(rp, "hangzhou", "bind-wallet-11")
	_, err = p.scan.Choose(bg, &hufuv1.ChooseRequest{SessionId: id2, CertificateSerial: p.serial})
	wantRecognitionRequired(t, err, "hangzhou", "day pass")
	orders, err := p.wallet.ListWalletOrders(bg, &hufuv1.ListWalletOrdersRequest{Kind: hufuv1.WalletOrderKind_WALLET_ORDER_KIND_DAY_PASS})
	if err != nil || len(orders.Orders) != 1 || orders.Orders[0].PassUntil == nil {
		t.Fatalf("purchase records: %v %v", orders, err)
	}
	a.checkLedger(t)
}

func TestWalletValidCertificateNeverTouchesWallet(t *testing.T) {
	a := walletAppliance(t)
	rp := a.rp()
	p := newWalletPerson(t, a, "13800007003", "wallet-dev-03", "key-wallet-0003")
	p.topUp("topup-0003", 1000)
	before := a.checkLedger(t)

	id, cand := p.bindSession(rp, "demo", "bind-wallet-20")
	if cand.MutualRecognition || cand.Refusal != "" {
		t.Fatalf("candidate on its own platform: %v", cand)
	}
	if _, err := p.scan.Choose(bg, &hufuv1.ChooseRequest{SessionId: id, CertificateSerial: p.serial}); err != nil {
		t.Fatalf("choose: %v", err)
	}
	if b, u := p.balance(), p.uses(); b != 1000 || len(u) != 0 {
		t.Fatalf("a certificate valid for the platform touched the wallet: %d %v", b, u)
	}
	if after := a.checkLedger(t); after.Entries != before.Entries {
		t.Fatalf("ledger entries %d -> %d", before.Entries, after.Entries)
	}
}

func TestWalletTopUpOnceUnderDoublePayment(t *testing.T) {
	a := walletAppliance(t)
	p := newWalletPerson(t, a, "13800007004", "wallet-dev-04", "key-wallet-0004")
	o, err := p.wallet.CreateTopUp(bg, &hufuv1.CreateTopUpRequest{RequestId: "topup-0004", PlatformId: "hangzhou", AmountFen: 5000})
	if err != nil {
		t.Fatal(err)
	}
	// The same request again is the same order; an amount not offered is refused.
	again, err := p.wallet.CreateTopUp(bg, &hufuv1.CreateTopUpRequest{RequestId: "topup-0004", PlatformId: "hangzhou", AmountFen: 5000})
	if err != nil || again.Order.Id != o.Order.Id {
		t.Fatalf("repeated request: %v %v", again, err)
	}
	_, err = p.wallet.CreateTopUp(bg, &hufuv1.CreateTopUpRequest{RequestId: "topup-0005", PlatformId: "hangzhou", AmountFen: 1234})
	wantCode(t, err, codes.InvalidArgument, "amount_fen")
	before := a.checkLedger(t)

	// Two payments at once, with two idempotency keys, and each repeated.
	var wg sync.WaitGroup
	results := make([]error, 4)
	for i := range 4 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			_, results[i] = p.wallet.PayWalletOrder(bg, &hufuv1.PayWalletOrderRequest{OrderId: o.Order.Id, Method: "dev", IdempotencyKey: fmt.Sprintf("double-pay-%d", i%2)})
		}()
	}
	wg.Wait()
	ok := map[int]bool{}
	for i, err := range results {
		switch statusCode(err) {
		case codes.OK:
			ok[i%2] = true
		case codes.FailedPrecondition:
		default:
			t.Fatalf("payment %d: %v", i, err)
		}
	}
	if len(ok) != 1 {
		t.Fatalf("payments that completed the order, by key: %v", ok)
	}
	if b := p.balance(); b != 5000 {
		t.Fatalf("balance after a double payment: %d, want 5000", b)
	}
	if after := a.checkLedger(t); after.Entries != before.Entries+1 {
		t.Fatalf("ledger entries %d -> %d: want one top-up", before.Entries, after.Entries)
	}
	list, err := p.wallet.ListWalletOrders(bg, &hufuv1.ListWalletOrdersRequest{Kind: hufuv1.WalletOrderKind_WALLET_ORDER_KIND_TOP_UP})
	if err != nil || len(list.Orders) != 1 || list.Orders[0].State != hufuv1.WalletOrderState_WALLET_ORDER_STATE_COMPLETED || list.Orders[0].LedgerEntryId == "" {
		t.Fatalf("top-up records: %v %v", list, err)
	}
}
