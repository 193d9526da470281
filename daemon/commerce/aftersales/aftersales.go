// Package aftersales is 退款/售后 (seed manual §1.8.1.4) and 申请售后 on a completed order
// (§1.8.1.1.3): a person opens a case on one of their completed orders with a reason, free
// text and attachments; an operators' desk (AfterSalesDeskService, a system client's
// permission that needs a second security officer) agrees to refund (同意退款) or closes the
// case with an agreed outcome (协商解决).
//
// # States
//
//	in review (售后审核中) --desk refunds--> refunding (退款处理中) --> refunded (同意退款)
//	in review --desk settles with the agreed outcome--> settled (协商解决)
//	in review --the person withdraws--> withdrawn (已撤销)
//
// An order has at most one open case (in review or refunding): the transaction that opens a
// case claims the order in the unique index x/aftersales-open/<order id>, after reading the
// order under its lock, and closing the case releases it. A refunded order gets no new case.
//
// # Telling the person first
//
// A refund of a certificate order revokes its certificate, and with it every certificate of
// the same key, whose server share is destroyed: nothing encrypted to them can be decrypted
// again. Preview answers the consequences (the amount given back, the serials revoked, an
// invoice in the way) and an acknowledgement, a digest of the order, the amount and the
// serials; Apply refuses an application that does not echo the acknowledgement of the
// consequences as they are when it is made.
//
// # Refunds, in an order a crash cannot break
//
// The refund makes two calls outside hufu (the CA's revocation, the payment provider's
// refund; both idempotent) and three transactions, in this order:
//
//  1. intent: the case becomes refunding, the order gets the step "refunding" (from then on
//     it is not invoiceable), the serials to revoke are recorded, audit
//     "aftersales.refund.start". Refused, with an audit record of the refusal, while a
//     submitted or issued invoice holds the order (invoices.OrderInvoiceIn): the invoicing
//     desk rejects a submitted invoice first; an issued one cannot be undone in hufu, so such
//     a case is settled (协商解决), e.g. with a red-letter invoice made outside.
//  2. revocation (certificate orders): the CAs put the key's certificates on their CRLs, then
//     one transaction destroys the key's server share, marks the certificates revoked, marks
//     the case revoked and writes the audit records ("cert.revoke", "aftersales.revoke").
//  3. refund: the provider gives the payment back, then one transaction writes the reversing
//     ledger entry ("refund:<order id>"), the order's step "refunded", the case refunded with
//     the entry's id, releases the order's open claim and writes "aftersales.refund".
//
// Revocation comes before the money: the ledger never holds a refund whose certificate still
// works. A crash or a failed call after step 1 leaves the case refunding — in the desk's open
// list, audited — and calling RefundAfterSales again resumes where it stopped (a revoked
// certificate is not revoked again, the provider's refund and the ledger reversal are
// idempotent per order). A refunding case cannot be settled or withdrawn.
//
// # Records
//
//	r/case/<user id>/<case id>            storepb.AfterSalesCase; ids sort newest first
//	r/open/<case id>                      storepb.AfterSalesQueueEntry: the desk's queue
//	x/aftersales/<case id>                -> the case (unique)
//	x/aftersales-open/<order id>          -> the open case of the order (unique)
//	x/aftersales-request/<user>.<request> -> the case a request id opened (unique)
//	o/att-link/aftersales/<case id>/...   its attachments (daemon/attachments)
//
// Audit actions: "aftersales.apply", "aftersales.withdraw", "aftersales.refund.start",
// "aftersales.revoke", "aftersales.refund", "aftersales.settle". Records name cases, orders,
// amounts, serials, reasons and lengths — never the person's text or the agreed outcome.
package aftersales

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"
	"unicode/utf8"

	"github.com/prometheus/client_golang/prometheus"

	hufuv1 "github.com/hufu-hsm/hufu/api/hufu/v1"
	"github.com/hufu-hsm/hufu/daemon/apierr"
	"github.com/hufu-hsm/hufu/daemon/attachments"
	"github.com/hufu-hsm/hufu/daemon/authn"
	"github.com/hufu-hsm/hufu/daemon/certs"
	"github.com/hufu-hsm/hufu/daemon/commerce/payments"
	"github.com/hufu-hsm/hufu/daemon/identity"
	"github.com/hufu-hsm/hufu/daemon/text"
	"github.com/hufu-hsm/hufu/store"
	"github.com/hufu-hsm/hufu/store/storepb"
)

