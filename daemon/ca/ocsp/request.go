package ocsp

import (
	"bytes"
	"crypto"
	"crypto/sha1"
	"crypto/sha256"
	"encoding/asn1"
	"errors"
	"fmt"
	"hash"
	"math/big"

	"github.com/emmansun/gmsm/sm3"
	"github.com/emmansun/gmsm/smx509"
	"golang.org/x/crypto/cryptobyte"
	cbasn1 "golang.org/x/crypto/cryptobyte/asn1"
)

// Limits on what a request may carry. A request is untrusted bytes from anyone on the
// network, so everything it can make the responder do is bounded.
const (
	// MaxRequestBytes bounds a request's DER (a POST body, or a GET path once decoded).
	// A request for one certificate is about 80 bytes; the bound leaves room for
	// MaxCertIDs certificates and a signed request with its certificates.
	MaxRequestBytes = 8 << 10
	// MaxCertIDs is the most certificates one request may ask about.
	MaxCertIDs = 10
	// MaxNonceBytes is RFC 8954's bound on a nonce (1..32 octets).
	MaxNonceBytes = 32
	// maxSerialBytes is RFC 5280's bound on a serial number (20 octets).
	maxSerialBytes = 20
)

var (
	// OIDNonce is id-pkix-ocsp-nonce (RFC 6960 §4.4.1).
	OIDNonce = asn1.ObjectIdentifier{1, 3, 6, 1, 5, 5, 7, 48, 1, 2}

	oidSHA1   = asn1.ObjectIdentifier{1, 3, 14, 3, 2, 26}
	oidSHA256 = asn1.ObjectIdentifier{2, 16, 840, 1, 101, 3, 4, 2, 1}
	oidSM3    = asn1.ObjectIdentifier{1, 2, 156, 10197, 1, 401}
)

// HashAlgorithm is a hash a CertID may be computed with.
type HashAlgorithm int

const (
	SHA1 HashAlgorithm = iota + 1
	SHA256
	SM3
)

func (h HashAlgorithm) String() string {
	switch h {
	case SHA1:
		return "sha1"
	case SHA256:
		return "sha256"
	case SM3:
		return "sm3"
	}
	return "unsupported"
}

func (h HashAlgorithm) oid() asn1.ObjectIdentifier {
	switch h {
	case SHA1:
		return oidSHA1
	case SHA256:
		return oidSHA256
	case SM3:
		return oidSM3
	}
	return nil
}

func (h HashAlgorithm) new() hash.Hash {
	switch h {
	case SHA1:
		return sha1.New()
	case SHA256:
		return sha256.New()
	case SM3:
		return sm3.New()
	}
	panic("ocsp: unsupported hash algorithm")
}

func (h HashAlgorithm) size() int {
	switch h {
	case SHA1:
		return crypto.SHA1.Size()
	case SHA256:
		return crypto.SHA256.Size()
	case SM3:
		return sm3.Size
	}
	return 0
}

func (h HashAlgorithm) sum(b []byte) []byte {
	d := h.new()
	d.Write(b)
	return d.Sum(nil)
}

// CertID names the certificate a request asks about (RFC 6960 §4.1.1).
type CertID struct {
	Hash           HashAlgorithm
	IssuerNameHash []byte
	IssuerKeyHash  []byte
	Serial         *big.Int

	raw []byte // as received, echoed in the response
}

// Request is a parsed OCSP request.
type Request struct {
	CertIDs []CertID
	// Nonce is the DER of the nonce extension's value (an OCTET STRING of 1..32 octets),
	// echoed as is in the response; nil if the request has none.
	Nonce []byte
}

// ErrMalformed is returned (wrapped) for a request that is not a well-formed OCSP request
// hufu accepts; the responder answers malformedRequest.
var ErrMalformed = errors.New("ocsp: malformed request")

func malformed(what string) error { return fmt.Errorf("%w: %s", ErrMalformed, what) }

