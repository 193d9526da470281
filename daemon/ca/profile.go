package ca

import (
	"crypto/hmac"
	"encoding/asn1"
	"encoding/hex"
	"errors"
	"fmt"
	"strings"
	"time"

	"crypto/x509/pkix"

	"github.com/emmansun/gmsm/sm3"
	"github.com/emmansun/gmsm/smx509"
)

// Holder is whom an end-entity certificate names.
type Holder int

const (
	// HolderPerson: a natural person (个人证书), named by verified name and identity value.
	HolderPerson Holder = iota + 1
	// HolderEnterprise: an enterprise (企业证书), named by its exact name and its USCC.
	HolderEnterprise
)

// String names the holder as the docs and tests do.
func (h Holder) String() string {
	switch h {
	case HolderPerson:
		return "person"
	case HolderEnterprise:
		return "enterprise"
	}
	return "unspecified"
}

// HolderOf is the holder an application names: an enterprise when it carries a USCC.
func HolderOf(app *Application) Holder {
	if app.USCC != "" {
		return HolderEnterprise
	}
	return HolderPerson
}

// OrganizationPerson is the subject O of a natural person's certificate.
const OrganizationPerson = "个人"

// Profile is what an end-entity certificate of one holder and usage contains beyond what
// every end-entity certificate has (see the package documentation).
type Profile struct {
	// KeyUsage is the key usage extension, always critical.
	KeyUsage smx509.KeyUsage
	// ExtKeyUsage is the extended key usage extension (non-critical).
	ExtKeyUsage []smx509.ExtKeyUsage
	// Subject is C=CN, O=<Organization, or the holder's name if empty>,
	// SERIALNUMBER=<SerialNumber>, CN=<the holder's name>; C and SERIALNUMBER are
	// PrintableString, O and CN UTF8String.
	Organization string
	SerialNumber SubjectSerial
}

// SubjectSerial is what a profile puts in the subject serialNumber attribute.
type SubjectSerial int

const (
	// SerialIdentity: a person's identity value under the CA's policy (SubjectIdentity).
	SerialIdentity SubjectSerial = iota + 1
	// SerialUSCC: the enterprise's 统一社会信用代码, 18 characters.
	SerialUSCC
)

// Key usages of the two certificates of a pair. Signing certificates make signatures that
// bind the holder (bids, authorisation letters): digitalSignature and contentCommitment
// (nonRepudiation). Encryption certificates receive bid envelopes and other data encrypted
// to them: keyEncipherment (SM2 encryption of a content key, GM/T 0010 envelopes) and
// dataEncipherment (SM2 encryption of short data directly). keyAgreement is left out: SM2
// public-key encryption is key transport — its ephemeral point belongs to one ciphertext,
// not to an agreement between two parties — and the split key cannot take part in the SM2
// key exchange protocol (GM/T 0003.3, used by TLCP's ECDHE suites) in any case, so a
// certificate asserting it would promise what the key cannot do.
const (
	signingKeyUsage    = smx509.KeyUsageDigitalSignature | smx509.KeyUsageContentCommitment
	encryptionKeyUsage = smx509.KeyUsageKeyEncipherment | smx509.KeyUsageDataEncipherment
)

// profiles is the one table of end-entity profiles: holder × usage. docs/certificates.md
// writes the same table for relying parties; the tests of this package parse an issued
// certificate of each.
var profiles = map[Holder]map[Usage]Profile{
	HolderPerson: {
		UsageSigning: {KeyUsage: signingKeyUsage,
			ExtKeyUsage:  []smx509.ExtKeyUsage{smx509.ExtKeyUsageClientAuth, smx509.ExtKeyUsageEmailProtection},
			Organization: OrganizationPerson, SerialNumber: SerialIdentity},
		UsageEncryption: {KeyUsage: encryptionKeyUsage,
			ExtKeyUsage:  []smx509.ExtKeyUsage{smx509.ExtKeyUsageEmailProtection},
			Organization: OrganizationPerson, SerialNumber: SerialIdentity},
		UsageCombined: {KeyUsage: signingKeyUsage | encryptionKeyUsage,
			ExtKeyUsage:  []smx509.ExtKeyUsage{smx509.ExtKeyUsageClientAuth, smx509.ExtKeyUsageEmailProtection},
			Organization: OrganizationPerson, SerialNumber: SerialIdentity},
	},
	HolderEnterprise: {
		UsageSigning: {KeyUsage: signingKeyUsage,
			ExtKeyUsage:  []smx509.ExtKeyUsage{smx509.ExtKeyUsageClientAuth, smx509.ExtKeyUsageEmailProtection},
			SerialNumber: SerialUSCC},
		UsageEncryption: {KeyUsage: encryptionKeyUsage,
			ExtKeyUsage:  []smx509.ExtKeyUsage{smx509.ExtKeyUsageEmailProtection},
			SerialNumber: SerialUSCC},
		UsageCombined: {KeyUsage: signingKeyUsage | encryptionKeyUsage,
			ExtKeyUsage:  []smx509.ExtKeyUsage{smx509.ExtKeyUsageClientAuth, smx509.ExtKeyUsageEmailProtection},
			SerialNumber: SerialUSCC},
	},
}