// Orders is what after-sales needs of the certificate orders (certs.Service satisfies it).
type Orders interface {
	// GetOrder returns one of the caller's orders.
	GetOrder(ctx context.Context, caller authn.Caller, id string) (*storepb.Order, error)
	// OrderByID returns any user's order (for the desk).
	OrderByID(ctx context.Context, id string) (*storepb.Order, error)
	// PaidOrderIn reads a user's order inside tx under its lock: certs.ErrNotPaid if it is
	// not completed.
	PaidOrderIn(tx *store.Tx, userID, id string) (certs.PaidOrder, error)
	// RefundRevokes lists the serials a refund of o revokes.
	RefundRevokes(ctx context.Context, o *storepb.Order) ([]string, error)
	// RefundStepIn adds certs.StepRefunding or certs.StepRefunded to a completed order.
	RefundStepIn(tx *store.Tx, userID, id, name, actor, note string) (*storepb.Order, error)
	// RevokeForRefund revokes a certificate and its key for a refund, with with's writes.
	RevokeForRefund(ctx context.Context, caller authn.Caller, serial, reason string, with func(tx *store.Tx) error) error
}

// refundRoute says how the money goes back: the way it came, or, for an order paid offline,
// by the payment desk (payments.Service.ConfirmPayout), which tells the person once it has.
func refundRoute(o *storepb.Order) string {
	if payments.PaidOffline(o) {
		return "将由付款台以银行转账或现金线下退回，退回后另行通知"
	}
	return "将原路退回"
}

// Payments gives an order's payment back (payments.Service).
type Payments interface {
	RefundOrder(ctx context.Context, o *storepb.Order, actor string, with func(tx *store.Tx) error) (*storepb.LedgerEntry, error)
}

// Accounts is what after-sales needs of the account domain.
type Accounts interface {
	Account(ctx context.Context, caller authn.Caller) (*storepb.User, error)
}

// Options are the after-sales policies, from the configuration (aftersales).
type Options struct {
	// Labels overrides reasons' labels.
	Labels map[hufuv1.AfterSalesReason]string
	// MaxTextRunes (default 500), MaxAttachments (default 3), MaxAttachmentBytes (default
	// 2 MiB).
	MaxTextRunes       int
	MaxAttachments     int
	MaxAttachmentBytes int
}

// Deps are the collaborators of the service.
type Deps struct {
	Store       *store.Store
	Attachments *attachments.Service
	Orders      Orders
	Payments    Payments
	Accounts    Accounts
	// InvoiceOf returns, inside tx, the submitted or issued invoice holding an order, or ""
	// (invoices.OrderInvoiceIn).
	InvoiceOf func(tx *store.Tx, orderID string) (string, error)
	Clock     interface{ Now() time.Time }
	// Registry receives the service's metrics; none are exported if nil.
	Registry prometheus.Registerer
}

// Service implements AfterSalesService and AfterSalesDeskService.
type Service struct {
	opts Options
	deps Deps
	m    *metrics
	// refunding serialises the desk's refunds per case, so concurrent calls make one set of
	// CA and provider requests.
	refunding sync.Map // case id -> *sync.Mutex
}

// New returns the service.
func New(opts Options, deps Deps) (*Service, error) {
	if deps.Store == nil || deps.Attachments == nil || deps.Orders == nil || deps.Payments == nil || deps.Accounts == nil ||
		deps.InvoiceOf == nil || deps.Clock == nil {
		return nil, errors.New("aftersales: missing dependency")
	}
	if opts.MaxTextRunes <= 0 {
		opts.MaxTextRunes = 500
	}
	if opts.MaxAttachments <= 0 {
		opts.MaxAttachments = 3
	}
	if opts.MaxAttachmentBytes <= 0 {
		opts.MaxAttachmentBytes = 2 << 20
	}
	s := &Service{opts: opts, deps: deps, m: newMetrics(deps.Registry)}
	if deps.Registry != nil {
		deps.Registry.MustRegister(&collector{s: deps.Store})
	}
	return s, nil
}

var (
	cases = store.NewCollection(store.KindAfterSales, func() *storepb.AfterSalesCase { return new(storepb.AfterSalesCase) })
	queue = store.NewCollection(store.KindAfterSales, func() *storepb.AfterSalesQueueEntry { return new(storepb.AfterSalesQueueEntry) })
)

