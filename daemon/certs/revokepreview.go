package certs

import (
	"context"
	"slices"
	"strings"

	hufuv1 "github.com/hufu-hsm/hufu/api/hufu/v1"
	"github.com/hufu-hsm/hufu/daemon/apierr"
	"github.com/hufu-hsm/hufu/daemon/authn"
	"github.com/hufu-hsm/hufu/store/storepb"
)

// Revoking a certificate destroys its key's server share, so every certificate of the key
// goes with it (another CA's, a renewal's predecessor). Before the person confirms, they are
// told which: PreviewRevocation lists them, and a revocation through the API must echo the
// ones they can still use (active or disabled, not expired) — a phone cannot revoke more
// than it showed.

// RevocationPreview returns every certificate of serial's key not revoked yet (serial
// included) and, of the others, the serials the person can still use, which a revocation
// must acknowledge.
func (s *Service) RevocationPreview(ctx context.Context, caller authn.Caller, serial string) ([]*storepb.Certificate, []string, error) {
	c, err := s.ownedCert(ctx, caller, serial)
	if err != nil {
		return nil, nil, err
	}
	siblings, err := s.keyCertificates(ctx, pairKeys(c)...)
	if err != nil {
		return nil, nil, err
	}
	var all []*storepb.Certificate
	var ack []string
	for _, sib := range siblings {
		if sib.cert.Status == certRevoked {
			continue
		}
		all = append(all, sib.cert)
		st := s.effective(sib.cert)
		// A pair's other certificate goes with it unlisted: one certificate per application.
		if sib.cert.Serial != serial && sib.cert.Serial != c.PairSerial && (st == hufuv1.CertificateStatus_CERTIFICATE_STATUS_ACTIVE || st == hufuv1.CertificateStatus_CERTIFICATE_STATUS_DISABLED) {
			ack = append(ack, sib.cert.Serial)
		}
	}
	return all, ack, nil
}

// CheckRevocationAcknowledged refuses a revocation of serial that does not acknowledge every
// other usable certificate of its key (RevocationPreview).
func (s *Service) CheckRevocationAcknowledged(ctx context.Context, caller authn.Caller, serial string, acknowledged []string) error {
	_, ack, err := s.RevocationPreview(ctx, caller, serial)
	if err != nil {
		return err
	}
	var missing []string
	for _, a := range ack {
		if !slices.Contains(acknowledged, a) {
			missing = append(missing, a)
		}
	}
	if len(missing) > 0 {
		return apierr.Invalidf("acknowledged_serials", "revoking %s also revokes %s (the same key; its share is destroyed): list them to confirm (PreviewRevocation)",
			serial, strings.Join(missing, ", "))
	}
	return nil
}
