package certs

import (
	"bytes"
	"context"
	"crypto/ecdsa"
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"encoding/pem"
	"errors"
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/emmansun/gmsm/sm2"
	"github.com/emmansun/gmsm/sm3"
	"github.com/emmansun/gmsm/smx509"

	hufuv1 "github.com/hufu-hsm/hufu/api/hufu/v1"
	"github.com/hufu-hsm/hufu/daemon/apierr"
	"github.com/hufu-hsm/hufu/daemon/authn"
	"github.com/hufu-hsm/hufu/daemon/ca"
	"github.com/hufu-hsm/hufu/daemon/keys"
	"github.com/hufu-hsm/hufu/daemon/text"
	"github.com/hufu-hsm/hufu/store"
	"github.com/hufu-hsm/hufu/store/storepb"
)

// DevPayments is the development payment provider: every charge with method "dev"
// succeeds, and the same idempotency key gets the same reference.
type DevPayments struct{}

var _ Payments = DevPayments{}

func (DevPayments) Charge(_ context.Context, c Charge) (string, error) {
	if c.Method != "dev" {
		return "", apierr.Invalidf("method", "the development provider takes only method \"dev\"")
	}
	h := sha256.Sum256([]byte(c.OrderID + "\x00" + c.IdempotencyKey))
	return "dev-" + hex.EncodeToString(h[:8]), nil
}

// Refund succeeds: nothing was taken.
func (DevPayments) Refund(context.Context, string, int64) error { return nil }

// Pay takes the payment of an order awaiting payment, has the CA issue the certificate and
// completes the order (settle): the payment's transaction reserves the certificate before
// the CA signs, so concurrent payments leave exactly one certificate and a crash leaves a
// reservation that recovery completes or revokes.
func (s *Service) Pay(ctx context.Context, caller authn.Caller, id, method, idem string) (*storepb.Order, *storepb.Certificate, error) {
	if err := apierr.CheckRequestID("idempotency_key", idem); err != nil {
		return nil, nil, err
	}
	o, err := s.ownedOrder(ctx, caller, id)
	if err != nil {
		return nil, nil, err
	}
	if done, c, err := s.paidAlready(ctx, o, idem); done || err != nil {
		return o, c, err
	}
	if o.Status == statusIssuing {
		return s.resumeIssue(ctx, caller, o, idem)
	}
	if o.Status != statusAwaiting {
		return nil, nil, wrongState(o, "pay")
	}
	if isVerification(o) {
		o, err := s.payVerification(ctx, caller, o, method, idem)
		return o, nil, err
	}
	c, apps, err := s.prepareIssue(ctx, o)
	if err != nil {
		return nil, nil, err
	}
	ref, err := s.deps.Payments.Charge(ctx, Charge{OrderID: o.Id, UserID: o.UserId, Method: method, IdempotencyKey: idem, AmountFen: o.PriceFen, Platforms: o.Platforms})
	if err != nil {
		return nil, nil, err
	}
	return s.settle(ctx, caller, o, c, apps, payment{method: method, ref: ref, idem: idem, by: "user", charged: true})
}

// Settlement is a payment taken outside Pay: an offline payment (bank transfer, cash) that
// an operator confirmed at a payment desk.
type Settlement struct {
	// Method names the provider ("offline"); Ref is the payment's reference.
	Method, Ref string
	// IdempotencyKey is the order's payment key: settling again with it returns the order.
	IdempotencyKey string
	// With, if not nil, writes more inside the transaction that completes the order (the
	// offline payment's own record).
	With func(tx *store.Tx, o *storepb.Order) error
}

// Settle completes an order awaiting payment with a payment taken elsewhere, exactly as Pay
// does after its charge: the certificate is issued and stored, the ledger entry and the
// audit record written, in one transaction. caller is the desk (the audit record's actor).
// The order may be any user's. Settling again with the same idempotency key returns the
// order and its certificate; an order that is not awaiting payment is FailedPrecondition.
func (s *Service) Settle(ctx context.Context, caller authn.Caller, id string, st Settlement) (*storepb.Order, *storepb.Certificate, error) {
	o, err := s.OrderByID(ctx, id)
	if err != nil {
		return nil, nil, err
	}
	if done, c, err := s.paidAlready(ctx, o, st.IdempotencyKey); done || err != nil {
		return o, c, err
	}
	if o.Status == statusIssuing {
		return s.resumeIssue(ctx, caller, o, st.IdempotencyKey)
	}
	if o.Status != statusAwaiting {
		return nil, nil, wrongState(o, "pay")
	}
	p := payment{method: st.Method, ref: st.Ref, idem: st.IdempotencyKey, by: caller.Actor(), with: st.With}
	if isVerification(o) {
		o, err := s.completeVerification(ctx, caller, o, p)
		return o, nil, err
	}
	c, apps, err := s.prepareIssue(ctx, o)
	if err != nil {
		return nil, nil, err
	}
	return s.settle(ctx, caller, o, c, apps, p)
}

// OrderByID reads any user's order (for desks).
func (s *Service) OrderByID(ctx context.Context, id string) (*storepb.Order, error) {
	if err := checkOrderID(id); err != nil {
		return nil, err
	}
	var out *storepb.Order
	err := s.deps.Store.Update(ctx, func(tx *store.Tx) error {
		key, err := tx.Lookup(indexOrder, id)
		if errors.Is(err, store.ErrNotFound) {
			return apierr.New(apierr.NotFound, "no order %q", id)
		}
		if err != nil {
			return err
		}
		out = new(storepb.Order)
		return tx.Get(key, out)
	})
	return out, err
}

// payment is a payment taken for an order, to be settled.
type payment struct {
	method, ref, idem string
	// by is who paid, as the order's step shows it ("user", or the desk).
	by string
	// charged: a provider took the money in this call and gives it back if the order
	// cannot be completed.
	charged bool
	with    func(tx *store.Tx, o *storepb.Order) error
}