// ErrNoUsage refuses an application that does not say whether it is for the signing or the
// encryption certificate.
var ErrNoUsage = errors.New("ca: the application has no usage (want signing or encryption)")

// ProfileOf returns the profile of holder and usage.
func ProfileOf(holder Holder, usage Usage) (Profile, error) {
	p, ok := profiles[holder][usage]
	if !ok {
		if usage != UsageSigning && usage != UsageEncryption && usage != UsageCombined {
			return Profile{}, ErrNoUsage
		}
		return Profile{}, fmt.Errorf("ca: no profile for holder %v", holder)
	}
	return p, nil
}

// Options configure an embedded CA beyond its identity.
type Options struct {
	// CRLNextUpdate is a CRL's validity (24h if zero).
	CRLNextUpdate time.Duration
	// PublicURL is the base URL at which relying parties reach the appliance's PKI listener
	// (certificates.public_url). Certificates point into it (CRL distribution point,
	// authority information access); empty leaves those extensions out.
	PublicURL string
	// OCSP puts the OCSP responder's URL in leaves' authority information access.
	OCSP bool
	// SubjectIdentity is what a person's subject serialNumber holds; SubjectIdentityKey is
	// the HMAC-SM3 key of IdentityKeyedHash.
	SubjectIdentity    IdentityPolicy
	SubjectIdentityKey []byte
}

// Paths under certificates.public_url, shared by the certificates that point to them and the
// PKI listener that serves them.
func IssuingCRLPath(caID string) string  { return "/ca/" + caID + "/issuing.crl" }
func RootCRLPath(caID string) string     { return "/ca/" + caID + "/root.crl" }
func IssuingCertPath(caID string) string { return "/ca/" + caID + "/issuing.cer" }
func RootCertPath(caID string) string    { return "/ca/" + caID + "/root.cer" }
func OCSPPath(caID string) string        { return "/ocsp/" + caID }

// publicURL joins the configured base and a path; "" when no base is configured.
func (o Options) publicURL(path string) string {
	if o.PublicURL == "" {
		return ""
	}
	return strings.TrimRight(o.PublicURL, "/") + path
}

// IdentityPolicy is what a person's certificate carries in its subject serialNumber
// (certificates.subject_identity).
type IdentityPolicy string

const (
	// IdentityFull: the resident ID number itself.
	IdentityFull IdentityPolicy = "full"
	// IdentityKeyedHash: HMAC-SM3 of the ID number under a key the platform shares with the
	// relying parties that need to match a certificate to a person.
	IdentityKeyedHash IdentityPolicy = "keyed_hash"
)

// MinIdentityKeyBytes is the least HMAC-SM3 key length of IdentityKeyedHash (SM3's output).
const MinIdentityKeyBytes = 32

// NormalizeIDNumber is the ID number as both policies use it: surrounding white space
// removed and the check character upper case ("x" → "X"). It refuses anything but 1..64
// ASCII letters and digits, which a PrintableString holds; the error never quotes it.
func NormalizeIDNumber(idNumber string) (string, error) {
	n := strings.ToUpper(strings.TrimSpace(idNumber))
	if n == "" || len(n) > 64 {
		return "", errors.New("ca: the ID number is empty or longer than 64 characters")
	}
	for i := 0; i < len(n); i++ {
		if c := n[i]; (c < '0' || c > '9') && (c < 'A' || c > 'Z') {
			return "", errors.New("ca: the ID number has a character other than a letter or a digit")
		}
	}
	return n, nil
}

