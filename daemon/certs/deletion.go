package certs

import (
	"context"

	"github.com/hufu-hsm/hufu/daemon/accounts"
	"github.com/hufu-hsm/hufu/daemon/identity"
	"github.com/hufu-hsm/hufu/store"
	"github.com/hufu-hsm/hufu/store/storepb"
	"google.golang.org/protobuf/proto"
)

// What account deletion (accounts.DeleteAccount, seed §1.9.4) asks of certificates: whether
// any certificate is still valid or any order still open, and the erasure of the personal
// data on orders. Issued certificates themselves are kept: the CA must keep them and their
// revocation status (电子签名法 §24).

var (
	_ accounts.CertificateHolders = (*Service)(nil)
	_ accounts.Eraser             = (*Service)(nil)
)

// listAll pages through a collection's records under idPrefix.
func listAll[M proto.Message](ctx context.Context, st *store.Store, c store.Collection[M], idPrefix string, keep func(M) bool) ([]store.Item[M], error) {
	var out []store.Item[M]
	cursor := ""
	for {
		page, err := c.List(ctx, st, idPrefix, store.ListOptions{Cursor: cursor, Limit: store.MaxListLimit}, func(_ string, m M) bool {
			return keep == nil || keep(m)
		})
		if err != nil {
			return nil, err
		}
		out = append(out, page.Items...)
		if page.Next == "" {
			return out, nil
		}
		cursor = page.Next
	}
}

// LiveCertificates lists the serials of a user's certificates that are still valid: active
// or disabled, and not expired. Revoke them before deleting the account.
func (s *Service) LiveCertificates(ctx context.Context, userID string) ([]string, error) {
	now := s.deps.Clock.Now().UnixNano()
	items, err := listAll(ctx, s.deps.Store, certs, "cert/"+userID+"/", func(c *storepb.Certificate) bool {
		return (c.Status == certActive || c.Status == certDisabled) && now < c.NotAfterUnixNano
	})
	if err != nil {
		return nil, err
	}
	out := make([]string, len(items))
	for i, it := range items {
		out[i] = it.Value.Serial
	}
	return out, nil
}

// OpenOrders lists the ids of a user's orders in review, awaiting payment or issuing.
func (s *Service) OpenOrders(ctx context.Context, userID string) ([]string, error) {
	items, err := listAll(ctx, s.deps.Store, orders, "order/"+userID+"/", func(o *storepb.Order) bool {
		return o.Status == statusInReview || o.Status == statusAwaiting || o.Status == statusIssuing
	})
	if err != nil {
		return nil, err
	}
	out := make([]string, len(items))
	for i, it := range items {
		out[i] = it.Value.Id
	}
	return out, nil
}

// PrepareErasure (accounts.Eraser) erases a deleted account's personal data from the
// certificate domain: on each order the subject's name is masked and the CSR and the
// authorisation letter's content, signature and seal image are dropped (the hashes stay);
// the stored letters and the inbox are deleted. An enterprise order keeps the enterprise's
// name, which is not personal data.
func (s *Service) PrepareErasure(ctx context.Context, userID string) (func(tx *store.Tx) error, error) {
	os, err := listAll(ctx, s.deps.Store, orders, "order/"+userID+"/", nil)
	if err != nil {
		return nil, err
	}
	ls, err := listAll(ctx, s.deps.Store, letters, "letter/"+userID+"/", nil)
	if err != nil {
		return nil, err
	}
	ms, err := listAll(ctx, s.deps.Store, inbox, "inbox/"+userID+"/", nil)
	if err != nil {
		return nil, err
	}
	return func(tx *store.Tx) error {
		for _, it := range os {
			o, err := orders.Get(tx, orders.ID(it.Key))
			if err != nil {
				return err
			}
			if o.EnterpriseUscc == "" {
				o.SubjectName = identity.MaskName(o.SubjectName)
			}
			o.Csr, o.EncryptionCsr = nil, nil
			if a := o.Authorisation; a != nil {
				a.Content, a.Signature, a.SealImage = nil, nil, nil
			}
			if err := orders.Put(tx, orders.ID(it.Key), o); err != nil {
				return err
			}
		}
		for _, it := range ls {
			if err := letters.Delete(tx, letters.ID(it.Key)); err != nil {
				return err
			}
		}
		for _, it := range ms {
			if err := inbox.Delete(tx, inbox.ID(it.Key)); err != nil {
				return err
			}
		}
		return nil
	}, nil
}
