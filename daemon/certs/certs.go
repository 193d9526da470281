// Package certs is the certificate life of a natural person (seed manual §1.5, §1.7,
// §1.8.1): applications for a certificate on a split key and the orders that carry them
// through review, payment and issuance; the review desk where operators approve or reject
// applications; the issued certificates (download, renew, upgrade, label, check, revoke);
// and each user's message inbox. Certificates come from a CA behind ca.Connector — the
// embedded CA by default.
//
// # Orders
//
// An order moves only along these edges; any other request is refused with
// FailedPrecondition:
//
//	in review (审核中) --approve--> awaiting payment (待支付) --pay--> completed (已完成)
//	in review --reject (reviewer's reason)--> cancelled (已取消)
//	in review | awaiting payment --cancel (user's reason)--> cancelled
//
// Renewals and upgrades of an existing certificate start awaiting payment: the identity and
// the key were reviewed with the original application. Payment issues the certificate in
// two steps around the CA's signature (issuing.go: reserve, sign, record), so an order has
// at most one certificate however many payments race (the same idempotency key gets the
// same answer, another key is refused) and a crash between the steps leaves a reservation
// that recovery completes or revokes. While issuing, an order is stored with the internal
// status 5 and shown as awaiting payment.
//
// An enterprise-verification order (对公打款认证, §1.6.4) carries no certificate: the
// enterprise domain makes it awaiting payment inside the transaction that verifies a
// corporate transfer (CreateVerificationOrder); paying it (确认支付) completes it without a CA
// call, and it cannot be cancelled (the verification is done).
//
// # Records
//
//	o/order/<user id>/<order id>    storepb.Order; order ids sort newest first
//	o/inbox/<user id>/<message id>  storepb.InboxMessage, newest first
//	o/letter/<user id>/<order id>   storepb.Attachment: the authorisation letter with its
//	                                content (the order keeps only its hashes)
//	c/cert/<user id>/<serial>       storepb.Certificate
//	c/issuing/<order id>            storepb.IssuingReservation: the serials and validity
//	                                reserved for a paid order until its certificates are
//	                                recorded or revoked (issuing.go)
//	x/order/<order id>              -> the order's key (unique)
//	x/order-request/<user>.<req>    -> the order an application's request id made (unique)
//	x/cert/<serial>                 -> the certificate's key (unique)
//	x/key-cert/<key id>/<cert key>  the certificates of a key
//	x/issuing-enterprise/<uscc>     -> the reservation of the enterprise claim being issued
//	                                (unique; released with the reservation)
//	x/key-subject/<key id>          -> "u/<user id>" or "e/<uscc>/info": the one subject a
//	                                key certifies (unique; claimed by its first application)
//
// Every change writes its audit record in the same transaction; audit records name orders,
// serials and keys, never names or ID numbers.
package certs

import (
	"context"
	"crypto/ecdsa"
	"errors"
	"log/slog"
	"regexp"
	"time"

	hufuv1 "github.com/hufu-hsm/hufu/api/hufu/v1"
	"github.com/hufu-hsm/hufu/cosign"
	"github.com/hufu-hsm/hufu/daemon/accounts"
	"github.com/hufu-hsm/hufu/daemon/apierr"
	"github.com/hufu-hsm/hufu/daemon/authn"
	"github.com/hufu-hsm/hufu/daemon/ca"
	"github.com/hufu-hsm/hufu/daemon/identity"
	"github.com/hufu-hsm/hufu/store"
	"github.com/hufu-hsm/hufu/store/storepb"
	"github.com/prometheus/client_golang/prometheus"
)

