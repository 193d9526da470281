package enterprises

import (
	"context"
	"encoding/base64"
	"errors"
	"fmt"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"time"

	hufuv1 "github.com/hufu-hsm/hufu/api/hufu/v1"
	"github.com/hufu-hsm/hufu/daemon/apierr"
	"github.com/hufu-hsm/hufu/daemon/authn"
	"github.com/hufu-hsm/hufu/daemon/identity"
	"github.com/hufu-hsm/hufu/daemon/text"
	"github.com/hufu-hsm/hufu/store"
	"github.com/hufu-hsm/hufu/store/storepb"
)

var appIDRE = regexp.MustCompile(`^[0-9a-f]{20}$`)

// ApplyToJoin files an application to join a registered enterprise (§1.6.3.1), naming its
// administrator, or through an invite (§1.6.3.2). request_id makes it idempotent.
func (s *Service) ApplyToJoin(ctx context.Context, caller authn.Caller, req *hufuv1.ApplyToJoinRequest) (*storepb.JoinApplication, error) {
	if err := apierr.CheckRequestID("request_id", req.GetRequestId()); err != nil {
		return nil, err
	}
	if k, err := s.lookup(ctx, indexJoinRequest, caller.UserID+"."+req.GetRequestId()); err != nil || k != "" {
		if err != nil {
			return nil, err
		}
		return joins.Read(ctx, s.deps.Store, joins.ID(k))
	}
	applicant, err := s.deps.Accounts.VerifiedUser(ctx, caller.UserID)
	if err != nil {
		return nil, err
	}
	var uscc string
	var invite *storepb.Invite
	if req.GetInvite() != "" {
		if invite, err = s.checkInvite(ctx, req.GetInvite()); err != nil {
			return nil, err
		}
		uscc = invite.Uscc
	} else if uscc, err = checkUSCC("uscc", req.GetUscc()); err != nil {
		return nil, err
	}
	e, err := enterprises.Read(ctx, s.deps.Store, infoID(uscc))
	if errors.Is(err, store.ErrNotFound) {
		return nil, apierr.New(apierr.FailedPrecondition, "the enterprise is not registered: claim it or verify it by corporate transfer")
	}
	if err != nil {
		return nil, err
	}
	if invite == nil {
		if err := s.checkAdminNamed(ctx, caller, e, req.GetAdminName(), req.GetAdminPhone()); err != nil {
			return nil, err
		}
	}
	app := &storepb.JoinApplication{Id: store.RandomID(10), Uscc: uscc, UserId: caller.UserID, Status: joinPending,
		ApplicantName: applicant.Identity.GetName(), ApplicantPhoneMasked: identity.MaskPhone(applicant.Phone), RequestId: req.GetRequestId()}
	if invite != nil {
		app.InviteId = invite.Id
	}
	err = s.deps.Store.Update(ctx, func(tx *store.Tx) error {
		if _, err := members.Get(tx, memberID(uscc, caller.UserID)); err == nil {
			return apierr.New(apierr.FailedPrecondition, "you already belong to this enterprise")
		} else if !errors.Is(err, store.ErrNotFound) {
			return err
		}
		// One pending application per person and enterprise: the claim is released when it
		// is decided or withdrawn.
		if pending, err := tx.Lookup(indexJoinPending, caller.UserID+"."+uscc); err == nil {
			return apierr.New(apierr.FailedPrecondition, "you already have a pending application %s to this enterprise; withdraw it first", joins.ID(pending)[len(uscc+"/join/"):])
		} else if !errors.Is(err, store.ErrNotFound) {
			return err
		}
		if invite != nil { // still live, under its lock
			if _, err := s.liveInvite(tx, uscc, invite.Id); err != nil {
				return err
			}
		}
		now := tx.Now().UnixNano()
		app.CreatedUnixNano, app.UpdatedUnixNano = now, now
		k := key(joinID(uscc, app.Id))
		if err := tx.Claim(indexJoinRequest, caller.UserID+"."+app.RequestId, k); err != nil {
			return err
		}
		if err := tx.Claim(indexJoin, app.Id, k); err != nil {
			return err
		}
		if err := tx.Claim(indexJoinPending, caller.UserID+"."+uscc, k); err != nil {
			return err
		}
		if err := tx.AddIndex(indexUserJoin, caller.UserID, k); err != nil {
			return err
		}
		if err := joins.Put(tx, joinID(uscc, app.Id), app); err != nil {
			return err
		}
		if err := notice(tx, e.AdminUserId, "加入企业申请", fmt.Sprintf("%s 申请加入企业 %s（申请 %s）", identity.MaskName(app.ApplicantName), e.Name, app.Id)); err != nil {
			return err
		}
		if err := notice(tx, caller.UserID, "加入企业申请已提交", fmt.Sprintf("您加入企业 %s 的申请已提交，等待管理员审核", e.Name)); err != nil {
			return err
		}
		return audit(tx, caller, "join.apply", uscc, map[string]string{"application": app.Id, "invite": app.InviteId})
	})
	if err != nil {
		return nil, err
	}
	s.m.changes.WithLabelValues("join.apply").Inc()
	return app, nil
}