const (
	indexCase    = "aftersales"
	indexOpen    = "aftersales-open"
	indexRequest = "aftersales-request"

	stateInReview  = int32(hufuv1.AfterSalesState_AFTER_SALES_STATE_IN_REVIEW)
	stateRefunding = int32(hufuv1.AfterSalesState_AFTER_SALES_STATE_REFUNDING)
	stateRefunded  = int32(hufuv1.AfterSalesState_AFTER_SALES_STATE_REFUNDED)
	stateSettled   = int32(hufuv1.AfterSalesState_AFTER_SALES_STATE_SETTLED)
	stateWithdrawn = int32(hufuv1.AfterSalesState_AFTER_SALES_STATE_WITHDRAWN)

	// MaxOutcomeRunes bounds the agreed outcome of a settled case.
	MaxOutcomeRunes = 500
)

var caseIDRE = regexp.MustCompile(`^[0-9a-f]{22}$`)

func caseID(user, id string) string  { return "case/" + user + "/" + id }
func caseKey(user, id string) string { return string(store.KindAfterSales) + "/" + caseID(user, id) }
func queueID(id string) string       { return "open/" + id }
func application(id string) string   { return "aftersales/" + id }

func noCase(id string) error { return apierr.New(apierr.NotFound, "no after-sales case %q", id) }

// defaultLabels are the reasons as the phone shows them (the manual's 勾选退款原因 shows a
// list of refund reasons; these are its usual entries).
var defaultLabels = map[hufuv1.AfterSalesReason]string{
	hufuv1.AfterSalesReason_AFTER_SALES_REASON_NOT_NEEDED:           "不需要了",
	hufuv1.AfterSalesReason_AFTER_SALES_REASON_WRONG_INFORMATION:    "订单信息填写错误",
	hufuv1.AfterSalesReason_AFTER_SALES_REASON_DUPLICATE:            "重复购买",
	hufuv1.AfterSalesReason_AFTER_SALES_REASON_CERTIFICATE_UNUSABLE: "证书无法正常使用",
	hufuv1.AfterSalesReason_AFTER_SALES_REASON_PLATFORM_UNSUPPORTED: "交易平台不支持该证书",
	hufuv1.AfterSalesReason_AFTER_SALES_REASON_OTHER:                "其他原因",
}

// ReasonsByName are the reasons by configuration name (config.AfterSalesReasonNames).
var ReasonsByName = map[string]hufuv1.AfterSalesReason{
	"not_needed":           hufuv1.AfterSalesReason_AFTER_SALES_REASON_NOT_NEEDED,
	"wrong_information":    hufuv1.AfterSalesReason_AFTER_SALES_REASON_WRONG_INFORMATION,
	"duplicate":            hufuv1.AfterSalesReason_AFTER_SALES_REASON_DUPLICATE,
	"certificate_unusable": hufuv1.AfterSalesReason_AFTER_SALES_REASON_CERTIFICATE_UNUSABLE,
	"platform_unsupported": hufuv1.AfterSalesReason_AFTER_SALES_REASON_PLATFORM_UNSUPPORTED,
	"other":                hufuv1.AfterSalesReason_AFTER_SALES_REASON_OTHER,
}

// Reason is one reason as the phone shows it.
type Reason struct {
	Reason       hufuv1.AfterSalesReason
	Label        string
	TextRequired bool
}

// Label is what the phone shows for a reason.
func (s *Service) Label(r hufuv1.AfterSalesReason) string {
	if l, ok := s.opts.Labels[r]; ok {
		return l
	}
	if l, ok := defaultLabels[r]; ok {
		return l
	}
	return r.String()
}

// Reasons lists the reasons in their order.
func (s *Service) Reasons() []Reason {
	var out []Reason
	for r := hufuv1.AfterSalesReason(1); ; r++ {
		if _, ok := hufuv1.AfterSalesReason_name[int32(r)]; !ok {
			return out
		}
		out = append(out, Reason{Reason: r, Label: s.Label(r), TextRequired: r == hufuv1.AfterSalesReason_AFTER_SALES_REASON_OTHER})
	}
}

