package accounts

import (
	"context"
	"errors"
	"time"

	"github.com/hufu-hsm/hufu/daemon/apierr"
	"github.com/hufu-hsm/hufu/daemon/authn"
	"github.com/hufu-hsm/hufu/daemon/identity"
	"github.com/hufu-hsm/hufu/store"
	"github.com/hufu-hsm/hufu/store/storepb"
)

// faceTTL bounds how long a started face verification may take.
const faceTTL = 10 * time.Minute

// idNumberAD binds a sealed ID number to its account, so a blob copied to another user's
// record does not open.
func idNumberAD(userID string) []byte { return []byte("hufu/identity/v1 id-number " + userID) }

func (s *Service) checkPerson(p identity.Person) error {
	if err := identity.CheckName(p.Name); err != nil {
		return apierr.Invalid("name", err)
	}
	if err := identity.CheckResidentID(p.IDNumber, s.now()); err != nil {
		return apierr.Invalid("id_number", err)
	}
	return nil
}

func verifierError(err error) error {
	switch {
	case errors.Is(err, identity.ErrMismatch):
		return apierr.New(apierr.FailedPrecondition, "the verification provider did not confirm these details")
	case errors.Is(err, identity.ErrUnknownSession):
		return apierr.New(apierr.NotFound, "no such face verification (it expired or was completed)")
	}
	return &apierr.Error{Kind: apierr.Unavailable, Message: "the verification provider is unavailable; retry later", Cause: err}
}

// VerifyNameID verifies the caller's real name by name and resident ID number (CFCA).
func (s *Service) VerifyNameID(ctx context.Context, caller authn.Caller, p identity.Person) (*storepb.VerifiedIdentity, error) {
	if err := s.checkPerson(p); err != nil {
		return nil, err
	}
	if err := s.notYetVerified(ctx, caller); err != nil {
		return nil, err
	}
	if err := s.Verifier.VerifyNameID(ctx, p); err != nil {
		return nil, verifierError(err)
	}
	return s.saveIdentity(ctx, caller, identity.MethodCFCA, p, "")
}

// StartFace starts an Alipay face verification of the caller.
func (s *Service) StartFace(ctx context.Context, caller authn.Caller, p identity.Person) (id, url string, err error) {
	if err := s.checkPerson(p); err != nil {
		return "", "", err
	}
	if err := s.notYetVerified(ctx, caller); err != nil {
		return "", "", err
	}
	id, url, err = s.Verifier.StartFace(ctx, p)
	if err != nil {
		return "", "", verifierError(err)
	}
	if store.ValidPart(id) != nil {
		return "", "", &apierr.Error{Kind: apierr.Unavailable, Message: "the verification provider answered oddly", Cause: errors.New("unusable certify id")}
	}
	err = s.Store.Update(ctx, func(tx *store.Tx) error {
		if err := faceChecks.Put(tx, "face/"+id, &storepb.PendingFace{UserId: caller.UserID}, store.ExpiresAt(tx.Now().Add(faceTTL))); err != nil {
			return err
		}
		return tx.Audit(store.Event{Actor: caller.Actor(), Action: "identity.face.start", Subject: userKey(caller.UserID), Outcome: store.OutcomeOK})
	})
	return id, url, err
}

// CompleteFace finishes a face verification the caller started.
func (s *Service) CompleteFace(ctx context.Context, caller authn.Caller, id string) (*storepb.VerifiedIdentity, error) {
	if store.ValidPart(id) != nil {
		return nil, apierr.Invalidf("certify_id", "not a verification id")
	}
	pending, err := faceChecks.Read(ctx, s.Store, "face/"+id)
	if errors.Is(err, store.ErrNotFound) || (err == nil && pending.UserId != caller.UserID) {
		return nil, apierr.New(apierr.NotFound, "no such face verification (it expired or was completed)")
	}
	if err != nil {
		return nil, err
	}
	p, err := s.Verifier.CompleteFace(ctx, id)
	if err != nil {
		return nil, verifierError(err)
	}
	return s.saveIdentity(ctx, caller, identity.MethodAlipayFace, p, "face/"+id)
}

