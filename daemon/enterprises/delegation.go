package enterprises

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"time"

	"github.com/hufu-hsm/hufu/daemon/apierr"
	"github.com/hufu-hsm/hufu/daemon/authn"
	"github.com/hufu-hsm/hufu/daemon/keys"
	"github.com/hufu-hsm/hufu/store"
	"github.com/hufu-hsm/hufu/store/storepb"
)

// scopeCertificate is what a grant gives: use of the enterprise certificate's key, to sign
// and decrypt. Nothing narrower can be enforced — the appliance sees only digests, never
// documents — so a grant carries no other scope; seals are authorised in the seals domain.
const scopeCertificate = "certificate"

func sha256Hex(b []byte) string {
	h := sha256.Sum256(b)
	return hex.EncodeToString(h[:])
}

func checkScope(scope []string) ([]string, error) {
	for i, sc := range scope {
		if sc != scopeCertificate {
			return nil, apierr.Invalidf(fmt.Sprintf("scope[%d]", i), "a grant gives the use of the enterprise certificate's key (%q); seals are authorised with SealService", scopeCertificate)
		}
	}
	return []string{scopeCertificate}, nil
}

// pairLive reports a delegated pair that is pending or active; pairActive one accepted.
func pairLive(d *storepb.DelegatedShare) bool {
	return d.Status == storepb.DelegationStatus_DELEGATION_STATUS_PENDING || pairActive(d)
}

func pairActive(d *storepb.DelegatedShare) bool {
	return d.Status == storepb.DelegationStatus_DELEGATION_STATUS_ACTIVE
}

// pairsOf lists a member's delegated pairs of the enterprise key that are pending or active.
func (s *Service) pairsOf(ctx context.Context, e *storepb.Enterprise, userID string) ([]*storepb.DelegatedShare, error) {
	if e.KeyId == "" {
		return nil, nil
	}
	all, err := s.deps.Keys.ListDelegations(ctx, e.KeyId)
	if err != nil {
		return nil, err
	}
	var out []*storepb.DelegatedShare
	for _, d := range all {
		if d.MemberUserId == userID && pairLive(d) {
			out = append(out, d)
		}
	}
	return out, nil
}

// Grant (administrator) delegates the enterprise key to a staff member's registered device
// (授权): the appliance keeps d2′ = ρ⁻¹·d2 for that device and relays the envelope it cannot
// read. The member accepts with AcceptDelegation.
func (s *Service) Grant(ctx context.Context, caller authn.Caller, uscc, memberUserID string, cred keys.Credential, grant, envelope []byte, scope []string) (*storepb.AuthorisationRecord, error) {
	scope, err := checkScope(scope)
	if err != nil {
		return nil, err
	}
	e, err := s.asAdmin(ctx, caller, uscc, true)
	if err != nil {
		return nil, err
	}
	if memberUserID == caller.UserID {
		return nil, apierr.Invalidf("member_user_id", "the administrator holds the primary pair already")
	}
	m, err := members.Read(ctx, s.deps.Store, memberID(e.Uscc, memberUserID))
	if errors.Is(err, store.ErrNotFound) || store.ValidPart(memberUserID) != nil {
		return nil, apierr.New(apierr.NotFound, "no member %q", memberUserID)
	}
	if err != nil {
		return nil, err
	}
	if m.DeviceId == "" {
		return nil, apierr.New(apierr.FailedPrecondition, "the member has not registered a device to receive the key (RegisterDevice)")
	}
	var rec *storepb.AuthorisationRecord
	_, _, err = s.deps.Keys.GrantDelegation(ctx, caller, e.KeyId, cred, memberUserID, m.DeviceId, grant, envelope, scope, func(tx *store.Tx) error {
		// Still a member with that device, under the member record's lock.
		cur, err := members.Get(tx, memberID(e.Uscc, memberUserID))
		if errors.Is(err, store.ErrNotFound) || (err == nil && cur.DeviceId != m.DeviceId) {
			return apierr.New(apierr.Aborted, "the member's membership or device changed; retry")
		}
		if err != nil {
			return err
		}
		rec = &storepb.AuthorisationRecord{Uscc: e.Uscc, Action: "grant", ByUserId: caller.UserID, MemberUserId: memberUserID,
			MemberDeviceId: m.DeviceId, Scope: scope, KeyId: e.KeyId}
		if err := record(tx, rec); err != nil {
			return err
		}
		if err := notice(tx, memberUserID, "企业证书授权", fmt.Sprintf("管理员已将企业 %s 的证书授权给您的设备，请在该设备上接受授权", e.Name)); err != nil {
			return err
		}
		return audit(tx, caller, "delegation.grant", e.Uscc, map[string]string{"member": memberUserID, "device": m.DeviceId, "key": e.KeyId})
	})
	if err != nil {
		return nil, err
	}
	s.m.changes.WithLabelValues("delegation.grant").Inc()
	return rec, nil
}

