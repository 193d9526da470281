// Package seals keeps the seals of enterprises and persons (我的印章, seed manual §1.8.4)
// and the handwritten signature a person signs with (§1.5.1): a named image of a type, the
// certificate it signs with, whether it is active, and — for an enterprise's seal — the
// members it is authorised to.
//
// # Who may do what
//
// An enterprise's administrator creates its seals, disables and enables them, and
// authorises them to members and withdraws that. Staff (办事人员) see and use only the
// seals authorised to them. Anybody else is answered NotFound, in the same words as for an
// enterprise or a seal that does not exist, so an outsider never learns what seals an
// enterprise has. A person's own seals (个人章, 手写签名) are managed and used by that
// person alone. Roles come from the enterprise domain through the Enterprises interface at
// the time of each call; a member who leaves loses every authorisation in the leaving
// transaction (RevokeMember), and use (SealUsable) checks the role again, so an
// authorisation racing with the leaving is never usable.
//
// # Records
//
//	c/seal/<owner>/<seal id>          storepb.Seal; owner is e:<uscc> or u:<user id>
//	c/seal-image/<seal id>            storepb.SealImage: the re-encoded PNG
//	c/seal-grant/e:<uscc>/<user id>   storepb.SealGrants: the seals authorised to a member
//	x/seal/<seal id>                  -> the seal's key (unique)
//	x/seal-request/<user>.<request>   -> the seal a CreateSeal request id made (unique)
//
// Every change writes its audit record ("seal.create", "seal.state", "seal.authorise",
// "seal.unauthorise") in the same transaction; audit records name seals, enterprises
// (USCC), members (user ids), types and image hashes, never seal names (a personal seal is
// named after its holder).
package seals

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"regexp"
	"slices"
	"strings"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	hufuv1 "github.com/hufu-hsm/hufu/api/hufu/v1"
	"github.com/hufu-hsm/hufu/daemon/apierr"
	"github.com/hufu-hsm/hufu/daemon/authn"
	"github.com/hufu-hsm/hufu/daemon/identity"
	"github.com/hufu-hsm/hufu/daemon/text"
	"github.com/hufu-hsm/hufu/store"
	"github.com/hufu-hsm/hufu/store/storepb"
)

// Role is a user's role in an enterprise.
type Role int

// Roles.
const (
	RoleNone  Role = iota // not a member
	RoleStaff             // 办事人员
	RoleAdmin             // 管理员
)

// Enterprises is what seals needs of the enterprise domain.
type Enterprises interface {
	// RoleIn returns the caller's role in the enterprise (RoleNone if not a member); an
	// *apierr.Error NotFound if there is no such enterprise.
	RoleIn(ctx context.Context, enterpriseID, userID string) (Role, error)
}

// Certificates is what seals needs of the certificate domain.
type Certificates interface {
	// CertificateOwner returns the user id and enterprise id (may be "") owning an active
	// certificate; NotFound otherwise.
	CertificateOwner(ctx context.Context, serial string) (userID, enterpriseID string, err error)
}

// Options are the seal policies.
type Options struct {
	// MaxSealsPerOwner bounds the seals of one enterprise or person (default 100).
	MaxSealsPerOwner int
	// MaxAuthorised bounds the members one seal is authorised to (default 200).
	MaxAuthorised int
}

// Deps are the collaborators of the service.
type Deps struct {
	Store        *store.Store
	Enterprises  Enterprises
	Certificates Certificates
	Clock        interface{ Now() time.Time }
	// Registry receives the service's metrics; none are exported if nil.
	Registry prometheus.Registerer
}

// Service implements SealService.
type Service struct {
	opts Options
	deps Deps
	m    *metrics
}

// New returns the service.
func New(opts Options, deps Deps) (*Service, error) {
	if deps.Store == nil || deps.Enterprises == nil || deps.Certificates == nil || deps.Clock == nil {
		return nil, errors.New("seals: missing dependency")
	}
	if opts.MaxSealsPerOwner <= 0 {
		opts.MaxSealsPerOwner = 100
	}
	if opts.MaxSealsPerOwner > store.MaxListLimit {
		return nil, fmt.Errorf("seals: MaxSealsPerOwner above %d", store.MaxListLimit)
	}
	if opts.MaxAuthorised <= 0 {
		opts.MaxAuthorised = 200
	}
	return &Service{opts: opts, deps: deps, m: newMetrics(deps.Registry)}, nil
}