// prepareIssue checks that the order's certificates can be issued and builds their
// applications, one per orderCertifies item, in its order.
func (s *Service) prepareIssue(ctx context.Context, o *storepb.Order) (CA, []*ca.Application, error) {
	c, err := s.ca("ca_id", o.CaId)
	if err != nil {
		return CA{}, nil, err
	}
	var notAfter time.Time
	if isFollow(o) {
		old, err := certs.Read(ctx, s.deps.Store, certID(o.UserId, o.ReplacesSerial))
		if err != nil {
			return CA{}, nil, err
		}
		if err := staleFollow(o, old); err != nil {
			return CA{}, nil, err
		}
		if o.Kind == int32(hufuv1.OrderKind_ORDER_KIND_UPGRADE) {
			notAfter = time.Unix(0, old.NotAfterUnixNano)
		} else {
			notAfter = renewalNotAfter(old, int(o.ValidityYears), s.deps.Clock.Now())
		}
	}
	var apps []*ca.Application
	for _, what := range orderCertifies(o) {
		key, err := s.deps.Keys.OwnedKey(ctx, authn.Caller{UserID: o.UserId}, what.keyID)
		if err != nil {
			return CA{}, nil, err
		}
		if keys.KeyRevoked(key) {
			return CA{}, nil, apierr.New(apierr.FailedPrecondition, "the order's key has been revoked; cancel the order")
		}
		pub, err := publicKey(key.PublicKey)
		if err != nil {
			return CA{}, nil, err
		}
		app := &ca.Application{OrderID: o.Id, UserID: o.UserId, Name: o.SubjectName, IDNumberMask: o.SubjectIdMasked, USCC: o.EnterpriseUscc, CSR: what.csr,
			PublicKey: pub, Usage: what.usage, ValidityYears: int(o.ValidityYears), NotAfter: notAfter, Platforms: o.Platforms, Regions: o.Regions,
			AuthorisationSHA256: o.GetAuthorisation().GetSha256(), AuthorisationMethod: o.GetAuthorisation().GetMethod()}
		if what.usage == 0 {
			// An order made before pairs certifies its one key for both uses.
			app.Usage = ca.UsageCombined
		}
		if o.EnterpriseUscc != "" {
			app.IDNumberMask = ""
		}
		if err := s.withIDNumber(ctx, app); err != nil {
			return CA{}, nil, err
		}
		apps = append(apps, app)
	}
	if o.Kind == int32(hufuv1.OrderKind_ORDER_KIND_ENTERPRISE_CLAIM) && s.enterprises != nil {
		// Refused before the charge and the CA: a claim another administrator has overtaken
		// (the transaction below checks again, under the enterprise record's lock).
		if err := s.enterprises.ClaimPayable(ctx, o); err != nil {
			return CA{}, nil, err
		}
	}
	return c, apps, nil
}

// settle takes a paid order through issuance (issuing.go): the transaction that records
// the payment moves the order to issuing and reserves its certificates' serials and
// validity (orderCertifies: a signing and an encryption certificate, or the one certificate
// of an order made before pairs; apps in that order); then the CA signs; then one
// transaction records the certificates and completes the order. A payment that finds the
// order moved already (cancelled, or paid with another key) is refused, and a charge given
// back, before anything is signed.
func (s *Service) settle(ctx context.Context, caller authn.Caller, o *storepb.Order, c CA, apps []*ca.Application, p payment) (*storepb.Order, *storepb.Certificate, error) {
	order, cert, err := s.reserve(ctx, caller, o, c, apps, p)
	if errors.Is(err, errAlreadyPaid) {
		return order, cert, nil
	}
	if errors.Is(err, errReservedAlready) {
		return s.issueReserved(ctx, caller, o, apps)
	}
	var refused *apierr.Error
	if errors.As(err, &refused) && refused.Kind == apierr.FailedPrecondition && p.charged {
		// This payment moved nothing (the order was cancelled or paid with another key
		// meanwhile): give the charge back. Nothing was signed for it.
		s.giveBack(ctx, caller, o, p)
	}
	if err != nil {
		// Any other failure may have committed (store.ErrFailed): paying again with the same
		// idempotency key finds out without charging twice.
		return nil, nil, err
	}
	s.fault(FaultIssuingReserved)
	return s.issueReserved(ctx, caller, order, apps)
}

// keysLive refuses, with refusal, an order one of whose keys has been revoked. It runs
// under the keys' locks inside tx: a revocation may have committed since an earlier check,
// and no certificate may be reserved or stored for a key whose share is gone.
func (s *Service) keysLive(tx *store.Tx, o *storepb.Order, refusal string) error {
	for _, w := range orderCertifies(o) {
		revoked, err := s.deps.Keys.KeyRevokedIn(tx, w.keyID)
		if err != nil {
			return err
		}
		if revoked {
			return apierr.New(apierr.FailedPrecondition, "%s", refusal)
		}
	}
	return nil
}

// issuedUsage is the CA profile a stored certificate was issued with: its usage, or for a
// certificate of an order made before pairs (usage 0) the combined one.
func issuedUsage(c *storepb.Certificate) ca.Usage {
	if c.Usage == 0 {
		return ca.UsageCombined
	}
	return ca.Usage(c.Usage)
}

