package ocsp

import (
	"bytes"
	"crypto/x509/pkix"
	"encoding/asn1"
	"errors"
	"fmt"
	"math/big"
	"time"

	"github.com/emmansun/gmsm/smx509"
	"golang.org/x/crypto/cryptobyte"
	cbasn1 "golang.org/x/crypto/cryptobyte/asn1"
)

// ResponseStatus is OCSPResponseStatus (RFC 6960 §4.2.1).
type ResponseStatus int

const (
	Successful       ResponseStatus = 0
	MalformedRequest ResponseStatus = 1
	InternalError    ResponseStatus = 2
	TryLater         ResponseStatus = 3
	SigRequired      ResponseStatus = 5
	Unauthorized     ResponseStatus = 6
)

func (s ResponseStatus) String() string {
	switch s {
	case Successful:
		return "successful"
	case MalformedRequest:
		return "malformedRequest"
	case InternalError:
		return "internalError"
	case TryLater:
		return "tryLater"
	case SigRequired:
		return "sigRequired"
	case Unauthorized:
		return "unauthorized"
	}
	return fmt.Sprintf("status(%d)", int(s))
}

// CertStatus is what a SingleResponse says of one certificate.
type CertStatus int

const (
	// Good: the CA issued the certificate and has not revoked it (RFC 6960 says no more:
	// expiry is the relying party's to check).
	Good CertStatus = iota
	// Revoked, with the time and RFC 5280 reason of the revocation.
	Revoked
	// Unknown: the CA never issued a certificate with this serial.
	Unknown
)

func (s CertStatus) String() string {
	switch s {
	case Good:
		return "good"
	case Revoked:
		return "revoked"
	case Unknown:
		return "unknown"
	}
	return "invalid"
}

// Status is a certificate's status as the Source knows it.
type Status struct {
	Status    CertStatus
	RevokedAt time.Time // Revoked only
	Reason    int       // Revoked only: RFC 5280 §5.3.1 reason code; 0 (unspecified) is left out
}

func (s Status) equal(o Status) bool {
	return s.Status == o.Status && s.RevokedAt.Equal(o.RevokedAt) && s.Reason == o.Reason
}

var (
	oidBasicResponse  = asn1.ObjectIdentifier{1, 3, 6, 1, 5, 5, 7, 48, 1, 1}
	oidSM2WithSM3     = asn1.ObjectIdentifier{1, 2, 156, 10197, 1, 501}
	sm2WithSM3AlgoID  = pkix.AlgorithmIdentifier{Algorithm: oidSM2WithSM3} // parameters absent, as for ECDSA
	errorResponseDERs = map[ResponseStatus][]byte{}
)

func init() {
	for _, s := range []ResponseStatus{MalformedRequest, InternalError, TryLater, SigRequired, Unauthorized} {
		errorResponseDERs[s] = errorResponse(s)
	}
}

// errorResponse is OCSPResponse ::= SEQUENCE { responseStatus ENUMERATED } without
// responseBytes, which only a successful response carries.
func errorResponse(s ResponseStatus) []byte {
	der, err := asn1.Marshal(struct{ Status asn1.Enumerated }{asn1.Enumerated(s)})
	if err != nil {
		panic(err)
	}
	return der
}

// The ASN.1 of a response (RFC 6960 §4.2.1; the module is EXPLICIT TAGS):
//
//	OCSPResponse ::= SEQUENCE {
//	   responseStatus         OCSPResponseStatus,
//	   responseBytes      [0] EXPLICIT ResponseBytes OPTIONAL }
//	ResponseBytes ::= SEQUENCE { responseType OBJECT IDENTIFIER, response OCTET STRING }
//	BasicOCSPResponse ::= SEQUENCE {
//	   tbsResponseData        ResponseData,
//	   signatureAlgorithm     AlgorithmIdentifier,
//	   signature              BIT STRING,
//	   certs              [0] EXPLICIT SEQUENCE OF Certificate OPTIONAL }
//	ResponseData ::= SEQUENCE {
//	   version            [0] EXPLICIT Version DEFAULT v1,    -- left out (DER)
//	   responderID            ResponderID,                    -- byKey [2] KeyHash
//	   producedAt             GeneralizedTime,
//	   responses              SEQUENCE OF SingleResponse,
//	   responseExtensions [1] EXPLICIT Extensions OPTIONAL }   -- the nonce
//	SingleResponse ::= SEQUENCE {
//	   certID                 CertID,
//	   certStatus             CertStatus,
//	   thisUpdate             GeneralizedTime,
//	   nextUpdate         [0] EXPLICIT GeneralizedTime OPTIONAL,
//	   singleExtensions   [1] EXPLICIT Extensions OPTIONAL }
//	CertStatus ::= CHOICE {
//	   good    [0] IMPLICIT NULL,
//	   revoked [1] IMPLICIT RevokedInfo,
//	   unknown [2] IMPLICIT NULL }
//	RevokedInfo ::= SEQUENCE {
//	   revocationTime         GeneralizedTime,
//	   revocationReason   [0] EXPLICIT CRLReason OPTIONAL }
type responseASN1 struct {
	Status asn1.Enumerated
	Bytes  responseBytesASN1 `asn1:"explicit,tag:0"`
}