// VerifyBankCard verifies the caller's real name by the four elements of a bank card.
func (s *Service) VerifyBankCard(ctx context.Context, caller authn.Caller, c identity.BankCard) (*storepb.VerifiedIdentity, error) {
	if err := s.checkPerson(c.Person); err != nil {
		return nil, err
	}
	if err := identity.CheckCardNumber(c.CardNumber); err != nil {
		return nil, apierr.Invalid("card_number", err)
	}
	if err := checkPhone("reserved_phone", c.ReservedPhone); err != nil {
		return nil, err
	}
	if err := s.notYetVerified(ctx, caller); err != nil {
		return nil, err
	}
	if err := s.Verifier.VerifyBankCard(ctx, c); err != nil {
		return nil, verifierError(err)
	}
	return s.saveIdentity(ctx, caller, identity.MethodBankCard, c.Person, "", identity.MaskCard(c.CardNumber))
}

// maxVerificationsPerDay bounds real-name verification attempts per account: each asks a
// paid provider whether a name, ID number or card belong together, which must not become an
// oracle for other people's data.
const maxVerificationsPerDay = 10

// notYetVerified checks that the caller's identity is not verified yet and counts the
// attempt against the daily limit, auditing it.
func (s *Service) notYetVerified(ctx context.Context, caller authn.Caller) error {
	return s.Store.Update(ctx, func(tx *store.Tx) error {
		u, err := users.Get(tx, caller.UserID)
		if errors.Is(err, store.ErrNotFound) {
			return apierr.New(apierr.Unauthenticated, "the account no longer exists")
		}
		if err != nil {
			return err
		}
		if u.Identity != nil {
			return apierr.New(apierr.FailedPrecondition, "this account's real name is already verified")
		}
		if err := bump(tx, "identity", caller.UserID, maxVerificationsPerDay, 24*time.Hour, "too many real-name verification attempts today"); err != nil {
			return err
		}
		return tx.Audit(store.Event{Actor: caller.Actor(), Action: "identity.verify.attempt", Subject: userKey(caller.UserID), Outcome: store.OutcomeOK})
	})
}

// saveIdentity stores a verified identity with the ID number sealed under the HSM and
// masked, and deletes the pending record it came from, if any.
func (s *Service) saveIdentity(ctx context.Context, caller authn.Caller, m identity.Method, p identity.Person, pending string, cardMasked ...string) (*storepb.VerifiedIdentity, error) {
	sealed, err := s.Keyring.Wrap(ctx, []byte(p.IDNumber), idNumberAD(caller.UserID))
	if err != nil {
		return nil, &apierr.Error{Kind: apierr.Unavailable, Message: "HSM unavailable", Cause: err}
	}
	v := &storepb.VerifiedIdentity{
		Method: int32(m), Name: p.Name, IdNumberSealed: sealed, IdNumberMasked: identity.MaskID(p.IDNumber),
		VerifiedUnixNano: nanos(s.now()),
	}
	if len(cardMasked) > 0 {
		v.CardMasked = cardMasked[0]
	}
	err = s.Store.Update(ctx, func(tx *store.Tx) error {
		u, err := users.Get(tx, caller.UserID)
		if err != nil {
			return err
		}
		if u.Identity != nil {
			return apierr.New(apierr.FailedPrecondition, "this account's real name is already verified")
		}
		// Sealed before the transaction: a KEK rotation may have begun since.
		if v.IdNumberSealed, err = s.Keyring.EnsureCurrent(ctx, v.IdNumberSealed, idNumberAD(caller.UserID)); err != nil {
			return &apierr.Error{Kind: apierr.Unavailable, Message: "HSM unavailable", Cause: err}
		}
		u.Identity = v
		if err := users.Put(tx, u.Id, u); err != nil {
			return err
		}
		if pending != "" {
			if err := faceChecks.Delete(tx, pending); err != nil {
				return err
			}
		}
		return tx.Audit(store.Event{Actor: caller.Actor(), Action: "identity.verify", Subject: userKey(u.Id), Outcome: store.OutcomeOK,
			Details: map[string]string{"method": methodName(m), "name": identity.MaskName(p.Name), "id_number": v.IdNumberMasked}})
	})
	return v, err
}

func methodName(m identity.Method) string {
	switch m {
	case identity.MethodCFCA:
		return "cfca"
	case identity.MethodAlipayFace:
		return "alipay_face"
	case identity.MethodBankCard:
		return "bank_card"
	}
	return "unknown"
}