// Limits returns the text and attachment bounds.
func (s *Service) Limits() (text, files, bytes int) {
	return s.opts.MaxTextRunes, s.opts.MaxAttachments, s.opts.MaxAttachmentBytes
}

// checkText trims text and checks it has at most max characters without control characters
// other than line breaks and tabs; required refuses an empty one.
func checkText(field, s string, max int, required bool) (string, error) {
	return text.Lines(field, s, max, required)
}

// Preview is what a refund of an order would do.
type Preview struct {
	OrderID         string
	AmountFen       int64
	Serials         []string
	InvoiceID       string
	Consequences    []string
	Acknowledgement string
}

// acknowledgement names the consequences a person was shown: the order, the amount and the
// serials revoked.
func acknowledgement(orderID string, amount int64, serials []string) string {
	h := sha256.Sum256([]byte("hufu aftersales acknowledgement\x00" + orderID + "\x00" + strconv.FormatInt(amount, 10) + "\x00" + strings.Join(serials, ",")))
	return hex.EncodeToString(h[:8])
}

func yuan(fen int64) string { return fmt.Sprintf("%d.%02d", fen/100, fen%100) }

// orderFor reads one of the caller's orders that may get a case: completed, not refunded.
func (s *Service) orderFor(ctx context.Context, caller authn.Caller, orderID string) (*storepb.Order, error) {
	if caller.UserID == "" {
		return nil, apierr.New(apierr.PermissionDenied, "after-sales is applied for by users")
	}
	o, err := s.deps.Orders.GetOrder(ctx, caller, orderID)
	if err != nil {
		return nil, err
	}
	if o.Status != int32(hufuv1.OrderStatus_ORDER_STATUS_COMPLETED) {
		return nil, apierr.New(apierr.FailedPrecondition, "after-sales is for completed orders (已完成) only")
	}
	if slices.ContainsFunc(o.Steps, func(st *storepb.ReviewStep) bool {
		return st.Name == certs.StepRefunded || st.Name == certs.StepRefunding
	}) {
		return nil, apierr.New(apierr.FailedPrecondition, "the order was refunded already")
	}
	return o, nil
}

// Preview tells the consequences of a refund of one of the caller's completed orders.
func (s *Service) Preview(ctx context.Context, caller authn.Caller, orderID string) (*Preview, error) {
	o, err := s.orderFor(ctx, caller, orderID)
	if err != nil {
		return nil, err
	}
	serials, err := s.deps.Orders.RefundRevokes(ctx, o)
	if err != nil {
		return nil, err
	}
	var invoice, open string
	err = s.deps.Store.Update(ctx, func(tx *store.Tx) error {
		if k, err := tx.Lookup(indexOpen, o.Id); err == nil {
			open = k[strings.LastIndexByte(k, '/')+1:]
		} else if !errors.Is(err, store.ErrNotFound) {
			return err
		}
		invoice, err = s.deps.InvoiceOf(tx, o.Id)
		return err
	})
	if err != nil {
		return nil, err
	}
	if open != "" {
		return nil, apierr.New(apierr.FailedPrecondition, "the order has an open after-sales case %s", open)
	}
	p := &Preview{OrderID: o.Id, AmountFen: o.PriceFen, Serials: serials, InvoiceID: invoice,
		Acknowledgement: acknowledgement(o.Id, o.PriceFen, serials)}
	p.Consequences = append(p.Consequences, fmt.Sprintf("同意退款后，%s 元%s。", yuan(o.PriceFen), refundRoute(o)))
	if len(serials) > 0 {
		p.Consequences = append(p.Consequences, fmt.Sprintf("退款将注销证书 %s：注销后不能恢复，用其加密的文件将无法解密。", strings.Join(serials, "、")))
	}
	if invoice != "" {
		p.Consequences = append(p.Consequences, fmt.Sprintf("该订单已申请发票 %s：发票被驳回之前不能退款。", invoice))
	}
	return p, nil
}

// NewAttachment is a file submitted with an application.
type NewAttachment struct {
	FileName, MediaType string
	Content             []byte
}

// Application is what a person submits.
type Application struct {
	RequestID, OrderID string
	Reason             hufuv1.AfterSalesReason
	Text               string
	Files              []NewAttachment
	Acknowledgement    string
}

