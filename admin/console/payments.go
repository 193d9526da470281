package console

import (
	"net/http"
	"net/url"
	"strings"

	"github.com/hufu-hsm/hufu/admin"
	hufuv1 "github.com/hufu-hsm/hufu/api/hufu/v1"
	"github.com/hufu-hsm/hufu/daemon/enterprises"
)

// The offline payment desk (线下付款确认): payments awaiting the bank or counter's
// confirmation, confirmed with the bank's reference and the amount received (the order's
// certificate is then issued) or rejected; and the refunds due on offline payments, whose
// payout the desk records. Every call is a PaymentDeskServiceServer call as the signed-in
// operator.

type paymentsData struct {
	Pending, RefundsDue []*hufuv1.OfflinePayment
	NextPending         string
}

type paymentData struct {
	Payment *hufuv1.OfflinePayment
	Pending bool // else a refund due
}

var paymentStates = map[hufuv1.OfflinePaymentState]string{
	hufuv1.OfflinePaymentState_OFFLINE_PAYMENT_STATE_PENDING:    "待确认到账",
	hufuv1.OfflinePaymentState_OFFLINE_PAYMENT_STATE_CONFIRMED:  "已确认",
	hufuv1.OfflinePaymentState_OFFLINE_PAYMENT_STATE_REJECTED:   "已驳回",
	hufuv1.OfflinePaymentState_OFFLINE_PAYMENT_STATE_CANCELLED:  "已取消",
	hufuv1.OfflinePaymentState_OFFLINE_PAYMENT_STATE_REFUND_DUE: "待退款",
	hufuv1.OfflinePaymentState_OFFLINE_PAYMENT_STATE_REFUNDED:   "已退款",
}

func (c *Console) paymentsList(w http.ResponseWriter, r *http.Request, s *session) {
	r = c.deskContext(r, s)
	pending, err := c.opts.Payments.ListPendingPayments(r.Context(), &hufuv1.ListPendingPaymentsRequest{PageSize: 50, PageToken: r.URL.Query().Get("page")})
	if err != nil {
		c.failed(w, r, s, "线下付款", err)
		return
	}
	due, err := c.opts.Payments.ListRefundsDue(r.Context(), &hufuv1.ListRefundsDueRequest{PageSize: 50})
	if err != nil {
		c.failed(w, r, s, "线下付款", err)
		return
	}
	notice := ""
	if id := r.URL.Query().Get("id"); admin.ValidRequestID(id) {
		switch r.URL.Query().Get("done") {
		case "confirmed":
			notice = "已确认到账，订单 " + id
			if serial := r.URL.Query().Get("serial"); serial != "" && admin.ValidRequestID(serial) {
				notice += "，已签发证书 " + serial
			}
		case "rejected":
			notice = "已驳回线下付款，订单 " + id
		case "paid-out":
			notice = "已登记退款打款，订单 " + id
		}
	}
	c.render(w, r, http.StatusOK, "payments", s, pageData{Title: "线下付款", Notice: notice,
		Data: paymentsData{Pending: pending.Payments, RefundsDue: due.Payments, NextPending: pending.NextPageToken}})
}

// findPayment finds an order's offline payment among the pending ones, then among the
// refunds due (the desk has no call for one payment: it decides what is open).
func (c *Console) findPayment(r *http.Request, id string) (*hufuv1.OfflinePayment, bool, error) {
	p, err := findIn(func(token string) ([]*hufuv1.OfflinePayment, string, error) {
		resp, err := c.opts.Payments.ListPendingPayments(r.Context(), &hufuv1.ListPendingPaymentsRequest{PageSize: 100, PageToken: token})
		return resp.GetPayments(), resp.GetNextPageToken(), err
	}, func(p *hufuv1.OfflinePayment) bool { return p.OrderId == id })
	if p != nil || err != nil {
		return p, true, err
	}
	p, err = findIn(func(token string) ([]*hufuv1.OfflinePayment, string, error) {
		resp, err := c.opts.Payments.ListRefundsDue(r.Context(), &hufuv1.ListRefundsDueRequest{PageSize: 100, PageToken: token})
		return resp.GetPayments(), resp.GetNextPageToken(), err
	}, func(p *hufuv1.OfflinePayment) bool { return p.OrderId == id })
	return p, false, err
}

