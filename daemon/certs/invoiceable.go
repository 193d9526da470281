package certs

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"time"

	hufuv1 "github.com/hufu-hsm/hufu/api/hufu/v1"
	"github.com/hufu-hsm/hufu/store"
	"github.com/hufu-hsm/hufu/store/storepb"
)

// PaidOrder is what invoicing (daemon/commerce/invoices) reads of a completed order: a
// read-only view, so that invoicing never touches the order records.
type PaidOrder struct {
	ID string
	// Kind names the order's kind: "new", "renewal", "upgrade", "enterprise_claim" or
	// "enterprise_verification" (OrderKindName).
	Kind string
	// AmountFen is what was paid.
	AmountFen int64
	PaidAt    time.Time
	// Refunded orders are not invoiceable.
	Refunded bool
	// Description is a short line for the invoice list, e.g. "hufu-ca personal 2年".
	Description string
}

// OrderKindName is the stable name of an order kind used by invoicing's category mapping.
func OrderKindName(kind int32) string {
	name := strings.TrimPrefix(hufuv1.OrderKind(kind).String(), "ORDER_KIND_")
	return strings.ToLower(name)
}

// maxPaidOrders bounds how many of a user's orders PaidOrders reads.
const maxPaidOrders = 5000

// PaidOrders lists a user's completed orders, newest first (at most the newest 5000 of all
// their orders are read).
func (s *Service) PaidOrders(ctx context.Context, userID string) ([]PaidOrder, error) {
	if err := store.ValidPart(userID); err != nil {
		return nil, err
	}
	var out []PaidOrder
	cursor, read := "", 0
	for {
		page, err := orders.List(ctx, s.deps.Store, "order/"+userID+"/", store.ListOptions{Cursor: cursor, Limit: store.MaxListLimit}, nil)
		if err != nil {
			return nil, err
		}
		for _, it := range page.Items {
			if it.Value.Status == statusCompleted {
				out = append(out, paidOrder(it.Value))
			}
		}
		read += len(page.Items)
		if page.Next == "" || read >= maxPaidOrders {
			return out, nil
		}
		cursor = page.Next
	}
}

// ErrNotPaid: the order exists but is not completed.
var ErrNotPaid = errors.New("certs: the order is not completed")

// PaidOrderIn reads one of a user's orders inside tx, locking it until the transaction
// commits (so a refund or a cancellation racing with invoicing is ordered against it).
// store.ErrNotFound if the user has no such order; ErrNotPaid if it is not completed.
func (s *Service) PaidOrderIn(tx *store.Tx, userID, id string) (PaidOrder, error) {
	if !orderIDRE.MatchString(id) {
		return PaidOrder{}, fmt.Errorf("%w: order", store.ErrNotFound)
	}
	o, err := orders.Get(tx, orderID(userID, id))
	if err != nil {
		return PaidOrder{}, err
	}
	if o.Status != statusCompleted {
		return PaidOrder{}, ErrNotPaid
	}
	return paidOrder(o), nil
}

func paidOrder(o *storepb.Order) PaidOrder {
	desc := o.CaId + " " + o.CertKind
	if o.ValidityYears > 0 {
		desc += fmt.Sprintf(" %d年", o.ValidityYears)
	}
	if isVerification(o) {
		desc = "对公打款认证 " + o.EnterpriseUscc
	}
	return PaidOrder{ID: o.Id, Kind: OrderKindName(o.Kind), AmountFen: o.PriceFen, PaidAt: time.Unix(0, o.PaidUnixNano),
		Refunded: orderRefunded(o), Description: strings.TrimSpace(desc)}
}

// orderRefunded reports whether a completed order's payment was returned, or an after-sales
// desk started returning it (review steps StepRefunded, StepRefunding; refund.go).
func orderRefunded(o *storepb.Order) bool {
	for _, st := range o.Steps {
		if st.Name == StepRefunded || st.Name == StepRefunding {
			return true
		}
	}
	return false
}
