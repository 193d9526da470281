// Package invoices is invoice management (发票管理, seed manual §1.8.6): the invoice types
// offered, a user's paid orders by category with what is still invoiceable, invoice
// requests for selected orders, saved invoice titles (常用发票抬头), the history
// (开票历史) with the issued documents, the invoicing help (开票帮助), and the operators'
// invoicing desk that issues or rejects requests.
//
// # Types, titles and categories
//
// A title (抬头) is a person's name (personal) or an enterprise's name and tax number
// (enterprise); an enterprise's tax number is its unified social credit code, checked per
// GB 32100-2015 including its check digit. An invoice is ordinary (普通发票) or special VAT
// (增值税专用发票); a special VAT invoice needs an enterprise title with the address,
// telephone, bank and account. Which of the three types (personal ordinary, enterprise
// ordinary, enterprise special VAT) are offered is configuration.
//
// Orders come from the certificate domain through the read-only Orders interface. Each
// order kind is filed under one category by configuration; by default new certificates,
// renewals, upgrades and enterprise certificates (enterprise_claim) are CA证书, an
// enterprise verification by corporate transfer (对公打款认证) is 信息服务, and nothing is
// 平台服务 yet (the mutual-recognition services will be). An order kind not filed is not
// invoiceable. One invoice covers orders of one category.
//
// # States
//
//	submitted (已提交) --desk issues: number + PDF/OFD document--> issued (已开具)
//	submitted --desk rejects with a reason--> rejected (已驳回)
//
// An order is invoiced at most once: the transaction that stores a request claims each of
// its orders in the unique index x/invoice-order, after reading the order under its lock
// (so a refund racing with the request is ordered against it), and of two requests for one
// order exactly one commits. A rejection releases the claims, so its orders are invoiceable
// again; an issued invoice keeps them. A refunded order is not invoiceable.
//
// # Records
//
//	i/inv/<user id>/<invoice id>          storepb.Invoice; ids sort newest first
//	i/titles/<user id>                    storepb.InvoiceTitles: the user's saved titles
//	i/doc/<invoice id>                    storepb.InvoiceDocument: the issued document
//	i/queue/<submitted:16 hex>-<id>       storepb.InvoiceQueueEntry: the desk's queue, oldest first
//	x/invoice/<invoice id>                -> the invoice's key (unique)
//	x/invoice-order/<order id>            -> the key of the invoice holding the order (unique)
//	x/invoice-request/<user>.<request>    -> the invoice a request id made (unique)
//	x/invoice-number/<number>             -> the invoice issued with that number (unique)
//
// Every change writes its audit record in the same transaction: "invoice.request",
// "invoice.issue", "invoice.reject", "invoice.title.add", "invoice.title.edit",
// "invoice.title.delete". Audit records name invoices, orders, amounts, kinds and document
// hashes, never titles' names, tax numbers or bank details.
package invoices

import (
	"context"
	"errors"
	"fmt"
	"regexp"
	"slices"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	hufuv1 "github.com/hufu-hsm/hufu/api/hufu/v1"
	"github.com/hufu-hsm/hufu/daemon/apierr"
	"github.com/hufu-hsm/hufu/daemon/text"
	"github.com/hufu-hsm/hufu/store"
	"github.com/hufu-hsm/hufu/store/storepb"
)

// Order is what invoicing reads of a completed order.
type Order struct {
	ID string
	// Kind is the order kind's name ("new", "renewal", "upgrade", "enterprise_claim",
	// "enterprise_verification"), which Options.Categories files under a category.
	Kind        string
	AmountFen   int64
	PaidAt      time.Time
	Refunded    bool
	Description string
}

// ErrNotPaid is what Orders.PaidOrderIn returns for an order that is not completed.
var ErrNotPaid = errors.New("invoices: order not completed")

// Orders is the read-only view of the user's orders invoicing needs (the certificate
// domain's orders satisfy it).
type Orders interface {
	// PaidOrders lists a user's completed orders.
	PaidOrders(ctx context.Context, userID string) ([]Order, error)
	// PaidOrderIn reads one of the user's orders inside tx, under the order's lock:
	// store.ErrNotFound if the user has no such order, ErrNotPaid if it is not completed.
	PaidOrderIn(tx *store.Tx, userID, orderID string) (Order, error)
}

