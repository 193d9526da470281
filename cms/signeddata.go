package cms

import (
	"bytes"
	"crypto/ecdsa"
	"encoding/asn1"
	"errors"
	"fmt"
	"math/big"
	"time"

	"github.com/emmansun/gmsm/pkcs7"
	"github.com/emmansun/gmsm/sm2"
	"github.com/emmansun/gmsm/smx509"
	"golang.org/x/crypto/cryptobyte"
	cbasn1 "golang.org/x/crypto/cryptobyte/asn1"

	"github.com/hufu-hsm/hufu/cosign"
)

// Limits on what VerifyDetached looks at; far above anything hufu produces.
const (
	maxSignedDataSize = 1 << 20
	maxCertificates   = 16
	signedDataVersion = 1
	signerInfoVersion = 1
)

// DetachedSignedData assembles the detached GM/T 0010 SignedData (see the package doc) from
// signed attributes made by SignedAttributes and the two-party SM2 signature on
// Digest(signer's key, signedAttrs). chain lists the signer's issuer first, up to (but
// usually without) the root; each must have signed the one before. The signature is
// verified before anything is returned, so a wrong (r, s) fails with ErrSignature.
func DetachedSignedData(signedAttrs []byte, sig cosign.Signature, signer *smx509.Certificate, chain []*smx509.Certificate) ([]byte, error) {
	const op = "detached signed data"
	if signer == nil {
		return nil, newError(op, "signer", fmt.Errorf("%w: no certificate", ErrInput))
	}
	pub, ok := signer.PublicKey.(*ecdsa.PublicKey)
	if !ok || !sm2.IsSM2PublicKey(pub) {
		return nil, newError(op, "signer", fmt.Errorf("%w: certificate key is not SM2", ErrInput))
	}
	if _, err := parseSignedAttributes(op, signedAttrs); err != nil {
		return nil, err
	}
	prev := signer
	for i, c := range chain {
		if c == nil {
			return nil, newError(op, fmt.Sprintf("chain[%d]", i), fmt.Errorf("%w: nil certificate", ErrInput))
		}
		if err := prev.CheckSignatureFrom(c); err != nil {
			return nil, newError(op, fmt.Sprintf("chain[%d]", i), because(ErrChain, err))
		}
		prev = c
	}
	e, err := Digest(pub, signedAttrs)
	if err != nil {
		return nil, err
	}
	if !sm2.VerifyASN1(pub, e[:], sig.ASN1()) {
		return nil, newError(op, "signature", ErrSignature)
	}

	certs := make([][]byte, 0, 1+len(chain))
	certs = append(certs, signer.Raw)
	for _, c := range chain {
		certs = append(certs, c.Raw)
	}
	der, err := assemble(signedAttrs, sig.ASN1(), signer, certs)
	if err != nil {
		return nil, newError(op, "", fmt.Errorf("%w: %w", ErrInput, err))
	}
	return der, nil
}

// assemble writes the SignedData of the package doc without checking anything: signer
// names the SignerInfo's issuer and serial number, certs are the certificates carried.
func assemble(signedAttrs, sigDER []byte, signer *smx509.Certificate, certs [][]byte) ([]byte, error) {
	// [0] IMPLICIT replaces the SET tag of the signed attributes.
	implicitAttrs := append([]byte{byte(tagExplicit0)}, signedAttrs[1:]...)
	var b cryptobyte.Builder
	b.AddASN1(cbasn1.SEQUENCE, func(b *cryptobyte.Builder) { // ContentInfo
		b.AddASN1ObjectIdentifier(oidSignedData)
		b.AddASN1(tagExplicit0, func(b *cryptobyte.Builder) {
			b.AddASN1(cbasn1.SEQUENCE, func(b *cryptobyte.Builder) { // SignedData
				b.AddASN1Int64(signedDataVersion)
				b.AddASN1(cbasn1.SET, func(b *cryptobyte.Builder) { addAlgorithm(b, oidSM3) })
				b.AddASN1(cbasn1.SEQUENCE, func(b *cryptobyte.Builder) { b.AddASN1ObjectIdentifier(oidData) })
				if len(certs) > 0 {
					addSetOf(b, tagExplicit0, certs)
				}
				b.AddASN1(cbasn1.SET, func(b *cryptobyte.Builder) {
					b.AddASN1(cbasn1.SEQUENCE, func(b *cryptobyte.Builder) { // SignerInfo
						b.AddASN1Int64(signerInfoVersion)
						b.AddASN1(cbasn1.SEQUENCE, func(b *cryptobyte.Builder) {
							b.AddBytes(signer.RawIssuer)
							b.AddASN1BigInt(signer.SerialNumber)
						})
						addAlgorithm(b, oidSM3)
						b.AddBytes(implicitAttrs)
						addAlgorithm(b, oidSM2Sig)
						b.AddASN1OctetString(sigDER)
					})
				})
			})
		})
	})
	return b.Bytes()
}

