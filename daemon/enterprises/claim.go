package enterprises

import (
	"context"
	"errors"
	"fmt"
	"regexp"
	"slices"
	"strings"
	"unicode"
	"unicode/utf8"

	"golang.org/x/text/width"

	hufuv1 "github.com/hufu-hsm/hufu/api/hufu/v1"
	"github.com/hufu-hsm/hufu/daemon/apierr"
	"github.com/hufu-hsm/hufu/daemon/authn"
	"github.com/hufu-hsm/hufu/daemon/certs"
	"github.com/hufu-hsm/hufu/daemon/identity"
	"github.com/hufu-hsm/hufu/daemon/text"
	"github.com/hufu-hsm/hufu/store"
	"github.com/hufu-hsm/hufu/store/storepb"
)

// NameKey normalises an enterprise name for search: full-width characters become
// half-width (ＡＢＣ（北京）→ ABC(北京)), letters upper case, and spaces of every width go.
func NameKey(name string) string {
	name = width.Fold.String(name)
	var b strings.Builder
	for _, r := range name {
		if unicode.IsSpace(r) {
			continue
		}
		b.WriteRune(unicode.ToUpper(r))
	}
	return b.String()
}

var otherIDRE = regexp.MustCompile(`^[A-Z0-9]{5,20}$`)

func legalRepAD(uscc, what string) []byte {
	return []byte("hufu/enterprise/v1 legal-rep-" + what + " " + uscc)
}

// checkDetails validates a claim's enterprise data and returns the record it makes, with the
// legal representative's ID number and phone wrapped in the HSM.
func (s *Service) checkDetails(ctx context.Context, d *hufuv1.EnterpriseDetails) (*storepb.Enterprise, error) {
	const f = "enterprise."
	if d == nil {
		return nil, apierr.Invalidf("enterprise", "the enterprise's details are required")
	}
	uscc, err := checkUSCC(f+"uscc", d.GetUscc())
	if err != nil {
		return nil, err
	}
	name, err := text.Line(f+"name", d.GetName(), 100, true)
	if err != nil {
		return nil, err
	}
	if utf8.RuneCountInString(name) < 2 {
		return nil, apierr.Invalidf(f+"name", "the enterprise's registered name: 2 to 100 characters")
	}
	if err := identity.CheckName(d.GetLegalRepName()); err != nil {
		return nil, apierr.Invalid(f+"legal_rep_name", err)
	}
	idNumber := strings.ToUpper(strings.TrimSpace(d.GetLegalRepIdNumber()))
	switch d.GetLegalRepIdType() {
	case hufuv1.IdType_ID_TYPE_RESIDENT_ID:
		if err := identity.CheckResidentID(idNumber, s.deps.Clock.Now()); err != nil {
			return nil, apierr.Invalid(f+"legal_rep_id_number", err)
		}
	case hufuv1.IdType_ID_TYPE_PASSPORT, hufuv1.IdType_ID_TYPE_HK_MACAO_PERMIT, hufuv1.IdType_ID_TYPE_TAIWAN_PERMIT:
		if !otherIDRE.MatchString(idNumber) {
			return nil, apierr.Invalidf(f+"legal_rep_id_number", "5 to 20 letters and digits")
		}
	default:
		return nil, apierr.Invalidf(f+"legal_rep_id_type", "choose the legal representative's ID type")
	}
	if err := identity.CheckMobile(d.GetLegalRepPhone()); err != nil {
		return nil, apierr.Invalid(f+"legal_rep_phone", err)
	}
	var validUntil int64
	if t := d.GetLicenceValidUntil(); t != nil {
		if err := t.CheckValid(); err != nil {
			return nil, apierr.Invalid(f+"licence_valid_until", err)
		}
		if !t.AsTime().After(s.deps.Clock.Now()) {
			return nil, apierr.Invalidf(f+"licence_valid_until", "the business licence has expired")
		}
		validUntil = t.AsTime().UnixNano()
	}
	if len(d.GetLicence()) == 0 {
		return nil, apierr.Invalidf(f+"licence", "upload the business licence (营业执照)")
	}
	if len(d.GetLicence()) > s.opts.MaxLicenceBytes {
		return nil, apierr.Invalidf(f+"licence", "at most %d bytes", s.opts.MaxLicenceBytes)
	}
	idWrapped, err := s.deps.Keyring.Wrap(ctx, []byte(idNumber), legalRepAD(uscc, "id"))
	if err != nil {
		return nil, hsmError(err)
	}
	phoneWrapped, err := s.deps.Keyring.Wrap(ctx, []byte(d.GetLegalRepPhone()), legalRepAD(uscc, "phone"))
	if err != nil {
		return nil, hsmError(err)
	}
	return &storepb.Enterprise{
		Uscc: uscc, Name: name, NameKey: NameKey(name), State: stateActive, LicenceValidUntilUnixNano: validUntil,
		LegalRep: &storepb.LegalRepresentative{
			Name: d.GetLegalRepName(), IdType: int32(d.GetLegalRepIdType()), IdNumberWrapped: idWrapped,
			IdNumberMasked: identity.MaskID(idNumber), PhoneWrapped: phoneWrapped, PhoneMasked: identity.MaskPhone(d.GetLegalRepPhone()),
		},
	}, nil
}