// Apply opens a case on one of the caller's completed orders.
func (s *Service) Apply(ctx context.Context, caller authn.Caller, a Application) (*storepb.AfterSalesCase, error) {
	if caller.UserID == "" {
		return nil, apierr.New(apierr.PermissionDenied, "after-sales is applied for by users")
	}
	if err := apierr.CheckRequestID("request_id", a.RequestID); err != nil {
		return nil, err
	}
	if _, ok := hufuv1.AfterSalesReason_name[int32(a.Reason)]; !ok || a.Reason == hufuv1.AfterSalesReason_AFTER_SALES_REASON_UNSPECIFIED {
		return nil, apierr.Invalidf("reason", "choose a reason (ListAfterSalesReasons)")
	}
	text, err := checkText("text", a.Text, s.opts.MaxTextRunes, a.Reason == hufuv1.AfterSalesReason_AFTER_SALES_REASON_OTHER)
	if err != nil {
		return nil, err
	}
	if len(a.Files) > s.opts.MaxAttachments {
		return nil, apierr.Invalidf("attachments", "at most %d", s.opts.MaxAttachments)
	}
	refs := make([]*storepb.AttachmentRef, len(a.Files))
	for i, f := range a.Files {
		field := fmt.Sprintf("attachments[%d]", i)
		if len(f.Content) > s.opts.MaxAttachmentBytes {
			return nil, apierr.Invalidf(field, "the file is larger than %d bytes", s.opts.MaxAttachmentBytes)
		}
		if refs[i], err = s.deps.Attachments.Check(field, f.Content, f.FileName, f.MediaType); err != nil {
			return nil, err
		}
	}
	reqValue := store.ScopedValue(caller.UserID, a.RequestID)
	if k, err := s.deps.Store.Lookup(ctx, indexRequest, reqValue); err == nil {
		out := new(storepb.AfterSalesCase)
		return out, s.deps.Store.Get(ctx, k, out)
	} else if !errors.Is(err, store.ErrNotFound) {
		return nil, err
	}
	if strings.TrimSpace(a.Acknowledgement) == "" {
		return nil, apierr.Invalidf("acknowledgement", "required: show the consequences from PreviewAfterSales and echo its acknowledgement")
	}
	o, err := s.orderFor(ctx, caller, a.OrderID)
	if err != nil {
		return nil, err
	}
	serials, err := s.deps.Orders.RefundRevokes(ctx, o)
	if err != nil {
		return nil, err
	}
	if ack := acknowledgement(o.Id, o.PriceFen, serials); ack != a.Acknowledgement {
		return nil, apierr.New(apierr.FailedPrecondition, "the acknowledgement is not that of the order's current consequences: preview again and show them")
	}
	u, err := s.deps.Accounts.Account(ctx, caller)
	if err != nil {
		return nil, err
	}
	c := &storepb.AfterSalesCase{Id: store.NewestFirstID(s.deps.Clock.Now()), UserId: caller.UserID, PhoneMasked: identity.MaskPhone(u.GetPhone()),
		OrderId: o.Id, OrderKind: certs.OrderKindName(o.Kind), AmountFen: o.PriceFen, Reason: int32(a.Reason), Text: text,
		State: stateInReview, Serials: serials, Acknowledgement: a.Acknowledgement, RequestId: a.RequestID}
	var out *storepb.AfterSalesCase
	err = s.deps.Store.Update(ctx, func(tx *store.Tx) error {
		out = nil
		if k, err := tx.Lookup(indexRequest, reqValue); err == nil {
			out = new(storepb.AfterSalesCase)
			return tx.Get(k, out)
		} else if !errors.Is(err, store.ErrNotFound) {
			return err
		}
		paid, err := s.deps.Orders.PaidOrderIn(tx, caller.UserID, o.Id)
		switch {
		case errors.Is(err, certs.ErrNotPaid):
			return apierr.New(apierr.FailedPrecondition, "after-sales is for completed orders (已完成) only")
		case err != nil:
			return err
		case paid.Refunded:
			return apierr.New(apierr.FailedPrecondition, "the order was refunded already")
		}
		k := caseKey(caller.UserID, c.Id)
		if err := tx.Claim(indexOpen, o.Id, k); errors.Is(err, store.ErrTaken) {
			open, _ := tx.Lookup(indexOpen, o.Id)
			return apierr.New(apierr.FailedPrecondition, "the order has an open after-sales case %s: one at a time", open[strings.LastIndexByte(open, '/')+1:])
		} else if err != nil {
			return err
		}
		now := tx.Now().UnixNano()
		c.CreatedUnixNano, c.UpdatedUnixNano = now, now
		c.AttachmentIds = nil
		for i, f := range a.Files {
			ref, err := s.deps.Attachments.PutClaimed(tx, refs[i].Field, f.Content, f.FileName, f.MediaType)
			if err != nil {
				return err
			}
			if err := s.deps.Attachments.Link(tx, application(c.Id), ref); err != nil {
				return err
			}
			if !slices.Contains(c.AttachmentIds, ref.Id) {
				c.AttachmentIds = append(c.AttachmentIds, ref.Id)
			}
		}
		if err := tx.Claim(indexCase, c.Id, k); err != nil {
			return err
		}
		if err := tx.Claim(indexRequest, reqValue, k); err != nil {
			return err
		}
		if err := cases.Put(tx, caseID(caller.UserID, c.Id), c); err != nil {
			return err
		}
		if err := queue.Put(tx, queueID(c.Id), &storepb.AfterSalesQueueEntry{UserId: caller.UserID, State: stateInReview}); err != nil {
			return err
		}
		out = c
		return tx.Audit(store.Event{Actor: caller.Actor(), Action: "aftersales.apply", Subject: k, Outcome: store.OutcomeOK,
			Details: map[string]string{"case": c.Id, "order": o.Id, "amount_fen": strconv.FormatInt(o.PriceFen, 10),
				"reason": hufuv1.AfterSalesReason(c.Reason).String(), "serials": strings.Join(serials, ","),
				"attachments": strings.Join(c.AttachmentIds, ","), "text_chars": strconv.Itoa(utf8.RuneCountInString(text))}})
	})
	if err != nil {
		return nil, err
	}
	if out == c {
		s.m.changes.WithLabelValues("apply").Inc()
	}
	return out, nil
}

