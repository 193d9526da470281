package invoices

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"strings"

	hufuv1 "github.com/hufu-hsm/hufu/api/hufu/v1"
	"github.com/hufu-hsm/hufu/daemon/apierr"
	"github.com/hufu-hsm/hufu/daemon/authn"
	"github.com/hufu-hsm/hufu/store"
	"github.com/hufu-hsm/hufu/store/storepb"
)

// Submitted lists the invoices awaiting the desk, oldest first.
func (s *Service) Submitted(ctx context.Context, size uint32, token string) ([]*storepb.Invoice, string, error) {
	n, err := pageSize(size)
	if err != nil {
		return nil, "", err
	}
	page, err := queue.List(ctx, s.deps.Store, "queue/", store.ListOptions{Cursor: token, Limit: n}, nil)
	if errors.Is(err, store.ErrBadCursor) {
		return nil, "", apierr.Invalidf("page_token", "not a token from the previous page")
	}
	if err != nil {
		return nil, "", err
	}
	out := make([]*storepb.Invoice, 0, len(page.Items))
	for _, it := range page.Items {
		inv := new(storepb.Invoice)
		if err := s.deps.Store.Get(ctx, it.Value.InvoiceKey, inv); errors.Is(err, store.ErrNotFound) {
			continue // decided since the listing's snapshot
		} else if err != nil {
			return nil, "", err
		}
		if inv.State == stateSubmitted {
			out = append(out, inv)
		}
	}
	return out, page.Next, nil
}

// decide changes a submitted invoice found by id inside one transaction. done reports that
// the invoice is already in the wanted state with the same data (a repeated call), which is
// answered with the invoice and writes nothing.
func (s *Service) decide(ctx context.Context, caller authn.Caller, id, action string, done func(inv *storepb.Invoice) bool,
	change func(tx *store.Tx, key string, inv *storepb.Invoice) (map[string]string, error)) (*storepb.Invoice, bool, error) {
	if !invoiceIDRE.MatchString(id) {
		return nil, false, noInvoice(id)
	}
	var (
		out     *storepb.Invoice
		changed bool
	)
	err := s.deps.Store.Update(ctx, func(tx *store.Tx) error {
		out, changed = nil, false
		key, err := tx.Lookup(indexInvoice, id)
		if errors.Is(err, store.ErrNotFound) {
			return noInvoice(id)
		}
		if err != nil {
			return err
		}
		inv := new(storepb.Invoice)
		if err := tx.Get(key, inv); err != nil {
			return err
		}
		if done(inv) {
			out = inv
			return nil
		}
		if inv.State != stateSubmitted {
			return apierr.New(apierr.FailedPrecondition, "invoice %s is %s already", id, stateName(inv.State))
		}
		details, err := change(tx, key, inv)
		if err != nil {
			return err
		}
		inv.DecidedBy = caller.Actor()
		if err := queue.Delete(tx, inv.QueueId); err != nil {
			return err
		}
		if err := invoices.Put(tx, invoiceID(inv.UserId, inv.Id), inv); err != nil {
			return err
		}
		out, changed = inv, true
		details["amount_fen"] = fmt.Sprint(inv.AmountFen)
		return tx.Audit(store.Event{Actor: caller.Actor(), Action: action, Subject: key, Outcome: store.OutcomeOK, Details: details})
	})
	return out, changed, err
}

