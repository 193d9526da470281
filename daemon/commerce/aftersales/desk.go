package aftersales

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strconv"
	"strings"
	"sync"
	"unicode/utf8"

	hufuv1 "github.com/hufu-hsm/hufu/api/hufu/v1"
	"github.com/hufu-hsm/hufu/daemon/apierr"
	"github.com/hufu-hsm/hufu/daemon/authn"
	"github.com/hufu-hsm/hufu/daemon/certs"
	"github.com/hufu-hsm/hufu/daemon/commerce/ledger"
	"github.com/hufu-hsm/hufu/store"
	"github.com/hufu-hsm/hufu/store/storepb"
)

// ListOpen lists the cases in review or refunding, newest first.
func (s *Service) ListOpen(ctx context.Context, size int, token string) ([]*storepb.AfterSalesCase, string, error) {
	size, err := checkPage(size)
	if err != nil {
		return nil, "", err
	}
	page, err := queue.List(ctx, s.deps.Store, "open/", store.ListOptions{Cursor: token, Limit: size}, nil)
	if err != nil {
		return nil, "", badCursor(err)
	}
	out := make([]*storepb.AfterSalesCase, 0, len(page.Items))
	for _, it := range page.Items {
		id := strings.TrimPrefix(queue.ID(it.Key), "open/")
		c, err := cases.Read(ctx, s.deps.Store, caseID(it.Value.UserId, id))
		if errors.Is(err, store.ErrNotFound) {
			continue
		}
		if err != nil {
			return nil, "", err
		}
		if c.State == stateInReview || c.State == stateRefunding {
			out = append(out, c)
		}
	}
	return out, page.Next, nil
}

// read returns a case by id.
func (s *Service) read(ctx context.Context, id string) (*storepb.AfterSalesCase, error) {
	if !caseIDRE.MatchString(id) {
		return nil, apierr.Invalidf("case_id", "not a case id (22 hex digits)")
	}
	k, err := s.deps.Store.Lookup(ctx, indexCase, id)
	if errors.Is(err, store.ErrNotFound) {
		return nil, noCase(id)
	}
	if err != nil {
		return nil, err
	}
	c := new(storepb.AfterSalesCase)
	return c, s.deps.Store.Get(ctx, k, c)
}

// getIn reads a case by id inside tx.
func getIn(tx *store.Tx, id string) (*storepb.AfterSalesCase, error) {
	k, err := tx.Lookup(indexCase, id)
	if errors.Is(err, store.ErrNotFound) {
		return nil, noCase(id)
	}
	if err != nil {
		return nil, err
	}
	c := new(storepb.AfterSalesCase)
	return c, tx.Get(k, c)
}

func isDesk(caller authn.Caller) error {
	if !caller.AtDesk() {
		return apierr.New(apierr.PermissionDenied, "the after-sales desk is a desk system client's or a console operator's")
	}
	return nil
}

func (s *Service) lockCase(id string) func() {
	m, _ := s.refunding.LoadOrStore(id, new(sync.Mutex))
	mu := m.(*sync.Mutex)
	mu.Lock()
	return mu.Unlock
}