func hsmError(err error) error {
	return &apierr.Error{Kind: apierr.Unavailable, Message: "HSM unavailable; retry later", Cause: err}
}

// ensureCurrent rewraps the legal representative's blobs if a KEK rotation began since they
// were wrapped (inside the storing transaction, as keys does for shares).
func (s *Service) ensureCurrent(ctx context.Context, e *storepb.Enterprise) error {
	var err error
	if e.LegalRep.IdNumberWrapped, err = s.deps.Keyring.EnsureCurrent(ctx, e.LegalRep.IdNumberWrapped, legalRepAD(e.Uscc, "id")); err != nil {
		return hsmError(err)
	}
	if e.LegalRep.PhoneWrapped, err = s.deps.Keyring.EnsureCurrent(ctx, e.LegalRep.PhoneWrapped, legalRepAD(e.Uscc, "phone")); err != nil {
		return hsmError(err)
	}
	return nil
}

// SearchResult is one enterprise found by Search.
type SearchResult struct {
	USCC, Name string
	Registered bool
	NextSteps  []hufuv1.NextStep
}

// Search finds enterprises by exact USCC or by normalised name (§1.6.1).
func (s *Service) Search(ctx context.Context, query string) ([]SearchResult, error) {
	query = strings.TrimSpace(query)
	if query == "" || utf8.RuneCountInString(query) > 100 {
		return nil, apierr.Invalidf("query", "an enterprise name or its 18-character USCC")
	}
	registered := []hufuv1.NextStep{hufuv1.NextStep_NEXT_STEP_JOIN, hufuv1.NextStep_NEXT_STEP_CORPORATE_TRANSFER}
	if code := identity.NormaliseUSCC(query); len(code) == 18 && identity.CheckUSCC(code) == nil {
		e, err := enterprises.Read(ctx, s.deps.Store, infoID(code))
		if errors.Is(err, store.ErrNotFound) {
			return []SearchResult{{USCC: code, NextSteps: []hufuv1.NextStep{hufuv1.NextStep_NEXT_STEP_CLAIM, hufuv1.NextStep_NEXT_STEP_CORPORATE_TRANSFER}}}, nil
		}
		if err != nil {
			return nil, err
		}
		return []SearchResult{{USCC: e.Uscc, Name: e.Name, Registered: true, NextSteps: registered}}, nil
	}
	keys, _, err := s.deps.Store.ListIndex(ctx, indexName, NameKey(query), store.ListOptions{Limit: 20})
	if err != nil {
		return nil, err
	}
	var out []SearchResult
	for _, k := range keys {
		e, err := enterprises.Read(ctx, s.deps.Store, enterprises.ID(k))
		if err != nil {
			return nil, err
		}
		out = append(out, SearchResult{USCC: e.Uscc, Name: e.Name, Registered: true, NextSteps: registered})
	}
	return out, nil
}