// checkAdminNamed checks the administrator's name and phone number as the applicant gave
// them. A mismatch says nothing of who the administrator is, is audited and counted, and
// at the daily limit further attempts are refused.
func (s *Service) checkAdminNamed(ctx context.Context, caller authn.Caller, e *storepb.Enterprise, name, phone string) error {
	if strings.TrimSpace(name) == "" || strings.TrimSpace(phone) == "" {
		return apierr.Invalidf("admin_name", "give the administrator's name and phone number (or scan the enterprise's invite)")
	}
	if e.AdminUserId == "" {
		return apierr.New(apierr.FailedPrecondition, "the enterprise has no administrator to approve applications yet")
	}
	// Read before the transaction: no store read may nest inside one (a stopping store
	// waits for the outer one while the inner one waits for the stop).
	admin, err := s.deps.Accounts.VerifiedUser(ctx, e.AdminUserId)
	if err != nil {
		return err
	}
	var refused error
	err = s.deps.Store.Update(ctx, func(tx *store.Tx) error {
		refused = nil
		c, err := counters.Get(tx, mismatchID(e.Uscc, caller.UserID))
		if err != nil && !errors.Is(err, store.ErrNotFound) {
			return err
		}
		now := tx.Now()
		if c.WindowEndUnixNano <= now.UnixNano() {
			c.Count, c.WindowEndUnixNano = 0, now.Add(24*time.Hour).UnixNano()
		}
		if int(c.Count) >= s.opts.JoinMismatchesPerDay {
			wait := time.Unix(0, c.WindowEndUnixNano).Sub(now)
			refused = apierr.Exhausted(wait, "too many applications naming the wrong administrator; retry in %v or scan the enterprise's invite", wait.Round(time.Minute))
			return store.Refuse(refused)
		}
		if admin.Identity.GetName() == strings.TrimSpace(name) && admin.Phone == strings.TrimSpace(phone) {
			return nil // nothing written
		}
		c.Count++
		if err := counters.Put(tx, mismatchID(e.Uscc, caller.UserID), c, store.ExpiresAt(time.Unix(0, c.WindowEndUnixNano))); err != nil {
			return err
		}
		refused = apierr.Invalidf("admin", "the name and phone number do not match this enterprise's administrator")
		if err := tx.Audit(store.Event{Actor: caller.Actor(), Action: "enterprise.join.apply", Subject: key(infoID(e.Uscc)),
			Outcome: "denied", Details: map[string]string{"reason": "administrator mismatch", "count": strconv.Itoa(int(c.Count))}}); err != nil {
			return err
		}
		return store.Refuse(refused)
	})
	if refused != nil {
		return refused
	}
	return err
}

func (s *Service) lookup(ctx context.Context, index, value string) (string, error) {
	var out string
	err := s.deps.Store.Update(ctx, func(tx *store.Tx) error {
		k, err := tx.Lookup(index, value)
		if errors.Is(err, store.ErrNotFound) {
			return nil
		}
		out = k
		return err
	})
	return out, err
}

