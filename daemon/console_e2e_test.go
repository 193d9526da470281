package daemon_test

import (
	"bytes"
	"context"
	"crypto/ecdsa"
	"crypto/rand"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/cookiejar"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/chromedp/cdproto/network"
	"github.com/chromedp/chromedp"
	"github.com/emmansun/gmsm/sm2"
	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/hufu-hsm/hufu/admin"
	hufuv1 "github.com/hufu-hsm/hufu/api/hufu/v1"
	"github.com/hufu-hsm/hufu/client"
	"github.com/hufu-hsm/hufu/daemon/config"
	"github.com/hufu-hsm/hufu/daemon/devpki"
	"github.com/hufu-hsm/hufu/store"
)

// The operator console (admin/console) driven in headless Chromium against a real
// appliance (SoftHSM2, Pebble, TLS on the admin listener): one browser for the whole test,
// one browser context (its own cookies) per person. Screenshots go to
// $HUFU_CONSOLE_SCREENSHOTS if set, else to the test's temporary directory.

// chromiumPath finds Debian's chromium (CI installs it: apt-get install chromium).
func chromiumPath() string {
	for _, name := range []string{"chromium", "chromium-browser", "google-chrome"} {
		if p, err := exec.LookPath(name); err == nil {
			return p
		}
	}
	return ""
}

// browser is one headless Chromium for a test.
type browser struct {
	t     *testing.T
	ctx   context.Context
	shots string
}

func newBrowser(t *testing.T) *browser {
	t.Helper()
	path := chromiumPath()
	if path == "" {
		t.Skip("chromium is not installed (apt-get install chromium): the console's browser tests need it")
	}
	opts := append(chromedp.DefaultExecAllocatorOptions[:], chromedp.ExecPath(path), chromedp.WindowSize(1366, 768),
		chromedp.IgnoreCertErrors, chromedp.NoSandbox, chromedp.Flag("lang", "zh-CN"))
	actx, cancelAlloc := chromedp.NewExecAllocator(context.Background(), opts...)
	ctx, cancel := chromedp.NewContext(actx)
	if err := chromedp.Do(ctx); err != nil {
		cancel()
		cancelAlloc()
		t.Fatalf("starting chromium: %v", err)
	}
	t.Cleanup(func() { cancel(); cancelAlloc() })
	shots := os.Getenv("HUFU_CONSOLE_SCREENSHOTS")
	if shots == "" {
		shots = t.TempDir()
	} else if err := os.MkdirAll(shots, 0o755); err != nil {
		t.Fatal(err)
	}
	return &browser{t: t, ctx: ctx, shots: shots}
}

// person is one browser context: a person at their own browser, with their own cookies.
type person struct {
	b   *browser
	ctx context.Context
	t   *testing.T // the (sub)test the person's failures fail
}

// in is the same person failing t.
func (p *person) in(t *testing.T) *person {
	q := *p
	q.t = t
	return &q
}

func (b *browser) person() *person {
	ctx, cancel := chromedp.NewContext(b.ctx, chromedp.WithNewBrowserContext())
	b.t.Cleanup(cancel)
	// The first run opens the tab, which lives as long as the context of that run: this
	// one, without a timeout (each later action gets its own).
	if err := chromedp.Do(ctx); err != nil {
		b.t.Fatalf("opening a browser context: %v", err)
	}
	return &person{b: b, ctx: ctx, t: b.t}
}

func (p *person) run(actions ...chromedp.Action[chromedp.Void]) {
	p.t.Helper()
	ctx, cancel := context.WithTimeout(p.ctx, 30*time.Second)
	defer cancel()
	if err := chromedp.Do(ctx, actions...); err != nil {
		p.t.Fatalf("%v (the page: %s)", err, p.failure())
	}
}

// failure saves a screenshot of the page as it is, and returns its address and text.
func (p *person) failure() string {
	ctx, cancel := context.WithTimeout(p.ctx, 10*time.Second)
	defer cancel()
	if png, err := chromedp.Run(ctx, chromedp.CaptureScreenshot()); err == nil {
		_ = os.WriteFile(filepath.Join(p.b.shots, "failure.png"), png, 0o644)
	}
	loc, _ := chromedp.Run(ctx, chromedp.Location())
	body, _ := chromedp.Run(ctx, chromedp.Text(chromedp.CSS("body")))
	return loc + ": " + body
}

func (p *person) text(sel string) string {
	p.t.Helper()
	ctx, cancel := context.WithTimeout(p.ctx, 30*time.Second)
	defer cancel()
	// Read by script once the element is there: a DOM node chromedp resolved before a
	// navigation finished can be gone by the time its text is asked for.
	q, _ := json.Marshal(sel)
	s, err := chromedp.Run(ctx, chromedp.Poll[string](`document.querySelector(`+string(q)+`)?.innerText`))
	if err != nil {
		p.t.Fatalf("text of %s: %v", sel, err)
	}
	return s
}

