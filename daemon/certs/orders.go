package certs

import (
	"context"
	"crypto/ecdsa"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"regexp"
	"slices"
	"strings"

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

const (
	maxLetterBytes = 2 << 20
	maxReasonRunes = 200
)

var (
	letterTypes = []string{"image/jpeg", "image/png", "application/pdf"}
	regionRE    = regexp.MustCompile(`^[0-9]{6}$`)
)

// Apply submits a personal certificate application (seed §1.5.1): the verified identity,
// the platforms, the CA and validity, the authorisation letter and a CSR signed by the split
// key. The order starts in review. request_id makes it idempotent.
func (s *Service) Apply(ctx context.Context, caller authn.Caller, req *hufuv1.ApplyCertificateRequest) (*storepb.Order, error) {
	if from := req.GetReorderedFrom(); from != "" {
		old, err := s.ownedOrder(ctx, caller, from)
		if err != nil {
			return nil, err
		}
		if old.Status != statusCancelled {
			return nil, apierr.New(apierr.FailedPrecondition, "only a cancelled order can be re-ordered")
		}
	}
	if err := requirePair(req.GetKeyId(), req.GetEncryptionKeyId()); err != nil {
		return nil, err
	}
	return s.apply(ctx, caller, application{
		requestID: req.GetRequestId(), keyID: req.GetKeyId(), caID: req.GetCaId(), years: req.GetValidityYears(),
		platforms: req.GetPlatforms(), csr: req.GetCsr(), authorisation: req.GetAuthorisation(),
		kind: hufuv1.OrderKind_ORDER_KIND_NEW, certKind: certKindPersonal, reorderedFrom: req.GetReorderedFrom(),
		encKeyID: req.GetEncryptionKeyId(), encCSR: req.GetEncryptionCsr(),
	})
}

// EnterpriseApplication is the certificate application of an enterprise claim (认领, seed
// §1.6.2), whose enterprise data the enterprise domain has checked and keeps.
type EnterpriseApplication struct {
	RequestID, KeyID, CAID string
	ValidityYears          uint32
	Platforms              []string
	// Roaming regions beyond the platforms' own (6-digit region codes).
	Regions       []string
	CSR           []byte
	Authorisation *hufuv1.Authorisation
	// The encryption certificate's key and CSR: a claim issues a pair, as a person's
	// application does (ApplyCertificateRequest.encryption_key_id).
	EncryptionKeyID string
	EncryptionCSR   []byte
	// The enterprise: its checked USCC and name.
	USCC, Name string
	// With writes the claim's own records in the transaction that creates the order.
	With func(tx *store.Tx, o *storepb.Order) error
}

// ApplyEnterprise submits an enterprise certificate application: an order of kind
// ENTERPRISE_CLAIM in review, whose payment issues the certificate pair to the enterprise (O
// and CN its name, SERIALNUMBER its USCC) and completes the claim (SetEnterpriseClaims). The
// pair is checked as a person's (requirePair, checkEncryptionKey).
func (s *Service) ApplyEnterprise(ctx context.Context, caller authn.Caller, a EnterpriseApplication) (*storepb.Order, error) {
	if err := requirePair(a.KeyID, a.EncryptionKeyID); err != nil {
		return nil, err
	}
	return s.apply(ctx, caller, application{
		encKeyID: a.EncryptionKeyID, encCSR: a.EncryptionCSR,
		requestID: a.RequestID, keyID: a.KeyID, caID: a.CAID, years: a.ValidityYears, platforms: a.Platforms,
		extraRegions: a.Regions, csr: a.CSR, authorisation: a.Authorisation, kind: hufuv1.OrderKind_ORDER_KIND_ENTERPRISE_CLAIM,
		certKind: certKindEnterprise, uscc: a.USCC, subject: a.Name, with: a.With,
	})
}

// application is what Apply and ApplyEnterprise have in common.
type application struct {
	requestID, keyID, caID string
	years                  uint32
	platforms              []string
	extraRegions           []string
	csr                    []byte
	authorisation          *hufuv1.Authorisation
	kind                   hufuv1.OrderKind
	certKind               string
	reorderedFrom          string
	// The encryption certificate's key and CSR of a pair application.
	encKeyID string
	encCSR   []byte
	// An enterprise's USCC and name; a person's subject is their verified identity.
	uscc, subject string
	with          func(*store.Tx, *storepb.Order) error
}

func (s *Service) apply(ctx context.Context, caller authn.Caller, a application) (*storepb.Order, error) {
	if err := apierr.CheckRequestID("request_id", a.requestID); err != nil {
		return nil, err
	}
	if existing, err := s.byRequest(ctx, caller, a.requestID); err != nil || existing != nil {
		return existing, err
	}
	c, err := s.ca("ca_id", a.caID)
	if err != nil {
		return nil, err
	}
	price, err := s.price(c, a.certKind, "validity_years", int(a.years))
	if err != nil {
		return nil, err
	}
	platforms, regions, err := s.platforms("platforms", a.platforms)
	if err != nil {
		return nil, err
	}
	for i, r := range a.extraRegions {
		if !regionRE.MatchString(r) {
			return nil, apierr.Invalidf(fmt.Sprintf("roaming_regions[%d]", i), "a region is a 6-digit GB/T 2260 code")
		}
		if !slices.Contains(regions, r) {
			regions = append(regions, r)
		}
	}
	user, err := s.deps.Accounts.VerifiedUser(ctx, caller.UserID)
	if err != nil {
		return nil, err
	}
	key, err := s.deps.Keys.OwnedKey(ctx, caller, a.keyID)
	if err != nil {
		return nil, err
	}
	if keys.KeyRevoked(key) {
		return nil, apierr.New(apierr.FailedPrecondition, "the key is revoked; create a new key")
	}
	pub, err := publicKey(key.PublicKey)
	if err != nil {
		return nil, fmt.Errorf("certs: stored public key of %s: %w", key.Id, err)
	}
	if err := checkCSR("csr", a.csr, pub); err != nil {
		return nil, err
	}
	letter, err := checkAuthorisation(a.authorisation, pub)
	if err != nil {
		return nil, err
	}
	if sealID := a.authorisation.GetOnline().GetSealId(); sealID != "" {
		if err := s.stamp(ctx, caller, letter, sealID, a.uscc != ""); err != nil {
			return nil, err
		}
	}
	subject := "u/" + caller.UserID
	if a.uscc != "" {
		subject = "e/" + a.uscc + "/info"
	}
	// Checked now, before the CA sees the application; the claim in create is the authority.
	if err := s.keyCertifies(ctx, key.Id, subject); err != nil {
		return nil, err
	}
	if err := s.checkUsageOf(ctx, "key_id", key.Id, ca.UsageSigning, a.encKeyID != ""); err != nil {
		return nil, err
	}
	if a.encKeyID != "" {
		if err := s.checkEncryptionKey(ctx, caller, a, subject); err != nil {
			return nil, err
		}
	}
	id := store.NewestFirstID(s.deps.Clock.Now())
	app := &ca.Application{OrderID: id, UserID: caller.UserID, Name: user.Identity.GetName(), IDNumberMask: user.Identity.GetIdNumberMasked(),
		CSR: a.csr, PublicKey: pub, ValidityYears: int(a.years), Platforms: platforms, Regions: regions,
		AuthorisationSHA256: letter.Sha256, AuthorisationMethod: letter.Method, AuthorisationMediaType: letter.MediaType,
		Authorisation: letter.Content, AuthorisationSignature: letter.Signature}
	if a.uscc != "" {
		app.Name, app.IDNumberMask, app.USCC = a.subject, "", a.uscc
	}
	ref, err := c.Connector.Submit(ctx, app)
	if err != nil {
		return nil, &apierr.Error{Kind: apierr.Unavailable, Message: "the CA did not accept the application; retry later", Cause: err}
	}
	o := &storepb.Order{
		Id: id, UserId: caller.UserID, Kind: int32(a.kind), Status: statusInReview,
		CaId: c.Connector.ID(), CaRef: ref, KeyId: key.Id, Csr: a.csr, ValidityYears: a.years,
		Platforms: platforms, Regions: regions, CertKind: a.certKind, PriceFen: price,
		SubjectName: app.Name, SubjectIdMasked: app.IDNumberMask, Authorisation: letter,
		ReorderedFrom: a.reorderedFrom, RequestId: a.requestID, EnterpriseUscc: a.uscc,
		EncryptionKeyId: a.encKeyID, EncryptionCsr: a.encCSR,
	}
	if a.uscc != "" {
		o.SubjectIdMasked = a.uscc
	}
	return s.create(ctx, caller, o, "submitted", "", func(tx *store.Tx, o *storepb.Order) error {
		// A key certifies one subject: a person, or one enterprise. Otherwise a pair delegated
		// for one enterprise would sign for another, or as its administrator personally.
		for _, k := range []string{o.KeyId, o.EncryptionKeyId} {
			if k == "" {
				continue
			}
			if err := tx.Claim(indexKeySubject, k, subject); errors.Is(err, store.ErrTaken) {
				return errOtherSubject(k)
			} else if err != nil {
				return err
			}
		}
		if a.with != nil {
			return a.with(tx, o)
		}
		return nil
	})
}

func errOtherSubject(keyID string) error {
	return apierr.New(apierr.FailedPrecondition, "key %s already certifies another subject (a person or another enterprise); make a new key for this application", keyID)
}

// keyCertifies refuses a key that already certifies a subject other than subject.
func (s *Service) keyCertifies(ctx context.Context, keyID, subject string) error {
	var cur string
	err := s.deps.Store.Update(ctx, func(tx *store.Tx) error {
		var err error
		cur, err = tx.Lookup(indexKeySubject, keyID)
		if errors.Is(err, store.ErrNotFound) {
			return nil
		}
		return err
	})
	if err == nil && cur != "" && cur != subject {
		return errOtherSubject(keyID)
	}
	return err
}

// create stores a new order (or returns the one its request id already made).
// with, if not nil, writes more in the same transaction (an enterprise claim's data).
func (s *Service) create(ctx context.Context, caller authn.Caller, o *storepb.Order, first, note string, with func(*store.Tx, *storepb.Order) error) (*storepb.Order, error) {
	// The letter's content is stored apart; the order keeps what identifies it.
	var letter *storepb.Attachment
	if a := o.Authorisation; a != nil && len(a.Content) > 0 {
		letter = a
		o.Authorisation = &storepb.Attachment{Method: a.Method, FileName: a.FileName, MediaType: a.MediaType, Sha256: a.Sha256, Sm3: a.Sm3,
			SealId: a.SealId, SealName: a.SealName}
	}
	var out *storepb.Order
	err := s.deps.Store.Update(ctx, func(tx *store.Tx) error {
		out = nil
		if k, err := tx.Lookup(indexOrderRequest, caller.UserID+"."+o.RequestId); err == nil {
			out = new(storepb.Order)
			return tx.Get(k, out)
		} else if !errors.Is(err, store.ErrNotFound) {
			return err
		}
		now := tx.Now().UnixNano()
		o.CreatedUnixNano, o.UpdatedUnixNano = now, now
		o.Steps = []*storepb.ReviewStep{step(tx, "submitted", "user", "")}
		if first != "submitted" {
			o.Steps = append(o.Steps, step(tx, first, "hufu", note))
		}
		key := orderKey(o.UserId, o.Id)
		if err := tx.Claim(indexOrderRequest, caller.UserID+"."+o.RequestId, key); err != nil {
			return err
		}
		if err := tx.Claim(indexOrder, o.Id, key); err != nil {
			return err
		}
		if letter != nil {
			if err := letters.Put(tx, "letter/"+o.UserId+"/"+o.Id, letter); err != nil {
				return err
			}
		}
		if err := orders.Put(tx, orderID(o.UserId, o.Id), o); err != nil {
			return err
		}
		if with != nil {
			if err := with(tx, o); err != nil {
				return err
			}
		}
		if o.Status == statusAwaiting {
			if err := notify(tx, o.UserId, hufuv1.MessageKind_MESSAGE_KIND_PAYMENT_DUE, "订单待支付",
				fmt.Sprintf("订单 %s 待支付 %s 元", o.Id, yuan(o.PriceFen)), o.Id, ""); err != nil {
				return err
			}
		}
		out = o
		return tx.Audit(store.Event{Actor: caller.Actor(), Action: "order.create", Subject: key, Outcome: store.OutcomeOK,
			Details: map[string]string{"kind": hufuv1.OrderKind(o.Kind).String(), "ca": o.CaId, "key": o.KeyId,
				"validity_years": fmt.Sprint(o.ValidityYears), "platforms": strings.Join(o.Platforms, ","),
				"authorisation_sha256": o.GetAuthorisation().GetSha256(), "replaces": o.ReplacesSerial, "reordered_from": o.ReorderedFrom,
				"encryption_key": o.EncryptionKeyId}})
	})
	if err == nil {
		s.m.orders.WithLabelValues("submitted").Inc()
	}
	return out, err
}

func (s *Service) byRequest(ctx context.Context, caller authn.Caller, requestID string) (*storepb.Order, error) {
	var out *storepb.Order
	err := s.deps.Store.Update(ctx, func(tx *store.Tx) error {
		k, err := tx.Lookup(indexOrderRequest, caller.UserID+"."+requestID)
		if errors.Is(err, store.ErrNotFound) {
			return nil
		}
		if err != nil {
			return err
		}
		out = new(storepb.Order)
		return tx.Get(k, out)
	})
	return out, err
}

func yuan(fen int64) string { return fmt.Sprintf("%d.%02d", fen/100, fen%100) }

// platforms checks platform ids and returns them with their regions, both de-duplicated.
func (s *Service) platforms(field string, ids []string) ([]string, []string, error) {
	if len(ids) == 0 {
		return nil, nil, apierr.Invalidf(field, "choose at least one platform")
	}
	var ps, rs []string
	for _, id := range ids {
		p, ok := s.deps.Accounts.Platform(id)
		if !ok {
			return nil, nil, apierr.Invalidf(field, "no platform %q", id)
		}
		if !slices.Contains(ps, p.ID) {
			ps = append(ps, p.ID)
		}
		if !slices.Contains(rs, p.Region) {
			rs = append(rs, p.Region)
		}
	}
	return ps, rs, nil
}

// checkCSR checks that a CSR is signed by the key it names and that this is the split key:
// proof that the applicant can use the key.
func checkCSR(field string, der []byte, pub *ecdsa.PublicKey) error {
	if len(der) == 0 || len(der) > 8<<10 {
		return apierr.Invalidf(field, "a PKCS#10 request signed by the split key is required")
	}
	csr, err := smx509.ParseCertificateRequest(der)
	if err != nil {
		return apierr.Invalid(field, err)
	}
	if err := csr.CheckSignature(); err != nil {
		return apierr.Invalidf(field, "the request's signature does not verify")
	}
	got, ok := csr.PublicKey.(*ecdsa.PublicKey)
	if !ok || !got.Equal(pub) {
		return apierr.Invalidf(field, "the request is not for this key (it must be signed by the split key)")
	}
	return nil
}

// stamp puts the applicant's own seal or handwritten signature on an online letter (seed
// §1.5.1: 当有电子私章时选择证书即可盖章，没有私章时进行手写签名): the seal must be usable by
// the applicant and their own; a copy of its image is kept with the letter for review.
func (s *Service) stamp(ctx context.Context, caller authn.Caller, letter *storepb.Attachment, sealID string, enterprise bool) error {
	const field = "authorisation.online.seal_id"
	if enterprise {
		return apierr.Invalidf(field, "an enterprise's letter is stamped on paper and uploaded as a scan")
	}
	if s.seals == nil {
		return apierr.Invalidf(field, "seals are not served by this appliance")
	}
	seal, err := s.seals.SealUsable(ctx, caller, sealID)
	if err != nil {
		return err
	}
	if seal.OwnerUserId != caller.UserID {
		return apierr.Invalidf(field, "stamp the letter with your own seal or handwritten signature")
	}
	_, image, err := s.seals.Get(ctx, caller, sealID)
	if err != nil {
		return err
	}
	letter.SealId, letter.SealName, letter.SealImage = seal.Id, seal.Name, image
	return nil
}

// checkAuthorisation checks the authorisation letter and returns what is kept of it.
func checkAuthorisation(a *hufuv1.Authorisation, pub *ecdsa.PublicKey) (*storepb.Attachment, error) {
	switch {
	case a.GetScan() != nil:
		sc := a.GetScan()
		if len(sc.Content) == 0 || len(sc.Content) > maxLetterBytes {
			return nil, apierr.Invalidf("authorisation.scan.content", "the scan must be 1 byte to 2 MiB")
		}
		if !slices.Contains(letterTypes, sc.MediaType) {
			return nil, apierr.Invalidf("authorisation.scan.media_type", "want one of %v", letterTypes)
		}
		if _, err := text.Line("authorisation.scan.file_name", sc.FileName, 128, false); err != nil {
			return nil, err
		}
		return attachment("scan", sc.FileName, sc.MediaType, sc.Content, nil), nil
	case a.GetOnline() != nil:
		on := a.GetOnline()
		if len(on.Letter) == 0 || len(on.Letter) > 64<<10 {
			return nil, apierr.Invalidf("authorisation.online.letter", "the letter must be 1 byte to 64 KiB")
		}
		if !sm2.VerifyASN1WithSM2(pub, nil, on.Letter, on.Signature) {
			return nil, apierr.Invalidf("authorisation.online.signature", "the signature over the letter does not verify under the applicant's key")
		}
		return attachment("online", "", "text/plain", on.Letter, on.Signature), nil
	}
	return nil, apierr.Invalidf("authorisation", "upload the signed authorisation letter or sign it online")
}

func attachment(method, name, media string, content, sig []byte) *storepb.Attachment {
	h := sha256.Sum256(content)
	m := sm3.Sum(content)
	return &storepb.Attachment{Method: method, FileName: name, MediaType: media, Sha256: hex.EncodeToString(h[:]),
		Sm3: hex.EncodeToString(m[:]), Content: content, Signature: sig}
}

// ownedOrder reads one of the caller's orders.
func (s *Service) ownedOrder(ctx context.Context, caller authn.Caller, id string) (*storepb.Order, error) {
	if err := checkOrderID(id); err != nil {
		return nil, err
	}
	o, err := orders.Read(ctx, s.deps.Store, orderID(caller.UserID, id))
	if errors.Is(err, store.ErrNotFound) {
		return nil, apierr.New(apierr.NotFound, "no order %q", id)
	}
	return o, err
}

// GetOrder returns one of the caller's orders.
func (s *Service) GetOrder(ctx context.Context, caller authn.Caller, id string) (*storepb.Order, error) {
	return s.ownedOrder(ctx, caller, id)
}

// ListOrders lists the caller's orders, newest first, by status and keyword.
func (s *Service) ListOrders(ctx context.Context, caller authn.Caller, status hufuv1.OrderStatus, keyword string, size int, token string) ([]*storepb.Order, string, error) {
	keyword = strings.ToLower(strings.TrimSpace(keyword))
	return s.listOrders(ctx, "order/"+caller.UserID+"/", status, keyword, size, token)
}

func (s *Service) listOrders(ctx context.Context, prefix string, status hufuv1.OrderStatus, keyword string, size int, token string) ([]*storepb.Order, string, error) {
	if size < 0 || size > 100 {
		return nil, "", apierr.Invalidf("page_size", "want 0..100")
	}
	if size == 0 {
		size = 20
	}
	page, err := orders.List(ctx, s.deps.Store, prefix, store.ListOptions{Cursor: token, Limit: size}, func(_ string, o *storepb.Order) bool {
		if status != hufuv1.OrderStatus_ORDER_STATUS_UNSPECIFIED && apiStatus(o.Status) != status {
			return false
		}
		return keyword == "" || matches(o, keyword)
	})
	if errors.Is(err, store.ErrBadCursor) {
		return nil, "", apierr.Invalidf("page_token", "not a token from the previous page")
	}
	if err != nil {
		return nil, "", err
	}
	out := make([]*storepb.Order, len(page.Items))
	for i, it := range page.Items {
		out[i] = it.Value
	}
	return out, page.Next, nil
}

func matches(o *storepb.Order, kw string) bool {
	fields := append([]string{o.Id, o.CaId, o.CertKind, o.Serial, o.ReplacesSerial, o.SubjectName, o.KeyId, o.EncryptionSerial, o.EncryptionKeyId,
		apiStatus(o.Status).String()}, o.Platforms...)
	for _, f := range fields {
		if strings.Contains(strings.ToLower(f), kw) {
			return true
		}
	}
	return false
}

// transition changes an order found by id (any user's when user is "") inside one
// transaction: check returns the refusal for an illegal transition, change edits the order
// and may write more.
func (s *Service) transition(ctx context.Context, caller authn.Caller, user, id, action string,
	change func(tx *store.Tx, o *storepb.Order) error, details map[string]string) (*storepb.Order, error) {
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
		o := new(storepb.Order)
		if err := tx.Get(key, o); err != nil {
			return err
		}
		if user != "" && o.UserId != user {
			return apierr.New(apierr.NotFound, "no order %q", id)
		}
		if err := change(tx, o); err != nil {
			return err
		}
		o.UpdatedUnixNano = tx.Now().UnixNano()
		if err := orders.Put(tx, orderID(o.UserId, o.Id), o); err != nil {
			return err
		}
		out = o
		d := map[string]string{"status": hufuv1.OrderStatus(o.Status).String()}
		for k, v := range details {
			d[k] = v
		}
		return tx.Audit(store.Event{Actor: caller.Actor(), Action: action, Subject: key, Outcome: store.OutcomeOK, Details: d})
	})
	if err == nil {
		s.m.orders.WithLabelValues(strings.TrimPrefix(action, "order.")).Inc()
	}
	return out, err
}

