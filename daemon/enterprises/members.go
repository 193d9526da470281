package enterprises

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strconv"
	"time"

	"github.com/hufu-hsm/hufu/cosign"
	"github.com/hufu-hsm/hufu/daemon/apierr"
	"github.com/hufu-hsm/hufu/daemon/authn"
	"github.com/hufu-hsm/hufu/store"
	"github.com/hufu-hsm/hufu/store/storepb"
)

// Get returns an enterprise and the caller's membership; NotFound for non-members.
func (s *Service) Get(ctx context.Context, caller authn.Caller, uscc string) (*storepb.Enterprise, *storepb.Member, error) {
	return s.membership(ctx, caller, "uscc", uscc)
}

// Membership is one enterprise of a user with the user's member record.
type Membership struct {
	Enterprise *storepb.Enterprise
	Member     *storepb.Member
}

// ListMine lists the enterprises the caller belongs to.
func (s *Service) ListMine(ctx context.Context, caller authn.Caller) ([]Membership, error) {
	ks, _, err := s.deps.Store.ListIndex(ctx, indexUserEnterprise, caller.UserID, store.ListOptions{Limit: store.MaxListLimit})
	if err != nil {
		return nil, err
	}
	var out []Membership
	for _, k := range ks {
		m, err := members.Read(ctx, s.deps.Store, members.ID(k))
		if errors.Is(err, store.ErrNotFound) {
			continue
		}
		if err != nil {
			return nil, err
		}
		e, err := enterprises.Read(ctx, s.deps.Store, infoID(m.Uscc))
		if err != nil {
			return nil, err
		}
		out = append(out, Membership{Enterprise: e, Member: m})
	}
	return out, nil
}

// Members lists an enterprise's members for a member: the administrator first.
func (s *Service) Members(ctx context.Context, caller authn.Caller, uscc string) ([]*storepb.Member, error) {
	e, _, err := s.membership(ctx, caller, "uscc", uscc)
	if err != nil {
		return nil, err
	}
	page, err := members.List(ctx, s.deps.Store, e.Uscc+"/member/", store.ListOptions{Limit: store.MaxListLimit}, nil)
	if err != nil {
		return nil, err
	}
	out := make([]*storepb.Member, 0, len(page.Items))
	for _, it := range page.Items {
		out = append(out, it.Value)
	}
	slices.SortStableFunc(out, func(a, b *storepb.Member) int { return int(a.Role - b.Role) })
	return out, nil
}

// RegisterDevice registers the calling device of a member to receive delegated pairs: its
// SM2 public key, to which the administrator's device seals the member's new share.
// Registering another device replaces the old one for future grants.
func (s *Service) RegisterDevice(ctx context.Context, caller authn.Caller, uscc string, devicePublicKey []byte) (*storepb.Member, error) {
	if _, err := cosign.ParsePoint(devicePublicKey); err != nil {
		return nil, apierr.Invalid("device_public_key", err)
	}
	e, _, err := s.membership(ctx, caller, "uscc", uscc)
	if err != nil {
		return nil, err
	}
	var out *storepb.Member
	err = s.deps.Store.Update(ctx, func(tx *store.Tx) error {
		m, err := members.Get(tx, memberID(e.Uscc, caller.UserID))
		if errors.Is(err, store.ErrNotFound) {
			return notFound(e.Uscc)
		}
		if err != nil {
			return err
		}
		m.DeviceId, m.DevicePublicKey = caller.DeviceID, devicePublicKey
		if err := members.Put(tx, memberID(e.Uscc, caller.UserID), m); err != nil {
			return err
		}
		out = m
		return audit(tx, caller, "device.register", e.Uscc, map[string]string{"member": caller.UserID, "device": caller.DeviceID,
			"device_key_sha256": sha256Hex(devicePublicKey)})
	})
	return out, err
}