// Refund agrees to refund a case (同意退款), in the three steps the package documentation
// describes; a case left refunding by an earlier call is resumed. A refunded case is answered
// as it is.
func (s *Service) Refund(ctx context.Context, desk authn.Caller, id string) (*storepb.AfterSalesCase, error) {
	if err := isDesk(desk); err != nil {
		return nil, err
	}
	if _, err := s.read(ctx, id); err != nil {
		return nil, err
	}
	unlock := s.lockCase(id)
	defer unlock()
	c, err := s.read(ctx, id)
	if err != nil {
		return nil, err
	}
	switch c.State {
	case stateRefunded:
		return c, nil
	case stateInReview, stateRefunding:
	default:
		return nil, apierr.New(apierr.FailedPrecondition, "the case is %s already", stateName(c.State))
	}
	o, err := s.deps.Orders.OrderByID(ctx, c.OrderId)
	if err != nil {
		return nil, err
	}
	key := caseKey(c.UserId, c.Id)

	// 1. The intent.
	if c.State == stateInReview {
		serials, err := s.deps.Orders.RefundRevokes(ctx, o)
		if err != nil {
			return nil, err
		}
		err = s.deps.Store.Update(ctx, func(tx *store.Tx) error {
			cur, err := getIn(tx, id)
			if err != nil {
				return err
			}
			if cur.State != stateInReview {
				// Settled or withdrawn since it was read.
				return apierr.New(apierr.FailedPrecondition, "the case is %s already", stateName(cur.State))
			}
			details := map[string]string{"case": id, "order": c.OrderId, "amount_fen": strconv.FormatInt(o.PriceFen, 10), "serials": strings.Join(serials, ",")}
			inv, err := s.deps.InvoiceOf(tx, c.OrderId)
			if err != nil {
				return err
			}
			if inv != "" {
				details["invoice"] = inv
				details["refused"] = "invoiced"
				if err := tx.Audit(store.Event{Actor: desk.Actor(), Action: "aftersales.refund.start", Subject: key, Outcome: store.OutcomeDenied, Details: details}); err != nil {
					return err
				}
				return store.Refuse(apierr.New(apierr.FailedPrecondition,
					"the order is on invoice %s: the invoicing desk must reject it before the refund (an issued invoice cannot be undone here: settle the case)", inv))
			}
			if _, err := s.deps.Orders.RefundStepIn(tx, c.UserId, c.OrderId, certs.StepRefunding, desk.Actor(), "after-sales case "+id); err != nil {
				if errors.Is(err, certs.ErrNotPaid) {
					return apierr.New(apierr.FailedPrecondition, "the order is not completed")
				}
				return err
			}
			cur.State, cur.Serials, cur.DecidedBy, cur.UpdatedUnixNano = stateRefunding, serials, desk.Desk(), tx.Now().UnixNano()
			if err := cases.Put(tx, caseID(cur.UserId, cur.Id), cur); err != nil {
				return err
			}
			if err := queue.Put(tx, queueID(id), &storepb.AfterSalesQueueEntry{UserId: cur.UserId, State: stateRefunding}); err != nil {
				return err
			}
			c = cur
			return tx.Audit(store.Event{Actor: desk.Actor(), Action: "aftersales.refund.start", Subject: key, Outcome: store.OutcomeOK, Details: details})
		})
		if err != nil {
			var ae *apierr.Error
			if errors.As(err, &ae) && ae.Kind == apierr.FailedPrecondition {
				s.m.changes.WithLabelValues("refund_refused").Inc()
			}
			return nil, err
		}
		s.m.changes.WithLabelValues("refund_start").Inc()
	}

	// 2. The revocation.
	if o.Serial != "" && !c.Revoked {
		err := s.deps.Orders.RevokeForRefund(ctx, desk, o.Serial, "after-sales refund "+id, func(tx *store.Tx) error {
			cur, err := getIn(tx, id)
			if err != nil {
				return err
			}
			if cur.State != stateRefunding {
				return apierr.New(apierr.Aborted, "the case changed meanwhile; retry")
			}
			cur.Revoked, cur.UpdatedUnixNano = true, tx.Now().UnixNano()
			if err := cases.Put(tx, caseID(cur.UserId, cur.Id), cur); err != nil {
				return err
			}
			c = cur
			return tx.Audit(store.Event{Actor: desk.Actor(), Action: "aftersales.revoke", Subject: key, Outcome: store.OutcomeOK,
				Details: map[string]string{"case": id, "order": c.OrderId, "serial": o.Serial, "serials": strings.Join(cur.Serials, ",")}})
		})
		if err != nil {
			return nil, err
		}
		s.m.changes.WithLabelValues("revoke").Inc()
	}

	// 3. The money.
	var out *storepb.AfterSalesCase
	_, err = s.deps.Payments.RefundOrder(ctx, o, desk.Actor(), func(tx *store.Tx) error {
		out = nil
		cur, err := getIn(tx, id)
		if err != nil {
			return err
		}
		if cur.State != stateRefunding {
			return apierr.New(apierr.Aborted, "the case changed meanwhile; retry")
		}
		if _, err := s.deps.Orders.RefundStepIn(tx, cur.UserId, cur.OrderId, certs.StepRefunded, desk.Actor(), "after-sales case "+id); err != nil {
			return err
		}
		entry := ""
		if e, err := ledger.ByKey(tx, "refund:"+cur.OrderId); err == nil {
			entry = e.Id
		} else if !errors.Is(err, store.ErrNotFound) {
			return err
		}
		cur.RefundEntryId = entry
		if err := closeIn(tx, cur, stateRefunded); err != nil {
			return err
		}
		body := fmt.Sprintf("订单 %s 的售后申请已同意退款，%s 元%s。", cur.OrderId, yuan(cur.AmountFen), refundRoute(o))
		if len(cur.Serials) > 0 {
			body += "证书 " + strings.Join(cur.Serials, "、") + " 已注销。"
		}
		if err := certs.Notify(tx, cur.UserId, hufuv1.MessageKind_MESSAGE_KIND_AFTER_SALES, "售后：同意退款", body); err != nil {
			return err
		}
		out = cur
		return tx.Audit(store.Event{Actor: desk.Actor(), Action: "aftersales.refund", Subject: key, Outcome: store.OutcomeOK,
			Details: map[string]string{"case": id, "order": cur.OrderId, "amount_fen": strconv.FormatInt(cur.AmountFen, 10), "entry": entry,
				"serials": strings.Join(cur.Serials, ",")}})
	})
	if err != nil {
		return nil, err
	}
	s.m.changes.WithLabelValues("refund").Inc()
	s.m.refundedFen.Add(float64(out.AmountFen))
	return out, nil
}

