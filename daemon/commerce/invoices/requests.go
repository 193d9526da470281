package invoices

import (
	"context"
	"errors"
	"fmt"
	"math"
	"slices"
	"strings"

	hufuv1 "github.com/hufu-hsm/hufu/api/hufu/v1"
	"github.com/hufu-hsm/hufu/daemon/apierr"
	"github.com/hufu-hsm/hufu/daemon/authn"
	"github.com/hufu-hsm/hufu/store"
	"github.com/hufu-hsm/hufu/store/storepb"
)

// Group is the invoiceable orders of one category.
type Group struct {
	Category  hufuv1.InvoiceCategory
	Orders    []Order
	AmountFen int64
}

// invoiceable reports why an order cannot be invoiced, or "" with its category.
func (s *Service) invoiceable(o Order) (hufuv1.InvoiceCategory, string) {
	cat, ok := s.opts.Categories[o.Kind]
	switch {
	case o.Refunded:
		return 0, "was refunded"
	case o.AmountFen <= 0:
		return 0, "cost nothing: there is nothing to invoice"
	case !ok:
		return 0, fmt.Sprintf("is of a kind (%s) that is not invoiced", o.Kind)
	}
	return cat, ""
}

// InvoiceableOrders lists the caller's paid orders that can be invoiced now, by category
// (only category if it is set), each group with its total.
func (s *Service) InvoiceableOrders(ctx context.Context, caller authn.Caller, category hufuv1.InvoiceCategory) ([]Group, error) {
	if category != hufuv1.InvoiceCategory_INVOICE_CATEGORY_UNSPECIFIED && categoryLabel(category) == category.String() {
		return nil, apierr.Invalidf("category", "unknown category %d", category)
	}
	paid, err := s.deps.Orders.PaidOrders(ctx, caller.UserID)
	if err != nil {
		return nil, err
	}
	byCat := map[hufuv1.InvoiceCategory]*Group{}
	for _, o := range paid {
		cat, why := s.invoiceable(o)
		if why != "" || (category != hufuv1.InvoiceCategory_INVOICE_CATEGORY_UNSPECIFIED && cat != category) {
			continue
		}
		_, err := s.deps.Store.Lookup(ctx, indexOrder, o.ID)
		if err == nil {
			continue // in a submitted or issued invoice
		}
		if !errors.Is(err, store.ErrNotFound) {
			return nil, err
		}
		g := byCat[cat]
		if g == nil {
			g = &Group{Category: cat}
			byCat[cat] = g
		}
		g.Orders = append(g.Orders, o)
		g.AmountFen += o.AmountFen
	}
	var out []Group
	for _, c := range []hufuv1.InvoiceCategory{hufuv1.InvoiceCategory_INVOICE_CATEGORY_CA_CERTIFICATE,
		hufuv1.InvoiceCategory_INVOICE_CATEGORY_INFORMATION_SERVICE, hufuv1.InvoiceCategory_INVOICE_CATEGORY_PLATFORM_SERVICE} {
		if category != hufuv1.InvoiceCategory_INVOICE_CATEGORY_UNSPECIFIED && c != category {
			continue
		}
		g := byCat[c]
		if g == nil {
			g = &Group{Category: c}
		}
		out = append(out, *g)
	}
	return out, nil
}

