package ca

import (
	"context"
	"crypto/rand"
	"fmt"
	"math/big"

	"github.com/emmansun/gmsm/sm2"

	"github.com/hufu-hsm/hufu/daemon/ca/ocsp"
)

// IssuedFunc reports whether the CA issued the certificate with serial (lower-case hex, as
// Issued.Serial). hufu's certificate index (daemon/certs) knows; the daemon passes its
// lookup in, so this package does not depend on the certificate service.
type IssuedFunc func(ctx context.Context, serial string) (bool, error)

// ocspSource answers the OCSP responder from the CA's revocation list and the certificate
// index.
type ocspSource struct {
	ca     *Embedded
	issued IssuedFunc
}

var (
	_ ocsp.Source = ocspSource{}
	_ ocsp.Signer = (*Embedded)(nil)
)

// OCSPSource returns the status source of the CA's OCSP responder: revoked if the serial
// is on the revocation list (which is authoritative, whatever the index says), else good
// if issued reports the CA issued it, else unknown. Once the issuing CA is on the root's
// list, every certificate it issued is answered revoked (RFC 6960 §2.7), at the issuing
// CA's revocation time unless its own entry is earlier, so that a relying party asking
// OCSP about a leaf alone never hears "good" under a revoked CA.
func (e *Embedded) OCSPSource(issued IssuedFunc) ocsp.Source {
	return ocspSource{ca: e, issued: issued}
}

func (s ocspSource) Status(ctx context.Context, serial *big.Int) (ocsp.Status, error) {
	hex := serialHex(serial)
	r, revoked, err := s.ca.Revocation(ctx, hex)
	if err != nil {
		return ocsp.Status{}, err
	}
	caR, caRevoked, err := s.ca.IssuingCARevocation(ctx)
	if err != nil {
		return ocsp.Status{}, err
	}
	if revoked && (!caRevoked || !caR.At.Before(r.At)) {
		return ocsp.Status{Status: ocsp.Revoked, RevokedAt: r.At, Reason: r.Reason}, nil
	}
	issued := revoked // a serial on the list was issued, whatever the index says
	if !issued {
		if issued, err = s.issued(ctx, hex); err != nil {
			return ocsp.Status{}, fmt.Errorf("ca: is it issued: %w", err)
		}
	}
	switch {
	case !issued:
		return ocsp.Status{Status: ocsp.Unknown}, nil
	case caRevoked:
		return ocsp.Status{Status: ocsp.Revoked, RevokedAt: caR.At, Reason: LeafReasonUnderRevokedCA(caR.Reason)}, nil
	}
	return ocsp.Status{Status: ocsp.Good}, nil
}

// LeafReasonUnderRevokedCA is the reason OCSP gives for a certificate revoked because its
// issuing CA was revoked for caReason: cACompromise for a compromised issuing key (the
// leaf's own key is not known to be compromised), else the CA's reason.
func LeafReasonUnderRevokedCA(caReason int) int {
	if caReason == ReasonKeyCompromise {
		return ReasonCACompromise
	}
	return caReason
}

// SignOCSP signs an OCSP response's tbsResponseData with the issuing key (SM2 with SM3 and
// the default ID), also after the issuing CA was revoked: the responder is the issuing CA,
// so no other key can sign its answers. The key is unwrapped through the HSM for this one
// signature and its scalar cleared after; the responder caches signed responses, never the
// key.
func (e *Embedded) SignOCSP(ctx context.Context, tbs []byte) ([]byte, error) {
	key, err := e.issuingKey(ctx)
	if err != nil {
		return nil, err
	}
	defer clear(key.D.Bits())
	sig, err := key.Sign(rand.Reader, tbs, sm2.DefaultSM2SignerOpts)
	if err != nil {
		return nil, fmt.Errorf("ca: signing an OCSP response: %w", err)
	}
	return sig, nil
}