// Offer is a pending grant as the member's device fetches it.
type Offer struct {
	Pair                     *storepb.DelegatedShare
	KeyID                    string
	PublicKey, P2, Challenge []byte
}

// Offer returns the calling device's pending grant of the enterprise key.
func (s *Service) Offer(ctx context.Context, caller authn.Caller, uscc string) (*Offer, error) {
	e, _, err := s.membership(ctx, caller, "uscc", uscc)
	if err != nil {
		return nil, err
	}
	if e.KeyId == "" {
		return nil, apierr.New(apierr.FailedPrecondition, "the enterprise has no key yet")
	}
	pair, public, p2, challenge, err := s.deps.Keys.DelegationOffer(ctx, caller, e.KeyId)
	if err != nil {
		return nil, err
	}
	return &Offer{Pair: pair, KeyID: e.KeyId, PublicKey: public, P2: p2, Challenge: challenge}, nil
}

// Accept completes the calling device's grant: the signature on the challenge proves the
// device holds the new pair; pin is the member's own certificate PIN for it.
func (s *Service) Accept(ctx context.Context, caller authn.Caller, uscc, pin string, confirmation []byte) (*storepb.AuthorisationRecord, error) {
	e, _, err := s.membership(ctx, caller, "uscc", uscc)
	if err != nil {
		return nil, err
	}
	if e.KeyId == "" {
		return nil, apierr.New(apierr.FailedPrecondition, "the enterprise has no key yet")
	}
	pairs, err := s.pairsOf(ctx, e, caller.UserID)
	if err != nil {
		return nil, err
	}
	var scope []string // the grant's, for the record
	for _, p := range pairs {
		if p.MemberDeviceId == caller.DeviceID {
			scope = p.Scope
		}
	}
	var rec *storepb.AuthorisationRecord
	err = s.deps.Keys.AcceptDelegation(ctx, caller, e.KeyId, pin, confirmation, func(tx *store.Tx) error {
		if _, err := members.Get(tx, memberID(e.Uscc, caller.UserID)); err != nil {
			if errors.Is(err, store.ErrNotFound) {
				return notFound(e.Uscc)
			}
			return err
		}
		rec = &storepb.AuthorisationRecord{Uscc: e.Uscc, Action: "accept", ByUserId: caller.UserID, MemberUserId: caller.UserID,
			MemberDeviceId: caller.DeviceID, KeyId: e.KeyId, Scope: scope}
		if err := record(tx, rec); err != nil {
			return err
		}
		if err := notice(tx, e.AdminUserId, "企业证书授权已接受", fmt.Sprintf("办事人员已在其设备上接受企业 %s 的证书授权", e.Name)); err != nil {
			return err
		}
		return audit(tx, caller, "delegation.accept", e.Uscc, map[string]string{"member": caller.UserID, "device": caller.DeviceID, "key": e.KeyId})
	})
	if err != nil {
		return nil, err
	}
	s.m.changes.WithLabelValues("delegation.accept").Inc()
	return rec, nil
}