// Request submits an invoice for some of the caller's paid orders. req.RequestId makes it
// idempotent: the same id answers with the invoice it made.
func (s *Service) Request(ctx context.Context, caller authn.Caller, req *hufuv1.RequestInvoiceRequest) (*storepb.Invoice, error) {
	if err := apierr.CheckRequestID("request_id", req.GetRequestId()); err != nil {
		return nil, err
	}
	reqKey := caller.UserID + "." + req.GetRequestId()
	if k, err := s.deps.Store.Lookup(ctx, indexRequest, reqKey); err == nil {
		out := new(storepb.Invoice)
		return out, s.deps.Store.Get(ctx, k, out)
	} else if !errors.Is(err, store.ErrNotFound) {
		return nil, err
	}
	kind := req.GetKind()
	if kind != hufuv1.InvoiceKind_INVOICE_KIND_ORDINARY && kind != hufuv1.InvoiceKind_INVOICE_KIND_SPECIAL_VAT {
		return nil, apierr.Invalidf("kind", "ordinary or special VAT")
	}
	title, err := s.requestTitle(ctx, caller, req)
	if err != nil {
		return nil, err
	}
	t := Type{Title: hufuv1.InvoiceTitleKind(title.Kind), Kind: kind}
	if kind == hufuv1.InvoiceKind_INVOICE_KIND_SPECIAL_VAT {
		if title.Kind != titleEnterprise {
			return nil, apierr.Invalidf("kind", "a special VAT invoice (增值税专用发票) needs an enterprise title")
		}
		if missing := fullForSpecialVAT(title); missing != "" {
			return nil, apierr.Invalidf("title."+missing, "a special VAT invoice (增值税专用发票) needs the enterprise's address, telephone, bank and account")
		}
	}
	if !slices.Contains(s.opts.Types, t) {
		return nil, apierr.Invalidf("kind", "%s is not offered here", typeLabel(t))
	}
	ids := req.GetOrderIds()
	switch {
	case len(ids) == 0:
		return nil, apierr.Invalidf("order_ids", "select at least one order")
	case len(ids) > s.opts.MaxOrdersPerInvoice:
		return nil, apierr.Invalidf("order_ids", "at most %d orders per invoice", s.opts.MaxOrdersPerInvoice)
	}
	for i, id := range ids {
		if !orderIDRE.MatchString(id) {
			return nil, apierr.Invalidf(fmt.Sprintf("order_ids[%d]", i), "not an order id")
		}
		if slices.Contains(ids[:i], id) {
			return nil, apierr.Invalidf(fmt.Sprintf("order_ids[%d]", i), "order %s is listed twice", id)
		}
	}
	email := strings.TrimSpace(req.GetEmail())
	if email != "" && (len(email) > 254 || !emailRE.MatchString(email)) {
		return nil, apierr.Invalidf("email", "not an e-mail address")
	}
	remark, err := checkText("remark", req.GetRemark(), maxReasonRunes, false)
	if err != nil {
		return nil, err
	}
	now := s.deps.Clock.Now()
	inv := &storepb.Invoice{Id: store.NewestFirstID(now), UserId: caller.UserID, State: stateSubmitted, Kind: int32(kind),
		Title: title, Email: email, Remark: remark, RequestId: req.GetRequestId()}
	key := invoiceKey(caller.UserID, inv.Id)
	var out *storepb.Invoice
	err = s.deps.Store.Update(ctx, func(tx *store.Tx) error {
		out = nil
		if k, err := tx.Lookup(indexRequest, reqKey); err == nil {
			out = new(storepb.Invoice)
			return tx.Get(k, out)
		} else if !errors.Is(err, store.ErrNotFound) {
			return err
		}
		inv.Orders, inv.AmountFen, inv.Category = nil, 0, 0
		for i, id := range ids {
			field := fmt.Sprintf("order_ids[%d]", i)
			o, err := s.deps.Orders.PaidOrderIn(tx, caller.UserID, id)
			switch {
			case errors.Is(err, store.ErrNotFound):
				return apierr.New(apierr.NotFound, "%s: no order %q", field, id)
			case errors.Is(err, ErrNotPaid):
				return apierr.New(apierr.FailedPrecondition, "order %s is not completed (paid): only paid orders are invoiced", id)
			case err != nil:
				return err
			}
			cat, why := s.invoiceable(o)
			if why != "" {
				return apierr.New(apierr.FailedPrecondition, "order %s %s", id, why)
			}
			if i > 0 && int32(cat) != inv.Category {
				return apierr.Invalidf(field, "order %s is %s, the others %s: one category per invoice", id, categoryLabel(cat),
					categoryLabel(hufuv1.InvoiceCategory(inv.Category)))
			}
			if err := tx.Claim(indexOrder, id, key); errors.Is(err, store.ErrTaken) {
				return apierr.New(apierr.FailedPrecondition, "order %s is invoiced already (or in a submitted invoice)", id)
			} else if err != nil {
				return err
			}
			if o.AmountFen > math.MaxInt64-inv.AmountFen {
				return apierr.Invalidf("order_ids", "the total is too large for one invoice")
			}
			inv.Category, inv.AmountFen = int32(cat), inv.AmountFen+o.AmountFen
			inv.Orders = append(inv.Orders, &storepb.InvoiceOrder{OrderId: o.ID, OrderKind: o.Kind, AmountFen: o.AmountFen,
				PaidUnixNano: o.PaidAt.UnixNano(), Description: o.Description})
		}
		inv.SubmittedUnixNano = tx.Now().UnixNano()
		inv.QueueId = queueID(inv.SubmittedUnixNano, inv.Id)
		if err := tx.Claim(indexRequest, reqKey, key); err != nil {
			return err
		}
		if err := tx.Claim(indexInvoice, inv.Id, key); err != nil {
			return err
		}
		if err := invoices.Put(tx, invoiceID(caller.UserID, inv.Id), inv); err != nil {
			return err
		}
		if err := queue.Put(tx, inv.QueueId, &storepb.InvoiceQueueEntry{InvoiceKey: key}); err != nil {
			return err
		}
		out = inv
		return tx.Audit(store.Event{Actor: caller.Actor(), Action: "invoice.request", Subject: key, Outcome: store.OutcomeOK,
			Details: map[string]string{"orders": strings.Join(ids, ","), "amount_fen": fmt.Sprint(inv.AmountFen),
				"kind": kind.String(), "title_kind": hufuv1.InvoiceTitleKind(title.Kind).String(),
				"category": hufuv1.InvoiceCategory(inv.Category).String()}})
	})
	if err != nil {
		return nil, err
	}
	if out == inv {
		s.m.changes.WithLabelValues("request").Inc()
	}
	return out, nil
}

