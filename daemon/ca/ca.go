// Package ca is hufu's embedded SM2 certificate authority and the interface through which
// hufu talks to any CA, embedded or external (CFCA and others).
//
// # The embedded CA
//
// Each configured embedded CA is a self-signed root and one issuing CA certified by it, both
// SM2 keys signing with SM3 (gmsm smx509). `hufud init` creates them (Ensure); the private
// keys are generated in Go and stored only as HSM blobs (hsm.Keyring.Wrap) in the CA's
// record c/ca/<ca id>, with associated data
//
//	"hufu/ca/v1 root-key " ‖ ca id     and     "hufu/ca/v1 issuing-key " ‖ ca id
//
// so a blob moved to another CA or role does not open. Unwrapped keys live only for the
// duration of one signing operation.
//
// # End-entity certificates
//
// A person (个人证书) or an enterprise (企业证书) holds a signing and an encryption
// certificate, each on its own split key; the profile of each holder × usage is one row of
// the table in profile.go (ProfileOf), written out for relying parties in
// docs/certificates.md. Every end-entity certificate is:
//
//   - X.509 v3, SM2 public key, signature SM2-with-SM3 by the issuing CA;
//
//   - serial: 16 bytes from crypto/rand with the top bit cleared (127 random bits);
//
//   - subject: C=CN, O=个人 (a person) or O=<enterprise name>, SERIALNUMBER=<identity>,
//     CN=<verified name or enterprise name>, serialNumber and C as PrintableString, O and CN
//     as UTF8String. A person's identity is, per certificates.subject_identity, the resident
//     ID number itself or its HMAC-SM3 under a key the platform shares with relying parties
//     (SubjectIdentity), never a masked string; an enterprise's is its USCC;
//
//   - validity: chosen by the applicant, 1 to 3 years, never beyond the issuing CA;
//
//   - key usage (critical): signing certificates digitalSignature and contentCommitment
//     (non-repudiation: bid documents are signed with them), encryption certificates
//     keyEncipherment and dataEncipherment (bid files are encrypted to them); extended key
//     usage clientAuth and emailProtection (signing) or emailProtection (encryption); basic
//     constraints (critical) not a CA;
//
//   - Subject Key Identifier: SM3 of the public key, leftmost 160 bits (SubjectKeyID); the
//     CA certificates hufud init makes have one too. Authority Key Identifier: the issuer's;
//
//   - with certificates.public_url set, a CRL distribution point (the issuing CA's CRL) and
//     authority information access (the issuing CA's certificate, and the OCSP responder
//     when certificates.ocsp is on), at the fixed paths of IssuingCRLPath and its
//     neighbours; the issuing CA's certificate points to the root's CRL and certificate;
//
//   - the platforms and roaming regions (漫游区域) the certificate is valid for, in the
//     non-critical extension OIDPlatforms:
//
//     HufuPlatforms ::= SEQUENCE {
//     platforms SEQUENCE OF PrintableString, -- hufu platform ids, e.g. "zj-ggzy"
//     regions   SEQUENCE OF PrintableString  -- 6-digit GB/T 2260 region codes
//     }
//
// OIDPlatforms is 1.3.6.1.4.1.61911.1.1 under the private enterprise arc 1.3.6.1.4.1.61911,
// a placeholder until the vendor's IANA private enterprise number is registered; relying
// parties must match it by this constant.
//
// # Revocation
//
// Each level of the hierarchy has its own revocation list and CRL (see revocation.go for the
// records): Revoke adds a leaf's serial to the issuing CA's list, RevokeIssuingCA the issuing
// CA certificate to the root's (RevokeIssuingCAApproved inside the batch of a second security
// officer's approval, the admin surface's route); from then on the CA signs no certificate
// (ErrIssuingCARevoked, FailedPrecondition), while its issuing key goes on signing the
// issuing CA's CRL and OCSP responses, which answer revoked for every certificate it issued.
// CRLAt returns a level's CRL signed by that level's key (the
// root CRL is how a relying party checks the chain at depth 1), with thisUpdate, nextUpdate
// (the configured interval later), a CRL number that only grows per level, and the signer's
// key identifier as AKI; it is remade, with the next number, after an entry was added and
// once half of its validity has passed. The CRL is encoded entry by entry from the store
// (crlencode.go), so a list of 100,000 entries costs one buffer of the CRL's size.
package ca

import (
	"context"
	"crypto/ecdsa"
	"crypto/rand"
	"encoding/asn1"
	"errors"
	"fmt"
	"math/big"
	"time"

	"github.com/emmansun/gmsm/sm2"
	"github.com/emmansun/gmsm/smx509"
)

// OIDPlatforms identifies the extension that lists the platforms and regions a
// certificate is valid for (see the package documentation).
var OIDPlatforms = asn1.ObjectIdentifier{1, 3, 6, 1, 4, 1, 61911, 1, 1}

// Platforms is the content of the OIDPlatforms extension.
type Platforms struct {
	Platforms []string
	Regions   []string
}

// MarshalPlatforms encodes the extension value.
func MarshalPlatforms(p Platforms) ([]byte, error) {
	if p.Platforms == nil {
		p.Platforms = []string{}
	}
	if p.Regions == nil {
		p.Regions = []string{}
	}
	return asn1.Marshal(p)
}

