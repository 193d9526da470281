package console

import (
	"io"
	"net/http"
	"net/url"
	"strings"

	"github.com/hufu-hsm/hufu/admin"
	hufuv1 "github.com/hufu-hsm/hufu/api/hufu/v1"
)

// The invoicing desk (发票): the submitted requests, one request with its title and orders,
// and the decision: issue (the invoice number and the issued document, PDF or OFD, which the
// person then downloads) or reject with a reason. Every call is an InvoiceDeskServiceServer
// call as the signed-in operator.

// maxInvoiceDocument bounds an uploaded invoice document; the desk's own limit applies after.
const maxInvoiceDocument = 8 << 20

type invoicesData struct {
	Invoices []*hufuv1.Invoice
	Next     string
}

var (
	invoiceKinds = map[hufuv1.InvoiceKind]string{
		hufuv1.InvoiceKind_INVOICE_KIND_ORDINARY:    "增值税普通发票",
		hufuv1.InvoiceKind_INVOICE_KIND_SPECIAL_VAT: "增值税专用发票",
	}
	titleKinds = map[hufuv1.InvoiceTitleKind]string{
		hufuv1.InvoiceTitleKind_INVOICE_TITLE_KIND_PERSONAL:   "个人",
		hufuv1.InvoiceTitleKind_INVOICE_TITLE_KIND_ENTERPRISE: "企业",
	}
)

func (c *Console) invoicesList(w http.ResponseWriter, r *http.Request, s *session) {
	r = c.deskContext(r, s)
	resp, err := c.opts.Invoices.ListSubmittedInvoices(r.Context(), &hufuv1.ListSubmittedInvoicesRequest{PageSize: 50, PageToken: r.URL.Query().Get("page")})
	if err != nil {
		c.failed(w, r, s, "发票", err)
		return
	}
	notice := ""
	if id := r.URL.Query().Get("id"); admin.ValidRequestID(id) {
		switch r.URL.Query().Get("done") {
		case "issued":
			notice = "已开具发票，申请 " + id
		case "rejected":
			notice = "已驳回发票申请 " + id
		}
	}
	c.render(w, r, http.StatusOK, "invoices", s, pageData{Title: "发票", Notice: notice, Data: invoicesData{Invoices: resp.Invoices, Next: resp.NextPageToken}})
}

func (c *Console) invoicePage(w http.ResponseWriter, r *http.Request, s *session) {
	r = c.deskContext(r, s)
	id := r.PathValue("id")
	inv, err := findIn(func(token string) ([]*hufuv1.Invoice, string, error) {
		resp, err := c.opts.Invoices.ListSubmittedInvoices(r.Context(), &hufuv1.ListSubmittedInvoicesRequest{PageSize: 100, PageToken: token})
		return resp.GetInvoices(), resp.GetNextPageToken(), err
	}, func(x *hufuv1.Invoice) bool { return x.Id == id })
	if err != nil {
		c.failed(w, r, s, "发票", err)
		return
	}
	if inv == nil {
		c.render(w, r, http.StatusNotFound, "error", s, pageData{Title: "发票", Message: "该发票申请不在待开具队列中（已处理或不存在）。"})
		return
	}
	c.render(w, r, http.StatusOK, "invoice", s, pageData{Title: "发票申请 " + inv.Id, Data: inv})
}

// invoiceIssue issues an invoice with its number and the uploaded document, whose type
// (PDF or OFD) the desk reads from its content, not from what the browser claims.
func (c *Console) invoiceIssue(w http.ResponseWriter, r *http.Request, s *session) {
	f, _, err := r.FormFile("document")
	if err != nil {
		c.render(w, r, http.StatusBadRequest, "error", s, pageData{Title: "开具发票", Message: "请选择发票文件（PDF 或 OFD）。"})
		return
	}
	doc, err := io.ReadAll(io.LimitReader(f, maxInvoiceDocument+1))
	f.Close()
	if err != nil || len(doc) > maxInvoiceDocument {
		c.render(w, r, http.StatusBadRequest, "error", s, pageData{Title: "开具发票", Message: "发票文件过大或无法读取。"})
		return
	}
	r = c.deskContext(r, s)
	id := r.PathValue("id")
	if _, err := c.opts.Invoices.IssueInvoice(r.Context(), &hufuv1.IssueInvoiceRequest{InvoiceId: id,
		Number: strings.TrimSpace(r.PostFormValue("number")), Document: doc}); err != nil {
		c.failed(w, r, s, "开具发票", err)
		return
	}
	http.Redirect(w, r, base+"invoices?done=issued&id="+url.QueryEscape(id), http.StatusSeeOther)
}

func (c *Console) invoiceReject(w http.ResponseWriter, r *http.Request, s *session) {
	r = c.deskContext(r, s)
	id := r.PathValue("id")
	if _, err := c.opts.Invoices.RejectInvoice(r.Context(), &hufuv1.RejectInvoiceRequest{InvoiceId: id, Reason: r.PostFormValue("reason")}); err != nil {
		c.failed(w, r, s, "驳回发票申请", err)
		return
	}
	http.Redirect(w, r, base+"invoices?done=rejected&id="+url.QueryEscape(id), http.StatusSeeOther)
}
