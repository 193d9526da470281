package enterprises

import (
	"context"
	"errors"

	hufuv1 "github.com/hufu-hsm/hufu/api/hufu/v1"
	"github.com/hufu-hsm/hufu/daemon/accounts"
	"github.com/hufu-hsm/hufu/daemon/authn"
	"github.com/hufu-hsm/hufu/daemon/identity"
	"github.com/hufu-hsm/hufu/store"
)

// What account deletion (accounts.DeleteAccount, seed §1.9.4) asks of enterprises.

var (
	_ accounts.Memberships = (*Service)(nil)
	_ accounts.Eraser      = (*Service)(nil)
)

// EnterprisesOf lists the USCCs of the enterprises a user belongs to: an account is deleted
// only after leaving them all.
func (s *Service) EnterprisesOf(ctx context.Context, userID string) ([]string, error) {
	ms, err := s.ListMine(ctx, authn.Caller{UserID: userID})
	if err != nil {
		return nil, err
	}
	out := make([]string, len(ms))
	for i, m := range ms {
		out[i] = m.Enterprise.GetUscc()
	}
	return out, nil
}

// PrepareErasure (accounts.Eraser) masks the applicant's name on a deleted account's join
// applications (the administrators' history keeps the masked name and phone) and withdraws
// those still pending.
func (s *Service) PrepareErasure(ctx context.Context, userID string) (func(tx *store.Tx) error, error) {
	ks, _, err := s.deps.Store.ListIndex(ctx, indexUserJoin, userID, store.ListOptions{Limit: store.MaxListLimit})
	if err != nil {
		return nil, err
	}
	return func(tx *store.Tx) error {
		for _, k := range ks {
			a, err := joins.Get(tx, joins.ID(k))
			if errors.Is(err, store.ErrNotFound) {
				continue
			}
			if err != nil {
				return err
			}
			a.ApplicantName = identity.MaskName(a.ApplicantName)
			if a.Status == int32(hufuv1.JoinStatus_JOIN_STATUS_PENDING) {
				a.Status, a.UpdatedUnixNano = int32(hufuv1.JoinStatus_JOIN_STATUS_WITHDRAWN), tx.Now().UnixNano()
			}
			if err := joins.Put(tx, joins.ID(k), a); err != nil {
				return err
			}
		}
		return nil
	}, nil
}
