package console

import (
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"unicode/utf8"

	"github.com/hufu-hsm/hufu/admin"
	hufuv1 "github.com/hufu-hsm/hufu/api/hufu/v1"
	"github.com/hufu-hsm/hufu/daemon/authn"
)

// The certificate review desk: the queue, one application with its attachments, approve
// and reject. Every call is a ReviewServiceServer call as the signed-in operator.

type reviewQueueData struct {
	Orders []*hufuv1.Order
	Next   string
}

type reviewOrderData struct {
	Order       *hufuv1.Order
	Letter      *letterView
	Attachments []attachmentView
}

type letterView struct {
	Method, FileName, MediaType, SHA256, SM3, SealName string
	Text                                               string // an online letter's text
	Image                                              bool
	Signed                                             bool
}

type attachmentView struct {
	Index             int
	Field, FileName   string
	MediaType, SHA256 string
	Image, PDF        bool
	Size              int
}

// inlineImage lists the image types shown inline: what browsers render without a plugin
// and what cannot carry script (not SVG).
func inlineImage(mediaType string) bool {
	switch mediaType {
	case "image/png", "image/jpeg", "image/gif", "image/webp", "image/bmp":
		return true
	}
	return false
}

func (c *Console) deskContext(r *http.Request, s *session) *http.Request {
	return r.WithContext(authn.WithCaller(r.Context(), caller(r, s)))
}

func (c *Console) reviewQueue(w http.ResponseWriter, r *http.Request, s *session) {
	r = c.deskContext(r, s)
	resp, err := c.opts.Review.ListReviews(r.Context(), &hufuv1.ListReviewsRequest{PageSize: 50, PageToken: r.URL.Query().Get("page")})
	if err != nil {
		c.failed(w, r, s, "证书审核", err)
		return
	}
	notice := ""
	if id := r.URL.Query().Get("id"); admin.ValidRequestID(id) {
		switch r.URL.Query().Get("done") {
		case "approved":
			notice = "已通过申请 " + id
		case "rejected":
			notice = "已驳回申请 " + id
		}
	}
	c.render(w, r, http.StatusOK, "review", s, pageData{Title: "证书审核", Notice: notice,
		Data: reviewQueueData{Orders: resp.Orders, Next: resp.NextPageToken}})
}

// findInReview finds an order in the review queue (the desk has no call for one order: it
// decides what is in review).
func (c *Console) findInReview(r *http.Request, id string) (*hufuv1.Order, error) {
	token := ""
	for range 20 {
		resp, err := c.opts.Review.ListReviews(r.Context(), &hufuv1.ListReviewsRequest{PageSize: 100, PageToken: token})
		if err != nil {
			return nil, err
		}
		for _, o := range resp.Orders {
			if o.Id == id {
				return o, nil
			}
		}
		if token = resp.NextPageToken; token == "" {
			break
		}
	}
	return nil, nil
}

func (c *Console) reviewOrder(w http.ResponseWriter, r *http.Request, s *session) {
	r = c.deskContext(r, s)
	id := r.PathValue("id")
	o, err := c.findInReview(r, id)
	if err != nil {
		c.failed(w, r, s, "证书审核", err)
		return
	}
	if o == nil {
		c.render(w, r, http.StatusNotFound, "error", s, pageData{Title: "证书审核", Message: "该申请不在审核队列中（已处理或不存在）。"})
		return
	}
	d := reviewOrderData{Order: o}
	letter, err := c.opts.Review.GetAuthorisationLetter(r.Context(), &hufuv1.GetAuthorisationLetterRequest{OrderId: id})
	if err == nil {
		lv := &letterView{Method: letter.Method, FileName: letter.FileName, MediaType: letter.MediaType, SHA256: letter.Sha256,
			SM3: letter.Sm3, SealName: letter.SealName, Image: inlineImage(letter.MediaType), Signed: len(letter.Signature) > 0}
		if !lv.Image && utf8.Valid(letter.Content) && (letter.MediaType == "" || strings.HasPrefix(letter.MediaType, "text/")) {
			lv.Text = string(letter.Content)
		}
		d.Letter = lv
	}
	atts, err := c.opts.Review.ListOrderAttachments(r.Context(), &hufuv1.ListOrderAttachmentsRequest{OrderId: id})
	if err != nil {
		c.failed(w, r, s, "证书审核", err)
		return
	}
	for i, a := range atts.Attachments {
		d.Attachments = append(d.Attachments, attachmentView{Index: i, Field: a.Field, FileName: a.FileName, MediaType: a.MediaType,
			SHA256: a.Sha256, Image: inlineImage(a.MediaType), PDF: a.MediaType == "application/pdf", Size: len(a.Content)})
	}
	c.render(w, r, http.StatusOK, "order", s, pageData{Title: "审核 " + id, Data: d})
}