// parsedSignedData is what VerifyDetached's strict parse extracts.
type parsedSignedData struct {
	certs       []*smx509.Certificate
	issuer      []byte // DER Name
	serial      *big.Int
	signedAttrs []byte // with the SET tag, as signed
	signature   []byte // DER SEQUENCE { r, s }
}

// parseDetached parses a detached GM/T 0010 SignedData with one signer, strictly.
func parseDetached(op string, der []byte) (*parsedSignedData, error) {
	malformed := func(part, what string) error {
		return newError(op, part, fmt.Errorf("%w: %s", ErrMalformed, what))
	}
	unsupported := func(part, what string) error {
		return newError(op, part, fmt.Errorf("%w: %s", ErrUnsupported, what))
	}
	if len(der) == 0 {
		return nil, malformed("contentInfo", "empty")
	}
	if len(der) > maxSignedDataSize {
		return nil, malformed("contentInfo", fmt.Sprintf("longer than %d bytes", maxSignedDataSize))
	}
	var (
		in             = cryptobyte.String(der)
		ci, explicit   cryptobyte.String
		sd, digestAlgs cryptobyte.String
		encap, sis, si cryptobyte.String
		contentType    asn1.ObjectIdentifier
		version        int64
		out            parsedSignedData
	)
	if !in.ReadASN1(&ci, cbasn1.SEQUENCE) || !in.Empty() {
		return nil, malformed("contentInfo", "not a single DER SEQUENCE")
	}
	if !ci.ReadASN1ObjectIdentifier(&contentType) || !ci.ReadASN1(&explicit, tagExplicit0) || !ci.Empty() {
		return nil, malformed("contentInfo", "not { OID, [0] EXPLICIT content }")
	}
	if !contentType.Equal(oidSignedData) {
		return nil, unsupported("contentInfo.contentType", fmt.Sprintf("%s, want GM/T 0010 signedData %s", contentType, oidSignedData))
	}
	if !explicit.ReadASN1(&sd, cbasn1.SEQUENCE) || !explicit.Empty() {
		return nil, malformed("signedData", "not a SEQUENCE")
	}
	if !sd.ReadASN1Int64WithTag(&version, cbasn1.INTEGER) {
		return nil, malformed("signedData.version", "not an INTEGER")
	}
	if version != signedDataVersion {
		return nil, unsupported("signedData.version", fmt.Sprintf("%d, want %d", version, signedDataVersion))
	}
	if !sd.ReadASN1(&digestAlgs, cbasn1.SET) {
		return nil, malformed("signedData.digestAlgorithms", "not a SET")
	}
	var alg asn1.ObjectIdentifier
	if !readAlgorithm(&digestAlgs, &alg) || !digestAlgs.Empty() {
		return nil, malformed("signedData.digestAlgorithms", "not exactly one AlgorithmIdentifier")
	}
	if !alg.Equal(oidSM3) {
		return nil, unsupported("signedData.digestAlgorithms", fmt.Sprintf("%s, want SM3 %s", alg, oidSM3))
	}
	if !sd.ReadASN1(&encap, cbasn1.SEQUENCE) || !encap.ReadASN1ObjectIdentifier(&contentType) {
		return nil, malformed("signedData.contentInfo", "not { OID }")
	}
	if !contentType.Equal(oidData) {
		return nil, unsupported("signedData.contentInfo.contentType", fmt.Sprintf("%s, want GM/T 0010 data %s", contentType, oidData))
	}
	if !encap.Empty() {
		return nil, unsupported("signedData.contentInfo.content", "content is present: not a detached signature")
	}
	if sd.PeekASN1Tag(tagExplicit0) {
		var certs cryptobyte.String
		if !sd.ReadASN1(&certs, tagExplicit0) {
			return nil, malformed("signedData.certificates", "not [0] IMPLICIT SET OF")
		}
		for !certs.Empty() {
			var raw cryptobyte.String
			if !certs.ReadASN1Element(&raw, cbasn1.SEQUENCE) {
				return nil, malformed("signedData.certificates", "element is not a SEQUENCE")
			}
			if len(out.certs) == maxCertificates {
				return nil, malformed("signedData.certificates", fmt.Sprintf("more than %d", maxCertificates))
			}
			c, err := smx509.ParseCertificate(raw)
			if err != nil {
				return nil, newError(op, fmt.Sprintf("signedData.certificates[%d]", len(out.certs)), because(ErrMalformed, err))
			}
			out.certs = append(out.certs, c)
		}
	}
	if sd.PeekASN1Tag(tagImplicit1) && !sd.SkipASN1(tagImplicit1) { // CRLs: not used here
		return nil, malformed("signedData.crls", "not [1] IMPLICIT SET OF")
	}
	if !sd.ReadASN1(&sis, cbasn1.SET) || !sd.Empty() {
		return nil, malformed("signedData.signerInfos", "not a SET at the end of SignedData")
	}
	if !sis.ReadASN1(&si, cbasn1.SEQUENCE) || !sis.Empty() {
		return nil, malformed("signedData.signerInfos", "not exactly one SignerInfo")
	}
	// SignerInfo
	var (
		sid    cryptobyte.String
		issuer cryptobyte.String
		attrs  cryptobyte.String
	)
	if !si.ReadASN1Int64WithTag(&version, cbasn1.INTEGER) {
		return nil, malformed("signerInfo.version", "not an INTEGER")
	}
	if version != signerInfoVersion {
		return nil, unsupported("signerInfo.version", fmt.Sprintf("%d, want %d (issuerAndSerialNumber)", version, signerInfoVersion))
	}
	out.serial = new(big.Int)
	if !si.ReadASN1(&sid, cbasn1.SEQUENCE) || !sid.ReadASN1Element(&issuer, cbasn1.SEQUENCE) ||
		!sid.ReadASN1Integer(out.serial) || !sid.Empty() {
		return nil, malformed("signerInfo.issuerAndSerialNumber", "not { Name, INTEGER }")
	}
	out.issuer = issuer
	if !readAlgorithm(&si, &alg) {
		return nil, malformed("signerInfo.digestAlgorithm", "not an AlgorithmIdentifier")
	}
	if !alg.Equal(oidSM3) {
		return nil, unsupported("signerInfo.digestAlgorithm", fmt.Sprintf("%s, want SM3 %s", alg, oidSM3))
	}
	if !si.PeekASN1Tag(tagExplicit0) {
		return nil, unsupported("signerInfo.authenticatedAttributes", "absent; signatures without signed attributes are not accepted")
	}
	if !si.ReadASN1Element(&attrs, tagExplicit0) {
		return nil, malformed("signerInfo.authenticatedAttributes", "not [0] IMPLICIT SET OF")
	}
	out.signedAttrs = append([]byte{byte(cbasn1.SET)}, attrs[1:]...)
	if !readAlgorithm(&si, &alg) {
		return nil, malformed("signerInfo.digestEncryptionAlgorithm", "not an AlgorithmIdentifier")
	}
	if !alg.Equal(oidSM2Sig) {
		return nil, unsupported("signerInfo.digestEncryptionAlgorithm", fmt.Sprintf("%s, want SM2-1 %s", alg, oidSM2Sig))
	}
	if !si.ReadASN1Bytes(&out.signature, cbasn1.OCTET_STRING) {
		return nil, malformed("signerInfo.encryptedDigest", "not an OCTET STRING")
	}
	if si.PeekASN1Tag(tagImplicit1) && !si.SkipASN1(tagImplicit1) { // unsigned attributes (e.g. a timestamp)
		return nil, malformed("signerInfo.unauthenticatedAttributes", "not [1] IMPLICIT SET OF")
	}
	if !si.Empty() {
		return nil, malformed("signerInfo", "trailing elements")
	}
	return &out, nil
}