// Settle closes a case in review as 协商解决 with the agreed outcome, shown to the person.
func (s *Service) Settle(ctx context.Context, desk authn.Caller, id, outcome string) (*storepb.AfterSalesCase, error) {
	if err := isDesk(desk); err != nil {
		return nil, err
	}
	if !caseIDRE.MatchString(id) {
		return nil, apierr.Invalidf("case_id", "not a case id (22 hex digits)")
	}
	outcome, err := checkText("outcome", outcome, MaxOutcomeRunes, true)
	if err != nil {
		return nil, err
	}
	var out *storepb.AfterSalesCase
	changed := false
	err = s.deps.Store.Update(ctx, func(tx *store.Tx) error {
		out, changed = nil, false
		c, err := getIn(tx, id)
		if err != nil {
			return err
		}
		out = c
		switch {
		case c.State == stateSettled && c.Outcome == outcome:
			return nil
		case c.State == stateRefunding:
			return apierr.New(apierr.FailedPrecondition, "a refund of the case is under way: finish it with RefundAfterSales")
		case c.State != stateInReview:
			return apierr.New(apierr.FailedPrecondition, "the case is %s already", stateName(c.State))
		}
		c.Outcome, c.DecidedBy = outcome, desk.Desk()
		if err := closeIn(tx, c, stateSettled); err != nil {
			return err
		}
		if err := certs.Notify(tx, c.UserId, hufuv1.MessageKind_MESSAGE_KIND_AFTER_SALES, "售后：协商解决",
			fmt.Sprintf("订单 %s 的售后申请已协商解决：%s", c.OrderId, outcome)); err != nil {
			return err
		}
		changed = true
		return tx.Audit(store.Event{Actor: desk.Actor(), Action: "aftersales.settle", Subject: caseKey(c.UserId, c.Id), Outcome: store.OutcomeOK,
			Details: map[string]string{"case": id, "order": c.OrderId, "outcome_chars": strconv.Itoa(utf8.RuneCountInString(outcome))}})
	})
	if err != nil {
		return nil, err
	}
	if changed {
		s.m.changes.WithLabelValues("settle").Inc()
	}
	return out, nil
}

// DeskAttachment returns an attachment of an open case.
func (s *Service) DeskAttachment(ctx context.Context, id, attachmentID string) (*storepb.AttachmentRef, []byte, error) {
	c, err := s.read(ctx, id)
	if err != nil {
		return nil, nil, err
	}
	if c.State != stateInReview && c.State != stateRefunding {
		return nil, nil, apierr.New(apierr.FailedPrecondition, "the case is %s: its attachments are no longer the desk's", stateName(c.State))
	}
	if !slices.Contains(c.AttachmentIds, attachmentID) {
		return nil, nil, apierr.New(apierr.NotFound, "no attachment %q on this case", attachmentID)
	}
	refs, err := s.Attachments(ctx, c)
	if err != nil {
		return nil, nil, err
	}
	blob, err := s.deps.Attachments.Get(ctx, attachmentID)
	if err != nil {
		return nil, nil, err
	}
	for _, r := range refs {
		if r.Id == attachmentID {
			return r, blob.Content, nil
		}
	}
	return &storepb.AttachmentRef{Id: attachmentID, MediaType: blob.MediaType, Size: blob.Size}, blob.Content, nil
}
