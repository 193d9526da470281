package cms

import (
	"bytes"
	"crypto/ecdsa"
	"crypto/subtle"
	"encoding/asn1"
	"fmt"
	"time"

	"github.com/emmansun/gmsm/sm2"

	"github.com/emmansun/gmsm/sm3"
	"github.com/hufu-hsm/hufu/cosign"
	"golang.org/x/crypto/cryptobyte"
	cbasn1 "golang.org/x/crypto/cryptobyte/asn1"
)

// DigestSize is the size of an SM3 digest, the only content digest used here.
const DigestSize = sm3.Size

// DefaultSignerID is the SM2 signer ID of GB/T 32918.2 used for Z_A.
const DefaultSignerID = "1234567812345678"

// maxAttributesSize bounds the signed attributes a decoder looks at. Ours are about 100
// bytes; the bound only keeps hostile input cheap.
const maxAttributesSize = 4096

// SignedAttributes returns the DER SET OF Attribute that an SM2 signer signs for a document
// whose SM3 digest is contentDigest: content type GM/T 0010 data, signing time (UTC, whole
// seconds), message digest, in canonical DER order. These are exactly the signed bytes; in
// the SignedData they appear with the tag [0] IMPLICIT instead of SET.
func SignedAttributes(contentDigest []byte, signingTime time.Time) ([]byte, error) {
	const op = "signed attributes"
	if len(contentDigest) != DigestSize {
		return nil, newError(op, "content digest", fmt.Errorf("%w: %d bytes, want %d", ErrInput, len(contentDigest), DigestSize))
	}
	t := signingTime.UTC().Truncate(time.Second)
	if t.Before(minTime) || !t.Before(maxTime) {
		return nil, newError(op, "signing time", fmt.Errorf("%w: %s is outside 1950–9999", ErrInput, t.Format(time.RFC3339)))
	}
	attrs := [][]byte{
		attribute(oidAttrContentType, func(b *cryptobyte.Builder) { b.AddASN1ObjectIdentifier(oidData) }),
		attribute(oidAttrSigningTime, func(b *cryptobyte.Builder) { addTime(b, t) }),
		attribute(oidAttrMessageDigest, func(b *cryptobyte.Builder) { b.AddASN1OctetString(contentDigest) }),
	}
	var b cryptobyte.Builder
	addSetOf(&b, cbasn1.SET, attrs)
	der, err := b.Bytes()
	if err != nil {
		return nil, newError(op, "", fmt.Errorf("%w: %w", ErrInput, err))
	}
	return der, nil
}

// attribute encodes Attribute ::= SEQUENCE { type OID, values SET { value } }.
func attribute(oid asn1.ObjectIdentifier, value cryptobyte.BuilderContinuation) []byte {
	var b cryptobyte.Builder
	b.AddASN1(cbasn1.SEQUENCE, func(b *cryptobyte.Builder) {
		b.AddASN1ObjectIdentifier(oid)
		b.AddASN1(cbasn1.SET, value)
	})
	return b.BytesOrPanic() // the values are well-formed by construction
}

// signedAttributes is what the three attributes carry.
type signedAttributes struct {
	digest      []byte
	signingTime time.Time
}

// CheckSignedAttributes is the phone's check of the attributes it is asked to sign: der
// must be exactly a DER SET OF the three attributes SignedAttributes writes (content type,
// signing time, message digest, each once, in canonical order, each with one value),
// the content type GM/T 0010 data and the message digest equal to wantDigest. It returns
// the signing time (UTC) so the phone can show it.
func CheckSignedAttributes(der, wantDigest []byte) (time.Time, error) {
	const op = "check signed attributes"
	if len(wantDigest) != DigestSize {
		return time.Time{}, newError(op, "wanted digest", fmt.Errorf("%w: %d bytes, want %d", ErrInput, len(wantDigest), DigestSize))
	}
	attrs, err := parseSignedAttributes(op, der)
	if err != nil {
		return time.Time{}, err
	}
	if subtle.ConstantTimeCompare(attrs.digest, wantDigest) != 1 {
		return time.Time{}, newError(op, "attribute messageDigest", ErrDigestMismatch)
	}
	return attrs.signingTime, nil
}