type responseBytesASN1 struct {
	Type     asn1.ObjectIdentifier
	Response []byte
}

type basicResponseASN1 struct {
	TBS                asn1.RawValue
	SignatureAlgorithm pkix.AlgorithmIdentifier
	Signature          asn1.BitString
	Certs              []asn1.RawValue `asn1:"explicit,tag:0,optional"`
}

type responseDataASN1 struct {
	ResponderID asn1.RawValue
	ProducedAt  time.Time `asn1:"generalized"`
	Responses   []singleResponseASN1
	Extensions  []pkix.Extension `asn1:"explicit,tag:1,optional"`
}

type singleResponseASN1 struct {
	CertID     asn1.RawValue
	Status     asn1.RawValue
	ThisUpdate time.Time `asn1:"generalized"`
	NextUpdate time.Time `asn1:"generalized,explicit,tag:0,optional"`
}

type revokedInfoASN1 struct {
	RevokedAt time.Time       `asn1:"generalized"`
	Reason    asn1.Enumerated `asn1:"explicit,tag:0,optional"`
}

type certIDASN1 struct {
	HashAlgorithm  pkix.AlgorithmIdentifier
	IssuerNameHash []byte
	IssuerKeyHash  []byte
	Serial         *big.Int
}

// single is one certificate's answer, ready to encode.
type single struct {
	certID     []byte // the request's CertID DER, echoed as received
	status     Status
	thisUpdate time.Time
	nextUpdate time.Time
}

// tbsResponse encodes ResponseData.
func tbsResponse(responderKeyHash []byte, producedAt time.Time, singles []single, nonce []byte) ([]byte, error) {
	keyHash, err := asn1.Marshal(responderKeyHash)
	if err != nil {
		return nil, err
	}
	data := responseDataASN1{
		ResponderID: asn1.RawValue{Class: asn1.ClassContextSpecific, Tag: 2, IsCompound: true, Bytes: keyHash},
		ProducedAt:  producedAt.UTC(),
	}
	for _, s := range singles {
		st, err := encodeCertStatus(s.status)
		if err != nil {
			return nil, err
		}
		data.Responses = append(data.Responses, singleResponseASN1{CertID: asn1.RawValue{FullBytes: s.certID},
			Status: st, ThisUpdate: s.thisUpdate.UTC(), NextUpdate: s.nextUpdate.UTC()})
	}
	if nonce != nil {
		data.Extensions = []pkix.Extension{{Id: OIDNonce, Value: nonce}}
	}
	return asn1.Marshal(data)
}

func encodeCertStatus(s Status) (asn1.RawValue, error) {
	switch s.Status {
	case Good:
		return asn1.RawValue{Class: asn1.ClassContextSpecific, Tag: 0}, nil
	case Unknown:
		return asn1.RawValue{Class: asn1.ClassContextSpecific, Tag: 2}, nil
	case Revoked:
		if s.Reason < 0 || s.Reason > 10 || s.Reason == 7 {
			return asn1.RawValue{}, fmt.Errorf("ocsp: revocation reason %d is not an RFC 5280 CRLReason", s.Reason)
		}
		der, err := asn1.Marshal(revokedInfoASN1{RevokedAt: s.RevokedAt.UTC().Truncate(time.Second), Reason: asn1.Enumerated(s.Reason)})
		if err != nil {
			return asn1.RawValue{}, err
		}
		var seq asn1.RawValue
		if _, err := asn1.Unmarshal(der, &seq); err != nil {
			return asn1.RawValue{}, err
		}
		// IMPLICIT [1]: RevokedInfo's content under the context tag.
		return asn1.RawValue{Class: asn1.ClassContextSpecific, Tag: 1, IsCompound: true, Bytes: seq.Bytes}, nil
	}
	return asn1.RawValue{}, fmt.Errorf("ocsp: invalid certificate status %d", s.Status)
}

