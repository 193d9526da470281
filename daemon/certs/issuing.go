package certs

// Issuance that is never lost.
//
// Paying an order takes three steps, so that the CA never signs a certificate the store does
// not know about:
//
//  1. reserve: the transaction that records the payment moves the order from awaiting
//     payment to issuing (statusIssuing) and writes, at c/issuing/<order id>, the serial and
//     validity of each certificate the order issues (chosen by ca.PlannedIssuer.Plan), with
//     the payment, and the audit records "order.pay" and "cert.reserve". A concurrent second
//     payment or a cancellation finds the order moved and is refused (a charge given back)
//     before anything is signed;
//  2. sign: the CA signs each certificate with its reserved serial and validity;
//  3. record: one transaction stores the certificates, completes the order, deletes the
//     reservation and writes "order.issue" and "cert.issue".
//
// A reservation that outlives its payment call (a crash, a CA that did not answer) is
// resolved by RecoverIssuance, at start and periodically, and by paying again with the
// same idempotency key: it is completed (signed again with the reserved serial and validity:
// the same certificate content) or, when it can no longer be completed (the key was revoked
// meanwhile, the order or the key is gone, a renewal's certificate moved on, another claim
// won the enterprise), abandoned: marked abandoned (audited), its serials revoked at the CA,
// then in one transaction the order cancelled, the reservation deleted and the payment given
// back. A signed certificate is therefore recorded, or its serial is on the CA's CRL.
//
// Sign and record of one order run under an in-process claim (issueClaims) shared by live
// payments and recovery; one process owns the store, so the claim is exclusive.
//
// A CA that chooses its own serials (not a ca.PlannedIssuer: an external CA) gets a
// reservation without serials; signing again asks the CA again for the same reference
// (Connector.Fetch), which keeps exactly one certificate per reference on its side.
//
// The phone sees an issuing order as awaiting payment (待支付) with its "paid" step: the API
// has no status for the few milliseconds of a normal issuance, and an order whose CA did
// not answer is completed by paying again with the same idempotency key, which charges
// nothing twice. Another idempotency key is refused before any charge.

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync"
	"time"

	hufuv1 "github.com/hufu-hsm/hufu/api/hufu/v1"
	"github.com/hufu-hsm/hufu/daemon/apierr"
	"github.com/hufu-hsm/hufu/daemon/authn"
	"github.com/hufu-hsm/hufu/daemon/ca"
	"github.com/hufu-hsm/hufu/store"
	"github.com/hufu-hsm/hufu/store/storepb"
)

// indexIssuingEnterprise holds, per enterprise, the reservation of the claim being issued.
const indexIssuingEnterprise = "issuing-enterprise"

// statusIssuing is an order that is paid and whose certificates are reserved and being
// signed. It is stored only: the API shows it as awaiting payment (apiStatus).
const statusIssuing = int32(5)

// Fault-injection points of issuance (Deps.FaultInjection).
const (
	FaultIssuingReserved = "issuing.reserved" // the reservation committed, nothing signed
	FaultIssuingSigned   = "issuing.signed"   // the CA signed, nothing recorded
)

// RecoveryActor is the audit actor of issuance recovery.
var RecoveryActor = authn.Caller{System: "issuance-recovery"}

var reservations = store.NewCollection(store.KindCert, func() *storepb.IssuingReservation { return new(storepb.IssuingReservation) })

func reservationID(orderID string) string  { return "issuing/" + orderID }
func reservationKey(orderID string) string { return "c/" + reservationID(orderID) }

// apiStatus is the order status the API shows: issuing is a short internal step of paying.
func apiStatus(st int32) hufuv1.OrderStatus {
	if st == statusIssuing {
		return hufuv1.OrderStatus_ORDER_STATUS_AWAITING_PAYMENT
	}
	return hufuv1.OrderStatus(st)
}

// errReservedAlready aborts a payment transaction that found the order issuing for its own
// idempotency key (a retry): the caller finishes that issuance.
var errReservedAlready = errors.New("certs: the order is issuing for this payment already")