// decide changes a join application found by id inside one transaction.
func (s *Service) decide(ctx context.Context, caller authn.Caller, id, action string, change func(tx *store.Tx, a *storepb.JoinApplication, e *storepb.Enterprise) error) (*storepb.JoinApplication, error) {
	if !appIDRE.MatchString(id) {
		return nil, apierr.New(apierr.NotFound, "no join application %q", id)
	}
	var out *storepb.JoinApplication
	err := s.deps.Store.Update(ctx, func(tx *store.Tx) error {
		k, err := tx.Lookup(indexJoin, id)
		if errors.Is(err, store.ErrNotFound) {
			return apierr.New(apierr.NotFound, "no join application %q", id)
		}
		if err != nil {
			return err
		}
		a, err := joins.Get(tx, joins.ID(k))
		if err != nil {
			return err
		}
		e, err := enterprises.Get(tx, infoID(a.Uscc))
		if err != nil {
			return err
		}
		if err := change(tx, a, e); err != nil {
			return err
		}
		if a.Status != joinPending {
			if err := tx.Unclaim(indexJoinPending, a.UserId+"."+a.Uscc, k); err != nil {
				return err
			}
		}
		a.UpdatedUnixNano = tx.Now().UnixNano()
		if err := joins.Put(tx, joins.ID(k), a); err != nil {
			return err
		}
		out = a
		return audit(tx, caller, action, a.Uscc, map[string]string{"application": a.Id, "applicant": a.UserId})
	})
	if err == nil {
		s.m.changes.WithLabelValues(action).Inc()
	}
	return out, err
}

func wrongJoinState(a *storepb.JoinApplication, what string) error {
	name := map[int32]string{joinPending: "pending", joinApproved: "approved", joinReturned: "returned (退回)", joinWithdrawn: "withdrawn (撤回)"}[a.Status]
	return apierr.New(apierr.FailedPrecondition, "cannot %s an application that is %s", what, name)
}

// WithdrawJoin withdraws (撤回) the caller's own pending application (§1.6.3.3).
func (s *Service) WithdrawJoin(ctx context.Context, caller authn.Caller, id string) (*storepb.JoinApplication, error) {
	return s.decide(ctx, caller, id, "join.withdraw", func(tx *store.Tx, a *storepb.JoinApplication, e *storepb.Enterprise) error {
		if a.UserId != caller.UserID {
			return apierr.New(apierr.NotFound, "no join application %q", id)
		}
		if a.Status != joinPending {
			return wrongJoinState(a, "withdraw")
		}
		a.Status = joinWithdrawn
		return notice(tx, e.AdminUserId, "加入企业申请已撤回", fmt.Sprintf("申请 %s 已由申请人撤回", a.Id))
	})
}

// adminDecision checks that the caller administers the application's enterprise and holds
// its certificate, and that the application is pending.
func adminDecision(caller authn.Caller, a *storepb.JoinApplication, e *storepb.Enterprise, what string) error {
	if e.AdminUserId != caller.UserID {
		return apierr.New(apierr.NotFound, "no join application %q", a.Id)
	}
	if !e.AdminClaimed {
		return apierr.New(apierr.FailedPrecondition, "claim the enterprise (buy its certificate) before managing staff")
	}
	if a.Status != joinPending {
		return wrongJoinState(a, what)
	}
	return nil
}

// ApproveJoin (administrator) approves an application: the applicant becomes staff (§1.6.3.4).
func (s *Service) ApproveJoin(ctx context.Context, caller authn.Caller, id string) (*storepb.JoinApplication, error) {
	return s.decide(ctx, caller, id, "join.approve", func(tx *store.Tx, a *storepb.JoinApplication, e *storepb.Enterprise) error {
		if err := adminDecision(caller, a, e, "approve"); err != nil {
			return err
		}
		if _, err := members.Get(tx, memberID(a.Uscc, a.UserId)); err == nil {
			return apierr.New(apierr.FailedPrecondition, "the applicant already belongs to the enterprise; return the application")
		} else if !errors.Is(err, store.ErrNotFound) {
			return err
		}
		a.Status, a.DecidedBy = joinApproved, caller.UserID
		via := "application"
		if a.InviteId != "" {
			via = "invite"
		}
		if err := addMember(tx, &storepb.Member{Uscc: a.Uscc, UserId: a.UserId, Role: roleStaff, Via: via, JoinedUnixNano: tx.Now().UnixNano()}); err != nil {
			return err
		}
		return notice(tx, a.UserId, "加入企业申请审核通过", fmt.Sprintf("您已加入企业 %s，成为办事人员", e.Name))
	})
}