// Issue records the invoice number and attaches the document: the desk's 开具.
func (s *Service) Issue(ctx context.Context, caller authn.Caller, id, number string, document []byte, claimed string) (*storepb.Invoice, error) {
	number = strings.TrimSpace(number)
	if !numberRE.MatchString(number) {
		return nil, apierr.Invalidf("number", "an invoice number (发票号码) is 8 to 20 digits")
	}
	if len(document) == 0 {
		return nil, apierr.Invalidf("document", "required: the invoice as a PDF or OFD file")
	}
	if len(document) > s.opts.MaxDocumentBytes {
		return nil, apierr.Invalidf("document", "%d bytes: at most %d", len(document), s.opts.MaxDocumentBytes)
	}
	media, err := DetectDocument(document)
	if err != nil {
		return nil, apierr.Invalid("document", err)
	}
	if claimed = strings.TrimSpace(claimed); claimed != "" && claimed != media {
		return nil, apierr.Invalidf("media_type", "%q, but the content is %s", claimed, media)
	}
	sum := sha256.Sum256(document)
	digest := hex.EncodeToString(sum[:])
	inv, changed, err := s.decide(ctx, caller, id, "invoice.issue", func(inv *storepb.Invoice) bool {
		return inv.State == stateIssued && inv.Number == number && inv.DocumentSha256 == digest
	}, func(tx *store.Tx, key string, inv *storepb.Invoice) (map[string]string, error) {
		if err := tx.Claim(indexNumber, number, key); errors.Is(err, store.ErrTaken) {
			return nil, apierr.Invalidf("number", "invoice number %s is on another invoice already", number)
		} else if err != nil {
			return nil, err
		}
		if err := docs.Put(tx, docID(inv.Id), &storepb.InvoiceDocument{MediaType: media, Content: document}); err != nil {
			return nil, err
		}
		inv.State, inv.Number, inv.IssuedUnixNano = stateIssued, number, tx.Now().UnixNano()
		inv.DocumentMediaType, inv.DocumentSize, inv.DocumentSha256 = media, int64(len(document)), digest
		return map[string]string{"number": number, "document_sha256": digest, "media_type": media}, nil
	})
	if changed {
		s.m.changes.WithLabelValues("issue").Inc()
		s.m.issuedFen.Add(float64(inv.AmountFen))
	}
	return inv, err
}

// Reject rejects a submitted invoice with a reason shown to the user and frees its orders.
func (s *Service) Reject(ctx context.Context, caller authn.Caller, id, reason string) (*storepb.Invoice, error) {
	reason, err := checkText("reason", reason, maxReasonRunes, true)
	if err != nil {
		return nil, err
	}
	inv, changed, err := s.decide(ctx, caller, id, "invoice.reject", func(inv *storepb.Invoice) bool {
		return inv.State == stateRejected && inv.RejectReason == reason
	}, func(tx *store.Tx, key string, inv *storepb.Invoice) (map[string]string, error) {
		ids := make([]string, len(inv.Orders))
		for i, o := range inv.Orders {
			if err := tx.Unclaim(indexOrder, o.OrderId, key); err != nil {
				return nil, err
			}
			ids[i] = o.OrderId
		}
		inv.State, inv.RejectReason, inv.RejectedUnixNano = stateRejected, reason, tx.Now().UnixNano()
		return map[string]string{"orders_released": strings.Join(ids, ",")}, nil
	})
	if changed {
		s.m.changes.WithLabelValues("reject").Inc()
	}
	return inv, err
}

// InvoicePB is the API form of a stored invoice; the desk's view carries the user id.
func InvoicePB(inv *storepb.Invoice, desk bool) *hufuv1.Invoice {
	if inv == nil {
		return nil
	}
	out := &hufuv1.Invoice{Id: inv.Id, State: hufuv1.InvoiceState(inv.State), Kind: hufuv1.InvoiceKind(inv.Kind),
		Category: hufuv1.InvoiceCategory(inv.Category), Title: TitlePB(inv.Title), AmountFen: inv.AmountFen, Email: inv.Email,
		Remark: inv.Remark, SubmittedAt: hufuv1.Timestamp(inv.SubmittedUnixNano), Number: inv.Number,
		DocumentMediaType: inv.DocumentMediaType, DocumentSize: inv.DocumentSize, DocumentSha256: inv.DocumentSha256,
		IssuedAt: hufuv1.Timestamp(inv.IssuedUnixNano), RejectReason: inv.RejectReason, RejectedAt: hufuv1.Timestamp(inv.RejectedUnixNano)}
	for _, o := range inv.Orders {
		out.Orders = append(out.Orders, &hufuv1.InvoiceableOrder{OrderId: o.OrderId, OrderKind: o.OrderKind, AmountFen: o.AmountFen,
			PaidAt: hufuv1.Timestamp(o.PaidUnixNano), Description: o.Description})
	}
	if desk {
		out.UserId = inv.UserId
	}
	return out
}

// TitlePB is the API form of a stored title.
func TitlePB(t *storepb.InvoiceTitle) *hufuv1.InvoiceTitle {
	if t == nil {
		return nil
	}
	return &hufuv1.InvoiceTitle{Id: t.Id, Kind: hufuv1.InvoiceTitleKind(t.Kind), Name: t.Name, TaxNumber: t.TaxNumber,
		Address: t.Address, Telephone: t.Telephone, Bank: t.Bank, BankAccount: t.BankAccount,
		CreatedAt: hufuv1.Timestamp(t.CreatedUnixNano), UpdatedAt: hufuv1.Timestamp(t.UpdatedUnixNano)}
}