var (
	seals  = store.NewCollection(store.KindCert, func() *storepb.Seal { return new(storepb.Seal) })
	images = store.NewCollection(store.KindCert, func() *storepb.SealImage { return new(storepb.SealImage) })
	grants = store.NewCollection(store.KindCert, func() *storepb.SealGrants { return new(storepb.SealGrants) })
)

const (
	indexSeal        = "seal"
	indexSealRequest = "seal-request"

	stateActive   = int32(hufuv1.SealState_SEAL_STATE_ACTIVE)
	stateDisabled = int32(hufuv1.SealState_SEAL_STATE_DISABLED)

	maxNameRunes = 30
)

func owner(s *storepb.Seal) string {
	if s.EnterpriseUscc != "" {
		return "e:" + s.EnterpriseUscc
	}
	return "u:" + s.OwnerUserId
}
func sealID(s *storepb.Seal) string    { return "seal/" + owner(s) + "/" + s.Id }
func sealKey(s *storepb.Seal) string   { return string(store.KindCert) + "/" + sealID(s) }
func imageID(id string) string         { return "seal-image/" + id }
func grantID(uscc, user string) string { return "seal-grant/e:" + uscc + "/" + user }

var (
	sealIDRE = regexp.MustCompile(`^[0-9a-f]{32}$`)
	userIDRE = regexp.MustCompile(`^[A-Za-z0-9._-]{1,64}$`)
)

var enterpriseTypes = []hufuv1.SealType{hufuv1.SealType_SEAL_TYPE_OFFICIAL, hufuv1.SealType_SEAL_TYPE_CONTRACT,
	hufuv1.SealType_SEAL_TYPE_LEGAL_REPRESENTATIVE, hufuv1.SealType_SEAL_TYPE_FINANCE}
var personalTypes = []hufuv1.SealType{hufuv1.SealType_SEAL_TYPE_PERSONAL, hufuv1.SealType_SEAL_TYPE_HANDWRITTEN_SIGNATURE}

func noSeal(id string) error { return apierr.New(apierr.NotFound, "no seal %q", id) }

// noEnterprise answers both "no such enterprise" and "not a member", alike.
func noEnterprise(uscc string) error {
	return apierr.New(apierr.NotFound, "no enterprise %q among yours", uscc)
}

// access is what a caller may do with a seal.
type access int

const (
	accessNone   access = iota // may not know it exists
	accessUse                  // staff it is authorised to: see and use
	accessManage               // the enterprise's administrator, or the person owning it
)

// role asks the enterprise domain, folding "no such enterprise" into RoleNone.
func (s *Service) role(ctx context.Context, uscc, user string) (Role, error) {
	r, err := s.deps.Enterprises.RoleIn(ctx, uscc, user)
	var ae *apierr.Error
	if errors.As(err, &ae) && ae.Kind == apierr.NotFound {
		return RoleNone, nil
	}
	return r, err
}

func (s *Service) access(ctx context.Context, caller authn.Caller, seal *storepb.Seal) (access, error) {
	if caller.UserID == "" {
		return accessNone, nil
	}
	if seal.EnterpriseUscc == "" {
		if seal.OwnerUserId == caller.UserID {
			return accessManage, nil
		}
		return accessNone, nil
	}
	r, err := s.role(ctx, seal.EnterpriseUscc, caller.UserID)
	switch {
	case err != nil:
		return accessNone, err
	case r == RoleAdmin:
		return accessManage, nil
	case r == RoleStaff && slices.Contains(seal.AuthorisedUserIds, caller.UserID):
		return accessUse, nil
	}
	return accessNone, nil
}

// view is what the caller is shown of a seal: staff do not see whom else it is authorised
// to.
func view(seal *storepb.Seal, a access) *storepb.Seal {
	if a != accessManage {
		seal.AuthorisedUserIds = nil
	}
	return seal
}

// read returns a seal by id from the committed state.
func (s *Service) read(ctx context.Context, id string) (*storepb.Seal, error) {
	if !sealIDRE.MatchString(id) {
		return nil, noSeal(id)
	}
	k, err := s.deps.Store.Lookup(ctx, indexSeal, id)
	if errors.Is(err, store.ErrNotFound) {
		return nil, noSeal(id)
	}
	if err != nil {
		return nil, err
	}
	out := new(storepb.Seal)
	if err := s.deps.Store.Get(ctx, k, out); err != nil {
		return nil, err
	}
	return out, nil
}

