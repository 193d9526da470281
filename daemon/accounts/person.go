package accounts

import (
	"context"

	"github.com/hufu-hsm/hufu/daemon/apierr"
	"github.com/hufu-hsm/hufu/daemon/identity"
)

// VerifiedPerson returns the verified name and the ID number of a user, the ID number opened
// in the HSM, for a domain that must ask the verification provider about this person (a
// bank card bound to the account, seed §1.8.5). FailedPrecondition if the real name is not
// verified. The caller must clear the ID number from memory when done and never log it.
func (s *Service) VerifiedPerson(ctx context.Context, userID string) (identity.Person, error) {
	u, err := s.VerifiedUser(ctx, userID)
	if err != nil {
		return identity.Person{}, err
	}
	id, err := s.Keyring.Unwrap(ctx, u.Identity.GetIdNumberSealed(), idNumberAD(userID))
	if err != nil {
		return identity.Person{}, &apierr.Error{Kind: apierr.Unavailable, Message: "HSM unavailable", Cause: err}
	}
	defer clear(id)
	return identity.Person{Name: u.Identity.GetName(), IDNumber: string(id)}, nil
}