// reviewAttachment serves one attachment's content (n is its index in the desk's list, or
// "letter"): images inline, anything else as a download, never as a page of this origin.
func (c *Console) reviewAttachment(w http.ResponseWriter, r *http.Request, s *session) {
	r = c.deskContext(r, s)
	id, n := r.PathValue("id"), r.PathValue("n")
	var name, mediaType string
	var content []byte
	if n == "letter" {
		l, err := c.opts.Review.GetAuthorisationLetter(r.Context(), &hufuv1.GetAuthorisationLetterRequest{OrderId: id})
		if err != nil {
			c.failed(w, r, s, "附件", err)
			return
		}
		name, mediaType, content = l.FileName, l.MediaType, l.Content
	} else {
		i, err := strconv.Atoi(n)
		atts, aerr := c.opts.Review.ListOrderAttachments(r.Context(), &hufuv1.ListOrderAttachmentsRequest{OrderId: id})
		if aerr != nil {
			c.failed(w, r, s, "附件", aerr)
			return
		}
		if err != nil || i < 0 || i >= len(atts.Attachments) {
			c.render(w, r, http.StatusNotFound, "error", s, pageData{Title: "附件", Message: "没有这个附件。"})
			return
		}
		a := atts.Attachments[i]
		name, mediaType, content = a.FileName, a.MediaType, a.Content
	}
	serveAttachment(w, name, mediaType, content)
}

// serveAttachment serves a desk's attachment: images and PDFs inline, anything else as a
// download, never as a page of this origin.
func serveAttachment(w http.ResponseWriter, name, mediaType string, content []byte) {
	disposition := "attachment"
	if inlineImage(mediaType) || mediaType == "application/pdf" {
		disposition = "inline"
	} else {
		mediaType = "application/octet-stream"
	}
	if name == "" {
		name = "attachment"
	}
	w.Header().Set("Content-Type", mediaType)
	w.Header().Set("Content-Disposition", disposition+"; filename*=UTF-8''"+url.PathEscape(name))
	// A PDF opens in the browser's viewer, sandboxed: no script of ours runs beside it.
	w.Header().Set("Content-Security-Policy", "default-src 'none'; img-src 'self'; sandbox; frame-ancestors 'none'")
	_, _ = w.Write(content)
}

func (c *Console) reviewApprove(w http.ResponseWriter, r *http.Request, s *session) {
	r = c.deskContext(r, s)
	id := r.PathValue("id")
	if _, err := c.opts.Review.ApproveOrder(r.Context(), &hufuv1.ApproveOrderRequest{OrderId: id, Note: r.PostFormValue("note")}); err != nil {
		c.failed(w, r, s, "审核通过", err)
		return
	}
	http.Redirect(w, r, base+"review?done=approved&id="+url.QueryEscape(id), http.StatusSeeOther)
}

func (c *Console) reviewReject(w http.ResponseWriter, r *http.Request, s *session) {
	r = c.deskContext(r, s)
	id := r.PathValue("id")
	if _, err := c.opts.Review.RejectOrder(r.Context(), &hufuv1.RejectOrderRequest{OrderId: id, Reason: r.PostFormValue("reason")}); err != nil {
		c.failed(w, r, s, "审核驳回", err)
		return
	}
	http.Redirect(w, r, base+"review?done=rejected&id="+url.QueryEscape(id), http.StatusSeeOther)
}