// visible returns a seal the caller may see, with the caller's access; NotFound otherwise.
func (s *Service) visible(ctx context.Context, caller authn.Caller, id string) (*storepb.Seal, access, error) {
	seal, err := s.read(ctx, id)
	if err != nil {
		return nil, accessNone, err
	}
	a, err := s.access(ctx, caller, seal)
	if err != nil {
		return nil, accessNone, err
	}
	if a == accessNone {
		return nil, accessNone, noSeal(id)
	}
	return seal, a, nil
}

// managed returns a seal the caller manages: NotFound if they may not see it,
// PermissionDenied if they only use it.
func (s *Service) managed(ctx context.Context, caller authn.Caller, id string) (*storepb.Seal, error) {
	seal, a, err := s.visible(ctx, caller, id)
	if err != nil {
		return nil, err
	}
	if a != accessManage {
		return nil, apierr.New(apierr.PermissionDenied, "only the enterprise's administrator manages its seals")
	}
	return seal, nil
}

// Create stores a new active seal (request_id makes it idempotent).
func (s *Service) Create(ctx context.Context, caller authn.Caller, req *hufuv1.CreateSealRequest) (*storepb.Seal, error) {
	if err := apierr.CheckRequestID("request_id", req.GetRequestId()); err != nil {
		return nil, err
	}
	if existing, err := s.byRequest(ctx, caller, req.GetRequestId()); err != nil || existing != nil {
		return existing, err
	}
	seal := &storepb.Seal{OwnerUserId: caller.UserID, Type: int32(req.GetType()), State: stateActive, CreatedBy: caller.UserID,
		RequestId: req.GetRequestId()}
	types := personalTypes
	if uscc := req.GetEnterpriseUscc(); uscc != "" {
		if err := identity.CheckUSCC(uscc); err != nil {
			return nil, apierr.Invalid("enterprise_uscc", err)
		}
		r, err := s.role(ctx, uscc, caller.UserID)
		switch {
		case err != nil:
			return nil, err
		case r == RoleNone:
			return nil, noEnterprise(uscc)
		case r != RoleAdmin:
			return nil, apierr.New(apierr.PermissionDenied, "only the enterprise's administrator creates its seals")
		}
		seal.EnterpriseUscc, seal.OwnerUserId, types = uscc, "", enterpriseTypes
	}
	if !slices.Contains(types, req.GetType()) {
		return nil, apierr.Invalidf("type", "a seal of %s is one of %v", ownerWord(seal), types)
	}
	name, err := checkName(req.GetName())
	if err != nil {
		return nil, err
	}
	seal.Name = name
	img, err := CheckImage(req.GetImage())
	if err != nil {
		return nil, err
	}
	h := sha256.Sum256(img.PNG)
	seal.ImageSha256, seal.ImageWidth, seal.ImageHeight = hex.EncodeToString(h[:]), uint32(img.Width), uint32(img.Height)
	if serial := req.GetCertificateSerial(); serial != "" {
		if err := s.checkCertificate(ctx, seal, serial); err != nil {
			return nil, err
		}
		seal.CertificateSerial = serial
	}
	// A soft bound (concurrent creations may pass it together): it keeps listings small.
	page, err := seals.List(ctx, s.deps.Store, "seal/"+owner(seal)+"/", store.ListOptions{Limit: s.opts.MaxSealsPerOwner}, nil)
	if err != nil {
		return nil, err
	}
	if len(page.Items) >= s.opts.MaxSealsPerOwner {
		return nil, apierr.New(apierr.FailedPrecondition, "%s has %d seals, the most allowed", ownerWord(seal), s.opts.MaxSealsPerOwner)
	}
	seal.Id = store.RandomID(16)
	var out *storepb.Seal
	err = s.deps.Store.Update(ctx, func(tx *store.Tx) error {
		out = nil
		reqKey := caller.UserID + "." + req.GetRequestId()
		if k, err := tx.Lookup(indexSealRequest, reqKey); err == nil {
			out = new(storepb.Seal)
			return tx.Get(k, out)
		} else if !errors.Is(err, store.ErrNotFound) {
			return err
		}
		now := tx.Now().UnixNano()
		seal.CreatedUnixNano, seal.UpdatedUnixNano = now, now
		k := sealKey(seal)
		if err := tx.Claim(indexSealRequest, reqKey, k); err != nil {
			return err
		}
		if err := tx.Claim(indexSeal, seal.Id, k); err != nil {
			return err
		}
		if err := images.Put(tx, imageID(seal.Id), &storepb.SealImage{Png: img.PNG}); err != nil {
			return err
		}
		if err := seals.Put(tx, sealID(seal), seal); err != nil {
			return err
		}
		out = seal
		return audit(tx, caller, "create", seal, map[string]string{"type": hufuv1.SealType(seal.Type).String(),
			"image_sha256": seal.ImageSha256, "certificate": seal.CertificateSerial})
	})
	if err != nil {
		return nil, err
	}
	if out == seal {
		s.m.changes.WithLabelValues("create").Inc()
	}
	return out, nil
}

