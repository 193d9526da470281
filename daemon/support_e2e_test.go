package daemon_test

import (
	"path/filepath"
	"strings"
	"testing"

	"google.golang.org/grpc/codes"

	"github.com/hufu-hsm/hufu/admin"
	hufuv1 "github.com/hufu-hsm/hufu/api/hufu/v1"
	"github.com/hufu-hsm/hufu/client"
	"github.com/hufu-hsm/hufu/daemon/config"
	"github.com/hufu-hsm/hufu/daemon/devpki"
)

// supportDesk connects with the development CLI client certificate as the support desk.
func (a *appliance) supportDesk() hufuv1.SupportDeskServiceClient {
	a.t.Helper()
	tls := filepath.Join(a.cfg.DataDir, "tls")
	conn, err := client.Dial(client.Config{Addr: a.addr, CAFile: filepath.Join(tls, "ca.pem"), ServerName: "localhost",
		ClientCertFile: filepath.Join(tls, "cli.pem"), ClientKeyFile: filepath.Join(tls, "cli-key.pem"), DeviceID: "support-desk-1"})
	if err != nil {
		a.t.Fatal(err)
	}
	a.t.Cleanup(func() { conn.Close() })
	return hufuv1.NewSupportDeskServiceClient(conn.ClientConn())
}

func TestHelpAndFAQSearch(t *testing.T) {
	a := startAppliance(t, nil) // the development help content (config.Development)
	conn := a.dial("help-device")
	a.signIn(conn, "13800004444", "help-device")
	help := hufuv1.NewSupportServiceClient(conn.ClientConn())

	arts, err := help.ListHelpArticles(bg, &hufuv1.ListHelpArticlesRequest{})
	if err != nil || len(arts.Articles) != 5 || arts.Articles[0].Body != "" || strings.Join(arts.Categories, ",") != "账号,证书,我的" {
		t.Fatalf("articles: %v %v", arts, err)
	}
	mine, _ := help.ListHelpArticles(bg, &hufuv1.ListHelpArticlesRequest{Category: "我的"})
	if len(mine.Articles) != 2 {
		t.Fatalf("category 我的: %v", mine)
	}
	e, err := help.GetHelpEntry(bg, &hufuv1.GetHelpEntryRequest{Id: "bank-card"})
	if err != nil || !strings.Contains(e.Article.GetBody(), "添加银行卡") {
		t.Fatalf("article: %v %v", e, err)
	}
	e, err = help.GetHelpEntry(bg, &hufuv1.GetHelpEntryRequest{Id: "faq-forgot-pin"})
	if err != nil || e.Faq.GetQuestion() != "忘记证书密码怎么办？" || e.Article != nil {
		t.Fatalf("faq entry: %v %v", e, err)
	}
	_, err = help.GetHelpEntry(bg, &hufuv1.GetHelpEntryRequest{Id: "nope"})
	wantCode(t, err, codes.NotFound, "")

	for _, tc := range []struct {
		query string
		first string // "" for no hits
	}{
		{"忘记证书密码", "faq-forgot-pin"},
		{"证书密码忘了怎么办", "faq-forgot-pin"},
		{"银行卡绑不上", "faq-bank-card"},
		{"怎么扫码签章", "faq-scan-sign"},
		{"证书到期 续期", "faq-renew"},
		{"开发票", "faq-invoice"},
		{"互认", "faq-mutual"},
		{"quantum blockchain", ""},
	} {
		t.Run(tc.query, func(t *testing.T) {
			r, err := help.SearchFaq(bg, &hufuv1.SearchFaqRequest{Query: tc.query})
			if err != nil {
				t.Fatal(err)
			}
			if tc.first == "" {
				if len(r.Entries) != 0 {
					t.Fatalf("hits for %q: %v", tc.query, r.Entries)
				}
				return
			}
			if len(r.Entries) == 0 || r.Entries[0].Id != tc.first {
				t.Fatalf("%q: first hit %v, want %s", tc.query, r.Entries, tc.first)
			}
			for i := 1; i < len(r.Entries); i++ {
				if r.Entries[i].Score > r.Entries[i-1].Score {
					t.Fatalf("not ranked: %v", r.Entries)
				}
			}
		})
	}
	all, err := help.SearchFaq(bg, &hufuv1.SearchFaqRequest{})
	if err != nil || len(all.Entries) != 6 || all.Entries[0].Id != "faq-forgot-pin" {
		t.Fatalf("empty query: %v %v", all, err)
	}
	two, _ := help.SearchFaq(bg, &hufuv1.SearchFaqRequest{Query: "证书", Limit: 2})
	if len(two.Entries) != 2 {
		t.Fatalf("limit 2: %v", two)
	}
	_, err = help.SearchFaq(bg, &hufuv1.SearchFaqRequest{Query: strings.Repeat("证", 101)})
	wantCode(t, err, codes.InvalidArgument, "query")
	_, err = help.SearchFaq(bg, &hufuv1.SearchFaqRequest{Query: "x", Limit: 51})
	wantCode(t, err, codes.InvalidArgument, "limit")

	c, err := help.GetContact(bg, &hufuv1.GetContactRequest{})
	if err != nil || c.Phone != "400-800-1234" || c.Hours == "" {
		t.Fatalf("contact: %v %v", c, err)
	}
	// Help needs a session.
	_, err = hufuv1.NewSupportServiceClient(a.dial("anonymous").ClientConn()).SearchFaq(bg, &hufuv1.SearchFaqRequest{Query: "x"})
	wantCode(t, err, codes.Unauthenticated, "")
}