func (p *person) screenshot(name string) {
	p.t.Helper()
	ctx, cancel := context.WithTimeout(p.ctx, 30*time.Second)
	defer cancel()
	png, err := chromedp.Run(ctx, chromedp.CaptureScreenshot())
	if err != nil {
		p.t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(p.b.shots, name+".png"), png, 0o644); err != nil {
		p.t.Fatal(err)
	}
}

// signIn signs in through the form and waits for the home screen.
func (p *person) signIn(base, token string) {
	p.t.Helper()
	p.run(chromedp.Navigate(base+"/console/signin"), chromedp.WaitVisible(chromedp.CSS("#token")),
		chromedp.SendKeys(chromedp.CSS("#token"), token), chromedp.Submit(chromedp.CSS("#signin")),
		chromedp.WaitVisible(chromedp.CSS("header nav")))
}

// sessionCookie returns the console's session cookie as the browser holds it.
func (p *person) sessionCookie() *network.Cookie {
	p.t.Helper()
	res, err := chromedp.Call(p.ctx, network.GetCookies, network.GetCookiesParams{})
	if err != nil {
		p.t.Fatal(err)
	}
	for _, c := range res.Cookies {
		if c.Name == "__Host-hufu-console" {
			return c
		}
	}
	return nil
}

// consoleClient is a plain HTTP client holding a browser's session cookie: the requests a
// browser would not send (a POST without the CSRF token).
func (a *adminAppliance) consoleClient(c *network.Cookie) *http.Client {
	a.t.Helper()
	jar, _ := cookiejar.New(nil)
	u, _ := url.Parse(a.adminURL)
	if c != nil {
		jar.SetCookies(u, []*http.Cookie{{Name: c.Name, Value: c.Value, Path: "/", Secure: true}})
	}
	return &http.Client{Jar: jar, Transport: a.http.Transport, Timeout: time.Minute,
		CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
}

var csrfField = regexp.MustCompile(`name="csrf" value="([^"]+)"`)

func TestConsole(t *testing.T) {
	b := newBrowser(t)
	a := startAdminAppliance(t, func(c *config.Config) {
		f := devpki.FilesIn(filepath.Join(c.DataDir, "tls"))
		c.Admin.CertFile, c.Admin.KeyFile = f.ServerCert, f.ServerKey
		c.SystemClients = []config.SystemClient{{Name: devpki.CLIClientName,
			Services: []string{"hufu.v1.ReviewService", "hufu.v1.ScanService", "hufu.v1.OpeningService"}}}
	})
	base := a.adminURL
	if !strings.HasPrefix(base, "https://") {
		t.Fatalf("the admin listener is not TLS: %s", base)
	}
	certs := &certAppl{a.appliance}

	olga := b.person()
	olga.signIn(base, a.tokens[admin.Operator])
	if got := olga.text("main"); !strings.Contains(got, "就绪") || !strings.Contains(got, "hsm") {
		t.Fatalf("home screen: %q", got)
	}
	olga.screenshot("console-home")

	t.Run("session cookie", func(t *testing.T) {
		olga := olga.in(t)
		c := olga.sessionCookie()
		if c == nil || !c.Secure || !c.HTTPOnly || c.SameSite != network.CookieSameSiteStrict || c.Path != "/" {
			t.Fatalf("session cookie: %+v", c)
		}
		// Every Set-Cookie the console sends is Secure, HttpOnly and SameSite=Strict.
		client := a.consoleClient(nil)
		resp, err := client.Get(base + "/console/signin")
		if err != nil {
			t.Fatal(err)
		}
		body, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		for _, h := range []string{"Content-Security-Policy", "X-Frame-Options", "Cache-Control"} {
			if resp.Header.Get(h) == "" {
				t.Errorf("no %s header", h)
			}
		}
		if csp := resp.Header.Get("Content-Security-Policy"); !strings.Contains(csp, "default-src 'self'") || !strings.Contains(csp, "frame-ancestors 'none'") || strings.Contains(csp, "unsafe-inline") {
			t.Errorf("CSP %q", csp)
		}
		m := csrfField.FindSubmatch(body)
		if m == nil {
			t.Fatal("no sign-in CSRF field")
		}
		resp, err = client.PostForm(base+"/console/signin", url.Values{"csrf": {string(m[1])}, "token": {a.tokens[admin.Auditor]}})
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != http.StatusSeeOther {
			t.Fatalf("sign-in: %s", resp.Status)
		}
		for _, line := range resp.Header.Values("Set-Cookie") {
			if !strings.Contains(line, "Secure") || !strings.Contains(line, "HttpOnly") || !strings.Contains(line, "SameSite=Strict") {
				t.Errorf("cookie without Secure, HttpOnly or SameSite=Strict: %q", line)
			}
		}
	})

	// An applicant's order in review, approved at the console.
	p := newApplicant(t, certs, "13800138301", "console-phone-01", "console-key-01")
	order := p.apply()
	t.Run("review desk", func(t *testing.T) {
		olga := olga.in(t)
		olga.run(chromedp.Navigate(base+"/console/review"), chromedp.WaitVisible(chromedp.CSS("#queue")))
		if got := olga.text("#queue"); !strings.Contains(got, order.Id) {
			t.Fatalf("the queue does not list %s: %q", order.Id, got)
		}
		olga.screenshot("console-review-queue")
		olga.run(chromedp.Navigate(base+"/console/review/"+order.Id), chromedp.WaitVisible(chromedp.CSS("#approve")))
		if got := olga.text("main"); !strings.Contains(got, "授权书") || !strings.Contains(got, "本人授权申请个人数字证书") {
			t.Fatalf("the application page does not show the letter: %q", got)
		}
		olga.screenshot("console-review-order")

		// Without the CSRF token, the same session's POST is refused and changes nothing.
		client := a.consoleClient(olga.sessionCookie())
		for name, form := range map[string]url.Values{"missing": {"note": {"x"}}, "wrong": {"note": {"x"}, "csrf": {"not-the-token"}}} {
			resp, err := client.PostForm(base+"/console/review/"+order.Id+"/approve", form)
			if err != nil {
				t.Fatal(err)
			}
			resp.Body.Close()
			if resp.StatusCode != http.StatusForbidden {
				t.Fatalf("CSRF token %s: %s", name, resp.Status)
			}
		}
		if o := certs.orderStatus(t, p, order.Id); o != hufuv1.OrderStatus_ORDER_STATUS_IN_REVIEW {
			t.Fatalf("a refused POST changed the order: %v", o)
		}

		olga.run(chromedp.SendKeys(chromedp.CSS("#note"), "材料齐全"), chromedp.Submit(chromedp.CSS("#approve")),
			chromedp.WaitVisible(chromedp.CSS(".notice")))
		if got := olga.text(".notice"); !strings.Contains(got, order.Id) {
			t.Fatalf("notice: %q", got)
		}
		if o := certs.orderStatus(t, p, order.Id); o != hufuv1.OrderStatus_ORDER_STATUS_AWAITING_PAYMENT {
			t.Fatalf("after approval the order is %v", o)
		}
		// Audited by the desk itself, under the operator's name.
		if !auditHas(t, a, func(actor, action, outcome string) bool {
			return action == "order.approve" && actor == "admin:olga" && outcome == store.OutcomeOK
		}) {
			t.Fatal("no order.approve record by admin:olga")
		}
	})

	t.Run("attachments inline", func(t *testing.T) {
		olga := olga.in(t)
		// An enterprise claim: a scanned letter and the business licence, both images.
		m := newMember(t, certs, "13800138331", "console-claim-01")
		o, err := m.claim(usccB, "北京控制台建设有限公司", "console-claim-0001")
		if err != nil {
			t.Fatal(err)
		}
		olga.run(chromedp.Navigate(base+"/console/review/"+o.Id), chromedp.WaitVisible(chromedp.CSS("#approve")),
			// Every image loaded and decoded: served by the console, allowed by its CSP.
			chromedp.Poll[chromedp.Void](`document.querySelectorAll("img.attachment").length >= 2 && Array.from(document.querySelectorAll("img.attachment")).every(i => i.complete && i.naturalWidth > 0)`))
		olga.screenshot("console-review-claim")
	})

	t.Run("roles", func(t *testing.T) {
		olga := olga.in(t)
		alice := b.person().in(t)
		alice.signIn(base, a.tokens[admin.Auditor])
		if nav := alice.text("header nav"); strings.Contains(nav, "证书审核") || strings.Contains(nav, "线下付款") || !strings.Contains(nav, "审计日志") {
			t.Fatalf("the auditor's navigation: %q", nav)
		}
		alice.run(chromedp.Navigate(base+"/console/review"), chromedp.WaitVisible(chromedp.CSS("main h1")))
		if got := alice.text("main"); !strings.Contains(got, "无权访问") {
			t.Fatalf("the auditor opened the review desk: %q", got)
		}
		resp, err := a.consoleClient(alice.sessionCookie()).Get(base + "/console/review")
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != http.StatusForbidden {
			t.Fatalf("auditor at the review desk: %s", resp.Status)
		}
		olga.run(chromedp.Navigate(base+"/console/audit"), chromedp.WaitVisible(chromedp.CSS("main h1")))
		if got := olga.text("main"); !strings.Contains(got, "无权访问") {
			t.Fatalf("the operator opened the audit log: %q", got)
		}
		// A metrics_reader token does not sign in.
		prom := b.person().in(t)
		prom.run(chromedp.Navigate(base+"/console/signin"), chromedp.WaitVisible(chromedp.CSS("#token")),
			chromedp.SendKeys(chromedp.CSS("#token"), a.tokens[admin.MetricsReader]), chromedp.Submit(chromedp.CSS("#signin")),
			chromedp.WaitVisible(chromedp.CSS(".error")))
		if got := prom.text(".error"); !strings.Contains(got, "metrics_reader") {
			t.Fatalf("metrics_reader sign-in: %q", got)
		}
	})

	t.Run("audit log", func(t *testing.T) {
		alice := b.person().in(t)
		alice.signIn(base, a.tokens[admin.Auditor])
		alice.run(chromedp.Navigate(base+"/console/audit?actor=admin:olga&action=order."), chromedp.WaitVisible(chromedp.CSS("#records")))
		got := alice.text("#records")
		if !strings.Contains(got, "order.approve") || strings.Contains(got, "admin.console.signin") {
			t.Fatalf("filtered log: %q", got)
		}
		alice.run(chromedp.Navigate(base+"/console/audit"), chromedp.WaitVisible(chromedp.CSS("#records")))
		alice.screenshot("console-audit")
		// The export is the full log with a fresh signed checkpoint: it verifies offline.
		resp, err := a.consoleClient(alice.sessionCookie()).Get(base + "/console/audit/export")
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		if resp.StatusCode != http.StatusOK || !strings.Contains(resp.Header.Get("Content-Disposition"), "attachment") {
			t.Fatalf("export: %s %v", resp.Status, resp.Header)
		}
		pub := auditPublicKey(t, a)
		res, err := store.VerifyExport(resp.Body, pub)
		if err != nil || res.Records == 0 || res.Checkpoints == 0 {
			t.Fatalf("the exported log does not verify: %+v %v", res, err)
		}
		alice.run(chromedp.Submit(chromedp.CSS("#verify")), chromedp.WaitVisible(chromedp.CSS("#verification")))
		if got := alice.text("#verification"); !strings.Contains(got, "校验通过") {
			t.Fatalf("verification: %q", got)
		}
		alice.screenshot("console-audit-verify")
	})

	t.Run("opening progress", func(t *testing.T) {
		watchOpening(t, a, certs, olga.in(t), base)
	})

	t.Run("reconciliation", func(t *testing.T) {
		olga := olga.in(t)
		const name = "福州控制台科技有限公司"
		m := newMember(t, certs, "13800138321", "console-xfer-01")
		tr, err := m.applyTransfer(usccA, name, "console-xfer-0001", "654321")
		if err != nil {
			t.Fatal(err)
		}
		olga.run(chromedp.Navigate(base+"/console/reconcile"), chromedp.WaitVisible(chromedp.CSS("#t-"+tr.Id)))
		// The bank names the payer differently: a partial match, left to the desk.
		line := a.today() + "," + yuanOf(tr.AmountFen) + ",6222000000654321,福州控制台科技," + "认证 " + tr.Reference + "\n"
		olga.run(chromedp.SetValue(chromedp.CSS("#csv"), line), chromedp.Submit(chromedp.CSS("#csv")),
			chromedp.WaitVisible(chromedp.CSS("#import-result")))
		if got := olga.text("#import-result"); !strings.Contains(got, "部分匹配，待人工判断") || !strings.Contains(got, tr.Id) {
			t.Fatalf("import result: %q", got)
		}
		olga.screenshot("console-reconcile")
		row := "#t-" + tr.Id + " form.confirm"
		olga.run(chromedp.SendKeys(chromedp.CSS(row+" input[name=note]"), "户名为简称，已电话核实"), chromedp.Submit(chromedp.CSS(row+" input[name=note]")),
			chromedp.WaitVisible(chromedp.CSS(".notice")))
		if got := olga.text(".notice"); !strings.Contains(got, tr.Id) {
			t.Fatalf("notice: %q", got)
		}
		if !auditHas(t, a, func(actor, action, outcome string) bool {
			return action == "enterprise.transfer.verify" && actor == "admin:olga" && outcome == store.OutcomeOK
		}) {
			t.Fatal("no enterprise.transfer.verify record by admin:olga")
		}
	})

	// The desks' fixtures: an applicant who pays one order offline (confirmed at the
	// console: the certificate is issued), pays the reviewed order online and asks for its
	// invoice (issued at the console), writes feedback (answered at the console), and at last
	// asks for the offline order's refund (agreed at the console, which revokes the key: the
	// money is then owed and paid out at the console).
	deskAudited := func(t *testing.T, action string) {
		t.Helper()
		if !auditHas(t, a, func(actor, act, outcome string) bool {
			return act == action && actor == "admin:olga" && outcome == store.OutcomeOK
		}) {
			t.Fatalf("no %s record by admin:olga", action)
		}
	}
	// The opening moved the clock past the tickets' life.
	p.key.cred, p.enc.cred = client.PINCredential("123456"), client.PINCredential("123456")
	offline := p.approved(a.desk())
	if _, err := hufuv1.NewPaymentServiceClient(p.conn.ClientConn()).PayOffline(bg, &hufuv1.PayOfflineRequest{OrderId: offline.Id}); err != nil {
		t.Fatal(err)
	}
	t.Run("offline payment desk", func(t *testing.T) {
		olga := olga.in(t)
		olga.run(chromedp.Navigate(base+"/console/payments"), chromedp.WaitVisible(chromedp.CSS("#p-"+offline.Id)))
		olga.screenshot("console-payments")
		olga.run(chromedp.Navigate(base+"/console/payments/"+offline.Id), chromedp.WaitVisible(chromedp.CSS("#confirm")))
		if got := olga.text("#payment"); !strings.Contains(got, yuanOf(offline.PriceFen)) {
			t.Fatalf("the payment page: %q", got)
		}
		// An amount that is not yuan is refused before the desk; a wrong amount by the desk.
		for amount, want := range map[string]string{"三百": "金额须以元计", "0.01": "amount_fen"} {
			olga.run(chromedp.Navigate(base+"/console/payments/"+offline.Id), chromedp.WaitVisible(chromedp.CSS("#confirm")),
				chromedp.SendKeys(chromedp.CSS("#confirm #reference"), "BANK-IN-7001"), chromedp.SetValue(chromedp.CSS("#confirm #amount"), amount),
				chromedp.Submit(chromedp.CSS("#confirm")), chromedp.WaitVisible(chromedp.CSS(".error")))
			if got := olga.text(".error"); !strings.Contains(got, want) {
				t.Fatalf("amount %s: %q", amount, got)
			}
		}
		// Without the CSRF token the session's POST is refused.
		resp, err := a.consoleClient(olga.sessionCookie()).PostForm(base+"/console/payments/"+offline.Id+"/confirm",
			url.Values{"reference": {"BANK-IN-7001"}, "amount": {yuanOf(offline.PriceFen)}})
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != http.StatusForbidden {
			t.Fatalf("a confirmation without the CSRF token: %s", resp.Status)
		}
		if o := certs.orderStatus(t, p, offline.Id); o != hufuv1.OrderStatus_ORDER_STATUS_AWAITING_PAYMENT {
			t.Fatalf("a refused confirmation changed the order: %v", o)
		}
		olga.run(chromedp.Navigate(base+"/console/payments/"+offline.Id), chromedp.WaitVisible(chromedp.CSS("#confirm")))
		olga.screenshot("console-payment")
		olga.run(chromedp.SendKeys(chromedp.CSS("#confirm #reference"), "BANK-IN-7001"), chromedp.Submit(chromedp.CSS("#confirm")),
			chromedp.WaitVisible(chromedp.CSS(".notice")))
		if got := olga.text(".notice"); !strings.Contains(got, offline.Id) || !strings.Contains(got, "已签发证书") {
			t.Fatalf("notice: %q", got)
		}
		if o := certs.orderStatus(t, p, offline.Id); o != hufuv1.OrderStatus_ORDER_STATUS_COMPLETED {
			t.Fatalf("after the confirmation the order is %v", o)
		}
		deskAudited(t, "payment.offline.confirm")
	})

	t.Run("invoicing desk", func(t *testing.T) {
		olga := olga.in(t)
		if _, err := p.pay(order.Id, "pay-"+order.Id); err != nil {
			t.Fatal(err)
		}
		inv := hufuv1.NewInvoiceServiceClient(p.conn.ClientConn())
		req, err := inv.RequestInvoice(bg, &hufuv1.RequestInvoiceRequest{RequestId: "console-inv-01", Kind: hufuv1.InvoiceKind_INVOICE_KIND_ORDINARY,
			Title: enterpriseTitle(), OrderIds: []string{order.Id}})
		if err != nil {
			t.Fatal(err)
		}
		id := req.Invoice.Id
		olga.run(chromedp.Navigate(base+"/console/invoices"), chromedp.WaitVisible(chromedp.CSS("#i-"+id)))
		olga.screenshot("console-invoices")
		olga.run(chromedp.Navigate(base+"/console/invoices/"+id), chromedp.WaitVisible(chromedp.CSS("#issue")))
		if got := olga.text("main"); !strings.Contains(got, "福州示范科技有限公司") || !strings.Contains(got, order.Id) {
			t.Fatalf("the invoice page: %q", got)
		}
		olga.screenshot("console-invoice")
		doc := filepath.Join(t.TempDir(), "invoice.pdf")
		if err := os.WriteFile(doc, testPDF, 0o600); err != nil {
			t.Fatal(err)
		}
		olga.run(chromedp.SendKeys(chromedp.CSS("#number"), "24332000000012345678"), chromedp.SetUploadFiles(chromedp.CSS("#document"), []string{doc}),
			chromedp.Submit(chromedp.CSS("#issue")), chromedp.WaitVisible(chromedp.CSS(".notice")))
		got, err := inv.DownloadInvoice(bg, &hufuv1.DownloadInvoiceRequest{InvoiceId: id})
		if err != nil || !bytes.Equal(got.Content, testPDF) {
			t.Fatalf("the person's invoice: %v", err)
		}
		deskAudited(t, "invoice.issue")
	})

	t.Run("support desk", func(t *testing.T) {
		olga := olga.in(t)
		help := hufuv1.NewSupportServiceClient(p.conn.ClientConn())
		fb, err := help.SubmitFeedback(bg, &hufuv1.SubmitFeedbackRequest{RequestId: "console-fb-01", Text: "发票什么时候能开出来？", OrderId: order.Id})
		if err != nil {
			t.Fatal(err)
		}
		id := fb.Feedback.Id
		olga.run(chromedp.Navigate(base+"/console/feedback?unreplied=1"), chromedp.WaitVisible(chromedp.CSS("#f-"+id)))
		olga.screenshot("console-feedback")
		const reply = "您好，发票已开具，可在 App 的发票页下载。"
		olga.run(chromedp.Navigate(base+"/console/feedback/"+id), chromedp.WaitVisible(chromedp.CSS("#reply")),
			chromedp.SendKeys(chromedp.CSS("#text"), reply), chromedp.Submit(chromedp.CSS("#reply")), chromedp.WaitVisible(chromedp.CSS(".notice")))
		if got := olga.text("#replies"); !strings.Contains(got, reply) {
			t.Fatalf("the replies on the page: %q", got)
		}
		olga.screenshot("console-feedback-item")
		mine, err := help.GetFeedback(bg, &hufuv1.GetFeedbackRequest{FeedbackId: id})
		if err != nil || mine.Feedback.State != hufuv1.FeedbackState_FEEDBACK_STATE_REPLIED || len(mine.Feedback.Replies) != 1 || mine.Feedback.Replies[0].Text != reply {
			t.Fatalf("the person's feedback: %v %v", mine, err)
		}
		deskAudited(t, "feedback.reply")
	})

	t.Run("after-sales desk", func(t *testing.T) {
		olga := olga.in(t)
		as := hufuv1.NewAfterSalesServiceClient(p.conn.ClientConn())
		pv, err := as.PreviewAfterSales(bg, &hufuv1.PreviewAfterSalesRequest{OrderId: offline.Id})
		if err != nil {
			t.Fatal(err)
		}
		applied, err := as.ApplyAfterSales(bg, &hufuv1.ApplyAfterSalesRequest{RequestId: "console-as-01", OrderId: offline.Id,
			Reason: hufuv1.AfterSalesReason_AFTER_SALES_REASON_NOT_NEEDED, Text: "项目取消，不再需要证书", Acknowledgement: pv.Acknowledgement})
		if err != nil {
			t.Fatal(err)
		}
		id := applied.Case.Id
		olga.run(chromedp.Navigate(base+"/console/aftersales"), chromedp.WaitVisible(chromedp.CSS("#c-"+id)))
		olga.screenshot("console-aftersales")
		olga.run(chromedp.Navigate(base+"/console/aftersales/"+id), chromedp.WaitVisible(chromedp.CSS("#refund")))
		if got := olga.text("main"); !strings.Contains(got, "项目取消，不再需要证书") || strings.Contains(got, "13800138301") {
			t.Fatalf("the case page (the text, the phone only masked): %q", got)
		}
		olga.screenshot("console-aftersales-case")
		olga.run(chromedp.Submit(chromedp.CSS("#refund")), chromedp.WaitVisible(chromedp.CSS(".notice")))
		if got := olga.text(".notice"); !strings.Contains(got, id) {
			t.Fatalf("notice: %q", got)
		}
		c, err := as.GetAfterSales(bg, &hufuv1.GetAfterSalesRequest{CaseId: id})
		if err != nil || c.Case.State != hufuv1.AfterSalesState_AFTER_SALES_STATE_REFUNDED {
			t.Fatalf("the person's case after the refund: %v %v", c, err)
		}
		deskAudited(t, "aftersales.refund")

		// Paid offline, the money is now owed: the payment desk pays it out.
		olga.run(chromedp.Navigate(base+"/console/payments"), chromedp.WaitVisible(chromedp.CSS("#r-"+offline.Id)),
			chromedp.Navigate(base+"/console/payments/"+offline.Id), chromedp.WaitVisible(chromedp.CSS("#payout")),
			chromedp.SendKeys(chromedp.CSS("#payout #reference"), "BANK-OUT-7001"), chromedp.Submit(chromedp.CSS("#payout")),
			chromedp.WaitVisible(chromedp.CSS(".notice")))
		if got := olga.text("main"); !strings.Contains(got, "已登记退款打款") || strings.Contains(got, "r-"+offline.Id) {
			t.Fatalf("after the payout: %q", got)
		}
		deskAudited(t, "payment.offline.payout")
	})

	t.Run("access and a revoked token", func(t *testing.T) {
		sam := b.person().in(t)
		sam.signIn(base, a.tokens[admin.SecurityOfficer])
		sam.run(chromedp.Navigate(base+"/console/access"), chromedp.WaitVisible(chromedp.CSS("#tokens")))
		if got := sam.text("#tokens"); !strings.Contains(got, "olga") || !strings.Contains(got, "operator") {
			t.Fatalf("tokens: %q", got)
		}
		if got := sam.text("#clients"); !strings.Contains(got, devpki.CLIClientName) {
			t.Fatalf("system clients: %q", got)
		}
		sam.screenshot("console-access")
		// An operator's token made online, then revoked: the session it opened ends at once.
		body, _ := json.Marshal(admin.CreateTokenRequest{Name: "oscar", Role: admin.Operator, ExpiresIn: "24h"})
		req, _ := http.NewRequest(http.MethodPost, base+"/tokens", bytes.NewReader(body))
		req.Header.Set("Authorization", "Bearer "+a.tokens[admin.SecurityOfficer])
		resp, err := a.http.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		var made admin.CreatedToken
		err = json.NewDecoder(resp.Body).Decode(&made)
		resp.Body.Close()
		if err != nil || made.Token == "" {
			t.Fatalf("token: %s %v", resp.Status, err)
		}
		oscar := b.person().in(t)
		oscar.signIn(base, made.Token)
		if code, _ := a.call(http.MethodDelete, "/tokens/oscar", admin.SecurityOfficer); code != http.StatusOK && code != http.StatusNoContent {
			t.Fatalf("revoke: %d", code)
		}
		oscar.run(chromedp.Navigate(base+"/console/review"), chromedp.WaitVisible(chromedp.CSS("#token")))
	})

	t.Run("sign-out ends the session", func(t *testing.T) {
		olga := olga.in(t)
		cookie := olga.sessionCookie()
		olga.run(chromedp.Navigate(base+"/console/"), chromedp.WaitVisible(chromedp.CSS("header form button")),
			chromedp.Click(chromedp.CSS("header form button")), chromedp.WaitVisible(chromedp.CSS("#token")))
		resp, err := a.consoleClient(cookie).Get(base + "/console/")
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != http.StatusSeeOther || !strings.HasSuffix(resp.Header.Get("Location"), "/console/signin") {
			t.Fatalf("the signed-out session still works: %s", resp.Status)
		}
	})

	t.Run("failed sign-ins are limited", func(t *testing.T) {
		client := a.consoleClient(nil)
		last := 0
		for range 12 {
			resp, err := client.Get(base + "/console/signin")
			if err != nil {
				t.Fatal(err)
			}
			body, _ := io.ReadAll(resp.Body)
			resp.Body.Close()
			m := csrfField.FindSubmatch(body)
			resp, err = client.PostForm(base+"/console/signin", url.Values{"csrf": {string(m[1])}, "token": {"hufu_admin_wrong"}})
			if err != nil {
				t.Fatal(err)
			}
			resp.Body.Close()
			last = resp.StatusCode
		}
		if last != http.StatusTooManyRequests {
			t.Fatalf("the 12th failed sign-in: %d", last)
		}
	})
}

// orderStatus reads an order as its applicant.
func (a *certAppl) orderStatus(t *testing.T, p *applicant, id string) hufuv1.OrderStatus {
	t.Helper()
	o, err := p.certs.GetOrder(bg, &hufuv1.GetOrderRequest{OrderId: id})
	if err != nil {
		t.Fatal(err)
	}
	return o.Order.Status
}

// auditHas reports whether a record of the stored log (its export) satisfies match.
func auditHas(t *testing.T, a *adminAppliance, match func(actor, action, outcome string) bool) bool {
	t.Helper()
	code, body := a.call("GET", "/audit/export", admin.Auditor)
	if code != http.StatusOK {
		t.Fatalf("export: %d", code)
	}
	dec := json.NewDecoder(bytes.NewReader(body))
	for dec.More() {
		var l struct{ Type, Actor, Action, Outcome string }
		if err := dec.Decode(&l); err != nil {
			t.Fatal(err)
		}
		if l.Type == "record" && match(l.Actor, l.Action, l.Outcome) {
			return true
		}
	}
	return false
}

func auditPublicKey(t *testing.T, a *adminAppliance) *ecdsa.PublicKey {
	t.Helper()
	code, body := a.call("GET", "/audit/public-key", admin.Auditor)
	if code != http.StatusOK {
		t.Fatalf("public key: %d", code)
	}
	return parseECKey(t, string(body))
}

// watchOpening creates an opening with two bidders' envelopes and has the operator watch
// its page while a goroutine consents and releases as the phones and the bid-opening
// system would; the page's script must show every release.
func watchOpening(t *testing.T, a *adminAppliance, certs *certAppl, olga *person, base string) {
	desk := a.desk()
	sys, scans := a.openingSystem(devpki.CLIClientName)
	var bidders []*bidder
	for i, phone := range []string{"13800138311", "13800138312"} {
		p := newApplicant(t, certs, phone, fmt.Sprintf("console-bid-0%d", i+1), fmt.Sprintf("console-bid-key-0%d", i+1))
		serial, encKey := p.issueForEnvelopes(desk) // bids are enveloped to the encryption certificate
		cert, _, _, _ := p.download(serial)
		key := *encKey
		key.cred = client.PINCredential("123456")
		bidders = append(bidders, &bidder{name: phone, phone: hufuv1.NewPhoneScanServiceClient(p.conn.ClientConn()), key: &key,
			serial: serial, pub: cert.PublicKey.(*ecdsa.PublicKey), conn: p.conn})
	}
	resultKey, err := sm2.GenerateKey(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	now := a.clock.Now()
	created, err := sys.CreateOpening(bg, &hufuv1.CreateOpeningRequest{RequestId: "console-open-01", ProjectCode: "FZ-2026-201",
		ProjectName: "示范桥梁工程施工", PlatformId: "demo", WindowStart: timestamppb.New(now.Add(time.Hour)),
		WindowEnd: timestamppb.New(now.Add(3 * time.Hour)), ResultPublicKey: elliptic(resultKey)})
	if err != nil {
		t.Fatal(err)
	}
	o := created.Opening
	var regs []*hufuv1.EnvelopeRegistration
	for i, bd := range bidders {
		for j := range 2 {
			regs = append(regs, &hufuv1.EnvelopeRegistration{EnvelopeId: fmt.Sprintf("bid-%d-%d", i, j), CertificateSerial: bd.serial,
				Ciphertext: mustEncrypt(t, bd.pub)})
		}
	}
	if _, err := sys.RegisterEnvelopes(bg, &hufuv1.RegisterEnvelopesRequest{OpeningId: o.Id, Envelopes: regs}); err != nil {
		t.Fatal(err)
	}
	olga.run(chromedp.Navigate(base+"/console/openings"), chromedp.WaitVisible(chromedp.CSS("#openings")))
	if got := olga.text("#openings"); !strings.Contains(got, "FZ-2026-201") {
		t.Fatalf("openings list: %q", got)
	}
	olga.screenshot("console-openings")
	// An hour later the operator's session has ended (idle for longer than 30 minutes).
	a.clock.Advance(time.Hour + time.Minute)
	olga.run(chromedp.Navigate(base+"/console/openings/"+o.Id), chromedp.WaitVisible(chromedp.CSS("#token")))
	olga.signIn(base, a.tokens[admin.Operator])
	olga.run(chromedp.Navigate(base+"/console/openings/"+o.Id), chromedp.WaitVisible(chromedp.CSS("#opening")))
	if got := olga.text(`[data-field="envelopes"]`); got != "4" {
		t.Fatalf("registered: %q", got)
	}

	// The phones consent and the system releases while the page is open.
	done := make(chan error, 1)
	go func() {
		done <- func() error {
			hall, err := scans.CreateSession(bg, &hufuv1.CreateSessionRequest{RequestId: "console-hall", Kind: hufuv1.SessionKind_SESSION_KIND_DECRYPT,
				OpeningId: o.Id, Hall: true, TtlSeconds: 1800})
			if err != nil {
				return err
			}
			for _, bd := range bidders {
				if err := bd.consent(t, hall.Session.QrPayload, false); err != nil {
					return err
				}
			}
			got, err := releaseAll(sys, &hufuv1.ReleaseRequest{OpeningId: o.Id})
			if err == nil && len(got) != 4 {
				err = fmt.Errorf("released %d envelopes", len(got))
			}
			return err
		}()
	}()
	ctx, cancel := context.WithTimeout(olga.ctx, 60*time.Second)
	defer cancel()
	// Consent and release finish first (the page may lag a poll behind them).
	select {
	case err := <-done:
		if err != nil {
			t.Fatalf("consent and release: %v", err)
		}
	case <-time.After(2 * time.Minute):
		t.Fatal("consent and release did not finish")
	}
	if err := chromedp.Do(ctx, chromedp.Poll[chromedp.Void](`document.querySelector('[data-field="released"]').textContent === "4" && document.querySelector('[data-field="consented"]').textContent === "4"`)); err != nil {
		t.Fatalf("the page never showed 4 consented and released: %v", err)
	}
	olga.screenshot("console-opening")
}

// TestConsoleNeedsTLS: on an admin listener without TLS the console serves nothing, not
// even the sign-in form (its Secure cookie would not come back, and a token would cross
// the network in clear).
func TestConsoleNeedsTLS(t *testing.T) {
	a := startAdminAppliance(t, nil)
	for _, path := range []string{"/console/", "/console/signin", "/console/static/console.js"} {
		resp, err := a.http.Get(a.adminURL + path)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != http.StatusForbidden || len(resp.Header.Values("Set-Cookie")) != 0 {
			t.Fatalf("GET %s over plain HTTP: %s, cookies %q", path, resp.Status, resp.Header.Values("Set-Cookie"))
		}
	}
}