// recordIssued stores the certificates issued for order o (in the order of orderCertifies:
// the signing certificate first) inside the transaction that completes it, links a pair,
// supersedes what a renewal or upgrade replaces (of a pair, each certificate its
// predecessor of the same usage), tells the enterprise domain, and writes one audit record
// per certificate.
func (s *Service) recordIssued(tx *store.Tx, o *storepb.Order, issued []*ca.Issued) ([]*storepb.Certificate, error) {
	if err := s.keysLive(tx, o, "the order's key has been revoked"); err != nil {
		return nil, err
	}
	what := orderCertifies(o)
	if len(what) != len(issued) {
		return nil, fmt.Errorf("certs: order %s certifies %d keys, %d certificates issued", o.Id, len(what), len(issued))
	}
	var replaced []*storepb.Certificate
	if o.ReplacesSerial != "" {
		old, err := certs.Get(tx, certID(o.UserId, o.ReplacesSerial))
		if err != nil {
			return nil, err
		}
		if err := staleFollow(o, old); err != nil {
			return nil, err
		}
		if err := releaseFollow(tx, o); err != nil {
			return nil, err
		}
		replaced = append(replaced, old)
		if old.PairSerial != "" && len(issued) > 1 {
			oldPair, err := certs.Get(tx, certID(o.UserId, old.PairSerial))
			if err != nil {
				return nil, err
			}
			replaced = append(replaced, oldPair)
		}
	}
	recs := make([]*storepb.Certificate, len(issued))
	for i, is := range issued {
		recs[i] = &storepb.Certificate{Serial: is.Serial, UserId: o.UserId, KeyId: what[i].keyID, CaId: o.CaId, OrderId: o.Id,
			Der: is.DER, NotBeforeUnixNano: is.NotBefore.UnixNano(), NotAfterUnixNano: is.NotAfter.UnixNano(),
			Platforms: o.Platforms, Regions: o.Regions, Status: certActive, EnterpriseUscc: o.EnterpriseUscc, Usage: int32(what[i].usage)}
		if len(issued) == 2 {
			recs[i].PairSerial, recs[i].PairKeyId = issued[1-i].Serial, what[1-i].keyID
		}
	}
	for i, rec := range recs {
		ckey := certKey(o.UserId, rec.Serial)
		if err := tx.Claim(indexCert, rec.Serial, ckey); err != nil {
			return nil, err
		}
		if err := tx.AddIndex(indexKeyCert, rec.KeyId, ckey); err != nil {
			return nil, err
		}
		if i < len(replaced) {
			old := replaced[i]
			rec.Replaces, rec.Label = old.Serial, replaced[0].Label
			if old.Status == certActive {
				old.Status, old.SupersededBy = certSuperseded, rec.Serial
				if err := certs.Put(tx, certID(o.UserId, old.Serial), old); err != nil {
					return nil, err
				}
			}
		}
		if err := certs.Put(tx, certID(o.UserId, rec.Serial), rec); err != nil {
			return nil, err
		}
		if err := tx.Audit(store.Event{Actor: "ca:" + o.CaId, Action: "cert.issue", Subject: ckey, Outcome: store.OutcomeOK,
			Details: map[string]string{"order": o.Id, "key": rec.KeyId, "not_after": time.Unix(0, rec.NotAfterUnixNano).UTC().Format(time.RFC3339),
				"replaces": rec.Replaces, "usage": issuedUsage(rec).String(), "pair": rec.PairSerial}}); err != nil {
			return nil, err
		}
	}
	if o.EnterpriseUscc != "" {
		// The enterprise learns of its certificate in this transaction: a claim makes the
		// applicant its one administrator, or is refused (and the reservation abandoned).
		if s.enterprises == nil {
			return nil, errors.New("certs: enterprise certificates need the enterprise domain (SetEnterprises)")
		}
		if err := s.enterprises.EnterpriseCertificateIssued(tx, o, recs[0]); err != nil {
			return nil, err
		}
	}
	return recs, nil
}

// book records the payment of o in the ledger inside the transaction that completes it.
func (s *Service) book(tx *store.Tx, o *storepb.Order, p payment, caller authn.Caller) error {
	if p.with != nil {
		if err := p.with(tx, o); err != nil {
			return err
		}
	}
	if s.deps.Books == nil || o.PriceFen <= 0 {
		return nil
	}
	return s.deps.Books.Paid(tx, o, p.method, p.ref, caller.Actor())
}

// giveBack refunds a charge that completed no order and records the money in and out in the
// ledger, with its audit record.
func (s *Service) giveBack(ctx context.Context, caller authn.Caller, o *storepb.Order, p payment) {
	if err := s.deps.Payments.Refund(ctx, p.ref, o.PriceFen); err != nil {
		s.deps.Log.Error("refunding a payment that completed no order", "order", o.Id, "payment", p.ref, "err", err)
		return
	}
	if s.deps.Books == nil || o.PriceFen <= 0 {
		return
	}
	err := s.deps.Store.Update(ctx, func(tx *store.Tx) error {
		if err := s.deps.Books.Returned(tx, o, p.method, p.ref, caller.Actor()); err != nil {
			return err
		}
		return tx.Audit(store.Event{Actor: caller.Actor(), Action: "order.payment.return", Subject: orderKey(o.UserId, o.Id), Outcome: store.OutcomeOK,
			Details: map[string]string{"payment": p.ref, "amount_fen": fmt.Sprint(o.PriceFen), "method": p.method}})
	})
	if err != nil {
		s.deps.Log.Error("recording a refunded payment in the ledger", "order", o.Id, "payment", p.ref, "err", err)
	}
}

// errAlreadyPaid aborts a payment transaction that found its own earlier success.
var errAlreadyPaid = errors.New("certs: already paid with this idempotency key")

func (s *Service) paidAlready(ctx context.Context, o *storepb.Order, idem string) (bool, *storepb.Certificate, error) {
	if o.Status != statusCompleted {
		return false, nil, nil
	}
	if o.PaymentIdempotencyKey != idem {
		return true, nil, wrongState(o, "pay")
	}
	if o.Serial == "" {
		return true, nil, nil // an order without a certificate
	}
	c, err := certs.Read(ctx, s.deps.Store, certID(o.UserId, o.Serial))
	return true, c, err
}

// effective is a certificate's status as the user sees it: active certificates past their
// not-after are expired.
func (s *Service) effective(c *storepb.Certificate) hufuv1.CertificateStatus {
	if c.Status == certActive && !s.deps.Clock.Now().Before(time.Unix(0, c.NotAfterUnixNano)) {
		return hufuv1.CertificateStatus(certExpired)
	}
	return hufuv1.CertificateStatus(c.Status)
}