// findIn pages through a desk's listing (at most 20 pages) for the item match accepts.
func findIn[T any](list func(token string) ([]T, string, error), match func(T) bool) (T, error) {
	var zero T
	token := ""
	for range 20 {
		items, next, err := list(token)
		if err != nil {
			return zero, err
		}
		for _, it := range items {
			if match(it) {
				return it, nil
			}
		}
		if token = next; token == "" {
			break
		}
	}
	return zero, nil
}

func (c *Console) paymentPage(w http.ResponseWriter, r *http.Request, s *session) {
	r = c.deskContext(r, s)
	p, pending, err := c.findPayment(r, r.PathValue("id"))
	if err != nil {
		c.failed(w, r, s, "线下付款", err)
		return
	}
	if p == nil {
		c.render(w, r, http.StatusNotFound, "error", s, pageData{Title: "线下付款", Message: "该订单没有待确认的线下付款或待退款（已处理或不存在）。"})
		return
	}
	c.render(w, r, http.StatusOK, "payment", s, pageData{Title: "线下付款 " + p.OrderId, Data: paymentData{Payment: p, Pending: pending}})
}

// formFen reads an amount in yuan (like 360.00) from the form; ok false after rendering
// the refusal.
func (c *Console) formFen(w http.ResponseWriter, r *http.Request, s *session, title, field string) (int64, bool) {
	fen, err := enterprises.ParseFen(strings.TrimSpace(r.PostFormValue(field)))
	if err != nil {
		c.render(w, r, http.StatusBadRequest, "error", s, pageData{Title: title, Message: "金额须以元计、至多两位小数，例如 360.00。"})
		return 0, false
	}
	return fen, true
}

func (c *Console) paymentConfirm(w http.ResponseWriter, r *http.Request, s *session) {
	fen, ok := c.formFen(w, r, s, "确认到账", "amount")
	if !ok {
		return
	}
	r = c.deskContext(r, s)
	id := r.PathValue("id")
	resp, err := c.opts.Payments.ConfirmOfflinePayment(r.Context(), &hufuv1.ConfirmOfflinePaymentRequest{OrderId: id,
		OperatorReference: strings.TrimSpace(r.PostFormValue("reference")), AmountFen: fen})
	if err != nil {
		c.failed(w, r, s, "确认到账", err)
		return
	}
	http.Redirect(w, r, base+"payments?done=confirmed&id="+url.QueryEscape(id)+"&serial="+url.QueryEscape(resp.Serial), http.StatusSeeOther)
}

func (c *Console) paymentReject(w http.ResponseWriter, r *http.Request, s *session) {
	r = c.deskContext(r, s)
	id := r.PathValue("id")
	if _, err := c.opts.Payments.RejectOfflinePayment(r.Context(), &hufuv1.RejectOfflinePaymentRequest{OrderId: id, Reason: r.PostFormValue("reason")}); err != nil {
		c.failed(w, r, s, "驳回线下付款", err)
		return
	}
	http.Redirect(w, r, base+"payments?done=rejected&id="+url.QueryEscape(id), http.StatusSeeOther)
}

func (c *Console) paymentPayout(w http.ResponseWriter, r *http.Request, s *session) {
	fen, ok := c.formFen(w, r, s, "登记退款打款", "amount")
	if !ok {
		return
	}
	r = c.deskContext(r, s)
	id := r.PathValue("id")
	if _, err := c.opts.Payments.ConfirmRefundPayout(r.Context(), &hufuv1.ConfirmRefundPayoutRequest{OrderId: id,
		OperatorReference: strings.TrimSpace(r.PostFormValue("reference")), AmountFen: fen}); err != nil {
		c.failed(w, r, s, "登记退款打款", err)
		return
	}
	http.Redirect(w, r, base+"payments?done=paid-out&id="+url.QueryEscape(id), http.StatusSeeOther)
}