// Recall (收回, administrator) destroys a member's delegated server shares at once: the
// member's next signature is refused, everyone else's still works.
func (s *Service) Recall(ctx context.Context, caller authn.Caller, uscc, memberUserID string) (*storepb.AuthorisationRecord, error) {
	e, err := s.asAdmin(ctx, caller, uscc, true)
	if err != nil {
		return nil, err
	}
	if store.ValidPart(memberUserID) != nil {
		return nil, apierr.New(apierr.NotFound, "no member %q", memberUserID)
	}
	pairs, err := s.pairsOf(ctx, e, memberUserID)
	if err != nil {
		return nil, err
	}
	if len(pairs) == 0 {
		return nil, apierr.New(apierr.FailedPrecondition, "the member holds no delegated pair of the enterprise key")
	}
	var rec *storepb.AuthorisationRecord
	for _, p := range pairs {
		if rec, err = s.recallPair(ctx, caller, e, p, true); err != nil {
			return nil, err
		}
	}
	s.m.changes.WithLabelValues("delegation.recall").Inc()
	return rec, nil
}

// recallPair destroys one delegated pair with its authorisation record, notice and audit
// record. asAdmin re-checks, under the enterprise record's lock, that the caller still
// administers the enterprise (a transfer may have committed since the caller was checked);
// a member's removal, which checked the role under the same lock just before, passes false.
func (s *Service) recallPair(ctx context.Context, caller authn.Caller, e *storepb.Enterprise, p *storepb.DelegatedShare, asAdmin bool) (*storepb.AuthorisationRecord, error) {
	var rec *storepb.AuthorisationRecord
	err := s.deps.Keys.RecallDelegation(ctx, caller, e.KeyId, p.MemberUserId, p.MemberDeviceId, func(tx *store.Tx) error {
		if asAdmin {
			ent, err := enterprises.Get(tx, infoID(e.Uscc))
			if err != nil {
				return err
			}
			if ent.AdminUserId != caller.UserID {
				return apierr.New(apierr.PermissionDenied, "only the enterprise's administrator may do this")
			}
		}
		rec = &storepb.AuthorisationRecord{Uscc: e.Uscc, Action: "recall", ByUserId: caller.UserID, MemberUserId: p.MemberUserId,
			MemberDeviceId: p.MemberDeviceId, Scope: p.Scope, KeyId: e.KeyId}
		if err := record(tx, rec); err != nil {
			return err
		}
		if err := notice(tx, p.MemberUserId, "企业证书授权已收回", fmt.Sprintf("企业 %s 的证书授权已收回", e.Name)); err != nil {
			return err
		}
		return audit(tx, caller, "delegation.recall", e.Uscc, map[string]string{"member": p.MemberUserId, "device": p.MemberDeviceId, "key": e.KeyId})
	})
	return rec, err
}

// Records lists the authorisation records (授权记录): all for the administrator, the
// caller's own for staff; newest first.
func (s *Service) Records(ctx context.Context, caller authn.Caller, uscc string) ([]*storepb.AuthorisationRecord, error) {
	e, m, err := s.membership(ctx, caller, "uscc", uscc)
	if err != nil {
		return nil, err
	}
	page, err := authRecords.List(ctx, s.deps.Store, e.Uscc+"/auth/", store.ListOptions{Limit: store.MaxListLimit},
		func(_ string, r *storepb.AuthorisationRecord) bool {
			return m.Role == roleAdmin || r.MemberUserId == caller.UserID || r.ByUserId == caller.UserID
		})
	if err != nil {
		return nil, err
	}
	out := make([]*storepb.AuthorisationRecord, len(page.Items))
	for i, it := range page.Items {
		out[i] = it.Value
	}
	return out, nil
}

