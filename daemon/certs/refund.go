package certs

import (
	"context"
	"errors"
	"fmt"
	"slices"

	hufuv1 "github.com/hufu-hsm/hufu/api/hufu/v1"
	"github.com/hufu-hsm/hufu/daemon/apierr"
	"github.com/hufu-hsm/hufu/daemon/authn"
	"github.com/hufu-hsm/hufu/store"
	"github.com/hufu-hsm/hufu/store/storepb"
)

// What after-sales (daemon/commerce/aftersales) needs of orders and certificates: the
// certificates a refund revokes, the steps that mark a completed order as being refunded and
// refunded, and the revocation an after-sales desk makes without the holder's PIN (the holder
// acknowledged it when applying for the refund).

// Order steps of a refund. An order with either is not invoiceable (orderRefunded).
const (
	StepRefunding = "refunding"
	StepRefunded  = "refunded"
)

// RefundRevokes lists the serials a refund of the completed order o revokes, sorted: none for
// an order without a certificate; otherwise every certificate of its key that is not revoked
// yet, because revocation destroys the key's server share (the order's own certificate, a
// renewal's predecessor, the key's certificate from another CA).
func (s *Service) RefundRevokes(ctx context.Context, o *storepb.Order) ([]string, error) {
	if o.Serial == "" {
		return nil, nil
	}
	c, _, err := s.Certificate(ctx, o.Serial)
	if err != nil {
		return nil, err
	}
	sibs, err := s.keyCertificates(ctx, pairKeys(c)...)
	if err != nil {
		return nil, err
	}
	var out []string
	for _, sib := range sibs {
		if sib.cert.Status != certRevoked {
			out = append(out, sib.cert.Serial)
		}
	}
	slices.Sort(out)
	return out, nil
}

// RefundStepIn appends a refund step (StepRefunding or StepRefunded) with note to a user's
// completed order inside tx, under the order's lock, and returns the order. An order that is
// not completed is ErrNotPaid; adding a step the order has already is a no-op.
func (s *Service) RefundStepIn(tx *store.Tx, userID, id, name, actor, note string) (*storepb.Order, error) {
	if !orderIDRE.MatchString(id) || store.ValidPart(userID) != nil {
		return nil, fmt.Errorf("%w: order", store.ErrNotFound)
	}
	o, err := orders.Get(tx, orderID(userID, id))
	if err != nil {
		return nil, err
	}
	if o.Status != statusCompleted {
		return nil, ErrNotPaid
	}
	if slices.ContainsFunc(o.Steps, func(st *storepb.ReviewStep) bool { return st.Name == name }) {
		return o, nil
	}
	o.Steps = append(o.Steps, step(tx, name, actor, note))
	o.UpdatedUnixNano = tx.Now().UnixNano()
	return o, orders.Put(tx, orderID(userID, id), o)
}

// RevokeForRefund revokes the certificate with serial, and with it its key, for an
// after-sales refund decided by a desk (caller, a desk system client or an operator at the
// console: caller.AtDesk): as Revoke does after the
// PIN, the CAs put every certificate of the key on their CRLs first, then one transaction
// destroys the key's server share, marks the certificates revoked, tells the holder and
// writes the audit records, with with's writes. A certificate revoked already (by its holder,
// or by an earlier attempt) revokes nothing and only runs with, in its own transaction.
func (s *Service) RevokeForRefund(ctx context.Context, caller authn.Caller, serial, reason string, with func(tx *store.Tx) error) error {
	if !caller.AtDesk() {
		return apierr.New(apierr.PermissionDenied, "only a desk revokes for a refund")
	}
	c, _, err := s.Certificate(ctx, serial)
	if err != nil {
		return err
	}
	keyIDs := pairKeys(c)
	siblings, err := s.revokeAtCAs(ctx, keyIDs...)
	if err != nil {
		return err
	}
	revoked := 0
	err = s.deps.Keys.RevokeKeys(ctx, caller, keyIDs, "certificate "+serial+" revoked: "+reason, func(tx *store.Tx) error {
		marked, err := markRevoked(tx, siblings, reason)
		if err != nil {
			return err
		}
		revoked = len(marked)
		for _, cur := range marked {
			if err := notify(tx, cur.UserId, hufuv1.MessageKind_MESSAGE_KIND_CERTIFICATE_REVOKED, "证书已注销",
				s.revokedNotice(cur.Serial, "因售后退款"), "", cur.Serial); err != nil {
				return err
			}
			if err := tx.Audit(store.Event{Actor: caller.Actor(), Action: "cert.revoke", Subject: certKey(cur.UserId, cur.Serial), Outcome: store.OutcomeOK,
				Details: map[string]string{"key": cur.KeyId, "ca": cur.CaId, "reason": reason}}); err != nil {
				return err
			}
		}
		if with != nil {
			return with(tx)
		}
		return nil
	})
	for _, k := range keyIDs {
		s.gate.forget(k)
	}
	if errors.Is(err, store.ErrNotFound) {
		return apierr.New(apierr.NotFound, "no certificate %q", serial)
	}
	if err == nil && revoked > 0 {
		s.m.revoked.Add(float64(revoked))
	}
	return err
}