func wrongState(o *storepb.Order, what string) error {
	return apierr.New(apierr.FailedPrecondition, "cannot %s an order that is %s", what, statusName(o.Status))
}

func statusName(st int32) string {
	switch st {
	case statusInReview:
		return "in review (审核中)"
	case statusAwaiting:
		return "awaiting payment (待支付)"
	case statusCompleted:
		return "completed (已完成)"
	case statusCancelled:
		return "cancelled (已取消)"
	case statusIssuing:
		return "paid, its certificate being issued (已支付，签发中)"
	}
	return "in an unknown state"
}

// checkReason checks a reason or note (multi-line free text).
func checkReason(field, reason string, required bool) (string, error) {
	return text.Lines(field, reason, maxReasonRunes, required)
}

// Cancel cancels one of the caller's orders in review or awaiting payment, with a reason.
func (s *Service) Cancel(ctx context.Context, caller authn.Caller, id, reason string) (*storepb.Order, error) {
	reason, err := checkReason("reason", reason, true)
	if err != nil {
		return nil, err
	}
	return s.transition(ctx, caller, caller.UserID, id, "order.cancel", func(tx *store.Tx, o *storepb.Order) error {
		if o.Status != statusInReview && o.Status != statusAwaiting {
			return wrongState(o, "cancel")
		}
		if isVerification(o) {
			return apierr.New(apierr.FailedPrecondition, "the enterprise is verified already: this order can only be paid (确认支付)")
		}
		o.Status, o.CancelReason, o.CancelledBy = statusCancelled, reason, "user"
		o.Steps = append(o.Steps, step(tx, "cancelled", "user", reason))
		return releaseFollow(tx, o)
	}, nil)
}