// ListCertificates lists the caller's active (生效中) or no longer valid (已失效)
// certificates.
func (s *Service) ListCertificates(ctx context.Context, caller authn.Caller, view hufuv1.CertificateListView) ([]*storepb.Certificate, error) {
	var out []*storepb.Certificate
	cursor := ""
	for {
		page, err := certs.List(ctx, s.deps.Store, "cert/"+caller.UserID+"/", store.ListOptions{Cursor: cursor, Limit: store.MaxListLimit}, func(_ string, c *storepb.Certificate) bool {
			active := s.effective(c) == hufuv1.CertificateStatus_CERTIFICATE_STATUS_ACTIVE
			switch view {
			case hufuv1.CertificateListView_CERTIFICATE_LIST_VIEW_ACTIVE:
				return active
			case hufuv1.CertificateListView_CERTIFICATE_LIST_VIEW_NO_LONGER_VALID:
				return !active
			}
			return true
		})
		if err != nil {
			return nil, err
		}
		for _, it := range page.Items {
			out = append(out, it.Value)
		}
		if page.Next == "" {
			return out, nil
		}
		cursor = page.Next
	}
}

func (s *Service) ownedCert(ctx context.Context, caller authn.Caller, serial string) (*storepb.Certificate, error) {
	if err := checkSerial(serial); err != nil {
		return nil, err
	}
	c, err := certs.Read(ctx, s.deps.Store, certID(caller.UserID, serial))
	if errors.Is(err, store.ErrNotFound) {
		return nil, apierr.New(apierr.NotFound, "no certificate %q", serial)
	}
	return c, err
}

// KeyCertificates lists the store keys of a key's certificates, for MoveKeyCertificates
// (read before its transaction: no store read nests inside one).
func (s *Service) KeyCertificates(ctx context.Context, keyID string) ([]string, error) {
	keys, _, err := s.deps.Store.ListIndex(ctx, indexKeyCert, keyID, store.ListOptions{Limit: store.MaxListLimit})
	return keys, err
}

// MoveKeyCertificates re-homes certificates of a key (listed by KeyCertificates) from one
// holder to another inside tx: the record moves to c/cert/<new holder>/<serial> with its
// indexes, so that the new holder (an enterprise's new administrator) renews, downloads and
// revokes it.
func (s *Service) MoveKeyCertificates(tx *store.Tx, keys []string, keyID, fromUser, toUser string) error {
	for _, k := range keys {
		c, err := certs.Get(tx, certs.ID(k))
		if errors.Is(err, store.ErrNotFound) {
			continue
		}
		if err != nil {
			return err
		}
		if c.UserId != fromUser {
			continue
		}
		from, to := certKey(fromUser, c.Serial), certKey(toUser, c.Serial)
		c.UserId = toUser
		if err := certs.Delete(tx, certID(fromUser, c.Serial)); err != nil {
			return err
		}
		if err := certs.Put(tx, certID(toUser, c.Serial), c); err != nil {
			return err
		}
		if err := tx.Unclaim(indexCert, c.Serial, from); err != nil {
			return err
		}
		if err := tx.Claim(indexCert, c.Serial, to); err != nil {
			return err
		}
		if err := tx.RemoveIndex(indexKeyCert, keyID, from); err != nil {
			return err
		}
		if err := tx.AddIndex(indexKeyCert, keyID, to); err != nil {
			return err
		}
		if err := tx.Audit(store.Event{Actor: "user:" + toUser, Action: "cert.move", Subject: to, Outcome: store.OutcomeOK,
			Details: map[string]string{"key": keyID, "from": fromUser, "to": toUser}}); err != nil {
			return err
		}
	}
	return nil
}

// Certificate returns a certificate by serial with its chain (issuing CA, root; DER), for
// the domains that act with it on its holder's behalf (scan sessions).
func (s *Service) Certificate(ctx context.Context, serial string) (*storepb.Certificate, [][]byte, error) {
	if err := checkSerial(serial); err != nil {
		return nil, nil, err
	}
	var c *storepb.Certificate
	err := s.deps.Store.Update(ctx, func(tx *store.Tx) error {
		k, err := tx.Lookup(indexCert, serial)
		if err != nil {
			return err
		}
		c = new(storepb.Certificate)
		return tx.Get(k, c)
	})
	if errors.Is(err, store.ErrNotFound) {
		return nil, nil, apierr.New(apierr.NotFound, "no certificate %q", serial)
	}
	if err != nil {
		return nil, nil, err
	}
	authority, err := s.ca("ca_id", c.CaId)
	if err != nil {
		return nil, nil, err
	}
	chain, err := authority.Connector.Chain(ctx)
	return c, chain, err
}

// Active reports whether a certificate is active now (not expired, revoked or superseded).
func (s *Service) Active(c *storepb.Certificate) bool {
	return s.effective(c) == hufuv1.CertificateStatus(certActive)
}

// CertificateOwner returns who holds an active certificate: the user, and for an enterprise
// certificate the enterprise's USCC (the seals domain binds seals to certificates with it).
// A certificate that is not active is NotFound.
func (s *Service) CertificateOwner(ctx context.Context, serial string) (userID, uscc string, err error) {
	if err := checkSerial(serial); err != nil {
		return "", "", err
	}
	var c *storepb.Certificate
	err = s.deps.Store.Update(ctx, func(tx *store.Tx) error {
		k, err := tx.Lookup(indexCert, serial)
		if err != nil {
			return err
		}
		c = new(storepb.Certificate)
		return tx.Get(k, c)
	})
	if errors.Is(err, store.ErrNotFound) || (err == nil && s.effective(c) != hufuv1.CertificateStatus(certActive)) {
		return "", "", apierr.New(apierr.NotFound, "no active certificate %q", serial)
	}
	if err != nil {
		return "", "", err
	}
	return c.UserId, c.EnterpriseUscc, nil
}

