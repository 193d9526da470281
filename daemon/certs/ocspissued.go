package certs

import (
	"context"
	"errors"

	"github.com/hufu-hsm/hufu/daemon/ca"
	"github.com/hufu-hsm/hufu/store"
)

// IssuedBy returns the question a CA's OCSP responder asks of the certificate index: did
// CA caID issue the certificate with this serial? Every certificate hufu keeps is claimed
// in the index under its serial with the order that paid for it, so a serial that is not
// there, or whose record names another CA, was never issued by caID (the responder says
// "unknown"). Revoked serials are answered from the CA's revocation list before this is
// asked.
func (s *Service) IssuedBy(caID string) ca.IssuedFunc {
	return func(ctx context.Context, serial string) (bool, error) {
		key, err := s.deps.Store.Lookup(ctx, indexCert, serial)
		if errors.Is(err, store.ErrNotFound) {
			return false, nil
		}
		if err != nil {
			return false, err
		}
		c, err := certs.Read(ctx, s.deps.Store, certs.ID(key))
		if errors.Is(err, store.ErrNotFound) {
			return false, nil
		}
		if err != nil {
			return false, err
		}
		return c.CaId == caID, nil
	}
}

// Connector returns the connector of a configured CA.
func (s *Service) Connector(caID string) (ca.Connector, bool) {
	c, ok := s.cas[caID]
	return c.Connector, ok
}