// SubjectIdentity is a person's subject serialNumber under policy: the normalised ID number
// (IdentityFull), or the upper-case hexadecimal HMAC-SM3 of its ASCII bytes under key
// (IdentityKeyedHash, 64 characters, the X.520 upper bound of serialNumber). A relying party
// that holds the key and knows the ID number recomputes it; docs/certificates.md has a test
// vector.
func SubjectIdentity(policy IdentityPolicy, key []byte, idNumber string) (string, error) {
	n, err := NormalizeIDNumber(idNumber)
	if err != nil {
		return "", err
	}
	switch policy {
	case IdentityFull:
		return n, nil
	case IdentityKeyedHash:
		if len(key) < MinIdentityKeyBytes {
			return "", fmt.Errorf("ca: the subject identity key has %d bytes, want at least %d", len(key), MinIdentityKeyBytes)
		}
		m := hmac.New(sm3.New, key)
		m.Write([]byte(n))
		return strings.ToUpper(hex.EncodeToString(m.Sum(nil))), nil
	}
	return "", fmt.Errorf("ca: unknown subject identity policy %q", policy)
}

var (
	oidCountry      = asn1.ObjectIdentifier{2, 5, 4, 6}
	oidOrganization = asn1.ObjectIdentifier{2, 5, 4, 10}
	oidSerialNumber = asn1.ObjectIdentifier{2, 5, 4, 5}
	oidCommonName   = asn1.ObjectIdentifier{2, 5, 4, 3}
)

// rawSubject encodes the subject with explicit string types, so that a relying party finds
// the identity in serialNumber as a PrintableString whatever characters it holds (encoding/
// asn1 would choose the type from the content).
func rawSubject(organization, serialNumber, commonName string) ([]byte, error) {
	if !printable(serialNumber) || serialNumber == "" || len(serialNumber) > 64 {
		return nil, errors.New("ca: the subject serialNumber is not 1..64 PrintableString characters")
	}
	if organization == "" || commonName == "" {
		return nil, errors.New("ca: empty subject name")
	}
	attr := func(oid asn1.ObjectIdentifier, tag int, value string) []pkix.AttributeTypeAndValue {
		return []pkix.AttributeTypeAndValue{{Type: oid, Value: asn1.RawValue{Tag: tag, Bytes: []byte(value)}}}
	}
	return asn1.Marshal(pkix.RDNSequence{
		attr(oidCountry, asn1.TagPrintableString, "CN"),
		attr(oidOrganization, asn1.TagUTF8String, organization),
		attr(oidSerialNumber, asn1.TagPrintableString, serialNumber),
		attr(oidCommonName, asn1.TagUTF8String, commonName),
	})
}

// printable reports whether s is in the PrintableString alphabet (X.680 §41.4).
func printable(s string) bool {
	for i := 0; i < len(s); i++ {
		c := s[i]
		switch {
		case 'a' <= c && c <= 'z', 'A' <= c && c <= 'Z', '0' <= c && c <= '9':
		case strings.IndexByte(" '()+,-./:=?", c) >= 0:
		default:
			return false
		}
	}
	return true
}

// SubjectKeyID is the Subject Key Identifier hufu gives every certificate: the leftmost 160
// bits of the SM3 hash of the subjectPublicKey BIT STRING's value (the uncompressed point,
// without tag, length and unused-bits octet) — RFC 7093 §2 method 1 with SM3 in place of
// SHA-256, so that the whole profile rests on the GM algorithms.
func SubjectKeyID(pub any) ([]byte, error) {
	spki, err := smx509.MarshalPKIXPublicKey(pub)
	if err != nil {
		return nil, fmt.Errorf("ca: encoding the public key: %w", err)
	}
	var info struct {
		Algorithm pkix.AlgorithmIdentifier
		PublicKey asn1.BitString
	}
	if rest, err := asn1.Unmarshal(spki, &info); err != nil || len(rest) != 0 {
		return nil, fmt.Errorf("ca: re-reading the public key: %v", err)
	}
	h := sm3.Sum(info.PublicKey.Bytes)
	return h[:20], nil
}