var tinyPNG = []byte("\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR")

func TestFeedbackAndTheSupportDesk(t *testing.T) {
	a := certAppliance(t, func(c *config.Config) {
		c.SystemClients[0].Services = append(c.SystemClients[0].Services, "hufu.v1.SupportDeskService")
	})
	p := newApplicant(t, a, "13800005555", "fb-device", "fb-key-0001")
	order := p.apply()
	help := hufuv1.NewSupportServiceClient(p.conn.ClientConn())
	desk := a.supportDesk()

	submit := func(req *hufuv1.SubmitFeedbackRequest) (*hufuv1.Feedback, error) {
		r, err := help.SubmitFeedback(bg, req)
		return r.GetFeedback(), err
	}
	for _, tc := range []struct {
		name  string
		req   *hufuv1.SubmitFeedbackRequest
		field string
	}{
		{"no text", &hufuv1.SubmitFeedbackRequest{RequestId: "fb-bad-0001", Text: "  "}, "text"},
		{"text too long", &hufuv1.SubmitFeedbackRequest{RequestId: "fb-bad-0001", Text: strings.Repeat("长", 501)}, "text"},
		{"no request id", &hufuv1.SubmitFeedbackRequest{Text: "你好"}, "request_id"},
		{"not my order", &hufuv1.SubmitFeedbackRequest{RequestId: "fb-bad-0001", Text: "你好", OrderId: "0123456789abcdef0123456789abcdef"}, "order_id"},
		{"not a file type", &hufuv1.SubmitFeedbackRequest{RequestId: "fb-bad-0001", Text: "你好",
			Attachments: []*hufuv1.NewAttachment{{FileName: "a.exe", Content: []byte("MZ\x90")}}}, "attachments[0]"},
		{"too many files", &hufuv1.SubmitFeedbackRequest{RequestId: "fb-bad-0001", Text: "你好",
			Attachments: []*hufuv1.NewAttachment{{Content: tinyPNG}, {Content: tinyPNG}, {Content: tinyPNG}, {Content: tinyPNG}}}, "attachments"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := submit(tc.req)
			wantCode(t, err, codes.InvalidArgument, tc.field)
		})
	}

	first, err := submit(&hufuv1.SubmitFeedbackRequest{RequestId: "fb-order-0001", Text: "证书订单一直在审核中，请帮忙看看。", OrderId: order.Id,
		Attachments: []*hufuv1.NewAttachment{{FileName: "截图.png", MediaType: "image/png", Content: tinyPNG}}})
	if err != nil {
		t.Fatal(err)
	}
	if first.State != hufuv1.FeedbackState_FEEDBACK_STATE_SUBMITTED || first.OrderId != order.Id || len(first.Attachments) != 1 ||
		first.Attachments[0].FileName != "截图.png" || first.Attachments[0].MediaType != "image/png" {
		t.Fatalf("submitted %v", first)
	}
	if retry, err := submit(&hufuv1.SubmitFeedbackRequest{RequestId: "fb-order-0001", Text: "again"}); err != nil || retry.Id != first.Id {
		t.Fatalf("retry: %v %v", retry, err)
	}
	a.clock.Advance(1)
	second, err := submit(&hufuv1.SubmitFeedbackRequest{RequestId: "fb-plain-0001", Text: "建议增加夜间模式"})
	if err != nil {
		t.Fatal(err)
	}

	// Mine, newest first, paged.
	page1, err := help.ListFeedback(bg, &hufuv1.ListFeedbackRequest{PageSize: 1})
	if err != nil || len(page1.Feedback) != 1 || page1.Feedback[0].Id != second.Id || page1.NextPageToken == "" {
		t.Fatalf("page 1: %v %v", page1, err)
	}
	page2, err := help.ListFeedback(bg, &hufuv1.ListFeedbackRequest{PageSize: 1, PageToken: page1.NextPageToken})
	if err != nil || len(page2.Feedback) != 1 || page2.Feedback[0].Id != first.Id {
		t.Fatalf("page 2: %v %v", page2, err)
	}
	_, err = help.ListFeedback(bg, &hufuv1.ListFeedbackRequest{PageToken: "garbage"})
	wantCode(t, err, codes.InvalidArgument, "page_token")

	// Somebody else sees none of it.
	otherConn := a.dial("fb-other")
	a.signIn(otherConn, "13800006666", "fb-other")
	other := hufuv1.NewSupportServiceClient(otherConn.ClientConn())
	_, err = other.GetFeedback(bg, &hufuv1.GetFeedbackRequest{FeedbackId: first.Id})
	wantCode(t, err, codes.NotFound, "")
	if l, err := other.ListFeedback(bg, &hufuv1.ListFeedbackRequest{}); err != nil || len(l.Feedback) != 0 {
		t.Fatalf("other's list: %v %v", l, err)
	}
	// A person's session is not a desk.
	_, err = hufuv1.NewSupportDeskServiceClient(p.conn.ClientConn()).ListOpenFeedback(bg, &hufuv1.ListOpenFeedbackRequest{})
	if c := statusCode(err); c != codes.Unauthenticated && c != codes.PermissionDenied {
		t.Fatalf("a phone at the desk: %v", err)
	}

	// The desk: open feedback newest first, the person by masked phone only.
	open, err := desk.ListOpenFeedback(bg, &hufuv1.ListOpenFeedbackRequest{})
	if err != nil || len(open.Feedback) != 2 || open.Feedback[0].Id != second.Id || open.Feedback[1].PhoneMasked != "138****5555" {
		t.Fatalf("desk list: %v %v", open, err)
	}
	att, err := desk.GetFeedbackAttachment(bg, &hufuv1.GetFeedbackAttachmentRequest{FeedbackId: first.Id, AttachmentId: first.Attachments[0].Id})
	if err != nil || string(att.Content) != string(tinyPNG) {
		t.Fatalf("attachment: %v", err)
	}
	_, err = desk.ReplyFeedback(bg, &hufuv1.ReplyFeedbackRequest{FeedbackId: first.Id, Text: " "})
	wantCode(t, err, codes.InvalidArgument, "text")
	_, err = desk.ReplyFeedback(bg, &hufuv1.ReplyFeedbackRequest{FeedbackId: "nope", Text: "hi"})
	wantCode(t, err, codes.InvalidArgument, "feedback_id")
	_, err = desk.ReplyFeedback(bg, &hufuv1.ReplyFeedbackRequest{FeedbackId: strings.Repeat("0", 22), Text: "hi"})
	wantCode(t, err, codes.NotFound, "")
	replied, err := desk.ReplyFeedback(bg, &hufuv1.ReplyFeedbackRequest{FeedbackId: first.Id, Text: "您好，订单已审核通过，请支付后下载证书。"})
	if err != nil || replied.Feedback.State != hufuv1.FeedbackState_FEEDBACK_STATE_REPLIED || len(replied.Feedback.Replies) != 1 {
		t.Fatalf("reply: %v %v", replied, err)
	}
	unreplied, _ := desk.ListOpenFeedback(bg, &hufuv1.ListOpenFeedbackRequest{UnrepliedOnly: true})
	if len(unreplied.Feedback) != 1 || unreplied.Feedback[0].Id != second.Id {
		t.Fatalf("unreplied: %v", unreplied)
	}
	mine, err := help.GetFeedback(bg, &hufuv1.GetFeedbackRequest{FeedbackId: first.Id})
	if err != nil || mine.Feedback.State != hufuv1.FeedbackState_FEEDBACK_STATE_REPLIED || mine.Feedback.Replies[0].Text != "您好，订单已审核通过，请支付后下载证书。" {
		t.Fatalf("my feedback after the reply: %v %v", mine, err)
	}
	closed, err := desk.CloseFeedback(bg, &hufuv1.CloseFeedbackRequest{FeedbackId: first.Id, Note: "问题已解决"})
	if err != nil || closed.Feedback.State != hufuv1.FeedbackState_FEEDBACK_STATE_CLOSED {
		t.Fatalf("close: %v %v", closed, err)
	}
	_, err = desk.ReplyFeedback(bg, &hufuv1.ReplyFeedbackRequest{FeedbackId: first.Id, Text: "再补充"})
	wantCode(t, err, codes.FailedPrecondition, "")
	_, err = desk.CloseFeedback(bg, &hufuv1.CloseFeedbackRequest{FeedbackId: first.Id})
	wantCode(t, err, codes.FailedPrecondition, "")
	open, _ = desk.ListOpenFeedback(bg, &hufuv1.ListOpenFeedbackRequest{})
	if len(open.Feedback) != 1 || open.Feedback[0].Id != second.Id {
		t.Fatalf("after closing: %v", open)
	}
	mine, _ = help.GetFeedback(bg, &hufuv1.GetFeedbackRequest{FeedbackId: first.Id})
	if mine.Feedback.State != hufuv1.FeedbackState_FEEDBACK_STATE_CLOSED || mine.Feedback.CloseNote != "问题已解决" {
		t.Fatalf("my closed feedback: %v", mine)
	}
}