// plan chooses the serial and validity of each certificate of apps (prepareIssue's, in the
// order of orderCertifies; nothing when the CA chooses its own serials) and returns the
// reservation's items.
func plan(c CA, o *storepb.Order, apps []*ca.Application) ([]*storepb.IssuingItem, error) {
	what := orderCertifies(o)
	if len(what) != len(apps) {
		return nil, fmt.Errorf("certs: order %s certifies %d keys, %d applications", o.Id, len(what), len(apps))
	}
	items := make([]*storepb.IssuingItem, len(apps))
	for i, app := range apps {
		items[i] = &storepb.IssuingItem{Usage: int32(app.Usage), KeyId: what[i].keyID}
		if planner, ok := c.Connector.(ca.PlannedIssuer); ok {
			p, err := planner.Plan(app)
			if err != nil {
				// Plan reads nothing that changes (no store, no HSM): what it refuses, such as an
				// upgrade whose certificate has expired meanwhile, it refuses at every retry. So the
				// payment is refused as FailedPrecondition, and settle gives a charge back.
				return nil, &apierr.Error{Kind: apierr.FailedPrecondition, Message: "the CA cannot issue this certificate (" + err.Error() + "); the payment is given back", Cause: err}
			}
			items[i].Serial, items[i].NotBeforeUnixNano, items[i].NotAfterUnixNano = p.Serial, p.NotBefore.UnixNano(), p.NotAfter.UnixNano()
		}
	}
	return items, nil
}

// reserve is step 1: inside the transaction that records payment p, it moves o to issuing
// and writes its reservation. An order completed with p's idempotency key returns it with
// its certificate and errAlreadyPaid; one issuing for p already returns errReservedAlready.
func (s *Service) reserve(ctx context.Context, caller authn.Caller, o *storepb.Order, c CA, apps []*ca.Application, p payment) (*storepb.Order, *storepb.Certificate, error) {
	items, err := plan(c, o, apps)
	if err != nil {
		return nil, nil, err
	}
	var cert *storepb.Certificate
	order, err := s.transition(ctx, caller, o.UserId, o.Id, "order.pay", func(tx *store.Tx, o *storepb.Order) error {
		cert = nil
		if o.PaymentIdempotencyKey == p.idem {
			switch o.Status {
			case statusCompleted:
				var err error
				if cert, err = certs.Get(tx, certID(o.UserId, o.Serial)); err != nil {
					return err
				}
				return errAlreadyPaid
			case statusIssuing:
				return errReservedAlready
			}
		}
		if o.Status != statusAwaiting {
			return wrongState(o, "pay")
		}
		// Under the keys' locks: a revocation may have committed since prepareIssue, and no
		// certificate may be reserved for a key whose share is gone.
		if err := s.keysLive(tx, o, "the order's key has been revoked; cancel the order"); err != nil {
			return err
		}
		now := tx.Now().UnixNano()
		res := &storepb.IssuingReservation{OrderId: o.Id, UserId: o.UserId, CaId: o.CaId, CaRef: o.CaRef, Items: items, ReservedUnixNano: now,
			PaymentMethod: p.method, PaymentRef: p.ref, Charged: p.charged, PaidBy: p.by}
		if o.Kind == int32(hufuv1.OrderKind_ORDER_KIND_ENTERPRISE_CLAIM) {
			// One claim of an enterprise is issued at a time: the first reserved makes its
			// holder the administrator, so a rival is refused now, before signing.
			res.EnterpriseUscc = o.EnterpriseUscc
			if err := tx.Claim(indexIssuingEnterprise, o.EnterpriseUscc, reservationKey(o.Id)); errors.Is(err, store.ErrTaken) {
				return apierr.New(apierr.FailedPrecondition, "another claim of this enterprise is being paid, and the enterprise has one administrator: apply to join it (ApplyToJoin) or verify by corporate transfer")
			} else if err != nil {
				return err
			}
		}
		if err := reservations.Put(tx, reservationID(o.Id), res); err != nil {
			return err
		}
		o.Status, o.PaymentRef, o.PaymentIdempotencyKey, o.PaidUnixNano = statusIssuing, p.ref, p.idem, now
		o.Steps = append(o.Steps, step(tx, "paid", p.by, p.ref))
		if err := s.book(tx, o, p, caller); err != nil {
			return err
		}
		return tx.Audit(store.Event{Actor: "ca:" + o.CaId, Action: "cert.reserve", Subject: reservationKey(o.Id), Outcome: store.OutcomeOK,
			Details: reservationDetails(res)})
	}, map[string]string{"status": "ISSUING", "payment": p.ref, "amount_fen": fmt.Sprint(o.PriceFen), "method": p.method})
	if errors.Is(err, errAlreadyPaid) {
		done, rerr := orders.Read(ctx, s.deps.Store, orderID(o.UserId, o.Id))
		if rerr != nil {
			return nil, nil, rerr
		}
		return done, cert, errAlreadyPaid
	}
	return order, nil, err
}

