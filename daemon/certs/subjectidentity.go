package certs

import (
	"context"
	"errors"

	"github.com/hufu-hsm/hufu/daemon/apierr"
	"github.com/hufu-hsm/hufu/daemon/ca"
)

// withIDNumber gives a person's application the holder's ID number, opened in the HSM from
// the verified identity the account keeps sealed: the CA makes the certificate's identity
// value from it (full or keyed hash, certificates.subject_identity), where orders keep only
// the masked number for reviewers. An enterprise's application names its USCC instead. The
// number is never logged and never in an error.
func (s *Service) withIDNumber(ctx context.Context, app *ca.Application) error {
	if app.USCC != "" {
		return nil
	}
	p, err := s.deps.Accounts.VerifiedPerson(ctx, app.UserID)
	var ae *apierr.Error
	if errors.As(err, &ae) && ae.Kind == apierr.FailedPrecondition {
		return apierr.New(apierr.FailedPrecondition, "the applicant's real name is no longer verified; verify it again before the certificate can be issued")
	}
	if err != nil {
		return err
	}
	if p.Name != app.Name || p.IDNumber == "" {
		// The order was made for another verified identity than the account now holds.
		return apierr.New(apierr.FailedPrecondition, "the order's name does not match the applicant's verified identity; verify it again and apply anew")
	}
	app.IDNumber = p.IDNumber
	return nil
}
