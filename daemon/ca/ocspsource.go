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
// if issued reports the CA issued it, else unknown.
func (e *Embedded) OCSPSource(issued IssuedFunc) ocsp.Source {
	return ocspSource{ca: e, issued: issued}
}

func (s ocspSource) Status(ctx context.Context, serial *big.Int) (ocsp.Status, error) {
	hex := serialHex(serial)
	r, revoked, err := s.ca.Revocation(ctx, hex)
	if err != nil {
		return ocsp.Status{}, err
	}
	if revoked {
		return ocsp.Status{Status: ocsp.Revoked, RevokedAt: r.At, Reason: r.Reason}, nil
	}
	issued, err := s.issued(ctx, hex)
	if err != nil {
		return ocsp.Status{}, fmt.Errorf("ca: is it issued: %w", err)
	}
	if !issued {
		return ocsp.Status{Status: ocsp.Unknown}, nil
	}
	return ocsp.Status{Status: ocsp.Good}, nil
}

// SignOCSP signs an OCSP response's tbsResponseData with the issuing key (SM2 with SM3 and
// the default ID). The key is unwrapped through the HSM for this one signature and its
// scalar cleared after; the responder caches signed responses, never the key.
func (e *Embedded) SignOCSP(ctx context.Context, tbs []byte) ([]byte, error) {
	key, err := e.signer(ctx)
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