// ParseRequest parses an OCSPRequest (RFC 6960 §4.1.1) in strict DER:
//
//	OCSPRequest ::= SEQUENCE {
//	   tbsRequest              TBSRequest,
//	   optionalSignature   [0] EXPLICIT Signature OPTIONAL }
//	TBSRequest ::= SEQUENCE {
//	   version             [0] EXPLICIT Version DEFAULT v1,
//	   requestorName       [1] EXPLICIT GeneralName OPTIONAL,
//	   requestList             SEQUENCE OF Request,
//	   requestExtensions   [2] EXPLICIT Extensions OPTIONAL }
//	Request ::= SEQUENCE {
//	   reqCert                 CertID,
//	   singleRequestExtensions [0] EXPLICIT Extensions OPTIONAL }
//	CertID ::= SEQUENCE {
//	   hashAlgorithm           AlgorithmIdentifier,
//	   issuerNameHash          OCTET STRING,
//	   issuerKeyHash           OCTET STRING,
//	   serialNumber            CertificateSerialNumber }
//
// It refuses (ErrMalformed) trailing bytes at any level, a version other than v1, more
// than MaxCertIDs or no CertIDs, a hash algorithm other than SHA-1, SHA-256 or SM3, hashes
// of the wrong length, a serial that is not a positive integer of at most 20 octets, a
// nonce that is not an OCTET STRING of 1..32 octets, repeated or critical unknown
// extensions. requestorName and optionalSignature are accepted and ignored: responses are
// public information, so who asks changes nothing.
func ParseRequest(der []byte) (*Request, error) {
	if len(der) > MaxRequestBytes {
		return nil, malformed("request too large")
	}
	input := cryptobyte.String(der)
	var req, tbs cryptobyte.String
	if !input.ReadASN1(&req, cbasn1.SEQUENCE) || !input.Empty() {
		return nil, malformed("not one DER SEQUENCE")
	}
	if !req.ReadASN1(&tbs, cbasn1.SEQUENCE) {
		return nil, malformed("tbsRequest")
	}
	if !req.SkipOptionalASN1(cbasn1.Tag(0).Constructed().ContextSpecific()) || !req.Empty() {
		return nil, malformed("optionalSignature")
	}

	var version int64
	if !tbs.ReadOptionalASN1Integer(&version, cbasn1.Tag(0).Constructed().ContextSpecific(), int64(0)) {
		return nil, malformed("version")
	}
	if version != 0 {
		return nil, malformed("version is not v1")
	}
	if !tbs.SkipOptionalASN1(cbasn1.Tag(1).Constructed().ContextSpecific()) {
		return nil, malformed("requestorName")
	}
	var list cryptobyte.String
	if !tbs.ReadASN1(&list, cbasn1.SEQUENCE) {
		return nil, malformed("requestList")
	}
	out := &Request{}
	for !list.Empty() {
		if len(out.CertIDs) == MaxCertIDs {
			return nil, malformed(fmt.Sprintf("more than %d certificates", MaxCertIDs))
		}
		var one cryptobyte.String
		if !list.ReadASN1(&one, cbasn1.SEQUENCE) {
			return nil, malformed("request")
		}
		id, err := parseCertID(&one)
		if err != nil {
			return nil, err
		}
		var exts cryptobyte.String
		var present bool
		if !one.ReadOptionalASN1(&exts, &present, cbasn1.Tag(0).Constructed().ContextSpecific()) || !one.Empty() {
			return nil, malformed("singleRequestExtensions")
		}
		if present {
			if err := parseExtensions(exts, nil); err != nil {
				return nil, err
			}
		}
		out.CertIDs = append(out.CertIDs, id)
	}
	if len(out.CertIDs) == 0 {
		return nil, malformed("no certificates")
	}
	var exts cryptobyte.String
	var present bool
	if !tbs.ReadOptionalASN1(&exts, &present, cbasn1.Tag(2).Constructed().ContextSpecific()) || !tbs.Empty() {
		return nil, malformed("requestExtensions")
	}
	if present {
		if err := parseExtensions(exts, &out.Nonce); err != nil {
			return nil, err
		}
	}
	return out, nil
}

func parseCertID(s *cryptobyte.String) (CertID, error) {
	var id CertID
	var raw, certID, alg cryptobyte.String
	if !s.ReadASN1Element(&raw, cbasn1.SEQUENCE) {
		return id, malformed("certID")
	}
	id.raw = raw
	if !raw.ReadASN1(&certID, cbasn1.SEQUENCE) {
		return id, malformed("certID")
	}
	if !certID.ReadASN1(&alg, cbasn1.SEQUENCE) {
		return id, malformed("hashAlgorithm")
	}
	var oid asn1.ObjectIdentifier
	if !alg.ReadASN1ObjectIdentifier(&oid) {
		return id, malformed("hashAlgorithm")
	}
	// Parameters are absent or NULL (RFC 5754 allows both; OpenSSL sends NULL).
	if !alg.Empty() && (!alg.SkipASN1(cbasn1.NULL) || !alg.Empty()) {
		return id, malformed("hashAlgorithm parameters")
	}
	switch {
	case oid.Equal(oidSHA1):
		id.Hash = SHA1
	case oid.Equal(oidSHA256):
		id.Hash = SHA256
	case oid.Equal(oidSM3):
		id.Hash = SM3
	default:
		return id, malformed("unsupported hash algorithm")
	}
	if !certID.ReadASN1Bytes(&id.IssuerNameHash, cbasn1.OCTET_STRING) ||
		!certID.ReadASN1Bytes(&id.IssuerKeyHash, cbasn1.OCTET_STRING) {
		return id, malformed("issuer hashes")
	}
	if len(id.IssuerNameHash) != id.Hash.size() || len(id.IssuerKeyHash) != id.Hash.size() {
		return id, malformed("issuer hash length")
	}
	id.Serial = new(big.Int)
	if !certID.ReadASN1Integer(id.Serial) || !certID.Empty() {
		return id, malformed("serialNumber")
	}
	if id.Serial.Sign() <= 0 || len(id.Serial.Bytes()) > maxSerialBytes {
		return id, malformed("serialNumber is not a positive integer of at most 20 octets")
	}
	return id, nil
}