// reservationDetails names a reservation's order, keys, usages and serials for its audit
// records.
func reservationDetails(res *storepb.IssuingReservation) map[string]string {
	var keys, usages, serials []string
	for _, it := range res.Items {
		keys = append(keys, it.KeyId)
		usages = append(usages, ca.Usage(it.Usage).String())
		serials = append(serials, it.Serial)
	}
	return map[string]string{"order": res.OrderId, "ca": res.CaId, "keys": strings.Join(keys, ","), "usages": strings.Join(usages, ","),
		"serials": strings.Join(serials, ",")}
}

// issueReserved is steps 2 and 3 for the reservation of order o (issuing), under the order's
// claim: sign, then record. apps are o's applications (issuance). A reservation that can no
// longer complete is abandoned: its serials revoked, the order cancelled and the payment given
// back; the error then says so (FailedPrecondition). A CA that did not sign leaves the
// reservation for a retry or recovery (Unavailable).
func (s *Service) issueReserved(ctx context.Context, caller authn.Caller, o *storepb.Order, apps []*ca.Application) (*storepb.Order, *storepb.Certificate, error) {
	release, err := s.claims.claim(ctx, o.Id)
	if err != nil {
		return nil, nil, err
	}
	defer release()
	order, cert, _, err := s.completeClaimed(ctx, caller, o.UserId, o.Id, apps)
	return order, cert, err
}

// recoveryOutcome is what resolving one reservation did.
type recoveryOutcome string

const (
	outcomeCompleted recoveryOutcome = "completed"
	outcomeRevoked   recoveryOutcome = "revoked"
	outcomeNone      recoveryOutcome = "" // found resolved already, or left for later
)

// completeClaimed resolves the reservation of order id, whose claim the caller holds: it
// signs and records, or abandons. apps, if nil, are built again from the order (recovery).
func (s *Service) completeClaimed(ctx context.Context, caller authn.Caller, user, id string, apps []*ca.Application) (*storepb.Order, *storepb.Certificate, recoveryOutcome, error) {
	res, err := reservations.Read(ctx, s.deps.Store, reservationID(id))
	if errors.Is(err, store.ErrNotFound) {
		// Resolved meanwhile (recorded, or abandoned): answer with the order as it is.
		o, err := orders.Read(ctx, s.deps.Store, orderID(user, id))
		if err != nil {
			return nil, nil, outcomeNone, err
		}
		if o.Status != statusCompleted {
			return nil, nil, outcomeNone, wrongState(o, "pay")
		}
		c, err := certs.Read(ctx, s.deps.Store, certID(o.UserId, o.Serial))
		return o, c, outcomeNone, err
	}
	if err != nil {
		return nil, nil, outcomeNone, err
	}
	if res.Abandoned {
		return nil, nil, outcomeRevoked, s.abandon(ctx, caller, res, res.AbandonReason)
	}
	o, err := orders.Read(ctx, s.deps.Store, orderID(res.UserId, res.OrderId))
	if errors.Is(err, store.ErrNotFound) {
		return nil, nil, outcomeRevoked, s.abandon(ctx, caller, res, "the order no longer exists")
	}
	if err != nil {
		return nil, nil, outcomeNone, err
	}
	c, ok := s.cas[res.CaId]
	if !ok {
		return nil, nil, outcomeNone, fmt.Errorf("certs: reservation of order %s names CA %q, which is not configured", id, res.CaId)
	}
	if apps == nil {
		_, apps, err = s.prepareIssue(ctx, o)
		if reason, final := undeliverable(err); final {
			return nil, nil, outcomeRevoked, s.abandon(ctx, caller, res, reason)
		}
		if err != nil {
			return nil, nil, outcomeNone, err
		}
	}
	if len(apps) != len(res.Items) {
		return nil, nil, outcomeNone, fmt.Errorf("certs: order %s issues %d certificates, its reservation %d", id, len(apps), len(res.Items))
	}
	issued := make([]*ca.Issued, len(res.Items))
	for i, it := range res.Items {
		if issued[i], err = sign(ctx, c, res, it, apps[i]); err != nil {
			// A CA refusing for good (its issuing CA revoked since the payment was taken)
			// will refuse at every retry: abandon, which gives the payment back. Any other
			// refusal, whatever its kind (a connector's NotFound or FailedPrecondition may
			// be passing), keeps the reservation for a retry.
			if reason, final := issuingCARevoked(err); final {
				return nil, nil, outcomeRevoked, s.abandon(ctx, caller, res, reason)
			}
			return nil, nil, outcomeNone, &apierr.Error{Kind: apierr.Unavailable, Message: "the CA did not issue the certificate; pay again with the same idempotency key later", Cause: err}
		}
	}
	s.fault(FaultIssuingSigned)
	order, cert, err := s.record(ctx, caller, o, res, issued)
	if reason, final := undeliverable(err); final {
		return nil, nil, outcomeRevoked, s.abandon(ctx, caller, res, reason)
	}
	if err != nil {
		return nil, nil, outcomeNone, err
	}
	s.m.issued.Add(float64(len(issued)))
	return order, cert, outcomeCompleted, nil
}