// Claim applies for the enterprise certificate of an enterprise that has no administrator
// (or whose administrator is the caller, verified by corporate transfer). The order goes
// through the review desk; its payment completes the claim (EnterpriseCertificateIssued).
func (s *Service) Claim(ctx context.Context, caller authn.Caller, req *hufuv1.ClaimEnterpriseRequest) (*storepb.Order, error) {
	e, err := s.checkDetails(ctx, req.GetEnterprise())
	if err != nil {
		return nil, err
	}
	if req.GetJoin() {
		err = s.joinableByCertificate(ctx, caller, e)
	} else {
		err = s.claimable(ctx, caller, e.Uscc)
	}
	if err != nil {
		return nil, err
	}
	if err := s.checkAttachments(req.GetCaId(), req.GetAttachments()); err != nil {
		return nil, err
	}
	// The files are checked now, before the application reaches the CA (Store checks
	// again when it stores them).
	if _, err := s.deps.Attachments.Check("enterprise.licence", req.GetEnterprise().GetLicence(), req.GetEnterprise().GetLicenceFileName(), ""); err != nil {
		return nil, err
	}
	for i, a := range req.GetAttachments() {
		if _, err := s.deps.Attachments.Check(fmt.Sprintf("attachments[%d].content", i), a.GetContent(), a.GetFileName(), ""); err != nil {
			return nil, err
		}
	}
	key, err := s.deps.Keys.OwnedKey(ctx, caller, req.GetKeyId())
	if err != nil {
		return nil, err
	}
	e.PublicKey = key.PublicKey
	o, err := s.deps.Certs.ApplyEnterprise(ctx, caller, certs.EnterpriseApplication{
		RequestID: req.GetRequestId(), KeyID: req.GetKeyId(), CAID: req.GetCaId(), ValidityYears: req.GetValidityYears(),
		Platforms: req.GetPlatforms(), Regions: req.GetRoamingRegions(), CSR: req.GetCsr(), Authorisation: req.GetAuthorisation(),
		EncryptionKeyID: req.GetEncryptionKeyId(), EncryptionCSR: req.GetEncryptionCsr(),
		USCC: e.Uscc, Name: e.Name,
		With: func(tx *store.Tx, o *storepb.Order) error {
			if err := s.ensureCurrent(ctx, e); err != nil {
				return err
			}
			id, err := s.deps.Attachments.Store(tx, "order/"+o.Id, "enterprise.licence", req.GetEnterprise().GetLicence(),
				req.GetEnterprise().GetLicenceFileName())
			if err != nil {
				return err
			}
			e.LicenceAttachment, e.Platforms = id, o.Platforms
			for _, a := range req.GetAttachments() {
				if _, err := s.deps.Attachments.Store(tx, "order/"+o.Id, "attachments["+a.GetName()+"]", a.GetContent(), a.GetFileName()); err != nil {
					return err
				}
			}
			if err := claims.Put(tx, claimID(e.Uscc, o.Id), &storepb.Claim{OrderId: o.Id, UserId: caller.UserID, Enterprise: e,
				KeyId: o.KeyId, CreatedUnixNano: tx.Now().UnixNano(), Join: req.GetJoin()}); err != nil {
				return err
			}
			if err := fileSealed(tx, claimID(e.Uscc, o.Id)); err != nil {
				return err
			}
			return audit(tx, caller, "claim.submit", e.Uscc, map[string]string{"order": o.Id, "key": o.KeyId, "encryption_key": o.EncryptionKeyId, "licence_sha256": id})
		},
	})
	if err == nil {
		s.m.changes.WithLabelValues("claim.submit").Inc()
	}
	return o, err
}

// checkAttachments checks that a claim carries exactly the attachments its CA requires
// beyond the letter (configuration), each once. Their content is checked when stored.
func (s *Service) checkAttachments(caID string, got []*hufuv1.NamedAttachment) error {
	want := s.opts.RequiredAttachments[caID]
	seen := map[string]bool{}
	for i, a := range got {
		switch {
		case !slices.Contains(want, a.GetName()):
			return apierr.Invalidf(fmt.Sprintf("attachments[%d].name", i), "the CA requires no attachment of that name (it requires %d: see GetLetterTemplate)", len(want))
		case seen[a.GetName()]:
			return apierr.Invalidf(fmt.Sprintf("attachments[%d].name", i), "given twice")
		}
		seen[a.GetName()] = true
	}
	for _, name := range want {
		if !seen[name] {
			return apierr.Invalidf("attachments", "the CA requires the attachment %q", name)
		}
	}
	return nil
}

// joinableByCertificate checks a purchase of a certificate to join (购买证书加入企业,
// §1.6.3.5): the enterprise is registered under this name, and the buyer not yet a member.
func (s *Service) joinableByCertificate(ctx context.Context, caller authn.Caller, e *storepb.Enterprise) error {
	cur, err := enterprises.Read(ctx, s.deps.Store, infoID(e.Uscc))
	if errors.Is(err, store.ErrNotFound) || (err == nil && cur.AdminUserId == "") {
		return apierr.New(apierr.FailedPrecondition, "the enterprise is not registered: claim it instead")
	}
	if err != nil {
		return err
	}
	if cur.NameKey != e.NameKey {
		return apierr.Invalidf("enterprise.name", "not the registered name of the enterprise with this USCC")
	}
	if _, err := members.Read(ctx, s.deps.Store, memberID(e.Uscc, caller.UserID)); err == nil {
		return apierr.New(apierr.FailedPrecondition, "you already belong to this enterprise")
	} else if !errors.Is(err, store.ErrNotFound) {
		return err
	}
	return nil
}