// basicResponse wraps signed ResponseData into a successful OCSPResponse.
func basicResponse(tbs, signature []byte, certs [][]byte) ([]byte, error) {
	basic := basicResponseASN1{TBS: asn1.RawValue{FullBytes: tbs}, SignatureAlgorithm: sm2WithSM3AlgoID,
		Signature: asn1.BitString{Bytes: signature, BitLength: 8 * len(signature)}}
	for _, c := range certs {
		basic.Certs = append(basic.Certs, asn1.RawValue{FullBytes: c})
	}
	der, err := asn1.Marshal(basic)
	if err != nil {
		return nil, err
	}
	return asn1.Marshal(responseASN1{Status: asn1.Enumerated(Successful),
		Bytes: responseBytesASN1{Type: oidBasicResponse, Response: der}})
}

// Response is a parsed OCSP response (ParseResponse).
type Response struct {
	Status ResponseStatus
	// The rest is set for a successful response only.
	ResponderKeyHash []byte
	ProducedAt       time.Time
	Singles          []SingleResponse
	Nonce            []byte // the nonce extension's value, as in Request.Nonce
	Certs            []*smx509.Certificate
}

// SingleResponse is one certificate's answer in a Response.
type SingleResponse struct {
	CertID     CertID
	Status     Status
	ThisUpdate time.Time
	NextUpdate time.Time
}

// ParseResponse decodes an OCSP response and, for a successful one, checks its SM2-with-SM3
// signature (default ID) under issuer's key and that the responder is issuer by key. It is
// the relying party's side, for tests and for callers in hufu that check a certificate
// through OCSP; it accepts only what this package produces (a basic response signed by the
// issuing CA itself).
func ParseResponse(der []byte, issuer *smx509.Certificate) (*Response, error) {
	var head struct {
		Status asn1.Enumerated
		Bytes  asn1.RawValue `asn1:"explicit,tag:0,optional"`
	}
	if rest, err := asn1.Unmarshal(der, &head); err != nil || len(rest) != 0 {
		return nil, fmt.Errorf("ocsp: response: %v", errOr(err, "trailing bytes"))
	}
	out := &Response{Status: ResponseStatus(head.Status)}
	if out.Status != Successful {
		if len(head.Bytes.FullBytes) != 0 {
			return nil, errors.New("ocsp: an unsuccessful response with responseBytes")
		}
		return out, nil
	}
	var rb responseBytesASN1
	if rest, err := asn1.Unmarshal(head.Bytes.Bytes, &rb); err != nil || len(rest) != 0 {
		return nil, fmt.Errorf("ocsp: responseBytes: %v", errOr(err, "trailing bytes"))
	}
	if !rb.Type.Equal(oidBasicResponse) {
		return nil, fmt.Errorf("ocsp: response type %v is not id-pkix-ocsp-basic", rb.Type)
	}
	var basic basicResponseASN1
	if rest, err := asn1.Unmarshal(rb.Response, &basic); err != nil || len(rest) != 0 {
		return nil, fmt.Errorf("ocsp: BasicOCSPResponse: %v", errOr(err, "trailing bytes"))
	}
	if !basic.SignatureAlgorithm.Algorithm.Equal(oidSM2WithSM3) {
		return nil, fmt.Errorf("ocsp: signature algorithm %v is not SM2-with-SM3", basic.SignatureAlgorithm.Algorithm)
	}
	if err := issuer.CheckSignature(smx509.SM2WithSM3, basic.TBS.FullBytes, basic.Signature.RightAlign()); err != nil {
		return nil, fmt.Errorf("ocsp: response signature: %w", err)
	}
	for _, c := range basic.Certs {
		cert, err := smx509.ParseCertificate(c.FullBytes)
		if err != nil {
			return nil, fmt.Errorf("ocsp: response certificate: %w", err)
		}
		out.Certs = append(out.Certs, cert)
	}
	var data responseDataASN1
	if rest, err := asn1.Unmarshal(basic.TBS.FullBytes, &data); err != nil || len(rest) != 0 {
		return nil, fmt.Errorf("ocsp: ResponseData: %v", errOr(err, "trailing bytes"))
	}
	if data.ResponderID.Class != asn1.ClassContextSpecific || data.ResponderID.Tag != 2 {
		return nil, errors.New("ocsp: responderID is not byKey")
	}
	if rest, err := asn1.Unmarshal(data.ResponderID.Bytes, &out.ResponderKeyHash); err != nil || len(rest) != 0 {
		return nil, fmt.Errorf("ocsp: responderID: %v", errOr(err, "trailing bytes"))
	}
	keyHashes, err := newIssuerHashes(issuer)
	if err != nil {
		return nil, err
	}
	if !bytes.Equal(out.ResponderKeyHash, keyHashes.responderKeyHash) {
		return nil, errors.New("ocsp: the responder is not the issuer")
	}
	out.ProducedAt = data.ProducedAt
	for _, e := range data.Extensions {
		if e.Id.Equal(OIDNonce) {
			out.Nonce = e.Value
		}
	}
	for _, r := range data.Responses {
		s := SingleResponse{ThisUpdate: r.ThisUpdate, NextUpdate: r.NextUpdate}
		wrapped := cryptobyte.String(r.CertID.FullBytes)
		if s.CertID, err = parseCertID(&wrapped); err != nil || !wrapped.Empty() {
			return nil, fmt.Errorf("ocsp: response certID: %v", errOr(err, "trailing bytes"))
		}
		if r.Status.Class != asn1.ClassContextSpecific {
			return nil, errors.New("ocsp: certStatus")
		}
		switch r.Status.Tag {
		case 0:
			s.Status.Status = Good
		case 2:
			s.Status.Status = Unknown
		case 1:
			var info revokedInfoASN1
			seq := cryptobyte.String(r.Status.Bytes)
			var b cryptobyte.Builder
			b.AddASN1(cbasn1.SEQUENCE, func(b *cryptobyte.Builder) { b.AddBytes(seq) })
			if rest, err := asn1.Unmarshal(b.BytesOrPanic(), &info); err != nil || len(rest) != 0 {
				return nil, fmt.Errorf("ocsp: revokedInfo: %v", errOr(err, "trailing bytes"))
			}
			s.Status = Status{Status: Revoked, RevokedAt: info.RevokedAt, Reason: int(info.Reason)}
		default:
			return nil, errors.New("ocsp: certStatus")
		}
		out.Singles = append(out.Singles, s)
	}
	return out, nil
}