// VerifyDetached checks a detached SignedData from DetachedSignedData (or any signer of the
// same GM/T 0010 form) for a document whose SM3 digest is contentDigest, and returns the
// signer's certificate. It parses strictly (exactly one signer, signed attributes exactly as
// CheckSignedAttributes wants them, GM/T 0010 OIDs), checks the message digest, the signing
// time against the signer certificate's validity and the SM2 signature; with roots, the
// signer must also chain to one of them at the signing time, through the certificates the
// SignedData carries. The signature and chain are then checked a second time by gmsm's
// pkcs7 (Parse, VerifyAsDigest or VerifyAsDigestWithChain), which must agree.
//
// The signing time is the signer's claim (in hufu, the appliance's clock when the
// attributes were built); a caller that wants the chain valid now as well checks the
// returned certificate itself.
func VerifyDetached(cmsDER, contentDigest []byte, roots *smx509.CertPool) (*smx509.Certificate, error) {
	const op = "verify"
	if len(contentDigest) != DigestSize {
		return nil, newError(op, "content digest", fmt.Errorf("%w: %d bytes, want %d", ErrInput, len(contentDigest), DigestSize))
	}
	p, err := parseDetached(op, cmsDER)
	if err != nil {
		return nil, err
	}
	attrs, err := parseSignedAttributes(op, p.signedAttrs)
	if err != nil {
		return nil, err
	}
	if !bytes.Equal(attrs.digest, contentDigest) {
		return nil, newError(op, "attribute messageDigest", ErrDigestMismatch)
	}
	var signer *smx509.Certificate
	for _, c := range p.certs {
		if c.SerialNumber.Cmp(p.serial) == 0 && bytes.Equal(c.RawIssuer, p.issuer) {
			signer = c
			break
		}
	}
	if signer == nil {
		return nil, newError(op, "signerInfo.issuerAndSerialNumber", fmt.Errorf("%w: no certificate matches", ErrSigner))
	}
	pub, ok := signer.PublicKey.(*ecdsa.PublicKey)
	if !ok || !sm2.IsSM2PublicKey(pub) {
		return nil, newError(op, "signer", fmt.Errorf("%w: certificate key is not SM2", ErrSigner))
	}
	if attrs.signingTime.Before(signer.NotBefore) || attrs.signingTime.After(signer.NotAfter) {
		return nil, newError(op, "attribute signingTime", fmt.Errorf("%w: %s not in [%s, %s]", ErrSigningTime,
			attrs.signingTime.Format(time.RFC3339), signer.NotBefore.Format(time.RFC3339), signer.NotAfter.Format(time.RFC3339)))
	}
	if !sm2.VerifyASN1WithSM2(pub, []byte(DefaultSignerID), p.signedAttrs, p.signature) {
		return nil, newError(op, "signerInfo.encryptedDigest", ErrSignature)
	}
	if roots != nil {
		intermediates := smx509.NewCertPool()
		for _, c := range p.certs {
			intermediates.AddCert(c)
		}
		if _, err := signer.Verify(smx509.VerifyOptions{
			Roots: roots, Intermediates: intermediates, CurrentTime: attrs.signingTime,
			KeyUsages: []smx509.ExtKeyUsage{smx509.ExtKeyUsageAny},
		}); err != nil {
			return nil, newError(op, "signer", because(ErrChain, err))
		}
	}
	if err := libraryVerify(cmsDER, contentDigest, roots); err != nil {
		return nil, newError(op, "gmsm pkcs7", because(ErrSignature, err))
	}
	return signer, nil
}

// libraryVerify is gmsm's verdict. Its digest mode compares the message-digest attribute
// with p7.Content, which a detached SignedData leaves empty, so the expected digest is put
// there first; it then verifies the SM2 signature over the re-encoded attributes, the
// signing time against the certificate and, with roots, the chain at the signing time.
func libraryVerify(cmsDER, contentDigest []byte, roots *smx509.CertPool) error {
	p7, err := pkcs7.Parse(cmsDER)
	if err != nil {
		return err
	}
	if len(p7.Signers) != 1 || p7.GetOnlySigner() == nil {
		return errors.New("pkcs7: no single signer with a certificate")
	}
	p7.Content = contentDigest
	if roots == nil {
		return p7.VerifyAsDigest()
	}
	return p7.VerifyAsDigestWithChain(roots)
}