func (s *Service) byRequest(ctx context.Context, caller authn.Caller, requestID string) (*storepb.Seal, error) {
	k, err := s.deps.Store.Lookup(ctx, indexSealRequest, caller.UserID+"."+requestID)
	if errors.Is(err, store.ErrNotFound) {
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	out := new(storepb.Seal)
	return out, s.deps.Store.Get(ctx, k, out)
}

func ownerWord(seal *storepb.Seal) string {
	if seal.EnterpriseUscc != "" {
		return "an enterprise"
	}
	return "a person"
}

// checkCertificate requires an active certificate of the seal's owner. A certificate that
// does not exist and one of somebody else get the same answer.
func (s *Service) checkCertificate(ctx context.Context, seal *storepb.Seal, serial string) error {
	bad := apierr.Invalidf("certificate_serial", "no active certificate of %s with this serial", strings.TrimPrefix(ownerWord(seal), "a "))
	user, ent, err := s.deps.Certificates.CertificateOwner(ctx, serial)
	var ae *apierr.Error
	switch {
	case errors.As(err, &ae) && ae.Kind == apierr.NotFound:
		return bad
	case err != nil:
		return err
	case seal.EnterpriseUscc != "" && ent != seal.EnterpriseUscc,
		seal.EnterpriseUscc == "" && (ent != "" || user != seal.OwnerUserId):
		return bad
	}
	return nil
}

func checkName(name string) (string, error) {
	name, err := text.Line("name", name, maxNameRunes, true)
	if err != nil {
		return "", err
	}
	return name, nil
}

func audit(tx *store.Tx, caller authn.Caller, action string, seal *storepb.Seal, details map[string]string) error {
	if details == nil {
		details = map[string]string{}
	}
	if seal.EnterpriseUscc != "" {
		details["enterprise"] = seal.EnterpriseUscc
	}
	return tx.Audit(store.Event{Actor: caller.Actor(), Action: "seal." + action, Subject: sealKey(seal),
		Outcome: store.OutcomeOK, Details: details})
}

// List lists an enterprise's seals ("" for the caller's own), without images: every seal
// for the administrator, those authorised to the caller for staff.
func (s *Service) List(ctx context.Context, caller authn.Caller, uscc string) ([]*storepb.Seal, error) {
	a := accessManage
	prefix := "seal/u:" + caller.UserID + "/"
	if caller.UserID == "" {
		return nil, apierr.New(apierr.PermissionDenied, "seals belong to users")
	}
	if uscc != "" {
		if err := identity.CheckUSCC(uscc); err != nil {
			return nil, apierr.Invalid("enterprise_uscc", err)
		}
		r, err := s.role(ctx, uscc, caller.UserID)
		switch {
		case err != nil:
			return nil, err
		case r == RoleNone:
			return nil, noEnterprise(uscc)
		case r == RoleStaff:
			a = accessUse
		}
		prefix = "seal/e:" + uscc + "/"
	}
	page, err := seals.List(ctx, s.deps.Store, prefix, store.ListOptions{Limit: store.MaxListLimit}, func(_ string, seal *storepb.Seal) bool {
		return a == accessManage || slices.Contains(seal.AuthorisedUserIds, caller.UserID)
	})
	if err != nil {
		return nil, err
	}
	out := make([]*storepb.Seal, 0, len(page.Items))
	for _, it := range page.Items {
		out = append(out, view(it.Value, a))
	}
	return out, nil
}

// Get returns a seal the caller may see, with its image.
func (s *Service) Get(ctx context.Context, caller authn.Caller, id string) (*storepb.Seal, []byte, error) {
	seal, a, err := s.visible(ctx, caller, id)
	if err != nil {
		return nil, nil, err
	}
	img, err := images.Read(ctx, s.deps.Store, imageID(seal.Id))
	if err != nil {
		return nil, nil, fmt.Errorf("seals: image of %s: %w", seal.Id, err)
	}
	return view(seal, a), img.Png, nil
}

// change re-reads the seal inside a transaction, lets fn change it (fn returns false for
// no change: nothing is written), and stores and audits it.
func (s *Service) change(ctx context.Context, caller authn.Caller, cur *storepb.Seal, action string, details map[string]string,
	fn func(tx *store.Tx, seal *storepb.Seal) (bool, error)) (*storepb.Seal, bool, error) {
	var (
		out     *storepb.Seal
		changed bool
	)
	err := s.deps.Store.Update(ctx, func(tx *store.Tx) error {
		seal, err := seals.Get(tx, sealID(cur))
		if err != nil {
			return err
		}
		if changed, err = fn(tx, seal); err != nil || !changed {
			out = seal
			return err
		}
		seal.UpdatedUnixNano = tx.Now().UnixNano()
		if err := seals.Put(tx, sealID(seal), seal); err != nil {
			return err
		}
		out = seal
		return audit(tx, caller, action, seal, details)
	})
	return out, changed, err
}

// SetState disables or enables a seal. Setting the state it has is not a change.
func (s *Service) SetState(ctx context.Context, caller authn.Caller, id string, state hufuv1.SealState) (*storepb.Seal, error) {
	if state != hufuv1.SealState_SEAL_STATE_ACTIVE && state != hufuv1.SealState_SEAL_STATE_DISABLED {
		return nil, apierr.Invalidf("state", "SEAL_STATE_ACTIVE or SEAL_STATE_DISABLED")
	}
	cur, err := s.managed(ctx, caller, id)
	if err != nil {
		return nil, err
	}
	out, changed, err := s.change(ctx, caller, cur, "state", map[string]string{"state": state.String()},
		func(_ *store.Tx, seal *storepb.Seal) (bool, error) {
			if seal.State == int32(state) {
				return false, nil
			}
			seal.State = int32(state)
			return true, nil
		})
	if err != nil {
		return nil, err
	}
	if changed {
		s.m.changes.WithLabelValues(map[bool]string{true: "enable", false: "disable"}[state == hufuv1.SealState_SEAL_STATE_ACTIVE]).Inc()
	}
	return out, nil
}

// Authorise lets a member of the seal's enterprise use it. Authorising again is not a
// change.
func (s *Service) Authorise(ctx context.Context, caller authn.Caller, id, user string) (*storepb.Seal, error) {
	cur, err := s.managedEnterpriseSeal(ctx, caller, id, user)
	if err != nil {
		return nil, err
	}
	r, err := s.role(ctx, cur.EnterpriseUscc, user)
	if err != nil {
		return nil, err
	}
	if r == RoleNone {
		return nil, apierr.Invalidf("user_id", "not a member of the enterprise")
	}
	out, changed, err := s.change(ctx, caller, cur, "authorise", map[string]string{"member": user},
		func(tx *store.Tx, seal *storepb.Seal) (bool, error) {
			if slices.Contains(seal.AuthorisedUserIds, user) {
				return false, nil
			}
			if len(seal.AuthorisedUserIds) >= s.opts.MaxAuthorised {
				return false, apierr.New(apierr.FailedPrecondition, "the seal is authorised to %d members, the most allowed", s.opts.MaxAuthorised)
			}
			seal.AuthorisedUserIds = append(seal.AuthorisedUserIds, user)
			g, err := grants.Get(tx, grantID(seal.EnterpriseUscc, user))
			if err != nil && !errors.Is(err, store.ErrNotFound) {
				return false, err
			}
			if !slices.Contains(g.SealIds, seal.Id) {
				g.SealIds = append(g.SealIds, seal.Id)
			}
			return true, grants.Put(tx, grantID(seal.EnterpriseUscc, user), g)
		})
	if err != nil {
		return nil, err
	}
	if changed {
		s.m.changes.WithLabelValues("authorise").Inc()
	}
	return out, nil
}

// Unauthorise withdraws a member's authorisation. Withdrawing one that is not there is not
// a change.
func (s *Service) Unauthorise(ctx context.Context, caller authn.Caller, id, user string) (*storepb.Seal, error) {
	cur, err := s.managedEnterpriseSeal(ctx, caller, id, user)
	if err != nil {
		return nil, err
	}
	out, changed, err := s.change(ctx, caller, cur, "unauthorise", map[string]string{"member": user},
		func(tx *store.Tx, seal *storepb.Seal) (bool, error) {
			return withdraw(tx, seal, user)
		})
	if err != nil {
		return nil, err
	}
	if changed {
		s.m.changes.WithLabelValues("unauthorise").Inc()
	}
	return out, nil
}

func (s *Service) managedEnterpriseSeal(ctx context.Context, caller authn.Caller, id, user string) (*storepb.Seal, error) {
	if !userIDRE.MatchString(user) {
		return nil, apierr.Invalidf("user_id", "not a user id")
	}
	cur, err := s.managed(ctx, caller, id)
	if err != nil {
		return nil, err
	}
	if cur.EnterpriseUscc == "" {
		return nil, apierr.New(apierr.FailedPrecondition, "a person's own seal is not authorised to others")
	}
	return cur, nil
}

// withdraw removes user from seal's authorisations and the seal from the user's grants.
func withdraw(tx *store.Tx, seal *storepb.Seal, user string) (bool, error) {
	i := slices.Index(seal.AuthorisedUserIds, user)
	if i < 0 {
		return false, nil
	}
	seal.AuthorisedUserIds = slices.Delete(seal.AuthorisedUserIds, i, i+1)
	gid := grantID(seal.EnterpriseUscc, user)
	g, err := grants.Get(tx, gid)
	switch {
	case errors.Is(err, store.ErrNotFound):
		return true, nil
	case err != nil:
		return false, err
	}
	g.SealIds = slices.DeleteFunc(g.SealIds, func(id string) bool { return id == seal.Id })
	if len(g.SealIds) == 0 {
		return true, grants.Delete(tx, gid)
	}
	return true, grants.Put(tx, gid, g)
}

// RevokeMember withdraws, inside tx, every seal of the enterprise authorised to a member
// who leaves it; the enterprise domain calls it in the leaving transaction. Each withdrawal
// is audited ("seal.unauthorise", reason member-left).
func (s *Service) RevokeMember(tx *store.Tx, enterpriseID, userID string) error {
	if enterpriseID == "" || userID == "" {
		return errors.New("seals: RevokeMember without enterprise or user")
	}
	g, err := grants.Get(tx, grantID(enterpriseID, userID))
	if errors.Is(err, store.ErrNotFound) {
		return nil
	}
	if err != nil {
		return err
	}
	for _, id := range g.SealIds {
		k, err := tx.Lookup(indexSeal, id)
		if errors.Is(err, store.ErrNotFound) {
			continue
		}
		if err != nil {
			return err
		}
		seal := new(storepb.Seal)
		if err := tx.Get(k, seal); err != nil {
			return err
		}
		if seal.EnterpriseUscc != enterpriseID {
			continue
		}
		i := slices.Index(seal.AuthorisedUserIds, userID)
		if i < 0 {
			continue
		}
		seal.AuthorisedUserIds = slices.Delete(seal.AuthorisedUserIds, i, i+1)
		seal.UpdatedUnixNano = tx.Now().UnixNano()
		if err := tx.Put(k, seal); err != nil {
			return err
		}
		// The appliance withdraws it; the enterprise's record of the leaving, in the same
		// transaction, names who made the member leave.
		if err := audit(tx, authn.Caller{System: "hufu"}, "unauthorise", seal, map[string]string{"member": userID, "reason": "member-left"}); err != nil {
			return err
		}
	}
	return grants.Delete(tx, grantID(enterpriseID, userID))
}

// SealUsable returns a seal the caller may sign with now: active, the caller's own or (an
// enterprise's) the caller is its administrator or a member it is authorised to, and its
// certificate, if one is bound, still active and the owner's. A seal the caller may not
// see is NotFound; one they may see but not use now is FailedPrecondition.
func (s *Service) SealUsable(ctx context.Context, caller authn.Caller, sealID string) (*storepb.Seal, error) {
	seal, a, err := s.visible(ctx, caller, sealID)
	if err != nil {
		return nil, err
	}
	if seal.State != stateActive {
		return nil, apierr.New(apierr.FailedPrecondition, "the seal is disabled")
	}
	if seal.CertificateSerial != "" {
		err := s.checkCertificate(ctx, seal, seal.CertificateSerial)
		var ae *apierr.Error
		if errors.As(err, &ae) && ae.Kind == apierr.InvalidArgument {
			return nil, apierr.New(apierr.FailedPrecondition, "the seal's certificate is no longer active")
		}
		if err != nil {
			return nil, err
		}
	}
	return view(seal, a), nil
}