// Download returns a certificate and its chain (issuing CA, root), PEM or DER.
func (s *Service) Download(ctx context.Context, caller authn.Caller, serial string, format hufuv1.CertificateFormat) (*storepb.Certificate, []byte, [][]byte, error) {
	c, err := s.ownedCert(ctx, caller, serial)
	if err != nil {
		return nil, nil, nil, err
	}
	authority, err := s.ca("ca_id", c.CaId)
	if err != nil {
		return nil, nil, nil, err
	}
	chain, err := authority.Connector.Chain(ctx)
	if err != nil {
		return nil, nil, nil, err
	}
	if c.DownloadedUnixNano == 0 {
		err := s.deps.Store.Update(ctx, func(tx *store.Tx) error {
			cur, err := certs.Get(tx, certID(caller.UserID, serial))
			if err != nil || cur.DownloadedUnixNano != 0 {
				return err
			}
			cur.DownloadedUnixNano = tx.Now().UnixNano()
			if err := certs.Put(tx, certID(caller.UserID, serial), cur); err != nil {
				return err
			}
			if err := markOrderDownloaded(tx, cur); err != nil {
				return err
			}
			return tx.Audit(store.Event{Actor: caller.Actor(), Action: "cert.download", Subject: certKey(caller.UserID, serial), Outcome: store.OutcomeOK})
		})
		if err != nil {
			return nil, nil, nil, err
		}
	}
	switch format {
	case hufuv1.CertificateFormat_CERTIFICATE_FORMAT_DER:
		return c, c.Der, chain, nil
	case hufuv1.CertificateFormat_CERTIFICATE_FORMAT_PEM, hufuv1.CertificateFormat_CERTIFICATE_FORMAT_UNSPECIFIED:
		var b bytes.Buffer
		for _, der := range chain {
			_ = pem.Encode(&b, &pem.Block{Type: "CERTIFICATE", Bytes: der})
		}
		return c, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: c.Der}), [][]byte{b.Bytes()}, nil
	}
	return nil, nil, nil, apierr.Invalidf("format", "want PEM or DER")
}

// renewable returns a certificate that may be renewed or upgraded.
func (s *Service) renewable(ctx context.Context, caller authn.Caller, serial string, upgrade bool) (*storepb.Certificate, CA, error) {
	c, err := s.ownedCert(ctx, caller, serial)
	if err != nil {
		return nil, CA{}, err
	}
	if ca.Usage(c.Usage) == ca.UsageEncryption && c.PairSerial != "" {
		// One order renews or upgrades the pair, made for its signing certificate.
		if c, err = s.ownedCert(ctx, caller, c.PairSerial); err != nil {
			return nil, CA{}, err
		}
	}
	st := s.effective(c)
	ok := st == hufuv1.CertificateStatus_CERTIFICATE_STATUS_ACTIVE || (!upgrade && st == hufuv1.CertificateStatus_CERTIFICATE_STATUS_EXPIRED)
	if !ok {
		return nil, CA{}, apierr.New(apierr.FailedPrecondition, "the certificate is %s", certStatusName(st))
	}
	authority, err := s.ca("ca_id", c.CaId)
	return c, authority, err
}

func certStatusName(st hufuv1.CertificateStatus) string {
	switch st {
	case hufuv1.CertificateStatus_CERTIFICATE_STATUS_ACTIVE:
		return "active"
	case hufuv1.CertificateStatus_CERTIFICATE_STATUS_REVOKED:
		return "revoked"
	case hufuv1.CertificateStatus_CERTIFICATE_STATUS_DISABLED:
		return "disabled"
	case hufuv1.CertificateStatus_CERTIFICATE_STATUS_SUPERSEDED:
		return "superseded by a renewal or an upgrade"
	case hufuv1.CertificateStatus_CERTIFICATE_STATUS_EXPIRED:
		return "expired"
	}
	return "unknown"
}

// Renew orders a certificate for the same key pair (续期); files encrypted to the old
// certificate still decrypt. The order awaits payment at once.
func (s *Service) Renew(ctx context.Context, caller authn.Caller, requestID, serial string, years int) (*storepb.Order, error) {
	if err := apierr.CheckRequestID("request_id", requestID); err != nil {
		return nil, err
	}
	if existing, err := s.byRequest(ctx, caller, requestID); err != nil || existing != nil {
		return existing, err
	}
	c, authority, err := s.renewable(ctx, caller, serial, false)
	if err != nil {
		return nil, err
	}
	price, err := s.price(authority, certKindOf(c), "validity_years", years)
	if err != nil {
		return nil, err
	}
	return s.follow(ctx, caller, c, requestID, hufuv1.OrderKind_ORDER_KIND_RENEWAL, uint32(years), c.Platforms, c.Regions, price)
}

// Upgrade orders a certificate for the same key valid on more platforms (升级), with the
// old certificate's expiry.
func (s *Service) Upgrade(ctx context.Context, caller authn.Caller, requestID, serial string, add []string) (*storepb.Order, error) {
	if err := apierr.CheckRequestID("request_id", requestID); err != nil {
		return nil, err
	}
	if existing, err := s.byRequest(ctx, caller, requestID); err != nil || existing != nil {
		return existing, err
	}
	c, authority, err := s.renewable(ctx, caller, serial, true)
	if err != nil {
		return nil, err
	}
	added, _, err := s.platforms("platforms", add)
	if err != nil {
		return nil, err
	}
	all := slices.Clone(c.Platforms)
	for _, p := range added {
		if !slices.Contains(all, p) {
			all = append(all, p)
		}
	}
	if len(all) == len(c.Platforms) {
		return nil, apierr.Invalidf("platforms", "the certificate is already valid on these platforms")
	}
	platforms, regions, err := s.platforms("platforms", all)
	if err != nil {
		return nil, err
	}
	return s.follow(ctx, caller, c, requestID, hufuv1.OrderKind_ORDER_KIND_UPGRADE, 0, platforms, regions, authority.UpgradePriceFen)
}