// TransferAdmin (转移, the administrator's consent) offers the administrator role to a staff
// member whose device holds an accepted pair of the enterprise key.
func (s *Service) TransferAdmin(ctx context.Context, caller authn.Caller, uscc, toUserID string) (time.Time, error) {
	e, err := s.asAdmin(ctx, caller, uscc, true)
	if err != nil {
		return time.Time{}, err
	}
	if toUserID == caller.UserID || store.ValidPart(toUserID) != nil {
		return time.Time{}, apierr.Invalidf("to_user_id", "name another member of the enterprise")
	}
	if _, err := members.Read(ctx, s.deps.Store, memberID(e.Uscc, toUserID)); errors.Is(err, store.ErrNotFound) {
		return time.Time{}, apierr.New(apierr.NotFound, "no member %q", toUserID)
	} else if err != nil {
		return time.Time{}, err
	}
	if _, err := s.activePair(ctx, e, toUserID, ""); err != nil {
		return time.Time{}, err
	}
	expires := s.deps.Clock.Now().Add(s.opts.AdminTransferTTL)
	err = s.deps.Store.Update(ctx, func(tx *store.Tx) error {
		if err := adminTransfers.Put(tx, adminTransferID(e.Uscc), &storepb.AdminTransfer{Uscc: e.Uscc, FromUserId: caller.UserID,
			ToUserId: toUserID, CreatedUnixNano: tx.Now().UnixNano(), ExpiresUnixNano: expires.UnixNano()}, store.ExpiresAt(expires)); err != nil {
			return err
		}
		if err := notice(tx, toUserID, "管理员转移", fmt.Sprintf("管理员请您接任企业 %s 的管理员，请在已获授权的设备上确认", e.Name)); err != nil {
			return err
		}
		return audit(tx, caller, "admin.transfer.offer", e.Uscc, map[string]string{"to": toUserID})
	})
	return expires, err
}

// activePair is the member's accepted pair of the enterprise key, on device if given.
func (s *Service) activePair(ctx context.Context, e *storepb.Enterprise, userID, device string) (*storepb.DelegatedShare, error) {
	pairs, err := s.pairsOf(ctx, e, userID)
	if err != nil {
		return nil, err
	}
	for _, p := range pairs {
		if pairActive(p) && (device == "" || p.MemberDeviceId == device) {
			return p, nil
		}
	}
	if device != "" && len(pairs) > 0 {
		return nil, apierr.New(apierr.PermissionDenied, "accept from the device that holds your pair of the enterprise key")
	}
	return nil, apierr.New(apierr.FailedPrecondition, "the member must hold an accepted delegated pair of the enterprise key (grant and accept first)")
}