// TestSupportDeskNeedsItsPermission: a system client without hufu.v1.SupportDeskService
// (here the development CLI certificate allowed only the review desk) is refused.
func TestSupportDeskNeedsItsPermission(t *testing.T) {
	a := startAppliance(t, func(c *config.Config) {
		c.SystemClients = []config.SystemClient{{Name: devpki.CLIClientName, Services: []string{"hufu.v1.ReviewService"}}}
	})
	desk := a.supportDesk()
	_, err := desk.ListOpenFeedback(bg, &hufuv1.ListOpenFeedbackRequest{})
	wantCode(t, err, codes.PermissionDenied, "")
	_, err = desk.CloseFeedback(bg, &hufuv1.CloseFeedbackRequest{FeedbackId: strings.Repeat("0", 22)})
	wantCode(t, err, codes.PermissionDenied, "")
}

// TestGrantingTheSupportDeskNeedsASecondOfficer: SupportDeskService is in the desk table, so
// registering a client with it waits for a second security officer.
func TestGrantingTheSupportDeskNeedsASecondOfficer(t *testing.T) {
	a := startAdminAppliance(t, nil)
	sam, sue := a.adminClient(admin.SecurityOfficer), a.adminClient(secondOfficer)
	reg, err := sam.RegisterSystemClient(bg, "cs-desk", []string{"hufu.v1.SupportDeskService"})
	if err != nil || reg.Approval == nil || reg.Client != nil || !equal(reg.Approval.Desks, "support") {
		t.Fatalf("desk request: %+v %v", reg, err)
	}
	if d, err := sue.Approve(bg, reg.Approval.ID); err != nil || d.Approval.State != admin.ApprovalApproved {
		t.Fatalf("approve: %+v %v", d, err)
	}
	clients, err := sue.SystemClients(bg)
	if err != nil {
		t.Fatal(err)
	}
	for _, c := range clients {
		if c.Name == "cs-desk" && equal(c.Desks, "support") {
			return
		}
	}
	t.Fatalf("cs-desk not registered as the support desk: %+v", clients)
}