// follow creates the renewal or upgrade order of c.
func (s *Service) follow(ctx context.Context, caller authn.Caller, c *storepb.Certificate, requestID string, kind hufuv1.OrderKind,
	years uint32, platforms, regions []string, price int64) (*storepb.Order, error) {
	key, err := s.deps.Keys.OwnedKey(ctx, caller, c.KeyId)
	if err != nil {
		return nil, err
	}
	if keys.KeyRevoked(key) {
		return nil, apierr.New(apierr.FailedPrecondition, "the certificate's key is revoked")
	}
	parsed, err := smx509.ParseCertificate(c.Der)
	if err != nil {
		return nil, fmt.Errorf("certs: stored certificate %s: %w", c.Serial, err)
	}
	mask := parsed.Subject.SerialNumber
	if c.EnterpriseUscc == "" && !strings.Contains(mask, "*") {
		// Since the profile table a person's certificate names the full ID number or its
		// keyed hash, neither of which an order may show: the order carries the mask of the
		// order that issued the certificate.
		mask = ""
		if prev, err := orders.Read(ctx, s.deps.Store, orderID(c.UserId, c.OrderId)); err == nil {
			mask = prev.SubjectIdMasked
		}
	}
	o := &storepb.Order{
		Id: store.NewestFirstID(s.deps.Clock.Now()), UserId: caller.UserID, Kind: int32(kind), Status: statusAwaiting,
		CaId: c.CaId, CaRef: c.OrderId, KeyId: c.KeyId, ValidityYears: years, Platforms: platforms, Regions: regions,
		CertKind: certKindOf(c), PriceFen: price, SubjectName: parsed.Subject.CommonName, SubjectIdMasked: mask,
		ReplacesSerial: c.Serial, RequestId: requestID, EnterpriseUscc: c.EnterpriseUscc,
		// A pair is renewed as a pair, on the same two keys (续期 and 升级 keep the keys).
		EncryptionKeyId: c.PairKeyId,
	}
	return s.create(ctx, caller, o, "approved", "renewal or upgrade of "+c.Serial, claimFollow)
}

// SetLabel sets or clears a certificate's label (标签).
func (s *Service) SetLabel(ctx context.Context, caller authn.Caller, serial, label string) (*storepb.Certificate, error) {
	label, err := text.Line("label", label, 32, false)
	if err != nil {
		return nil, err
	}
	if _, err := s.ownedCert(ctx, caller, serial); err != nil {
		return nil, err
	}
	var out *storepb.Certificate
	err = s.deps.Store.Update(ctx, func(tx *store.Tx) error {
		c, err := certs.Get(tx, certID(caller.UserID, serial))
		if err != nil {
			return err
		}
		c.Label = label
		if err := certs.Put(tx, certID(caller.UserID, serial), c); err != nil {
			return err
		}
		out = c
		return tx.Audit(store.Event{Actor: caller.Actor(), Action: "cert.label", Subject: certKey(caller.UserID, serial), Outcome: store.OutcomeOK})
	})
	return out, err
}

// CheckStep is one step of a certificate check.
type CheckStep struct {
	Name, Detail string
	OK           bool
}

// CheckResult is the server's part of a certificate check and the material for the phone's
// two-party steps: Message to sign with SignKeyID (Ticket), Ciphertext to decrypt with
// DecryptKeyID (DecryptTicket). For a certificate of a pair the two keys differ.
type CheckResult struct {
	Steps                       []CheckStep
	Ticket                      string
	Message, Ciphertext, Digest []byte
	SignKeyID, DecryptKeyID     string
	DecryptTicket               string
}

// Check (证书检测) verifies the PIN (opening a ticket for the two-party steps), the chain,
// the validity and the revocation status, and prepares a test signature and decryption.
// A certificate of a pair is checked with its other certificate: the pair's steps too, the
// PIN on both keys, the signature with the signing key and the decryption with the
// encryption key. Failed steps are reported, not returned as errors; a wrong PIN is an
// error (it counts).
func (s *Service) Check(ctx context.Context, caller authn.Caller, serial, pin string) (*CheckResult, error) {
	c, err := s.ownedCert(ctx, caller, serial)
	if err != nil {
		return nil, err
	}
	var pair *storepb.Certificate
	if c.PairSerial != "" {
		if pair, err = s.ownedCert(ctx, caller, c.PairSerial); err != nil {
			return nil, err
		}
	}
	signing, encryption := c, c
	if pair != nil {
		if ca.Usage(c.Usage) == ca.UsageEncryption {
			signing = pair
		} else {
			encryption = pair
		}
	}
	res := &CheckResult{SignKeyID: signing.KeyId, DecryptKeyID: encryption.KeyId}
	add := func(name string, ok bool, format string, args ...any) {
		res.Steps = append(res.Steps, CheckStep{Name: name, OK: ok, Detail: fmt.Sprintf(format, args...)})
	}
	pinOK := false
	ticket, _, _, err := s.deps.Keys.OpenTicket(ctx, caller, signing.KeyId, pin)
	var ae *apierr.Error
	switch {
	case err == nil:
		res.Ticket, res.DecryptTicket, pinOK = ticket, ticket, true
		add("pin", true, "the PIN is correct")
	case errors.As(err, &ae) && ae.Kind == apierr.FailedPrecondition:
		add("pin", false, "the key cannot be used: %s", ae.Message)
	default:
		return nil, err
	}
	if pinOK && encryption != signing {
		// Both keys of a pair are made under the same PIN (hufu cert apply).
		res.DecryptTicket, _, _, err = s.deps.Keys.OpenTicket(ctx, caller, encryption.KeyId, pin)
		switch {
		case err == nil:
		case errors.As(err, &ae) && (ae.Kind == apierr.FailedPrecondition || ae.Kind == apierr.PermissionDenied):
			add("pin", false, "the encryption key cannot be used: %s", ae.Message)
		default:
			return nil, err
		}
	}
	now := s.deps.Clock.Now()
	if err := s.checkSteps(ctx, c, "", now, add); err != nil {
		return nil, err
	}
	if pair != nil {
		if err := s.checkSteps(ctx, pair, "pair_", now, add); err != nil {
			return nil, err
		}
	}
	res.Message = []byte("hufu certificate check " + serial + " " + now.UTC().Format(time.RFC3339))
	plain := make([]byte, 32)
	_, _ = rand.Read(plain)
	enc, err := smx509.ParseCertificate(encryption.Der)
	if err != nil {
		return nil, fmt.Errorf("certs: stored certificate %s: %w", encryption.Serial, err)
	}
	pub, ok := enc.PublicKey.(*ecdsa.PublicKey)
	if !ok {
		return nil, fmt.Errorf("certs: certificate %s has no SM2 key", encryption.Serial)
	}
	if res.Ciphertext, err = sm2.Encrypt(rand.Reader, pub, plain, nil); err != nil {
		return nil, err
	}
	d := sm3.Sum(plain)
	res.Digest = d[:]
	return res, nil
}