// requestTitle is the title of a request: a saved one or one typed in, exactly one.
func (s *Service) requestTitle(ctx context.Context, caller authn.Caller, req *hufuv1.RequestInvoiceRequest) (*storepb.InvoiceTitle, error) {
	switch {
	case req.GetTitleId() != "" && req.GetTitle() != nil:
		return nil, apierr.Invalidf("title_id", "give a saved title or a title, not both")
	case req.GetTitleId() != "":
		if !titleIDRE.MatchString(req.GetTitleId()) {
			return nil, apierr.New(apierr.NotFound, "title_id: no saved title %q", req.GetTitleId())
		}
		t, err := s.title(ctx, caller, req.GetTitleId())
		if err != nil {
			return nil, err
		}
		// A copy without the bookkeeping of the saved one.
		return &storepb.InvoiceTitle{Id: t.Id, Kind: t.Kind, Name: t.Name, TaxNumber: t.TaxNumber, Address: t.Address,
			Telephone: t.Telephone, Bank: t.Bank, BankAccount: t.BankAccount}, nil
	case req.GetTitle() != nil:
		return CheckTitle("title", req.GetTitle())
	}
	return nil, apierr.Invalidf("title", "give a saved title (title_id) or a title")
}

// List is the caller's history, newest first, optionally by state.
func (s *Service) List(ctx context.Context, caller authn.Caller, state hufuv1.InvoiceState, size uint32, token string) ([]*storepb.Invoice, string, error) {
	n, err := pageSize(size)
	if err != nil {
		return nil, "", err
	}
	if state < 0 || state > hufuv1.InvoiceState_INVOICE_STATE_REJECTED {
		return nil, "", apierr.Invalidf("state", "unknown state %d", state)
	}
	page, err := invoices.List(ctx, s.deps.Store, "inv/"+caller.UserID+"/", store.ListOptions{Cursor: token, Limit: n}, func(_ string, inv *storepb.Invoice) bool {
		return state == hufuv1.InvoiceState_INVOICE_STATE_UNSPECIFIED || inv.State == int32(state)
	})
	if errors.Is(err, store.ErrBadCursor) {
		return nil, "", apierr.Invalidf("page_token", "not a token from the previous page")
	}
	if err != nil {
		return nil, "", err
	}
	out := make([]*storepb.Invoice, len(page.Items))
	for i, it := range page.Items {
		out[i] = it.Value
	}
	return out, page.Next, nil
}

// Get returns one of the caller's invoices.
func (s *Service) Get(ctx context.Context, caller authn.Caller, id string) (*storepb.Invoice, error) {
	if !invoiceIDRE.MatchString(id) {
		return nil, noInvoice(id)
	}
	inv, err := invoices.Read(ctx, s.deps.Store, invoiceID(caller.UserID, id))
	if errors.Is(err, store.ErrNotFound) {
		return nil, noInvoice(id)
	}
	return inv, err
}

// Download returns an issued invoice's document.
func (s *Service) Download(ctx context.Context, caller authn.Caller, id string) (*storepb.Invoice, *storepb.InvoiceDocument, error) {
	inv, err := s.Get(ctx, caller, id)
	if err != nil {
		return nil, nil, err
	}
	if inv.State != stateIssued {
		return nil, nil, apierr.New(apierr.FailedPrecondition, "invoice %s is %s: only an issued invoice has a document", id, stateName(inv.State))
	}
	doc, err := docs.Read(ctx, s.deps.Store, docID(id))
	if err != nil {
		return nil, nil, fmt.Errorf("invoices: document of %s: %w", id, err)
	}
	return inv, doc, nil
}

func stateName(st int32) string {
	switch st {
	case stateSubmitted:
		return "submitted (已提交)"
	case stateIssued:
		return "issued (已开具)"
	case stateRejected:
		return "rejected (已驳回)"
	}
	return "in an unknown state"
}

// OrderInvoiceIn returns, inside tx (locking the claim), the id of the submitted or issued
// invoice that holds an order, or "" if none does: for after-sales, which must not refund
// an invoiced order without dealing with its invoice.
func OrderInvoiceIn(tx *store.Tx, orderID string) (string, error) {
	if !orderIDRE.MatchString(orderID) {
		return "", nil
	}
	key, err := tx.Lookup(indexOrder, orderID)
	if errors.Is(err, store.ErrNotFound) {
		return "", nil
	}
	if err != nil {
		return "", err
	}
	return key[strings.LastIndexByte(key, '/')+1:], nil
}