// Approve is the review desk's approval: the order awaits payment and the applicant is told.
func (s *Service) Approve(ctx context.Context, caller authn.Caller, id, note string) (*storepb.Order, error) {
	note, err := checkReason("note", note, false)
	if err != nil {
		return nil, err
	}
	return s.transition(ctx, caller, "", id, "order.approve", func(tx *store.Tx, o *storepb.Order) error {
		if o.Status != statusInReview {
			return wrongState(o, "approve")
		}
		o.Status = statusAwaiting
		o.Steps = append(o.Steps, step(tx, "approved", caller.Actor(), note))
		if err := notify(tx, o.UserId, hufuv1.MessageKind_MESSAGE_KIND_REVIEW_APPROVED, "CA审核通过",
			fmt.Sprintf("您的证书申请（订单 %s）已审核通过", o.Id), o.Id, ""); err != nil {
			return err
		}
		return notify(tx, o.UserId, hufuv1.MessageKind_MESSAGE_KIND_PAYMENT_DUE, "订单待支付",
			fmt.Sprintf("订单 %s 待支付 %s 元，支付后即可下载证书", o.Id, yuan(o.PriceFen)), o.Id, "")
	}, nil)
}

// Reject is the review desk's rejection with a reason shown to the applicant.
func (s *Service) Reject(ctx context.Context, caller authn.Caller, id, reason string) (*storepb.Order, error) {
	reason, err := checkReason("reason", reason, true)
	if err != nil {
		return nil, err
	}
	return s.transition(ctx, caller, "", id, "order.reject", func(tx *store.Tx, o *storepb.Order) error {
		if o.Status != statusInReview {
			return wrongState(o, "reject")
		}
		o.Status, o.CancelReason, o.CancelledBy = statusCancelled, reason, "reviewer"
		o.Steps = append(o.Steps, step(tx, "rejected", caller.Actor(), reason))
		return notify(tx, o.UserId, hufuv1.MessageKind_MESSAGE_KIND_REVIEW_REJECTED, "CA审核未通过",
			fmt.Sprintf("您的证书申请（订单 %s）未通过审核：%s", o.Id, reason), o.Id, "")
	}, nil)
}