// parseExtensions reads Extensions ::= SEQUENCE SIZE (1..MAX) OF Extension. With nonce
// non-nil it takes the nonce; an extension that is repeated, or critical and unknown,
// makes the request malformed.
func parseExtensions(s cryptobyte.String, nonce *[]byte) error {
	var list cryptobyte.String
	if !s.ReadASN1(&list, cbasn1.SEQUENCE) || !s.Empty() || list.Empty() {
		return malformed("extensions")
	}
	seen := map[string]bool{}
	for !list.Empty() {
		var ext cryptobyte.String
		var oid asn1.ObjectIdentifier
		var critical bool
		var value []byte
		if !list.ReadASN1(&ext, cbasn1.SEQUENCE) || !ext.ReadASN1ObjectIdentifier(&oid) ||
			!ext.ReadOptionalASN1Boolean(&critical, cbasn1.BOOLEAN, false) ||
			!ext.ReadASN1Bytes(&value, cbasn1.OCTET_STRING) || !ext.Empty() {
			return malformed("extension")
		}
		if seen[oid.String()] {
			return malformed("repeated extension")
		}
		seen[oid.String()] = true
		switch {
		case nonce != nil && oid.Equal(OIDNonce):
			// RFC 8954: Nonce ::= OCTET STRING (SIZE(1..32)), DER inside extnValue.
			v := cryptobyte.String(value)
			var n []byte
			if !v.ReadASN1Bytes(&n, cbasn1.OCTET_STRING) || !v.Empty() || len(n) < 1 || len(n) > MaxNonceBytes {
				return malformed("nonce is not an OCTET STRING of 1..32 octets")
			}
			*nonce = value
		case critical:
			return malformed("unknown critical extension")
		}
	}
	return nil
}

// issuerHashes are an issuer's CertID hashes under each supported hash, and its responder
// key hash.
type issuerHashes struct {
	byHash map[HashAlgorithm]nameAndKeyHash
	// responderKeyHash is ResponderID byKey: the SHA-1 of the issuer's subjectPublicKey
	// BIT STRING value (RFC 6960 §4.2.1), as for a CertID with SHA-1.
	responderKeyHash []byte
}

type nameAndKeyHash struct{ name, key []byte }

func newIssuerHashes(issuer *smx509.Certificate) (*issuerHashes, error) {
	spki := cryptobyte.String(issuer.RawSubjectPublicKeyInfo)
	var inner cryptobyte.String
	var keyBits []byte
	if !spki.ReadASN1(&inner, cbasn1.SEQUENCE) || !inner.SkipASN1(cbasn1.SEQUENCE) ||
		!inner.ReadASN1BitStringAsBytes(&keyBits) || !inner.Empty() {
		return nil, errors.New("ocsp: the issuer's subjectPublicKeyInfo does not parse")
	}
	h := &issuerHashes{byHash: map[HashAlgorithm]nameAndKeyHash{}}
	for _, alg := range []HashAlgorithm{SHA1, SHA256, SM3} {
		h.byHash[alg] = nameAndKeyHash{name: alg.sum(issuer.RawSubject), key: alg.sum(keyBits)}
	}
	h.responderKeyHash = h.byHash[SHA1].key
	return h, nil
}

// matches reports whether id names a certificate of this issuer.
func (h *issuerHashes) matches(id CertID) bool {
	want, ok := h.byHash[id.Hash]
	return ok && bytes.Equal(want.name, id.IssuerNameHash) && bytes.Equal(want.key, id.IssuerKeyHash)
}