// issuingCARevoked reports whether the CA refused to sign because its issuing CA is
// revoked (ca.ErrIssuingCARevoked), the one refusal of a CA's signing that is final, and
// the reason to give the payer.
func issuingCARevoked(err error) (string, bool) {
	if !errors.Is(err, ca.ErrIssuingCARevoked) {
		return "", false
	}
	var refused *apierr.Error
	if errors.As(err, &refused) && refused.Message != "" {
		return refused.Message, true
	}
	return ca.ErrIssuingCARevoked.Error(), true
}

// undeliverable reports whether err, from hufu's own preparing or recording of an order,
// says a reservation can no longer complete, and why. It is not for the CA's errors
// (issuingCARevoked is).
func undeliverable(err error) (string, bool) {
	var refused *apierr.Error
	if errors.As(err, &refused) && (refused.Kind == apierr.FailedPrecondition || refused.Kind == apierr.NotFound) {
		return refused.Message, true
	}
	return "", false
}

// sign has the CA sign one reserved certificate: with its serial and validity, or, for a CA
// that chooses its own serials, by asking it again for the application's certificate.
func sign(ctx context.Context, c CA, res *storepb.IssuingReservation, it *storepb.IssuingItem, app *ca.Application) (*ca.Issued, error) {
	planner, ok := c.Connector.(ca.PlannedIssuer)
	if !ok || it.Serial == "" {
		return c.Connector.Fetch(ctx, res.CaRef, app)
	}
	return planner.IssuePlanned(ctx, app, ca.Planned{Serial: it.Serial,
		NotBefore: time.Unix(0, it.NotBeforeUnixNano), NotAfter: time.Unix(0, it.NotAfterUnixNano)})
}