// ListReviews lists orders of every user for the desk, by status (in review by default).
func (s *Service) ListReviews(ctx context.Context, status hufuv1.OrderStatus, size int, token string) ([]*storepb.Order, string, error) {
	if status == hufuv1.OrderStatus_ORDER_STATUS_UNSPECIFIED {
		status = hufuv1.OrderStatus_ORDER_STATUS_IN_REVIEW
	}
	return s.listOrders(ctx, "order/", status, "", size, token)
}

// ReorderDraft returns a cancelled order's application, pre-filled for a new one.
func (s *Service) ReorderDraft(ctx context.Context, caller authn.Caller, id string) (*hufuv1.ApplyCertificateRequest, error) {
	o, err := s.ownedOrder(ctx, caller, id)
	if err != nil {
		return nil, err
	}
	if o.Status != statusCancelled {
		return nil, wrongState(o, "re-order")
	}
	if o.Kind != int32(hufuv1.OrderKind_ORDER_KIND_NEW) {
		return nil, apierr.New(apierr.FailedPrecondition, "renewals and upgrades are ordered again from the certificate")
	}
	return &hufuv1.ApplyCertificateRequest{KeyId: o.KeyId, CaId: o.CaId, ValidityYears: o.ValidityYears,
		Platforms: o.Platforms, ReorderedFrom: o.Id, EncryptionKeyId: o.EncryptionKeyId}, nil
}

