package console

import (
	"net/http"
	"net/url"

	"github.com/hufu-hsm/hufu/admin"
	hufuv1 "github.com/hufu-hsm/hufu/api/hufu/v1"
)

// The support desk (用户反馈): open feedback (the person only by masked phone), one item with
// its attachments and the replies so far, a reply (the person sees it in the app) and
// closing. Every call is a SupportDeskServiceServer call as the signed-in operator.

type feedbackListData struct {
	Feedback []*hufuv1.DeskFeedback
	Next     string
}

var feedbackStates = map[hufuv1.FeedbackState]string{
	hufuv1.FeedbackState_FEEDBACK_STATE_SUBMITTED: "待回复",
	hufuv1.FeedbackState_FEEDBACK_STATE_REPLIED:   "已回复",
	hufuv1.FeedbackState_FEEDBACK_STATE_CLOSED:    "已关闭",
}

func (c *Console) feedbackList(w http.ResponseWriter, r *http.Request, s *session) {
	r = c.deskContext(r, s)
	resp, err := c.opts.Support.ListOpenFeedback(r.Context(), &hufuv1.ListOpenFeedbackRequest{PageSize: 50, PageToken: r.URL.Query().Get("page"),
		UnrepliedOnly: r.URL.Query().Get("unreplied") == "1"})
	if err != nil {
		c.failed(w, r, s, "用户反馈", err)
		return
	}
	notice := ""
	if id := r.URL.Query().Get("id"); admin.ValidRequestID(id) {
		switch r.URL.Query().Get("done") {
		case "replied":
			notice = "已回复反馈 " + id
		case "closed":
			notice = "已关闭反馈 " + id
		}
	}
	c.render(w, r, http.StatusOK, "feedback", s, pageData{Title: "用户反馈", Notice: notice, Data: feedbackListData{Feedback: resp.Feedback, Next: resp.NextPageToken}})
}

func (c *Console) feedbackPage(w http.ResponseWriter, r *http.Request, s *session) {
	r = c.deskContext(r, s)
	id := r.PathValue("id")
	fb, err := findIn(func(token string) ([]*hufuv1.DeskFeedback, string, error) {
		resp, err := c.opts.Support.ListOpenFeedback(r.Context(), &hufuv1.ListOpenFeedbackRequest{PageSize: 100, PageToken: token})
		return resp.GetFeedback(), resp.GetNextPageToken(), err
	}, func(x *hufuv1.DeskFeedback) bool { return x.Id == id })
	if err != nil {
		c.failed(w, r, s, "用户反馈", err)
		return
	}
	if fb == nil {
		c.render(w, r, http.StatusNotFound, "error", s, pageData{Title: "用户反馈", Message: "该反馈不在待处理队列中（已关闭或不存在）。"})
		return
	}
	notice := ""
	if r.URL.Query().Get("done") == "replied" {
		notice = "回复已发送，用户可在 App 中看到。"
	}
	c.render(w, r, http.StatusOK, "feedbackitem", s, pageData{Title: "反馈 " + fb.Id, Notice: notice, Data: fb})
}

func (c *Console) feedbackAttachment(w http.ResponseWriter, r *http.Request, s *session) {
	r = c.deskContext(r, s)
	resp, err := c.opts.Support.GetFeedbackAttachment(r.Context(), &hufuv1.GetFeedbackAttachmentRequest{FeedbackId: r.PathValue("id"), AttachmentId: r.PathValue("att")})
	if err != nil {
		c.failed(w, r, s, "附件", err)
		return
	}
	serveAttachment(w, resp.GetAttachment().GetFileName(), resp.GetAttachment().GetMediaType(), resp.Content)
}

func (c *Console) feedbackReply(w http.ResponseWriter, r *http.Request, s *session) {
	r = c.deskContext(r, s)
	id := r.PathValue("id")
	if _, err := c.opts.Support.ReplyFeedback(r.Context(), &hufuv1.ReplyFeedbackRequest{FeedbackId: id, Text: r.PostFormValue("text")}); err != nil {
		c.failed(w, r, s, "回复反馈", err)
		return
	}
	http.Redirect(w, r, base+"feedback/"+url.PathEscape(id)+"?done=replied", http.StatusSeeOther)
}

func (c *Console) feedbackClose(w http.ResponseWriter, r *http.Request, s *session) {
	r = c.deskContext(r, s)
	id := r.PathValue("id")
	if _, err := c.opts.Support.CloseFeedback(r.Context(), &hufuv1.CloseFeedbackRequest{FeedbackId: id, Note: r.PostFormValue("note")}); err != nil {
		c.failed(w, r, s, "关闭反馈", err)
		return
	}
	http.Redirect(w, r, base+"feedback?done=closed&id="+url.QueryEscape(id), http.StatusSeeOther)
}