// record is step 3: one transaction stores the certificates, completes the order and deletes
// its reservation. A refusal (FailedPrecondition) means the reservation cannot complete.
func (s *Service) record(ctx context.Context, caller authn.Caller, o *storepb.Order, res *storepb.IssuingReservation, issued []*ca.Issued) (*storepb.Order, *storepb.Certificate, error) {
	var cert *storepb.Certificate
	order, err := s.transition(ctx, caller, o.UserId, o.Id, "order.issue", func(tx *store.Tx, o *storepb.Order) error {
		cur, err := reservations.Get(tx, reservationID(o.Id))
		if errors.Is(err, store.ErrNotFound) || (err == nil && cur.Abandoned) {
			return wrongState(o, "complete")
		}
		if err != nil {
			return err
		}
		if o.Status != statusIssuing {
			return wrongState(o, "complete")
		}
		recs, err := s.recordIssued(tx, o, issued)
		if err != nil {
			return err
		}
		cert = recs[0]
		serials, body := cert.Serial, fmt.Sprintf("订单 %s 已完成，证书 %s 可以下载", o.Id, cert.Serial)
		if len(recs) == 2 {
			o.EncryptionSerial = recs[1].Serial
			serials += " " + recs[1].Serial
			body = fmt.Sprintf("订单 %s 已完成，签名证书 %s 和加密证书 %s 可以下载", o.Id, cert.Serial, recs[1].Serial)
		}
		o.Status, o.Serial = statusCompleted, cert.Serial
		o.Steps = append(o.Steps, step(tx, "issued", "ca:"+o.CaId, serials))
		if err := deleteReservation(tx, cur); err != nil {
			return err
		}
		return notify(tx, o.UserId, hufuv1.MessageKind_MESSAGE_KIND_CERTIFICATE_READY, "证书已签发", body, o.Id, cert.Serial)
	}, map[string]string{"serials": reservationDetails(res)["serials"]})
	for _, w := range orderCertifies(o) {
		s.gate.forget(w.keyID)
	}
	return order, cert, err
}

// abandon resolves a reservation that can no longer complete: it is marked abandoned (so
// that nothing completes it afterwards), its serials are revoked at the CA, and then one
// transaction cancels the order, deletes the reservation and gives the payment back. Each
// step is idempotent: recovery finishes an abandonment a crash interrupted. The returned
// error is the FailedPrecondition that tells the payer.
func (s *Service) abandon(ctx context.Context, caller authn.Caller, res *storepb.IssuingReservation, reason string) error {
	id := res.OrderId
	if !res.Abandoned {
		err := s.deps.Store.Update(ctx, func(tx *store.Tx) error {
			cur, err := reservations.Get(tx, reservationID(id))
			if err != nil {
				return err
			}
			cur.Abandoned, cur.AbandonReason = true, reason
			if err := reservations.Put(tx, reservationID(id), cur); err != nil {
				return err
			}
			d := reservationDetails(cur)
			d["reason"] = reason
			return tx.Audit(store.Event{Actor: caller.Actor(), Action: "cert.reserve.abandon", Subject: reservationKey(id), Outcome: store.OutcomeOK, Details: d})
		})
		if errors.Is(err, store.ErrNotFound) {
			return apierr.New(apierr.FailedPrecondition, "the order's certificate could not be issued: %s", reason)
		}
		if err != nil {
			return err
		}
	}
	c, ok := s.cas[res.CaId]
	if !ok {
		return fmt.Errorf("certs: reservation of order %s names CA %q, which is not configured", id, res.CaId)
	}
	for _, it := range res.Items {
		if it.Serial == "" {
			continue // the CA chose the serial; what it signed for the reference is its to withdraw
		}
		if err := c.Connector.Revoke(ctx, it.Serial, ca.ReasonCessation); err != nil {
			return &apierr.Error{Kind: apierr.Unavailable, Message: "the CA did not confirm the revocation of an undeliverable certificate; retry", Cause: err}
		}
	}
	o, err := orders.Read(ctx, s.deps.Store, orderID(res.UserId, id))
	if errors.Is(err, store.ErrNotFound) {
		// Orders are kept (account erasure masks them), so this is a damaged store: with no
		// order there is no price to give back; the serials are revoked and the audit log
		// names the payment.
		err = s.deps.Store.Update(ctx, func(tx *store.Tx) error { return s.dropReservation(tx, caller, id, reason) })
	} else if err == nil {
		err = s.cancelIssuing(ctx, caller, res, o, reason)
	}
	if err != nil {
		return err
	}
	return apierr.New(apierr.FailedPrecondition, "the order's certificate could not be issued: %s; the payment is given back", reason)
}