// RemoveMember (administrator) removes a staff member: the removal, the withdrawal of their
// seal authorisations and of the invites they made commit together (re-checking, under the
// enterprise record's lock, that the caller is still the administrator and the member is not);
// then every delegated pair of theirs is recalled. Grants check membership in their own
// transaction, so none can slip in after the removal.
func (s *Service) RemoveMember(ctx context.Context, caller authn.Caller, uscc, userID string) error {
	e, err := s.asAdmin(ctx, caller, uscc, false)
	if err != nil {
		return err
	}
	if userID == caller.UserID {
		return apierr.Invalidf("user_id", "the administrator cannot remove themselves; transfer the role first")
	}
	if store.ValidPart(userID) != nil {
		return apierr.New(apierr.NotFound, "no member %q", userID)
	}
	invitesOf, err := invites.List(ctx, s.deps.Store, e.Uscc+"/invite/", store.ListOptions{Limit: store.MaxListLimit},
		func(_ string, inv *storepb.Invite) bool { return inv.CreatedBy == userID && !inv.Revoked })
	if err != nil {
		return err
	}
	err = s.deps.Store.Update(ctx, func(tx *store.Tx) error {
		ent, err := enterprises.Get(tx, infoID(e.Uscc))
		if err != nil {
			return err
		}
		if ent.AdminUserId != caller.UserID {
			return apierr.New(apierr.PermissionDenied, "only the enterprise's administrator may do this")
		}
		if ent.AdminUserId == userID {
			return apierr.Invalidf("user_id", "the administrator cannot be removed; transfer the role first")
		}
		if _, err := members.Get(tx, memberID(e.Uscc, userID)); errors.Is(err, store.ErrNotFound) {
			return apierr.New(apierr.NotFound, "no member %q", userID)
		} else if err != nil {
			return err
		}
		if err := removeMember(tx, e.Uscc, userID); err != nil {
			return err
		}
		if s.deps.Seals != nil {
			if err := s.deps.Seals.RevokeMember(tx, e.Uscc, userID); err != nil {
				return err
			}
		}
		for _, it := range invitesOf.Items {
			inv := it.Value
			inv.Revoked = true
			if err := invites.Put(tx, inviteID(e.Uscc, inv.Id), inv, store.ExpiresAt(time.Unix(0, inv.ExpiresUnixNano))); err != nil {
				return err
			}
		}
		if err := notice(tx, userID, "已移出企业", "您已被管理员移出企业 "+e.Name); err != nil {
			return err
		}
		return audit(tx, caller, "member.remove", e.Uscc, map[string]string{"member": userID, "invites_revoked": strconv.Itoa(len(invitesOf.Items))})
	})
	if err != nil {
		return err
	}
	s.m.changes.WithLabelValues("member.remove").Inc()
	pairs, err := s.pairsOf(ctx, e, userID)
	if err != nil {
		return err
	}
	for _, p := range pairs {
		if _, err := s.recallPair(ctx, caller, e, p, false); err != nil {
			return fmt.Errorf("the member is removed but a delegated pair was not recalled (recall it again): %w", err)
		}
	}
	return nil
}

// RoleIn is the user's role in an enterprise (0 for none); NotFound if there is no such
// enterprise. The seals domain decides with it who manages and who uses a seal.
func (s *Service) RoleIn(ctx context.Context, uscc, userID string) (int32, error) {
	if _, err := enterprises.Read(ctx, s.deps.Store, infoID(uscc)); errors.Is(err, store.ErrNotFound) || store.ValidPart(uscc) != nil {
		return 0, apierr.New(apierr.NotFound, "no enterprise %s", uscc)
	} else if err != nil {
		return 0, err
	}
	m, err := members.Read(ctx, s.deps.Store, memberID(uscc, userID))
	if errors.Is(err, store.ErrNotFound) {
		return 0, nil
	}
	if err != nil {
		return 0, err
	}
	return m.Role, nil
}
