package accounts

import (
	"context"
	"errors"
	"fmt"
	"strings"

	hufuv1 "github.com/hufu-hsm/hufu/api/hufu/v1"
	"github.com/hufu-hsm/hufu/daemon/apierr"
	"github.com/hufu-hsm/hufu/daemon/authn"
	"github.com/hufu-hsm/hufu/daemon/identity"
	"github.com/hufu-hsm/hufu/store"
)

// Account deletion (账号注销, seed §1.9.4).
//
// An account may be deleted when nothing still depends on the person behind it: no bound
// bank card, no certificate that is still valid (active or disabled and not expired: revoke
// it), no enterprise membership, no open certificate order (in review or awaiting payment)
// and no open after-sales case. Each domain answers for its part through the small
// interfaces below, wired by the daemon (SetDeletion); every unmet precondition is named.
//
// The deletion itself is one store transaction that consumes a fresh SMS code for
// PurposeDeleteAccount, deletes the user record (phone, name, sealed ID number, password
// hash, WeChat openid), frees the phone and WeChat index entries (the number may register
// again, as a new account), revokes every session and its tokens, deletes the SMS codes and
// counters kept under the number, runs each domain's Eraser (saved invoice titles, the
// names and letters on orders, the inbox, the names on join applications, and the server
// shares of the account's keys, which are revoked) and audits "account.delete" with the
// masked phone only.
//
// Kept, because a law requires it and not as personal data in use: issued certificates
// (the CA keeps them and their revocation status, 电子签名法 §24) and issued invoices (tax
// records). They name the user id, which no longer resolves to a person here.

// CardHolders answers whether a user has bound bank cards (commerce/cards).
type CardHolders interface {
	HasCards(ctx context.Context, userID string) (bool, error)
}

// CertificateHolders answers for a user's certificates and certificate orders (certs).
type CertificateHolders interface {
	// LiveCertificates lists the serials of certificates still valid (not revoked, not
	// superseded, not expired).
	LiveCertificates(ctx context.Context, userID string) ([]string, error)
	// OpenOrders lists the ids of orders in review or awaiting payment.
	OpenOrders(ctx context.Context, userID string) ([]string, error)
}

// Memberships lists the enterprises (USCC) a user belongs to (enterprises).
type Memberships interface {
	EnterprisesOf(ctx context.Context, userID string) ([]string, error)
}

// AfterSales lists a user's open after-sales cases (commerce/aftersales).
type AfterSales interface {
	OpenCases(ctx context.Context, userID string) ([]string, error)
}

// NoAfterSales is the AfterSales of an appliance without an after-sales desk: nobody has an
// open case.
type NoAfterSales struct{}

// OpenCases reports no open case.
func (NoAfterSales) OpenCases(context.Context, string) ([]string, error) { return nil, nil }

// Eraser erases or anonymises a domain's personal data of a deleted account. Prepare runs
// before the deletion's transaction (it may read and list the store); the returned function
// runs inside it and must only use tx.
type Eraser interface {
	PrepareErasure(ctx context.Context, userID string) (func(tx *store.Tx) error, error)
}

// Deletion are the domains account deletion asks and erases through.
type Deletion struct {
	Cards        CardHolders
	Certificates CertificateHolders
	Enterprises  Memberships
	// AfterSales defaults to NoAfterSales.
	AfterSales AfterSales
	Erasers    []Eraser
}

// SetDeletion connects the domains account deletion depends on; they are built after
// accounts. Until it is called, DeleteAccount is refused as unavailable.
func (s *Service) SetDeletion(d Deletion) {
	if d.AfterSales == nil {
		d.AfterSales = NoAfterSales{}
	}
	s.deletion = &d
}

// Blocker is one unmet precondition of deleting an account.
type Blocker struct {
	Precondition string // "bank_cards", "certificates", "enterprises", "orders", "after_sales"
	Message      string
}