// Keys is what certs needs of the split keys.
type Keys interface {
	OwnedKey(ctx context.Context, caller authn.Caller, keyID string) (*storepb.SplitKey, error)
	VerifyKeyPIN(ctx context.Context, caller authn.Caller, keyID, pin, field string) error
	OpenTicket(ctx context.Context, caller authn.Caller, keyID, pin string) (string, time.Time, int, error)
	// RevokeKeys revokes keys (one, or a certificate pair's two) in one transaction with
	// with's writes.
	RevokeKeys(ctx context.Context, caller authn.Caller, keyIDs []string, reason string, with func(tx *store.Tx) error) error
	// KeyRevokedIn reads the key's status inside tx (under the key's lock).
	KeyRevokedIn(tx *store.Tx, keyID string) (bool, error)
}

// Accounts is what certs needs of the account domain.
type Accounts interface {
	VerifiedUser(ctx context.Context, userID string) (*storepb.User, error)
	// VerifiedPerson opens a user's ID number in the HSM: a person's certificate carries
	// an identity value made from it (subjectidentity.go).
	VerifiedPerson(ctx context.Context, userID string) (identity.Person, error)
	Platform(id string) (accounts.Platform, bool)
}

// Enterprises is what certs needs of the enterprise domain.
type Enterprises interface {
	// EnterpriseCertificateIssued is called inside the payment transaction that stores an
	// enterprise certificate (o.EnterpriseUscc set): a claim makes the applicant the
	// enterprise's administrator, a renewal or upgrade moves the enterprise to the new
	// serial. An *apierr.Error of kind FailedPrecondition refuses the payment, which is then
	// refunded.
	EnterpriseCertificateIssued(tx *store.Tx, o *storepb.Order, c *storepb.Certificate) error
	// ClaimPayable refuses, before any charge or CA call, the payment of a claim that can no
	// longer complete (the enterprise has another administrator).
	ClaimPayable(ctx context.Context, o *storepb.Order) error
}

// Charge is one payment request.
type Charge struct {
	OrderID, UserID, Method, IdempotencyKey string
	AmountFen                               int64
	// Platforms are the order's platforms: which payment methods are offered depends on them.
	Platforms []string
}

// Books records money in the ledger (daemon/commerce) inside the transactions that change
// orders, so that a payment's entry commits with the order it completes and its audit record.
type Books interface {
	// Paid records, inside tx, that o was paid by method with the provider's reference ref
	// (o.PriceFen; nothing for a free order). The transaction completes o.
	Paid(tx *store.Tx, o *storepb.Order, method, ref, actor string) error
	// Returned records, inside tx, a charge that completed no order and was refunded.
	Returned(tx *store.Tx, o *storepb.Order, method, ref, actor string) error
}

// Payments takes payments. Charge must be idempotent per idempotency key; Refund returns a
// charge that did not complete an order (it lost a race with a cancellation or with another
// payment).
type Payments interface {
	Charge(ctx context.Context, c Charge) (ref string, err error)
	Refund(ctx context.Context, ref string, amountFen int64) error
}

// CA is one CA an applicant can choose, with its prices.
type CA struct {
	Connector ca.Connector
	// Prices per certificate kind ("personal", "enterprise") and validity in years, in fen.
	Prices          map[string]map[int]int64
	UpgradePriceFen int64
}

// Options are the certificate policies, from the configuration.
type Options struct {
	ValidityYears []int
	CAs           []CA
	// ErasureInterval is keys.erasure.interval (0: no schedule), for the revocation notice.
	ErasureInterval time.Duration
}

// Attachments reads the files linked to an application (daemon/attachments).
type Attachments interface {
	List(ctx context.Context, application string) ([]*storepb.AttachmentRef, error)
	Get(ctx context.Context, id string) (*storepb.AttachmentBlob, error)
}

// Deps are the collaborators of the service.
type Deps struct {
	Store *store.Store
	// Attachments, if set, shows applications' files at the review desk.
	Attachments Attachments
	Keys        Keys
	Accounts    Accounts
	Payments    Payments
	// Books, if set, records every payment and refund in the ledger.
	Books Books
	Clock interface{ Now() time.Time }
	Log   *slog.Logger
	// Registry receives the service's metrics; none are exported if nil.
	Registry prometheus.Registerer
	// FaultInjection, for tests only, is called at the named points of issuance
	// (FaultIssuingReserved, FaultIssuingSigned) so a test can stop or kill the process
	// there. Nil in production.
	FaultInjection func(point string)
}