// OrderAttachment is a file of an application with its content.
type OrderAttachment struct {
	Ref  *storepb.AttachmentRef
	Blob *storepb.AttachmentBlob
}

// OrderAttachments returns the files linked to an order's application (an enterprise's
// business licence, the attachments its CA requires) for the review desk; the reading is
// audited, since the files are personal and business documents.
func (s *Service) OrderAttachments(ctx context.Context, caller authn.Caller, id string) ([]OrderAttachment, error) {
	if err := checkOrderID(id); err != nil {
		return nil, err
	}
	var key string
	err := s.deps.Store.Update(ctx, func(tx *store.Tx) error {
		var err error
		key, err = tx.Lookup(indexOrder, id)
		if errors.Is(err, store.ErrNotFound) {
			return apierr.New(apierr.NotFound, "no order %q", id)
		}
		return err
	})
	if err != nil {
		return nil, err
	}
	if s.deps.Attachments == nil {
		return nil, nil
	}
	refs, err := s.deps.Attachments.List(ctx, "order/"+id)
	if err != nil {
		return nil, err
	}
	out := make([]OrderAttachment, 0, len(refs))
	for _, ref := range refs {
		b, err := s.deps.Attachments.Get(ctx, ref.Id)
		if err != nil {
			return nil, err
		}
		out = append(out, OrderAttachment{Ref: ref, Blob: b})
	}
	if err := s.deps.Store.Append(ctx, store.Event{Actor: caller.Actor(), Action: "order.attachments.read", Subject: key,
		Outcome: store.OutcomeOK, Details: map[string]string{"files": fmt.Sprint(len(out))}}); err != nil {
		return nil, err // fail closed: no documents without the record of who read them
	}
	return out, nil
}

// Letter returns an order's authorisation letter for the review desk.
func (s *Service) Letter(ctx context.Context, id string) (*storepb.Attachment, error) {
	if err := checkOrderID(id); err != nil {
		return nil, err
	}
	var out *storepb.Attachment
	err := s.deps.Store.Update(ctx, func(tx *store.Tx) error {
		key, err := tx.Lookup(indexOrder, id)
		if errors.Is(err, store.ErrNotFound) {
			return apierr.New(apierr.NotFound, "no order %q", id)
		}
		if err != nil {
			return err
		}
		o := new(storepb.Order)
		if err := tx.Get(key, o); err != nil {
			return err
		}
		out, err = letters.Get(tx, "letter/"+o.UserId+"/"+o.Id)
		if errors.Is(err, store.ErrNotFound) {
			return apierr.New(apierr.NotFound, "order %q has no authorisation letter", id)
		}
		return err
	})
	return out, err
}