func checkPage(size int) (int, error) {
	if size < 0 || size > 100 {
		return 0, apierr.Invalidf("page_size", "want 0..100")
	}
	if size == 0 {
		size = 20
	}
	return size, nil
}

func badCursor(err error) error {
	if errors.Is(err, store.ErrBadCursor) {
		return apierr.Invalidf("page_token", "not a token from the previous page")
	}
	return err
}

// matches reports whether a case matches a lower-cased keyword.
func (s *Service) matches(c *storepb.AfterSalesCase, kw string) bool {
	fields := append([]string{c.Id, c.OrderId, c.OrderKind, c.Text, c.Outcome, s.Label(hufuv1.AfterSalesReason(c.Reason))}, c.Serials...)
	for _, f := range fields {
		if strings.Contains(strings.ToLower(f), kw) {
			return true
		}
	}
	return false
}

// List lists the caller's cases, newest first, by state (in review includes refunding) and
// keyword.
func (s *Service) List(ctx context.Context, caller authn.Caller, state hufuv1.AfterSalesState, keyword string, size int, token string) ([]*storepb.AfterSalesCase, string, error) {
	if caller.UserID == "" {
		return nil, "", apierr.New(apierr.PermissionDenied, "after-sales is applied for by users")
	}
	if _, ok := hufuv1.AfterSalesState_name[int32(state)]; !ok {
		return nil, "", apierr.Invalidf("state", "not a state")
	}
	size, err := checkPage(size)
	if err != nil {
		return nil, "", err
	}
	kw := strings.ToLower(strings.TrimSpace(keyword))
	if utf8.RuneCountInString(kw) > 100 {
		return nil, "", apierr.Invalidf("keyword", "at most 100 characters")
	}
	page, err := cases.List(ctx, s.deps.Store, "case/"+caller.UserID+"/", store.ListOptions{Cursor: token, Limit: size},
		func(_ string, c *storepb.AfterSalesCase) bool {
			switch {
			case state == hufuv1.AfterSalesState_AFTER_SALES_STATE_IN_REVIEW && c.State != stateInReview && c.State != stateRefunding:
				return false
			case state != hufuv1.AfterSalesState_AFTER_SALES_STATE_UNSPECIFIED && state != hufuv1.AfterSalesState_AFTER_SALES_STATE_IN_REVIEW &&
				c.State != int32(state):
				return false
			}
			return kw == "" || s.matches(c, kw)
		})
	if err != nil {
		return nil, "", badCursor(err)
	}
	out := make([]*storepb.AfterSalesCase, len(page.Items))
	for i, it := range page.Items {
		out[i] = it.Value
	}
	return out, page.Next, nil
}