// Service implements CertificateService and ReviewService.
type Service struct {
	opts  Options
	deps  Deps
	cas   map[string]CA
	order []string
	gate  keyGate
	m     *metrics
	// claims serialises the signing and recording of one order's reservation between a
	// payment and recovery (issuing.go).
	claims issueClaims
	// enterprises completes claims; seals stamp online letters. Both are set once while
	// wiring (SetEnterprises, SetSeals), before serving: they are built after certs.
	enterprises Enterprises
	seals       Seals
}

// Seals is what certs needs of the seals domain: the applicant's own seal to stamp an
// online letter with.
type Seals interface {
	SealUsable(ctx context.Context, caller authn.Caller, sealID string) (*storepb.Seal, error)
	Get(ctx context.Context, caller authn.Caller, id string) (*storepb.Seal, []byte, error)
}

// SetSeals connects the seals domain.
func (s *Service) SetSeals(seals Seals) { s.seals = seals }

// SetEnterprises connects the enterprise domain, which is built after certs (it applies
// for certificates through it).
func (s *Service) SetEnterprises(e Enterprises) { s.enterprises = e }

// New returns the service.
func New(opts Options, deps Deps) (*Service, error) {
	if deps.Store == nil || deps.Keys == nil || deps.Accounts == nil || deps.Payments == nil || deps.Clock == nil {
		return nil, errors.New("certs: missing dependency")
	}
	if deps.Log == nil {
		deps.Log = slog.Default()
	}
	if len(opts.CAs) == 0 || len(opts.ValidityYears) == 0 {
		return nil, errors.New("certs: no CA or no validity configured")
	}
	s := &Service{opts: opts, deps: deps, cas: map[string]CA{}, gate: keyGate{m: map[string]gateEntry{}}, m: newMetrics(deps.Registry)}
	s.m.registerIssuing(deps.Registry, s)
	for _, c := range opts.CAs {
		s.cas[c.Connector.ID()] = c
		s.order = append(s.order, c.Connector.ID())
	}
	return s, nil
}

// CRL returns the current CRL of a configured CA (DER), for the admin listener.
func (s *Service) CRL(ctx context.Context, caID string) ([]byte, error) {
	c, ok := s.cas[caID]
	if !ok {
		return nil, apierr.New(apierr.NotFound, "no CA %q", caID)
	}
	return c.Connector.CRL(ctx)
}

// CAName is the name of a configured CA.
func (s *Service) CAName(id string) (string, bool) {
	c, ok := s.cas[id]
	if !ok {
		return "", false
	}
	return c.Connector.Name(), true
}

// CAIDs lists the configured CAs in configuration order.
func (s *Service) CAIDs() []string { return append([]string(nil), s.order...) }

var (
	orders = store.NewCollection(store.KindOrder, func() *storepb.Order { return new(storepb.Order) })
	inbox  = store.NewCollection(store.KindOrder, func() *storepb.InboxMessage { return new(storepb.InboxMessage) })
	certs  = store.NewCollection(store.KindCert, func() *storepb.Certificate { return new(storepb.Certificate) })
	// Letters are kept apart from their orders so that listing orders does not read scans.
	letters = store.NewCollection(store.KindOrder, func() *storepb.Attachment { return new(storepb.Attachment) })
)