// PlatformsOf reads the extension from a certificate; ok is false if it has none.
func PlatformsOf(cert *smx509.Certificate) (p Platforms, ok bool, err error) {
	for _, ext := range cert.Extensions {
		if ext.Id.Equal(OIDPlatforms) {
			rest, err := asn1.Unmarshal(ext.Value, &p)
			if err != nil || len(rest) != 0 {
				return p, true, fmt.Errorf("ca: malformed platforms extension: %v", err)
			}
			return p, true, nil
		}
	}
	return p, false, nil
}

// Application is what a CA certifies: a verified natural person's public key, proven by a
// CSR the key signed.
type Application struct {
	// OrderID is hufu's reference of the application.
	OrderID      string
	UserID       string
	Name         string // verified real name, or the enterprise's name
	IDNumberMask string // masked resident ID number (a person), for reviewers
	// IDNumber is a person's full resident ID number, from which the embedded CA makes the
	// subject's identity value under its policy (Options.SubjectIdentity). It is personal
	// data: never logged, never in an error or audit record.
	IDNumber string
	// USCC, for an enterprise certificate (企业证书): the enterprise's 统一社会信用代码,
	// checked by the caller. The subject is then C=CN, O=<name>, SERIALNUMBER=<USCC>,
	// CN=<name>.
	USCC      string
	CSR       []byte // PKCS#10 DER; its signature has been checked
	PublicKey *ecdsa.PublicKey
	// Usage selects the certificate's profile (signing or encryption).
	Usage         Usage
	ValidityYears int
	// NotAfter, if set, overrides ValidityYears (an upgrade keeps the old expiry).
	NotAfter  time.Time
	Platforms []string
	Regions   []string
	// Attachments: the authorisation letter, how it was made ("scan" or "online"), its
	// media type and, for an online letter, the applicant's SM2 signature over it. Submit
	// receives the content; later calls get only the method and hash.
	AuthorisationSHA256    string
	AuthorisationMethod    string
	AuthorisationMediaType string
	Authorisation          []byte
	AuthorisationSignature []byte
}

// Decision is a CA's answer to a submitted application.
type Decision struct {
	State  DecisionState
	Reason string // rejections
}

// DecisionState is where a CA's review stands.
type DecisionState int

const (
	Pending DecisionState = iota
	Approved
	Rejected
)

// Issued is a certificate a CA issued.
type Issued struct {
	DER       []byte
	Serial    string // lower-case hex
	NotBefore time.Time
	NotAfter  time.Time
}

// Connector is what hufu needs of a CA. The embedded CA implements it; a connector for an
// external CA (CFCA and others) implements it over that CA's interface.
type Connector interface {
	ID() string
	Name() string
	// DeskReview reports whether applications to this CA are reviewed on hufu's own review
	// desk (ReviewService). Otherwise hufu polls Review.
	DeskReview() bool
	// Submit hands an application with its CSR and attachments to the CA and returns the
	// CA's reference for it.
	Submit(ctx context.Context, app *Application) (ref string, err error)
	// Review returns the CA's decision on a submitted application.
	Review(ctx context.Context, ref string) (Decision, error)
	// Fetch returns the certificate for an approved and paid application. Calling it again
	// for the same reference may return a new certificate: the caller keeps exactly one.
	Fetch(ctx context.Context, ref string, app *Application) (*Issued, error)
	// Revoke revokes a certificate by serial (lower-case hex) with an RFC 5280 reason code.
	// Revoking a revoked certificate is not an error.
	Revoke(ctx context.Context, serial string, reason int) error
	// Chain returns the issuing CA's certificate and then the root, DER.
	Chain(ctx context.Context) ([][]byte, error)
	// CRL returns the CA's current certificate revocation list, DER.
	CRL(ctx context.Context) ([]byte, error)
}

// CRL reason codes (RFC 5280 §5.3.1) used by hufu.
const (
	ReasonUnspecified        = 0
	ReasonKeyCompromise      = 1
	ReasonCACompromise       = 2
	ReasonAffiliationChanged = 3
	ReasonSuperseded         = 4
	ReasonCessation          = 5 // cessationOfOperation: the holder gave it up (注销)
	ReasonPrivilegeWidth     = 9
)

// IssuingCAReason reports whether reason is one the root revokes an issuing CA certificate
// for (RevokeIssuingCAApproved): keyCompromise, cACompromise, affiliationChanged,
// superseded or cessationOfOperation.
func IssuingCAReason(reason int) bool {
	return reason >= ReasonKeyCompromise && reason <= ReasonCessation
}

// ErrNoCA is returned when a configured embedded CA has not been created by `hufud init`.
var ErrNoCA = errors.New("ca: the CA does not exist yet (run hufud init)")

// newSerial returns a positive 127-bit random serial number.
func newSerial() (*big.Int, error) {
	b := make([]byte, 16)
	if _, err := rand.Read(b); err != nil {
		return nil, err
	}
	b[0] &= 0x7f
	b[0] |= 0x40 // fixed length: 16 bytes, never a leading zero
	return new(big.Int).SetBytes(b), nil
}

func serialHex(n *big.Int) string { return fmt.Sprintf("%032x", n) }

// ParseSerial parses a serial in hex.
func ParseSerial(s string) (*big.Int, bool) {
	if s == "" || len(s) > 40 {
		return nil, false
	}
	n, ok := new(big.Int).SetString(s, 16)
	if !ok || n.Sign() <= 0 {
		return nil, false
	}
	return n, true
}

func newKey() (*sm2.PrivateKey, error) { return sm2.GenerateKey(rand.Reader) }