// claimable refuses a claim of an enterprise that already has another administrator, or
// that the caller has claimed already.
func (s *Service) claimable(ctx context.Context, caller authn.Caller, uscc string) error {
	cur, err := enterprises.Read(ctx, s.deps.Store, infoID(uscc))
	if errors.Is(err, store.ErrNotFound) {
		return nil
	}
	if err != nil {
		return err
	}
	return claimRefusal(cur, caller.UserID)
}

func claimRefusal(cur *storepb.Enterprise, user string) error {
	switch {
	case cur.AdminUserId != "" && cur.AdminUserId != user:
		return apierr.New(apierr.FailedPrecondition,
			"the enterprise already has an administrator (each enterprise has one): apply to join it (ApplyToJoin) or verify by corporate transfer")
	case cur.AdminUserId == user && cur.AdminClaimed:
		return apierr.New(apierr.FailedPrecondition, "you have already claimed this enterprise")
	}
	return nil
}

// ClaimPayable refuses the payment of a claim whose enterprise has meanwhile got another
// administrator, before anything is charged or issued (certs.Enterprises).
func (s *Service) ClaimPayable(ctx context.Context, o *storepb.Order) error {
	cl, err := claims.Read(ctx, s.deps.Store, claimID(o.EnterpriseUscc, o.Id))
	if errors.Is(err, store.ErrNotFound) {
		return apierr.New(apierr.FailedPrecondition, "the claim of this order is gone; cancel the order and claim again")
	}
	if err != nil {
		return err
	}
	cur, err := enterprises.Read(ctx, s.deps.Store, infoID(o.EnterpriseUscc))
	switch {
	case errors.Is(err, store.ErrNotFound) && cl.Join:
		return apierr.New(apierr.FailedPrecondition, "the enterprise is not registered: claim it instead")
	case errors.Is(err, store.ErrNotFound) || cl.Join:
		return nil
	case err != nil:
		return err
	}
	return claimRefusal(cur, o.UserId)
}