// cancelIssuing cancels the issuing order o of an abandoned reservation and gives its
// payment back: through the payment service's order refund when it has one (the ledger's
// reversal, an offline payment owed at the desk), else through the provider.
func (s *Service) cancelIssuing(ctx context.Context, caller authn.Caller, res *storepb.IssuingReservation, o *storepb.Order, reason string) error {
	cancel := func(tx *store.Tx) error {
		cur, err := orders.Get(tx, orderID(o.UserId, o.Id))
		if err != nil {
			return err
		}
		if cur.Status != statusIssuing {
			return s.dropReservation(tx, caller, o.Id, reason)
		}
		cur.Status, cur.CancelReason, cur.CancelledBy, cur.UpdatedUnixNano = statusCancelled, reason, "hufud", tx.Now().UnixNano()
		cur.Steps = append(cur.Steps, step(tx, "cancelled", "hufud", "the certificate could not be issued; the payment is given back"))
		if err := releaseFollow(tx, cur); err != nil {
			return err
		}
		if err := orders.Put(tx, orderID(o.UserId, o.Id), cur); err != nil {
			return err
		}
		if err := notify(tx, o.UserId, hufuv1.MessageKind_MESSAGE_KIND_CERTIFICATE_READY, "证书未能签发",
			fmt.Sprintf("订单 %s 的证书未能签发，订单已取消，款项原路退回", o.Id), o.Id, ""); err != nil {
			return err
		}
		if err := tx.Audit(store.Event{Actor: caller.Actor(), Action: "order.cancel", Subject: orderKey(o.UserId, o.Id), Outcome: store.OutcomeOK,
			Details: map[string]string{"status": hufuv1.OrderStatus(statusCancelled).String(), "reason": reason, "payment": res.PaymentRef}}); err != nil {
			return err
		}
		return s.dropReservation(tx, caller, o.Id, reason)
	}
	if refunds, ok := s.deps.Books.(OrderRefunds); ok && o.PaymentRef != "" {
		_, err := refunds.RefundOrder(ctx, o, caller.Actor(), cancel)
		return err
	}
	if res.Charged && o.PriceFen > 0 {
		if err := s.deps.Payments.Refund(ctx, res.PaymentRef, o.PriceFen); err != nil {
			return &apierr.Error{Kind: apierr.Unavailable, Message: "the payment provider did not refund; retry", Cause: err}
		}
	}
	return s.deps.Store.Update(ctx, cancel)
}

// dropReservation deletes an abandoned reservation inside tx, with its audit record.
func (s *Service) dropReservation(tx *store.Tx, caller authn.Caller, id, reason string) error {
	cur, err := reservations.Get(tx, reservationID(id))
	if errors.Is(err, store.ErrNotFound) {
		return nil
	}
	if err != nil {
		return err
	}
	if err := deleteReservation(tx, cur); err != nil {
		return err
	}
	d := reservationDetails(cur)
	d["reason"], d["payment"] = reason, cur.PaymentRef
	return tx.Audit(store.Event{Actor: caller.Actor(), Action: "cert.reserve.revoked", Subject: reservationKey(id), Outcome: store.OutcomeOK, Details: d})
}

// deleteReservation deletes res and releases what it holds, inside tx.
func deleteReservation(tx *store.Tx, res *storepb.IssuingReservation) error {
	if res.EnterpriseUscc != "" {
		if err := tx.Unclaim(indexIssuingEnterprise, res.EnterpriseUscc, reservationKey(res.OrderId)); err != nil {
			return err
		}
	}
	return reservations.Delete(tx, reservationID(res.OrderId))
}

// OrderRefunds gives back the payment of an order that was paid and then cancelled, with the
// caller's writes in the same transaction (daemon/commerce/payments implements it on the
// Books it is given as).
type OrderRefunds interface {
	RefundOrder(ctx context.Context, o *storepb.Order, actor string, with func(tx *store.Tx) error) (*storepb.LedgerEntry, error)
}

// resumeIssue answers a payment of an order that is issuing: the same idempotency key
// finishes the issuance (a retry after the CA did not answer, or a crash); another is refused
// before any charge.
func (s *Service) resumeIssue(ctx context.Context, caller authn.Caller, o *storepb.Order, idem string) (*storepb.Order, *storepb.Certificate, error) {
	if o.PaymentIdempotencyKey != idem {
		return nil, nil, wrongState(o, "pay")
	}
	return s.issueReserved(ctx, caller, o, nil)
}