// Get returns one of the caller's cases.
func (s *Service) Get(ctx context.Context, caller authn.Caller, id string) (*storepb.AfterSalesCase, error) {
	if !caseIDRE.MatchString(id) || caller.UserID == "" {
		return nil, noCase(id)
	}
	c, err := cases.Read(ctx, s.deps.Store, caseID(caller.UserID, id))
	if errors.Is(err, store.ErrNotFound) {
		return nil, noCase(id)
	}
	return c, err
}

// Attachments lists the attachments of a case.
func (s *Service) Attachments(ctx context.Context, c *storepb.AfterSalesCase) ([]*storepb.AttachmentRef, error) {
	if len(c.AttachmentIds) == 0 {
		return nil, nil
	}
	return s.deps.Attachments.List(ctx, application(c.Id))
}

// close ends an open case inside tx: the new state, the order's open claim released, the
// desk's queue entry removed.
func closeIn(tx *store.Tx, c *storepb.AfterSalesCase, state int32) error {
	k := caseKey(c.UserId, c.Id)
	now := tx.Now().UnixNano()
	c.State, c.UpdatedUnixNano, c.ClosedUnixNano = state, now, now
	if err := tx.Unclaim(indexOpen, c.OrderId, k); err != nil {
		return err
	}
	if err := queue.Delete(tx, queueID(c.Id)); err != nil {
		return err
	}
	return cases.Put(tx, caseID(c.UserId, c.Id), c)
}

// Withdraw closes one of the caller's cases in review.
func (s *Service) Withdraw(ctx context.Context, caller authn.Caller, id string) (*storepb.AfterSalesCase, error) {
	if !caseIDRE.MatchString(id) || caller.UserID == "" {
		return nil, noCase(id)
	}
	var out *storepb.AfterSalesCase
	changed := false
	err := s.deps.Store.Update(ctx, func(tx *store.Tx) error {
		out, changed = nil, false
		c, err := cases.Get(tx, caseID(caller.UserID, id))
		if errors.Is(err, store.ErrNotFound) {
			return noCase(id)
		}
		if err != nil {
			return err
		}
		out = c
		switch c.State {
		case stateWithdrawn:
			return nil
		case stateInReview:
		default:
			return apierr.New(apierr.FailedPrecondition, "the case is %s: only a case in review can be withdrawn", stateName(c.State))
		}
		if err := closeIn(tx, c, stateWithdrawn); err != nil {
			return err
		}
		changed = true
		return tx.Audit(store.Event{Actor: caller.Actor(), Action: "aftersales.withdraw", Subject: caseKey(c.UserId, c.Id), Outcome: store.OutcomeOK,
			Details: map[string]string{"case": c.Id, "order": c.OrderId}})
	})
	if err != nil {
		return nil, err
	}
	if changed {
		s.m.changes.WithLabelValues("withdraw").Inc()
	}
	return out, nil
}

func stateName(st int32) string {
	switch st {
	case stateInReview:
		return "in review (售后审核中)"
	case stateRefunding:
		return "refunding (退款处理中)"
	case stateRefunded:
		return "refunded (同意退款)"
	case stateSettled:
		return "settled (协商解决)"
	case stateWithdrawn:
		return "withdrawn (已撤销)"
	}
	return hufuv1.AfterSalesState(st).String()
}

// OpenCases lists the ids of a user's open cases (in review or refunding), newest first: for
// account deletion, which waits until none is open.
func (s *Service) OpenCases(ctx context.Context, userID string) ([]string, error) {
	if err := store.ValidPart(userID); err != nil {
		return nil, err
	}
	var out []string
	cursor := ""
	for {
		page, err := cases.List(ctx, s.deps.Store, "case/"+userID+"/", store.ListOptions{Cursor: cursor, Limit: store.MaxListLimit},
			func(_ string, c *storepb.AfterSalesCase) bool {
				return c.State == stateInReview || c.State == stateRefunding
			})
		if err != nil {
			return nil, err
		}
		for _, it := range page.Items {
			out = append(out, it.Value.Id)
		}
		if cursor = page.Next; cursor == "" {
			return out, nil
		}
	}
}