// EnterpriseCertificateIssued completes a claim, or moves the enterprise to a renewed or
// upgraded certificate, inside the payment transaction (certs.Enterprises).
func (s *Service) EnterpriseCertificateIssued(tx *store.Tx, o *storepb.Order, c *storepb.Certificate) error {
	e, err := enterprises.Get(tx, infoID(o.EnterpriseUscc))
	exists := err == nil
	if err != nil && !errors.Is(err, store.ErrNotFound) {
		return err
	}
	if o.Kind != int32(hufuv1.OrderKind_ORDER_KIND_ENTERPRISE_CLAIM) {
		if !exists {
			return apierr.New(apierr.FailedPrecondition, "the enterprise is no longer registered")
		}
		if e.KeyId != o.KeyId {
			// A staff member's own enterprise certificate (bought to join): nothing of the
			// enterprise record changes.
			return tx.Audit(store.Event{Actor: "user:" + o.UserId, Action: "enterprise.certificate", Subject: key(infoID(e.Uscc)),
				Outcome: store.OutcomeOK, Details: map[string]string{"serial": c.Serial, "replaces": o.ReplacesSerial, "holder": o.UserId}})
		}
		e.CertSerial, e.UpdatedUnixNano = c.Serial, tx.Now().UnixNano()
		if err := enterprises.Put(tx, infoID(e.Uscc), e); err != nil {
			return err
		}
		return tx.Audit(store.Event{Actor: "user:" + o.UserId, Action: "enterprise.certificate", Subject: key(infoID(e.Uscc)),
			Outcome: store.OutcomeOK, Details: map[string]string{"serial": c.Serial, "replaces": o.ReplacesSerial}})
	}
	cl, err := claims.Get(tx, claimID(o.EnterpriseUscc, o.Id))
	if errors.Is(err, store.ErrNotFound) {
		return apierr.New(apierr.FailedPrecondition, "the claim of this order is gone; cancel the order and claim again")
	}
	if err != nil {
		return err
	}
	if cl.Join {
		return s.joinedByCertificate(tx, o, c, e, exists)
	}
	if exists {
		if err := claimRefusal(e, o.UserId); err != nil {
			return err
		}
		// A transfer-verified administrator claims: keep the record, take the claim's data.
		cl.Enterprise.CreatedUnixNano, cl.Enterprise.AdminVia = e.CreatedUnixNano, e.AdminVia
		if err := tx.RemoveIndex(indexName, e.NameKey, key(infoID(e.Uscc))); err != nil {
			return err
		}
	} else {
		cl.Enterprise.CreatedUnixNano, cl.Enterprise.AdminVia = tx.Now().UnixNano(), "claim"
	}
	e = cl.Enterprise
	e.AdminUserId, e.AdminClaimed, e.KeyId, e.CertSerial, e.UpdatedUnixNano = o.UserId, true, o.KeyId, c.Serial, tx.Now().UnixNano()
	// The pair's encryption key ("" for an order made before pairs): bid files are encrypted
	// to its certificate, and delegation covers it with the signing key.
	e.EncryptionKeyId = o.EncryptionKeyId
	if err := enterprises.Put(tx, infoID(e.Uscc), e); err != nil {
		return err
	}
	if err := tx.AddIndex(indexName, e.NameKey, key(infoID(e.Uscc))); err != nil {
		return err
	}
	if err := fileSealed(tx, infoID(e.Uscc)); err != nil {
		return err
	}
	m, err := members.Get(tx, memberID(e.Uscc, o.UserId))
	if errors.Is(err, store.ErrNotFound) {
		m = &storepb.Member{Uscc: e.Uscc, UserId: o.UserId, Via: "claim", JoinedUnixNano: tx.Now().UnixNano()}
	} else if err != nil {
		return err
	}
	m.Role = roleAdmin
	if err := addMember(tx, m); err != nil {
		return err
	}
	if err := claims.Delete(tx, claimID(e.Uscc, o.Id)); err != nil {
		return err
	}
	if err := unfileSealed(tx, claimID(e.Uscc, o.Id)); err != nil {
		return err
	}
	if err := notice(tx, o.UserId, "企业认领成功", fmt.Sprintf("您已成为企业 %s 的管理员，企业证书 %s 可以下载", e.Name, c.Serial)); err != nil {
		return err
	}
	return tx.Audit(store.Event{Actor: "user:" + o.UserId, Action: "enterprise.claim", Subject: key(infoID(e.Uscc)), Outcome: store.OutcomeOK,
		Details: map[string]string{"order": o.Id, "key": o.KeyId, "encryption_key": o.EncryptionKeyId, "serial": c.Serial,
			"encryption_serial": c.PairSerial, "admin": o.UserId}})
}

var _ certs.Enterprises = (*Service)(nil)

// joinedByCertificate completes the purchase of a certificate to join (§1.6.3.5) inside
// the payment transaction: the buyer becomes staff and holds the certificate on their key.
func (s *Service) joinedByCertificate(tx *store.Tx, o *storepb.Order, c *storepb.Certificate, e *storepb.Enterprise, exists bool) error {
	if !exists || e.AdminUserId == "" {
		return apierr.New(apierr.FailedPrecondition, "the enterprise is not registered: claim it instead")
	}
	if _, err := members.Get(tx, memberID(e.Uscc, o.UserId)); errors.Is(err, store.ErrNotFound) {
		if err := addMember(tx, &storepb.Member{Uscc: e.Uscc, UserId: o.UserId, Role: roleStaff, Via: "certificate", JoinedUnixNano: tx.Now().UnixNano()}); err != nil {
			return err
		}
	} else if err != nil {
		return err
	}
	if err := claims.Delete(tx, claimID(e.Uscc, o.Id)); err != nil {
		return err
	}
	if err := unfileSealed(tx, claimID(e.Uscc, o.Id)); err != nil {
		return err
	}
	for user, text := range map[string]string{
		o.UserId:      fmt.Sprintf("您已购买企业 %s 的证书并加入企业，成为办事人员", e.Name),
		e.AdminUserId: fmt.Sprintf("有人购买企业 %s 的证书 %s 并加入了企业", e.Name, c.Serial),
	} {
		if err := notice(tx, user, "购买证书加入企业", text); err != nil {
			return err
		}
	}
	return tx.Audit(store.Event{Actor: "user:" + o.UserId, Action: "enterprise.join.certificate", Subject: key(infoID(e.Uscc)),
		Outcome: store.OutcomeOK, Details: map[string]string{"order": o.Id, "key": o.KeyId, "serial": c.Serial, "member": o.UserId}})
}
