package scan

import (
	"context"

	"github.com/hufu-hsm/hufu/daemon/ca"
	"github.com/hufu-hsm/hufu/store/storepb"
)

// A certificate pair (package certs) answers a session with its signing certificate: it
// signs, logs in and binds; a GENERATE session's system envelopes the bid file to the pair's
// encryption certificate, and a DECRYPT session offers the certificate the envelopes were
// registered for, which is that encryption certificate.

// isPairEncryption reports whether c is the encryption certificate of a pair.
func isPairEncryption(c *storepb.Certificate) bool {
	return ca.Usage(c.Usage) == ca.UsageEncryption && c.PairSerial != ""
}

// envelopeCertificate is the certificate a GENERATE session's bid file is enveloped to
// (DER): the encryption certificate of signer's pair, or signer itself, a certificate made
// before pairs that signs and decrypts. Nil if the pair's record cannot be read (as the
// result leaves out a certificate it cannot read): never the signing one in its place.
func (s *Service) envelopeCertificate(ctx context.Context, signer *storepb.Certificate) []byte {
	if signer.PairSerial == "" {
		return signer.Der
	}
	pair, _, err := s.deps.Certs.Certificate(ctx, signer.PairSerial)
	if err != nil {
		return nil
	}
	return pair.Der
}