// Type is one invoice type: the title's kind and the invoice's kind.
type Type struct {
	Title hufuv1.InvoiceTitleKind
	Kind  hufuv1.InvoiceKind
}

// Types by configuration name (config.InvoiceTypes).
var Types = map[string]Type{
	"personal_ordinary":      {hufuv1.InvoiceTitleKind_INVOICE_TITLE_KIND_PERSONAL, hufuv1.InvoiceKind_INVOICE_KIND_ORDINARY},
	"enterprise_ordinary":    {hufuv1.InvoiceTitleKind_INVOICE_TITLE_KIND_ENTERPRISE, hufuv1.InvoiceKind_INVOICE_KIND_ORDINARY},
	"enterprise_special_vat": {hufuv1.InvoiceTitleKind_INVOICE_TITLE_KIND_ENTERPRISE, hufuv1.InvoiceKind_INVOICE_KIND_SPECIAL_VAT},
}

// Categories by configuration name (config.InvoiceCategories).
var Categories = map[string]hufuv1.InvoiceCategory{
	"ca_certificate":      hufuv1.InvoiceCategory_INVOICE_CATEGORY_CA_CERTIFICATE,
	"information_service": hufuv1.InvoiceCategory_INVOICE_CATEGORY_INFORMATION_SERVICE,
	"platform_service":    hufuv1.InvoiceCategory_INVOICE_CATEGORY_PLATFORM_SERVICE,
}

// Options are the invoicing policies, from the configuration.
type Options struct {
	// HelpText is the invoicing help shown on the phone.
	HelpText string
	// Types offered, in the order the phone shows them; all three if empty.
	Types []Type
	// Categories files order kinds under categories; an order kind missing here is not
	// invoiceable.
	Categories map[string]hufuv1.InvoiceCategory
	// MaxOrdersPerInvoice (default 50), MaxTitles per user (default 20), MaxDocumentBytes
	// of an issued document (default 5 MiB).
	MaxOrdersPerInvoice int
	MaxTitles           int
	MaxDocumentBytes    int
}

// Deps are the collaborators of the service.
type Deps struct {
	Store  *store.Store
	Orders Orders
	Clock  interface{ Now() time.Time }
	// Registry receives the service's metrics; none are exported if nil.
	Registry prometheus.Registerer
}

// Service implements InvoiceService and InvoiceDeskService.
type Service struct {
	opts Options
	deps Deps
	m    *metrics
}

// New returns the service.
func New(opts Options, deps Deps) (*Service, error) {
	if deps.Store == nil || deps.Orders == nil || deps.Clock == nil {
		return nil, errors.New("invoices: missing dependency")
	}
	if len(opts.Types) == 0 {
		opts.Types = []Type{Types["personal_ordinary"], Types["enterprise_ordinary"], Types["enterprise_special_vat"]}
	}
	if opts.MaxOrdersPerInvoice <= 0 {
		opts.MaxOrdersPerInvoice = 50
	}
	if opts.MaxTitles <= 0 {
		opts.MaxTitles = 20
	}
	if opts.MaxDocumentBytes <= 0 {
		opts.MaxDocumentBytes = 5 << 20
	}
	return &Service{opts: opts, deps: deps, m: newMetrics(deps.Registry)}, nil
}

var (
	invoices = store.NewCollection(store.KindInvoice, func() *storepb.Invoice { return new(storepb.Invoice) })
	titles   = store.NewCollection(store.KindInvoice, func() *storepb.InvoiceTitles { return new(storepb.InvoiceTitles) })
	docs     = store.NewCollection(store.KindInvoice, func() *storepb.InvoiceDocument { return new(storepb.InvoiceDocument) })
	queue    = store.NewCollection(store.KindInvoice, func() *storepb.InvoiceQueueEntry { return new(storepb.InvoiceQueueEntry) })
)

const (
	indexInvoice = "invoice"
	indexOrder   = "invoice-order"
	indexRequest = "invoice-request"
	indexNumber  = "invoice-number"

	stateSubmitted = int32(hufuv1.InvoiceState_INVOICE_STATE_SUBMITTED)
	stateIssued    = int32(hufuv1.InvoiceState_INVOICE_STATE_ISSUED)
	stateRejected  = int32(hufuv1.InvoiceState_INVOICE_STATE_REJECTED)

	titlePersonal   = int32(hufuv1.InvoiceTitleKind_INVOICE_TITLE_KIND_PERSONAL)
	titleEnterprise = int32(hufuv1.InvoiceTitleKind_INVOICE_TITLE_KIND_ENTERPRISE)

	maxReasonRunes = 200
	maxPageSize    = 100
)