func errOr(err error, otherwise string) string {
	if err != nil {
		return err.Error()
	}
	return otherwise
}

// NewCertID computes the CertID of the certificate with serial issued by issuer, under hash
// (RFC 6960 §4.1.1: the hashes of the issuer's DER subject and of its public key's bits).
func NewCertID(hash HashAlgorithm, issuer *smx509.Certificate, serial *big.Int) (CertID, error) {
	h, err := newIssuerHashes(issuer)
	if err != nil {
		return CertID{}, err
	}
	ih, ok := h.byHash[hash]
	if !ok {
		return CertID{}, fmt.Errorf("ocsp: unsupported hash algorithm %v", hash)
	}
	return CertID{Hash: hash, IssuerNameHash: ih.name, IssuerKeyHash: ih.key, Serial: new(big.Int).Set(serial)}, nil
}

// MarshalRequest encodes an unsigned OCSPRequest for ids, with a nonce extension if nonce
// (the octets of the nonce, 1..32) is non-empty.
func MarshalRequest(ids []CertID, nonce []byte) ([]byte, error) {
	type requestASN1 struct{ CertID certIDASN1 }
	type tbsASN1 struct {
		Requests   []requestASN1
		Extensions []pkix.Extension `asn1:"explicit,tag:2,optional"`
	}
	var tbs tbsASN1
	for _, id := range ids {
		oid := id.Hash.oid()
		if oid == nil {
			return nil, fmt.Errorf("ocsp: unsupported hash algorithm %v", id.Hash)
		}
		tbs.Requests = append(tbs.Requests, requestASN1{certIDASN1{HashAlgorithm: pkix.AlgorithmIdentifier{Algorithm: oid, Parameters: asn1.NullRawValue},
			IssuerNameHash: id.IssuerNameHash, IssuerKeyHash: id.IssuerKeyHash, Serial: id.Serial}})
	}
	if len(nonce) > 0 {
		v, err := asn1.Marshal(nonce)
		if err != nil {
			return nil, err
		}
		tbs.Extensions = []pkix.Extension{{Id: OIDNonce, Value: v}}
	}
	return asn1.Marshal(struct{ TBS tbsASN1 }{tbs})
}