func parseSignedAttributes(op string, der []byte) (*signedAttributes, error) {
	if len(der) > maxAttributesSize {
		return nil, newError(op, "signed attributes", fmt.Errorf("%w: longer than %d bytes", ErrMalformed, maxAttributesSize))
	}
	var (
		set  cryptobyte.String
		in   = cryptobyte.String(der)
		out  signedAttributes
		seen = map[string]bool{}
		prev []byte
	)
	if !in.ReadASN1(&set, cbasn1.SET) || !in.Empty() {
		return nil, newError(op, "signed attributes", fmt.Errorf("%w: not a single DER SET", ErrMalformed))
	}
	for !set.Empty() {
		var (
			elem, attr, values cryptobyte.String
			oid                asn1.ObjectIdentifier
		)
		if !set.ReadASN1Element(&elem, cbasn1.SEQUENCE) {
			return nil, newError(op, "attribute", fmt.Errorf("%w: not a SEQUENCE", ErrMalformed))
		}
		if prev != nil && bytes.Compare(prev, elem) >= 0 {
			return nil, newError(op, "attribute", fmt.Errorf("%w: SET OF not in DER order", ErrMalformed))
		}
		prev = elem
		if !elem.ReadASN1(&attr, cbasn1.SEQUENCE) || !attr.ReadASN1ObjectIdentifier(&oid) ||
			!attr.ReadASN1(&values, cbasn1.SET) || !attr.Empty() {
			return nil, newError(op, "attribute", fmt.Errorf("%w: not { OID, SET }", ErrMalformed))
		}
		name, ok := attributeName(oid)
		if !ok {
			return nil, newError(op, "attribute "+oid.String(), fmt.Errorf("%w: only contentType, signingTime and messageDigest are allowed", ErrUnsupported))
		}
		part := "attribute " + name
		if seen[name] {
			return nil, newError(op, part, fmt.Errorf("%w: repeated", ErrMalformed))
		}
		seen[name] = true
		var valid bool
		switch name {
		case "contentType":
			var ct asn1.ObjectIdentifier
			valid = values.ReadASN1ObjectIdentifier(&ct) && values.Empty()
			if valid && !ct.Equal(oidData) {
				return nil, newError(op, part, fmt.Errorf("%w: content type %s, want GM/T 0010 data %s", ErrUnsupported, ct, oidData))
			}
		case "signingTime":
			valid = readTime(&values, &out.signingTime) && values.Empty()
		case "messageDigest":
			var d []byte
			valid = values.ReadASN1Bytes(&d, cbasn1.OCTET_STRING) && values.Empty()
			if valid && len(d) != DigestSize {
				return nil, newError(op, part, fmt.Errorf("%w: %d-byte digest, want %d (SM3)", ErrMalformed, len(d), DigestSize))
			}
			out.digest = d
		}
		if !valid {
			return nil, newError(op, part, fmt.Errorf("%w: not exactly one well-formed value", ErrMalformed))
		}
	}
	for _, name := range []string{"contentType", "signingTime", "messageDigest"} {
		if !seen[name] {
			return nil, newError(op, "attribute "+name, fmt.Errorf("%w: missing", ErrMalformed))
		}
	}
	return &out, nil
}

func attributeName(oid asn1.ObjectIdentifier) (string, bool) {
	switch {
	case oid.Equal(oidAttrContentType):
		return "contentType", true
	case oid.Equal(oidAttrSigningTime):
		return "signingTime", true
	case oid.Equal(oidAttrMessageDigest):
		return "messageDigest", true
	}
	return "", false
}

// Digest returns e = SM3(Z_A ‖ signedAttrs), Z_A computed over pub and the default signer
// ID: the value the two parties sign and the appliance pins. pub must be an SM2 key.
func Digest(pub *ecdsa.PublicKey, signedAttrs []byte) ([DigestSize]byte, error) {
	var e [DigestSize]byte
	if pub == nil || !sm2.IsSM2PublicKey(pub) {
		return e, newError("digest", "public key", fmt.Errorf("%w: not an SM2 public key", ErrInput))
	}
	if _, err := cosign.PointFromPublicKey(pub); err != nil {
		return e, newError("digest", "public key", fmt.Errorf("%w: %w", ErrInput, err))
	}
	h, err := sm2.CalculateSM2Hash(pub, signedAttrs, []byte(DefaultSignerID))
	if err != nil {
		return e, newError("digest", "public key", fmt.Errorf("%w: %w", ErrInput, err))
	}
	copy(e[:], h)
	return e, nil
}