// RecoverIssuance resolves every reservation older than grace whose order no payment call is
// working on: it completes it or abandons it (issuing.go). It returns how many it completed
// and revoked; errors of one reservation do not stop the others, and the first is returned.
// Running it twice, or beside live payments, resolves each reservation once.
func (s *Service) RecoverIssuance(ctx context.Context, grace time.Duration) (completed, revoked int, first error) {
	cutoff := s.deps.Clock.Now().Add(-grace).UnixNano()
	cursor := ""
	for {
		page, err := reservations.List(ctx, s.deps.Store, "issuing/", store.ListOptions{Cursor: cursor, Limit: store.MaxListLimit},
			func(_ string, r *storepb.IssuingReservation) bool { return r.ReservedUnixNano <= cutoff })
		if err != nil {
			return completed, revoked, err
		}
		for _, it := range page.Items {
			res := it.Value
			release, ok := s.claims.tryClaim(res.OrderId)
			if !ok {
				continue // a payment call is completing it
			}
			_, _, outcome, err := s.completeClaimed(ctx, RecoveryActor, res.UserId, res.OrderId, nil)
			release()
			switch {
			case outcome == outcomeRevoked && undeliverableDone(err):
				revoked++
				s.m.recoveries.WithLabelValues(string(outcomeRevoked)).Inc()
			case outcome == outcomeCompleted && err == nil:
				completed++
				s.m.recoveries.WithLabelValues(string(outcomeCompleted)).Inc()
			case err != nil:
				s.deps.Log.Warn("recovering an issuance", "order", res.OrderId, "err", err)
				if first == nil {
					first = err
				}
			}
		}
		if page.Next == "" {
			return completed, revoked, first
		}
		cursor = page.Next
	}
}

// undeliverableDone reports whether abandon's error is its final FailedPrecondition (the
// abandonment finished), not a failure to finish it.
func undeliverableDone(err error) bool {
	var refused *apierr.Error
	return errors.As(err, &refused) && refused.Kind == apierr.FailedPrecondition
}

// RunRecovery runs RecoverIssuance every interval until ctx ends.
func (s *Service) RunRecovery(ctx context.Context, every, grace time.Duration) {
	t := time.NewTicker(every)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		if _, _, err := s.RecoverIssuance(ctx, grace); err != nil && !errors.Is(err, context.Canceled) {
			s.deps.Log.Warn("recovering issuances", "err", err)
		}
	}
}

// PendingIssuance counts the reservations and the age of the oldest (metrics).
func (s *Service) PendingIssuance(ctx context.Context) (n int, oldest time.Duration, err error) {
	now := s.deps.Clock.Now()
	cursor := ""
	for {
		page, err := reservations.List(ctx, s.deps.Store, "issuing/", store.ListOptions{Cursor: cursor, Limit: store.MaxListLimit}, nil)
		if err != nil {
			return n, oldest, err
		}
		for _, it := range page.Items {
			n++
			if age := now.Sub(time.Unix(0, it.Value.ReservedUnixNano)); age > oldest {
				oldest = age
			}
		}
		if page.Next == "" {
			return n, oldest, nil
		}
		cursor = page.Next
	}
}

func (s *Service) fault(point string) {
	if s.deps.FaultInjection != nil {
		s.deps.FaultInjection(point)
	}
}

// issueClaims is the in-process claim on an order's sign-and-record, shared by payments and
// recovery. The zero value is ready.
type issueClaims struct {
	mu   sync.Mutex
	held map[string]chan struct{} // closed on release
}

// tryClaim claims id unless it is held.
func (c *issueClaims) tryClaim(id string) (release func(), ok bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if _, held := c.held[id]; held {
		return nil, false
	}
	if c.held == nil {
		c.held = map[string]chan struct{}{}
	}
	done := make(chan struct{})
	c.held[id] = done
	return func() {
		c.mu.Lock()
		delete(c.held, id)
		c.mu.Unlock()
		close(done)
	}, true
}

// claim waits for id's claim.
func (c *issueClaims) claim(ctx context.Context, id string) (release func(), err error) {
	for {
		if release, ok := c.tryClaim(id); ok {
			return release, nil
		}
		c.mu.Lock()
		done := c.held[id]
		c.mu.Unlock()
		if done == nil {
			continue
		}
		select {
		case <-done:
		case <-ctx.Done():
			return nil, ctx.Err()
		}
	}
}