// checkSteps adds the chain, validity and revocation steps of c, their names prefixed.
func (s *Service) checkSteps(ctx context.Context, c *storepb.Certificate, prefix string, now time.Time, add func(name string, ok bool, format string, args ...any)) error {
	cert, err := smx509.ParseCertificate(c.Der)
	if err != nil {
		return fmt.Errorf("certs: stored certificate %s: %w", c.Serial, err)
	}
	authority, err := s.ca("ca_id", c.CaId)
	if err != nil {
		return err
	}
	if err := verifyChain(ctx, authority.Connector, cert, now); err != nil {
		add(prefix+"chain", false, "%v", err)
	} else {
		add(prefix+"chain", true, "issued by %s, chains to its root", cert.Issuer.CommonName)
	}
	switch {
	case now.Before(cert.NotBefore):
		add(prefix+"validity", false, "not valid before %s", cert.NotBefore.Format(time.DateOnly))
	case !now.Before(cert.NotAfter):
		add(prefix+"validity", false, "expired on %s", cert.NotAfter.Format(time.DateOnly))
	default:
		add(prefix+"validity", true, "valid until %s", cert.NotAfter.Format(time.DateOnly))
	}
	revoked, err := onCRL(ctx, authority.Connector, cert)
	switch {
	case err != nil:
		add(prefix+"revocation", false, "the CRL could not be checked: %v", err)
	case revoked || c.Status == certRevoked:
		add(prefix+"revocation", false, "revoked")
	case c.Status != certActive:
		add(prefix+"revocation", false, "%s", certStatusName(hufuv1.CertificateStatus(c.Status)))
	default:
		add(prefix+"revocation", true, "not on the CA's current CRL")
	}
	return nil
}

func verifyChain(ctx context.Context, conn ca.Connector, cert *smx509.Certificate, now time.Time) error {
	chain, err := conn.Chain(ctx)
	if err != nil || len(chain) == 0 {
		return fmt.Errorf("no CA chain: %v", err)
	}
	roots, inter := smx509.NewCertPool(), smx509.NewCertPool()
	for i, der := range chain {
		c, err := smx509.ParseCertificate(der)
		if err != nil {
			return err
		}
		if i == len(chain)-1 {
			roots.AddCert(c)
		} else {
			inter.AddCert(c)
		}
	}
	t := now
	if t.After(cert.NotAfter) {
		t = cert.NotAfter.Add(-time.Second) // the chain, not the expiry, is checked here
	}
	_, err = cert.Verify(smx509.VerifyOptions{Roots: roots, Intermediates: inter, CurrentTime: t, KeyUsages: []smx509.ExtKeyUsage{smx509.ExtKeyUsageAny}})
	return err
}

func onCRL(ctx context.Context, conn ca.Connector, cert *smx509.Certificate) (bool, error) {
	der, err := conn.CRL(ctx)
	if err != nil {
		return false, err
	}
	crl, err := smx509.ParseRevocationList(der)
	if err != nil {
		return false, err
	}
	for _, e := range crl.RevokedCertificateEntries {
		if e.SerialNumber.Cmp(cert.SerialNumber) == 0 {
			return true, nil
		}
	}
	return false, nil
}

// Revoke (注销) revokes a certificate for good, confirmed with the PIN: the CA puts it on
// its CRL, and the key's server share is destroyed in the same transaction that marks the
// certificate revoked, so nothing ever encrypted to it can be decrypted again.
func (s *Service) Revoke(ctx context.Context, caller authn.Caller, serial, pin, reason string, confirmed bool) (*storepb.Certificate, error) {
	if !confirmed {
		return nil, apierr.Invalidf("confirm_irreversible", "revocation is irreversible and nothing encrypted to the certificate can be decrypted afterwards: confirm it")
	}
	reason, err := checkReason("reason", reason, false)
	if err != nil {
		return nil, err
	}
	c, err := s.ownedCert(ctx, caller, serial)
	if err != nil {
		return nil, err
	}
	if c.Status == certRevoked {
		return nil, apierr.New(apierr.FailedPrecondition, "the certificate is already revoked")
	}
	if c.Status == certSuperseded {
		return nil, apierr.New(apierr.FailedPrecondition, "the certificate was replaced by %s: revoke that one", c.SupersededBy)
	}
	if err := s.deps.Keys.VerifyKeyPIN(ctx, caller, c.KeyId, pin, "pin"); err != nil {
		return nil, err
	}
	// Revoking destroys the key's server share, so every certificate of the key dies with it:
	// the key's other certificates (another CA, a renewal's predecessor) go on their CRLs too,
	// and so does a pair's other certificate with its key.
	// The CAs first: if the rest fails, the certificates are on the CRLs and a retry finishes.
	keyIDs := pairKeys(c)
	siblings, err := s.revokeAtCAs(ctx, keyIDs...)
	if err != nil {
		return nil, err
	}
	var out *storepb.Certificate
	err = s.deps.Keys.RevokeKeys(ctx, caller, keyIDs, "certificate "+serial+" revoked", func(tx *store.Tx) error {
		if _, err := markRevoked(tx, siblings, reason); err != nil {
			return err
		}
		cur, err := certs.Get(tx, certID(caller.UserID, serial))
		if err != nil {
			return err
		}
		out = cur
		if err := notify(tx, caller.UserID, hufuv1.MessageKind_MESSAGE_KIND_CERTIFICATE_REVOKED, "证书已注销",
			s.revokedNotice(serial, ""), "", serial); err != nil {
			return err
		}
		if err := tx.Audit(store.Event{Actor: caller.Actor(), Action: "cert.revoke", Subject: certKey(caller.UserID, serial), Outcome: store.OutcomeOK,
			Details: map[string]string{"key": cur.KeyId, "ca": cur.CaId, "pair": cur.PairSerial}}); err != nil {
			return err
		}
		if cur.PairSerial == "" {
			return nil
		}
		// The pair's other certificate has its own record of the revocation.
		return tx.Audit(store.Event{Actor: caller.Actor(), Action: "cert.revoke", Subject: certKey(caller.UserID, cur.PairSerial), Outcome: store.OutcomeOK,
			Details: map[string]string{"key": cur.PairKeyId, "ca": cur.CaId, "pair": serial}})
	})
	for _, k := range keyIDs {
		s.gate.forget(k)
	}
	if err == nil {
		s.m.revoked.Inc()
	}
	return out, err
}