// ReturnJoin (administrator) returns (退回) an application with a reason.
func (s *Service) ReturnJoin(ctx context.Context, caller authn.Caller, id, reason string) (*storepb.JoinApplication, error) {
	reason, err := text.Lines("reason", reason, 200, true)
	if err != nil {
		return nil, err
	}
	return s.decide(ctx, caller, id, "join.return", func(tx *store.Tx, a *storepb.JoinApplication, e *storepb.Enterprise) error {
		if err := adminDecision(caller, a, e, "return"); err != nil {
			return err
		}
		a.Status, a.Reason, a.DecidedBy = joinReturned, reason, caller.UserID
		return notice(tx, a.UserId, "加入企业申请被退回", fmt.Sprintf("您加入企业 %s 的申请被退回：%s", e.Name, reason))
	})
}

// ListJoinApplications lists an enterprise's applications for its administrator, or the
// caller's own when uscc is empty; newest first.
func (s *Service) ListJoinApplications(ctx context.Context, caller authn.Caller, uscc string, status hufuv1.JoinStatus) ([]*storepb.JoinApplication, error) {
	var out []*storepb.JoinApplication
	keep := func(a *storepb.JoinApplication) bool {
		return status == hufuv1.JoinStatus_JOIN_STATUS_UNSPECIFIED || a.Status == int32(status)
	}
	if uscc == "" {
		ks, _, err := s.deps.Store.ListIndex(ctx, indexUserJoin, caller.UserID, store.ListOptions{Limit: store.MaxListLimit})
		if err != nil {
			return nil, err
		}
		for _, k := range ks {
			a, err := joins.Read(ctx, s.deps.Store, joins.ID(k))
			if err != nil {
				return nil, err
			}
			if keep(a) {
				out = append(out, a)
			}
		}
	} else {
		e, err := s.asAdmin(ctx, caller, uscc, false)
		if err != nil {
			return nil, err
		}
		page, err := joins.List(ctx, s.deps.Store, e.Uscc+"/join/", store.ListOptions{Limit: store.MaxListLimit},
			func(_ string, a *storepb.JoinApplication) bool { return keep(a) })
		if err != nil {
			return nil, err
		}
		for _, it := range page.Items {
			out = append(out, it.Value)
		}
	}
	slices.SortFunc(out, func(a, b *storepb.JoinApplication) int { return int(b.CreatedUnixNano - a.CreatedUnixNano) })
	return out, nil
}

// Invite is a created invite and its payload.
type Invite struct {
	Record  *storepb.Invite
	Payload string
}

const invitePrefix = "HUFU1.INV."

// inviteMACContext separates the invite MAC from every other use of the HSM's HMAC key.
var inviteMACContext = []byte("hufu/enterprise/v1 invite")

// CreateInvite (administrator or staff) makes an invite for the enterprise's QR code.
func (s *Service) CreateInvite(ctx context.Context, caller authn.Caller, uscc string, ttl time.Duration) (*Invite, error) {
	e, _, err := s.membership(ctx, caller, "uscc", uscc)
	if err != nil {
		return nil, err
	}
	if ttl == 0 {
		ttl = s.opts.InviteTTL
	}
	if ttl < time.Minute || ttl > s.opts.MaxInviteTTL {
		return nil, apierr.Invalidf("ttl_seconds", "an invite lives 60 s to %v", s.opts.MaxInviteTTL)
	}
	now := s.deps.Clock.Now()
	inv := &storepb.Invite{Id: store.RandomID(10), Uscc: e.Uscc, CreatedBy: caller.UserID, CreatedUnixNano: now.UnixNano(),
		ExpiresUnixNano: now.Add(ttl).Truncate(time.Second).UnixNano()}
	body := fmt.Sprintf("%s%s.%s.%d", invitePrefix, inv.Id, inv.Uscc, inv.ExpiresUnixNano/int64(time.Second))
	// The HSM's HMAC key, domain-separated; the invite's random id is the salt.
	mac, err := s.deps.Keyring.PINVerifier(ctx, []byte(inv.Id), inviteMACContext, []byte(body))
	if err != nil {
		return nil, hsmError(err)
	}
	err = s.deps.Store.Update(ctx, func(tx *store.Tx) error {
		exp := store.ExpiresAt(time.Unix(0, inv.ExpiresUnixNano))
		if err := tx.Claim(indexInvite, inv.Id, key(inviteID(inv.Uscc, inv.Id)), exp); err != nil {
			return err
		}
		if err := invites.Put(tx, inviteID(inv.Uscc, inv.Id), inv, exp); err != nil {
			return err
		}
		return audit(tx, caller, "invite.create", inv.Uscc, map[string]string{"invite": inv.Id, "expires": time.Unix(0, inv.ExpiresUnixNano).UTC().Format(time.RFC3339)})
	})
	if err != nil {
		return nil, err
	}
	s.m.changes.WithLabelValues("invite.create").Inc()
	return &Invite{Record: inv, Payload: body + "." + base64.RawURLEncoding.EncodeToString(mac)}, nil
}