const (
	indexOrder        = "order"
	indexOrderRequest = "order-request"
	indexCert         = "cert"
	indexKeyCert      = "key-cert"
	// indexKeySubject holds, per key, the one subject it certifies ("u/<user>" or
	// "e/<uscc>/info"), claimed with its first application.
	indexKeySubject = "key-subject"

	statusInReview  = int32(hufuv1.OrderStatus_ORDER_STATUS_IN_REVIEW)
	statusAwaiting  = int32(hufuv1.OrderStatus_ORDER_STATUS_AWAITING_PAYMENT)
	statusCompleted = int32(hufuv1.OrderStatus_ORDER_STATUS_COMPLETED)
	statusCancelled = int32(hufuv1.OrderStatus_ORDER_STATUS_CANCELLED)

	certActive     = int32(hufuv1.CertificateStatus_CERTIFICATE_STATUS_ACTIVE)
	certRevoked    = int32(hufuv1.CertificateStatus_CERTIFICATE_STATUS_REVOKED)
	certDisabled   = int32(hufuv1.CertificateStatus_CERTIFICATE_STATUS_DISABLED)
	certSuperseded = int32(hufuv1.CertificateStatus_CERTIFICATE_STATUS_SUPERSEDED)
	certExpired    = int32(hufuv1.CertificateStatus_CERTIFICATE_STATUS_EXPIRED)

	certKindPersonal   = "personal"
	certKindEnterprise = "enterprise"
)

func orderID(user, id string) string { return "order/" + user + "/" + id }
func certID(user, serial string) string {
	return "cert/" + user + "/" + serial
}
func orderKey(user, id string) string { return "o/" + orderID(user, id) }
func certKey(user, serial string) string {
	return "c/" + certID(user, serial)
}

var (
	orderIDRE = regexp.MustCompile(`^[0-9a-f]{22}$`)
	serialRE  = regexp.MustCompile(`^[0-9a-f]{32}$`)
)

func checkOrderID(id string) error {
	if !orderIDRE.MatchString(id) {
		return apierr.New(apierr.NotFound, "no order %q", id)
	}
	return nil
}

func checkSerial(serial string) error {
	if !serialRE.MatchString(serial) {
		return apierr.New(apierr.NotFound, "no certificate %q", serial)
	}
	return nil
}

func step(tx *store.Tx, name, actor, note string) *storepb.ReviewStep {
	return &storepb.ReviewStep{Name: name, TimeUnixNano: tx.Now().UnixNano(), Actor: actor, Note: note}
}

// Notify writes a message to a user's inbox inside tx (other domains' notices, such as the
// enterprise notices, share the inbox).
func Notify(tx *store.Tx, user string, kind hufuv1.MessageKind, title, body string) error {
	return notify(tx, user, kind, title, body, "", "")
}

// notify writes an inbox message inside tx.
func notify(tx *store.Tx, user string, kind hufuv1.MessageKind, title, body, order, serial string) error {
	id := store.NewestFirstID(tx.Now())
	return inbox.Put(tx, "inbox/"+user+"/"+id, &storepb.InboxMessage{
		Id: id, Kind: int32(kind), Title: title, Body: body, OrderId: order, Serial: serial, TimeUnixNano: tx.Now().UnixNano(),
	})
}

func (s *Service) ca(field, id string) (CA, error) {
	c, ok := s.cas[id]
	if !ok {
		return CA{}, apierr.Invalidf(field, "no CA %q; choose one of ListCertificateAuthorities", id)
	}
	return c, nil
}

func (s *Service) price(c CA, certKind, field string, years int) (int64, error) {
	ok := false
	for _, y := range s.opts.ValidityYears {
		ok = ok || y == years
	}
	p, priced := c.Prices[certKind][years]
	if !ok || !priced {
		return 0, apierr.Invalidf(field, "%d years is not offered; choose one of %v", years, s.opts.ValidityYears)
	}
	return p, nil
}

// certKindOf is the class of a certificate: enterprise certificates name a USCC.
func certKindOf(c *storepb.Certificate) string {
	if c.EnterpriseUscc != "" {
		return certKindEnterprise
	}
	return certKindPersonal
}

// publicKey decodes a split key's public point.
func publicKey(raw []byte) (*ecdsa.PublicKey, error) {
	p, err := cosign.ParsePoint(raw)
	if err != nil {
		return nil, err
	}
	return p.PublicKey(), nil
}