// revokeAtCAs puts every certificate of a key that is not revoked yet on its CA's CRL and
// returns the key's certificates. Revoking destroys the key's server share, so every
// certificate of the key dies with it (another CA's, a renewal's predecessor). The CAs come
// first: if the store's part fails, the certificates are on the CRLs and a retry finishes.
func (s *Service) revokeAtCAs(ctx context.Context, keyIDs ...string) ([]keyCertificate, error) {
	siblings, err := s.keyCertificates(ctx, keyIDs...)
	if err != nil {
		return nil, err
	}
	for _, sib := range siblings {
		if sib.cert.Status == certRevoked {
			continue
		}
		sibCA, err := s.ca("ca_id", sib.cert.CaId)
		if err != nil {
			return nil, err
		}
		if err := sibCA.Connector.Revoke(ctx, sib.cert.Serial, ca.ReasonCessation); err != nil {
			return nil, &apierr.Error{Kind: apierr.Unavailable, Message: "the CA did not confirm the revocation; retry", Cause: err}
		}
	}
	return siblings, nil
}

// markRevoked marks the certificates of siblings that are not revoked yet as revoked, in
// tx, and returns them.
func markRevoked(tx *store.Tx, siblings []keyCertificate, reason string) ([]*storepb.Certificate, error) {
	listed := make(map[string]bool, len(siblings))
	for _, sib := range siblings {
		listed[sib.cert.Serial] = true
	}
	var marked []*storepb.Certificate
	for _, sib := range siblings {
		cur := new(storepb.Certificate)
		if err := tx.Get(sib.key, cur); err != nil {
			return nil, err
		}
		if cur.Status == certRevoked {
			continue
		}
		if cur.Status == certSuperseded && cur.SupersededBy != "" && !listed[cur.SupersededBy] {
			// A renewal or upgrade recorded its certificates after siblings were listed (and
			// revoked at the CA): revoking now would leave those active, off the CRL, on keys
			// whose shares this revocation deletes. The caller lists again.
			return nil, apierr.New(apierr.Aborted, "a renewal of %s was issued meanwhile; revoke again", cur.Serial)
		}
		cur.Status, cur.RevokedUnixNano, cur.RevokeReason = certRevoked, tx.Now().UnixNano(), reason
		if err := tx.Put(sib.key, cur); err != nil {
			return nil, err
		}
		marked = append(marked, cur)
	}
	return marked, nil
}

// ListMessages lists the caller's inbox, newest first.
func (s *Service) ListMessages(ctx context.Context, caller authn.Caller, size int, token string) ([]*storepb.InboxMessage, string, error) {
	if size < 0 || size > 100 {
		return nil, "", apierr.Invalidf("page_size", "want 0..100")
	}
	if size == 0 {
		size = 20
	}
	page, err := inbox.List(ctx, s.deps.Store, "inbox/"+caller.UserID+"/", store.ListOptions{Cursor: token, Limit: size}, nil)
	if errors.Is(err, store.ErrBadCursor) {
		return nil, "", apierr.Invalidf("page_token", "not a token from the previous page")
	}
	if err != nil {
		return nil, "", err
	}
	out := make([]*storepb.InboxMessage, len(page.Items))
	for i, it := range page.Items {
		out[i] = it.Value
	}
	return out, page.Next, nil
}

// subjectOf renders a stored certificate's subject for display.
func subjectOf(c *storepb.Certificate) string {
	cert, err := smx509.ParseCertificate(c.Der)
	if err != nil {
		return ""
	}
	return cert.Subject.String()
}

type keyCertificate struct {
	key  string // the certificate's record key
	cert *storepb.Certificate
}

// keyCertificates lists every certificate issued for the keys (the key-cert index).
func (s *Service) keyCertificates(ctx context.Context, keyIDs ...string) ([]keyCertificate, error) {
	var out []keyCertificate
	for _, keyID := range keyIDs {
		of, err := s.certificatesOfKey(ctx, keyID)
		if err != nil {
			return nil, err
		}
		out = append(out, of...)
	}
	return out, nil
}

func (s *Service) certificatesOfKey(ctx context.Context, keyID string) ([]keyCertificate, error) {
	var out []keyCertificate
	cursor := ""
	for {
		owners, next, err := s.deps.Store.ListIndex(ctx, indexKeyCert, keyID, store.ListOptions{Cursor: cursor, Limit: store.MaxListLimit})
		if err != nil {
			return nil, err
		}
		for _, key := range owners {
			c := new(storepb.Certificate)
			if err := s.deps.Store.Get(ctx, key, c); err != nil {
				return nil, err
			}
			out = append(out, keyCertificate{key: key, cert: c})
		}
		if next == "" {
			return out, nil
		}
		cursor = next
	}
}