func invoiceID(user, id string) string  { return "inv/" + user + "/" + id }
func invoiceKey(user, id string) string { return string(store.KindInvoice) + "/" + invoiceID(user, id) }
func titlesID(user string) string       { return "titles/" + user }
func docID(id string) string            { return "doc/" + id }
func queueID(submitted int64, id string) string {
	return fmt.Sprintf("queue/%016x-%s", uint64(submitted), id)
}

var (
	invoiceIDRE = regexp.MustCompile(`^[0-9a-f]{22}$`)
	orderIDRE   = regexp.MustCompile(`^[0-9a-f]{22}$`)
	titleIDRE   = regexp.MustCompile(`^[0-9a-f]{16}$`)
	numberRE    = regexp.MustCompile(`^[0-9]{8,20}$`)
	emailRE     = regexp.MustCompile(`^[^@\s]{1,64}@[^@\s]+\.[^@\s]+$`)
)

func noInvoice(id string) error { return apierr.New(apierr.NotFound, "no invoice %q", id) }

// categoryLabel is what the phone shows for a category.
func categoryLabel(c hufuv1.InvoiceCategory) string {
	switch c {
	case hufuv1.InvoiceCategory_INVOICE_CATEGORY_CA_CERTIFICATE:
		return "CA证书"
	case hufuv1.InvoiceCategory_INVOICE_CATEGORY_INFORMATION_SERVICE:
		return "信息服务"
	case hufuv1.InvoiceCategory_INVOICE_CATEGORY_PLATFORM_SERVICE:
		return "平台服务"
	}
	return c.String()
}

// typeLabel is what the phone shows for an invoice type.
func typeLabel(t Type) string {
	who := "个人"
	if t.Title == hufuv1.InvoiceTitleKind_INVOICE_TITLE_KIND_ENTERPRISE {
		who = "企业"
	}
	if t.Kind == hufuv1.InvoiceKind_INVOICE_KIND_SPECIAL_VAT {
		return who + "增值税专用发票"
	}
	return who + "普通发票"
}

// Options returns the offered types, the categories with their order kinds, and the limits.
func (s *Service) Options() *hufuv1.GetInvoiceOptionsResponse {
	out := &hufuv1.GetInvoiceOptionsResponse{MaxOrdersPerInvoice: uint32(s.opts.MaxOrdersPerInvoice), MaxTitles: uint32(s.opts.MaxTitles)}
	for _, t := range s.opts.Types {
		out.Types = append(out.Types, &hufuv1.InvoiceType{TitleKind: t.Title, Kind: t.Kind, Label: typeLabel(t)})
	}
	for _, c := range []hufuv1.InvoiceCategory{hufuv1.InvoiceCategory_INVOICE_CATEGORY_CA_CERTIFICATE,
		hufuv1.InvoiceCategory_INVOICE_CATEGORY_INFORMATION_SERVICE, hufuv1.InvoiceCategory_INVOICE_CATEGORY_PLATFORM_SERVICE} {
		info := &hufuv1.InvoiceCategoryInfo{Category: c, Label: categoryLabel(c)}
		for kind, cat := range s.opts.Categories {
			if cat == c {
				info.OrderKinds = append(info.OrderKinds, kind)
			}
		}
		slices.Sort(info.OrderKinds)
		out.Categories = append(out.Categories, info)
	}
	return out
}

// HelpText is the invoicing help (开票帮助).
func (s *Service) HelpText() string { return s.opts.HelpText }

// checkText checks a multi-line field (reasons, remarks) with the one check of free text;
// the title's one-line fields use text.Line.
func checkText(field, s string, max int, required bool) (string, error) {
	return text.Lines(field, s, max, required)
}

// pageSize checks a page size (0: the default).
func pageSize(size uint32) (int, error) {
	switch {
	case size == 0:
		return 20, nil
	case size > maxPageSize:
		return 0, apierr.Invalidf("page_size", "want 0..%d", maxPageSize)
	}
	return int(size), nil
}
