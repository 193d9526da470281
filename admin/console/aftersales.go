package console

import (
	"net/http"
	"net/url"

	"github.com/hufu-hsm/hufu/admin"
	hufuv1 "github.com/hufu-hsm/hufu/api/hufu/v1"
)

// The after-sales desk (售后): the open cases (in review, or refunding after an interrupted
// refund), one case with its text and attachments, and the decision: refund (同意退款: the
// certificates are revoked, then the money goes back) or settle by negotiation (协商解决,
// with the outcome the person is shown). Every call is an AfterSalesDeskServiceServer call
// as the signed-in operator.

type afterSalesData struct {
	Cases []*hufuv1.AfterSalesCase
	Next  string
}

var afterSalesStates = map[hufuv1.AfterSalesState]string{
	hufuv1.AfterSalesState_AFTER_SALES_STATE_IN_REVIEW: "待处理",
	hufuv1.AfterSalesState_AFTER_SALES_STATE_REFUNDING: "退款中（未完成，可重试）",
	hufuv1.AfterSalesState_AFTER_SALES_STATE_REFUNDED:  "已退款",
	hufuv1.AfterSalesState_AFTER_SALES_STATE_SETTLED:   "已协商解决",
	hufuv1.AfterSalesState_AFTER_SALES_STATE_WITHDRAWN: "已撤回",
}

func (c *Console) afterSalesList(w http.ResponseWriter, r *http.Request, s *session) {
	r = c.deskContext(r, s)
	resp, err := c.opts.AfterSales.ListOpenAfterSales(r.Context(), &hufuv1.ListOpenAfterSalesRequest{PageSize: 50, PageToken: r.URL.Query().Get("page")})
	if err != nil {
		c.failed(w, r, s, "售后", err)
		return
	}
	notice := ""
	if id := r.URL.Query().Get("id"); admin.ValidRequestID(id) {
		switch r.URL.Query().Get("done") {
		case "refunded":
			notice = "已同意退款，售后单 " + id
		case "settled":
			notice = "已协商解决，售后单 " + id
		}
	}
	c.render(w, r, http.StatusOK, "aftersales", s, pageData{Title: "售后", Notice: notice, Data: afterSalesData{Cases: resp.Cases, Next: resp.NextPageToken}})
}

func (c *Console) findCase(r *http.Request, id string) (*hufuv1.AfterSalesCase, error) {
	return findIn(func(token string) ([]*hufuv1.AfterSalesCase, string, error) {
		resp, err := c.opts.AfterSales.ListOpenAfterSales(r.Context(), &hufuv1.ListOpenAfterSalesRequest{PageSize: 100, PageToken: token})
		return resp.GetCases(), resp.GetNextPageToken(), err
	}, func(x *hufuv1.AfterSalesCase) bool { return x.Id == id })
}

func (c *Console) afterSalesCase(w http.ResponseWriter, r *http.Request, s *session) {
	r = c.deskContext(r, s)
	x, err := c.findCase(r, r.PathValue("id"))
	if err != nil {
		c.failed(w, r, s, "售后", err)
		return
	}
	if x == nil {
		c.render(w, r, http.StatusNotFound, "error", s, pageData{Title: "售后", Message: "该售后单不在待处理队列中（已处理或不存在）。"})
		return
	}
	c.render(w, r, http.StatusOK, "case", s, pageData{Title: "售后单 " + x.Id, Data: x})
}

func (c *Console) afterSalesAttachment(w http.ResponseWriter, r *http.Request, s *session) {
	r = c.deskContext(r, s)
	resp, err := c.opts.AfterSales.GetAfterSalesAttachment(r.Context(), &hufuv1.GetAfterSalesAttachmentRequest{CaseId: r.PathValue("id"), AttachmentId: r.PathValue("att")})
	if err != nil {
		c.failed(w, r, s, "附件", err)
		return
	}
	serveAttachment(w, resp.GetAttachment().GetFileName(), resp.GetAttachment().GetMediaType(), resp.Content)
}

func (c *Console) afterSalesRefund(w http.ResponseWriter, r *http.Request, s *session) {
	r = c.deskContext(r, s)
	id := r.PathValue("id")
	if _, err := c.opts.AfterSales.RefundAfterSales(r.Context(), &hufuv1.RefundAfterSalesRequest{CaseId: id}); err != nil {
		c.failed(w, r, s, "同意退款", err)
		return
	}
	http.Redirect(w, r, base+"aftersales?done=refunded&id="+url.QueryEscape(id), http.StatusSeeOther)
}

func (c *Console) afterSalesSettle(w http.ResponseWriter, r *http.Request, s *session) {
	r = c.deskContext(r, s)
	id := r.PathValue("id")
	if _, err := c.opts.AfterSales.SettleAfterSales(r.Context(), &hufuv1.SettleAfterSalesRequest{CaseId: id, Outcome: r.PostFormValue("outcome")}); err != nil {
		c.failed(w, r, s, "协商解决", err)
		return
	}
	http.Redirect(w, r, base+"aftersales?done=settled&id="+url.QueryEscape(id), http.StatusSeeOther)
}