// AcceptAdminTransfer (the new administrator's consent, from the device holding the pair)
// completes a transfer: that pair becomes the enterprise key's primary pair, the old
// administrator's pair is destroyed, the enterprise certificate moves to the new
// administrator, every other delegated pair is recalled (the old administrator's device made
// their phone shares, d1·ρ, and still knows them: the new administrator grants them anew),
// and the roles swap — all in one transaction. The new administrator's own pair, which that
// device made too, is refreshed by client.AcceptAdminTransfer.
func (s *Service) AcceptAdminTransfer(ctx context.Context, caller authn.Caller, uscc string) (*storepb.Enterprise, error) {
	e, _, err := s.membership(ctx, caller, "uscc", uscc)
	if err != nil {
		return nil, err
	}
	t, err := adminTransfers.Read(ctx, s.deps.Store, adminTransferID(e.Uscc))
	if errors.Is(err, store.ErrNotFound) || (err == nil && t.ToUserId != caller.UserID) {
		return nil, apierr.New(apierr.FailedPrecondition, "no administrator transfer to you is waiting")
	}
	if err != nil {
		return nil, err
	}
	if _, err := s.activePair(ctx, e, caller.UserID, caller.DeviceID); err != nil {
		return nil, err
	}
	certKeys, err := s.deps.Certs.KeyCertificates(ctx, e.KeyId)
	if err != nil {
		return nil, err
	}
	// The other live pairs, which the promotion recalls (keys.PromoteDelegation), for their
	// authorisation records.
	all, err := s.deps.Keys.ListDelegations(ctx, e.KeyId)
	if err != nil {
		return nil, err
	}
	var others []*storepb.DelegatedShare
	for _, p := range all {
		if pairLive(p) && !(p.MemberUserId == caller.UserID && p.MemberDeviceId == caller.DeviceID) {
			others = append(others, p)
		}
	}
	var out *storepb.Enterprise
	err = s.deps.Keys.PromoteDelegation(ctx, caller, e.KeyId, caller.UserID, caller.DeviceID, func(tx *store.Tx) error {
		cur, err := adminTransfers.Get(tx, adminTransferID(e.Uscc))
		if err != nil || cur.ToUserId != caller.UserID || cur.FromUserId != t.FromUserId {
			return apierr.New(apierr.Aborted, "the transfer changed; retry")
		}
		ent, err := enterprises.Get(tx, infoID(e.Uscc))
		if err != nil {
			return err
		}
		if ent.AdminUserId != t.FromUserId {
			return apierr.New(apierr.FailedPrecondition, "the administrator changed since the transfer was offered")
		}
		ent.AdminUserId, ent.UpdatedUnixNano = caller.UserID, tx.Now().UnixNano()
		if err := enterprises.Put(tx, infoID(ent.Uscc), ent); err != nil {
			return err
		}
		if err := s.deps.Certs.MoveKeyCertificates(tx, certKeys, ent.KeyId, t.FromUserId, caller.UserID); err != nil {
			return err
		}
		for user, role := range map[string]int32{t.FromUserId: roleStaff, caller.UserID: roleAdmin} {
			m, err := members.Get(tx, memberID(ent.Uscc, user))
			if err != nil {
				return err
			}
			m.Role = role
			if role == roleStaff { // the old administrator's pair is destroyed with the promotion
				m.Via = "admin-transfer"
			}
			if err := members.Put(tx, memberID(ent.Uscc, user), m); err != nil {
				return err
			}
		}
		if err := adminTransfers.Delete(tx, adminTransferID(ent.Uscc)); err != nil {
			return err
		}
		if err := record(tx, &storepb.AuthorisationRecord{Uscc: ent.Uscc, Action: "transfer", ByUserId: t.FromUserId,
			MemberUserId: caller.UserID, MemberDeviceId: caller.DeviceID, KeyId: ent.KeyId, Scope: []string{"admin"}}); err != nil {
			return err
		}
		for _, p := range others {
			if err := record(tx, &storepb.AuthorisationRecord{Uscc: ent.Uscc, Action: "recall", ByUserId: caller.UserID,
				MemberUserId: p.MemberUserId, MemberDeviceId: p.MemberDeviceId, Scope: p.Scope, KeyId: ent.KeyId}); err != nil {
				return err
			}
			if err := notice(tx, p.MemberUserId, "企业证书授权已收回", fmt.Sprintf("企业 %s 的管理员已转移，原授权已收回，请新管理员重新授权", ent.Name)); err != nil {
				return err
			}
		}
		for _, u := range []string{t.FromUserId, caller.UserID} {
			if err := notice(tx, u, "管理员已转移", fmt.Sprintf("企业 %s 的管理员已转移", ent.Name)); err != nil {
				return err
			}
		}
		out = ent
		return audit(tx, caller, "admin.transfer", ent.Uscc, map[string]string{"from": t.FromUserId, "to": caller.UserID, "key": ent.KeyId})
	})
	if err != nil {
		return nil, err
	}
	s.m.changes.WithLabelValues("admin.transfer").Inc()
	return out, nil
}