// invitePayload is a parsed invite: what the MAC covers and the MAC.
type invitePayload struct {
	id, uscc string
	expires  int64 // Unix seconds
	body     string
	mac      []byte
}

var errInvite = apierr.Invalidf("invite", "not an invite of this appliance, or altered")

// parseInvite parses "HUFU1.INV.<id>.<uscc>.<expiry>.<MAC>" (untrusted: scanned from a QR
// code) without checking the MAC.
func parseInvite(payload string) (*invitePayload, error) {
	rest, ok := strings.CutPrefix(payload, invitePrefix)
	parts := strings.Split(rest, ".")
	if !ok || len(payload) > 200 || len(parts) != 4 || !appIDRE.MatchString(parts[0]) || identity.CheckUSCC(parts[1]) != nil {
		return nil, errInvite
	}
	expires, err := strconv.ParseInt(parts[2], 10, 64)
	if err != nil || expires <= 0 || strconv.FormatInt(expires, 10) != parts[2] {
		return nil, errInvite
	}
	mac, err := base64.RawURLEncoding.Strict().DecodeString(parts[3])
	if err != nil || len(mac) != 32 {
		return nil, errInvite
	}
	return &invitePayload{id: parts[0], uscc: parts[1], expires: expires, body: payload[:len(payload)-len(parts[3])-1], mac: mac}, nil
}

// checkInvite parses an invite payload and checks its MAC, expiry and revocation.
func (s *Service) checkInvite(ctx context.Context, payload string) (*storepb.Invite, error) {
	p, err := parseInvite(payload)
	if err != nil {
		return nil, err
	}
	ok, err := s.deps.Keyring.VerifyPIN(ctx, p.mac, []byte(p.id), inviteMACContext, []byte(p.body))
	if err != nil {
		return nil, hsmError(err)
	}
	if !ok {
		return nil, errInvite
	}
	var out *storepb.Invite
	err = s.deps.Store.Update(ctx, func(tx *store.Tx) error {
		out, err = s.liveInvite(tx, p.uscc, p.id)
		return err
	})
	return out, err
}

// liveInvite reads an invite that is neither expired nor revoked.
func (s *Service) liveInvite(tx *store.Tx, uscc, id string) (*storepb.Invite, error) {
	inv, err := invites.Get(tx, inviteID(uscc, id))
	if errors.Is(err, store.ErrNotFound) || (err == nil && tx.Now().UnixNano() >= inv.ExpiresUnixNano) {
		return nil, apierr.New(apierr.FailedPrecondition, "the invite has expired; ask for a new one")
	}
	if err != nil {
		return nil, err
	}
	if inv.Revoked {
		return nil, apierr.New(apierr.FailedPrecondition, "the invite was revoked; ask for a new one")
	}
	return inv, nil
}

// RevokeInvite revokes an invite; its creator or the administrator may.
func (s *Service) RevokeInvite(ctx context.Context, caller authn.Caller, uscc, id string) error {
	e, m, err := s.membership(ctx, caller, "uscc", uscc)
	if err != nil {
		return err
	}
	if !appIDRE.MatchString(id) {
		return apierr.New(apierr.NotFound, "no invite %q", id)
	}
	return s.deps.Store.Update(ctx, func(tx *store.Tx) error {
		inv, err := s.liveInvite(tx, e.Uscc, id)
		if err != nil {
			return err
		}
		if inv.CreatedBy != caller.UserID && m.Role != roleAdmin {
			return apierr.New(apierr.PermissionDenied, "only the invite's creator or the administrator may revoke it")
		}
		inv.Revoked = true
		if err := invites.Put(tx, inviteID(e.Uscc, id), inv, store.ExpiresAt(time.Unix(0, inv.ExpiresUnixNano))); err != nil {
			return err
		}
		return audit(tx, caller, "invite.revoke", e.Uscc, map[string]string{"invite": id})
	})
}