// DeletionBlockers lists the unmet preconditions of deleting a user's account, in a fixed
// order (the order of the manual's page: cards, certificates, enterprises), empty when the
// account may be deleted.
func (s *Service) DeletionBlockers(ctx context.Context, userID string) ([]Blocker, error) {
	d := s.deletion
	if d == nil || d.Cards == nil || d.Certificates == nil || d.Enterprises == nil {
		return nil, apierr.New(apierr.Unavailable, "account deletion is not available on this appliance")
	}
	var out []Blocker
	cards, err := d.Cards.HasCards(ctx, userID)
	if err != nil {
		return nil, err
	}
	if cards {
		out = append(out, Blocker{"bank_cards", "unbind every bank card first (解绑)"})
	}
	live, err := d.Certificates.LiveCertificates(ctx, userID)
	if err != nil {
		return nil, err
	}
	if len(live) > 0 {
		out = append(out, Blocker{"certificates", fmt.Sprintf("revoke every certificate first (注销): %s", strings.Join(live, ", "))})
	}
	ents, err := d.Enterprises.EnterprisesOf(ctx, userID)
	if err != nil {
		return nil, err
	}
	if len(ents) > 0 {
		out = append(out, Blocker{"enterprises", fmt.Sprintf("leave every enterprise first (退出): %s", strings.Join(ents, ", "))})
	}
	open, err := d.Certificates.OpenOrders(ctx, userID)
	if err != nil {
		return nil, err
	}
	if len(open) > 0 {
		out = append(out, Blocker{"orders", fmt.Sprintf("cancel or finish your open orders first: %s", strings.Join(open, ", "))})
	}
	cases, err := d.AfterSales.OpenCases(ctx, userID)
	if err != nil {
		return nil, err
	}
	if len(cases) > 0 {
		out = append(out, Blocker{"after_sales", fmt.Sprintf("wait until your after-sales cases are closed: %s", strings.Join(cases, ", "))})
	}
	return out, nil
}

// PreviewDeletion lists what still stands in the way of deleting the caller's account.
func (s *Service) PreviewDeletion(ctx context.Context, caller authn.Caller) ([]Blocker, error) {
	return s.DeletionBlockers(ctx, caller.UserID)
}

func blocked(bs []Blocker) error {
	parts := make([]string, len(bs))
	for i, b := range bs {
		parts[i] = b.Precondition + ": " + b.Message
	}
	return &apierr.Error{Kind: apierr.FailedPrecondition, Reason: hufuv1.ReasonAccountDeletionBlocked,
		Message: "the account cannot be deleted yet; " + strings.Join(parts, "; ")}
}

// DeleteAccount deletes the caller's account for good (see the comment at the top of this
// file), given a fresh code sent to the account's number for PurposeDeleteAccount.
//
// The preconditions are read before the transaction (other domains answer them); an
// operation of another domain that lands between that check and the commit (a card bound
// in the same instant) is not seen. The phone's own sessions are revoked in the transaction,
// so no later call of this account can start one.
func (s *Service) DeleteAccount(ctx context.Context, caller authn.Caller, code string, confirmed bool) error {
	if !confirmed {
		return apierr.Invalidf("confirm_irreversible", "deleting the account is irreversible: confirm it")
	}
	if err := checkCode(code); err != nil {
		return err
	}
	bs, err := s.DeletionBlockers(ctx, caller.UserID)
	if err != nil {
		return err
	}
	if len(bs) > 0 {
		return blocked(bs)
	}
	var erase []func(tx *store.Tx) error
	for _, e := range s.deletion.Erasers {
		fn, err := e.PrepareErasure(ctx, caller.UserID)
		if err != nil {
			return err
		}
		erase = append(erase, fn)
	}
	defer s.resolved.forgetUser(caller.UserID)
	return s.Store.Update(ctx, func(tx *store.Tx) error {
		u, err := users.Get(tx, caller.UserID)
		if errors.Is(err, store.ErrNotFound) {
			return apierr.New(apierr.Unauthenticated, "the account no longer exists")
		}
		if err != nil {
			return err
		}
		ref, err := s.phoneKey(ctx, u.Phone)
		if err != nil {
			return err
		}
		if err := s.consumeCode(ctx, tx, ref, PurposeDeleteAccount, code); err != nil {
			return err
		}
		key := userKey(u.Id)
		if err := tx.Unclaim(indexPhone, ref.fp, key); err != nil {
			return err
		}
		if u.WechatOpenId != "" {
			if err := tx.Unclaim(indexWeChat, u.WechatOpenId, key); err != nil {
				return err
			}
		}
		if err := s.revokeAll(ctx, tx, u.Id); err != nil {
			return err
		}
		// What is kept under the number itself: unused codes and the hourly SMS counter.
		for _, p := range allPurposes {
			if err := smsCodes.Delete(tx, codeID(ref.fp, p)); err != nil {
				return err
			}
		}
		if err := counters.Delete(tx, smsCounterID(ref.fp)); err != nil {
			return err
		}
		for _, fn := range erase {
			if err := fn(tx); err != nil {
				return err
			}
		}
		if err := users.Delete(tx, u.Id); err != nil {
			return err
		}
		return tx.Audit(store.Event{Actor: caller.Actor(), Action: "account.delete", Subject: key, Outcome: store.OutcomeOK,
			Details: map[string]string{"phone": identity.MaskPhone(u.Phone)}})
	})
}
