package cms

import (
	"bytes"
	"crypto/ecdsa"
	"crypto/x509/pkix"
	"encoding/asn1"
	"fmt"
	"math/big"

	"github.com/emmansun/gmsm/pkcs"
	"github.com/emmansun/gmsm/pkcs7"
	"github.com/emmansun/gmsm/sm2"
	"github.com/emmansun/gmsm/sm4"
	"github.com/emmansun/gmsm/smx509"
	"golang.org/x/crypto/cryptobyte"
	cbasn1 "golang.org/x/crypto/cryptobyte/asn1"

	"github.com/hufu-hsm/hufu/cosign"
)

// maxEnvelopeSize bounds the EnvelopedData a decoder accepts; bid files are large, but not
// larger than this.
const maxEnvelopeSize = 1 << 30

// Envelope encrypts content to recipient as a GM/T 0010 EnvelopedData (see the package
// doc): a fresh random SM4 key, SM4-CBC with a random IV, the key transported with SM2
// encryption to the recipient's public key in the GM/T 0009 ASN.1 form. It uses gmsm's
// pkcs7.EncryptSM and checks that the result is in the form OpenEnvelope accepts.
func Envelope(content []byte, recipient *smx509.Certificate) ([]byte, error) {
	const op = "envelope"
	if recipient == nil {
		return nil, newError(op, "recipient", fmt.Errorf("%w: no certificate", ErrInput))
	}
	if pub, ok := recipient.PublicKey.(*ecdsa.PublicKey); !ok || !sm2.IsSM2PublicKey(pub) {
		return nil, newError(op, "recipient", fmt.Errorf("%w: certificate key is not SM2", ErrInput))
	}
	der, err := pkcs7.EncryptSM(pkcs.SM4CBC, content, []*smx509.Certificate{recipient})
	if err != nil {
		return nil, newError(op, "", fmt.Errorf("%w: %w", ErrInput, err))
	}
	// gmsm labels the key transport SM2 only when the certificate itself is signed with
	// SM2-with-SM3; refuse anything but the GM/T 0010 form rather than emit it.
	if _, err := parseEnvelope(op, der, recipient); err != nil {
		return nil, err
	}
	return der, nil
}

// envelope is what the strict parse of an EnvelopedData extracts for one recipient.
type envelope struct {
	encryptedKey []byte // GM/T 0009 SM2 ciphertext
	keyTransport *cosign.Ciphertext
	cipherAlg    pkix.AlgorithmIdentifier
	ciphertext   []byte
}

// parseEnvelope parses a GM/T 0010 EnvelopedData strictly and selects the recipient: the one
// matching recipient's issuer and serial number (or subject key identifier), or, with a nil
// recipient, the only one.
func parseEnvelope(op string, der []byte, recipient *smx509.Certificate) (*envelope, error) {
	malformed := func(part, what string) error {
		return newError(op, part, fmt.Errorf("%w: %s", ErrMalformed, what))
	}
	unsupported := func(part, what string) error {
		return newError(op, part, fmt.Errorf("%w: %s", ErrUnsupported, what))
	}
	if len(der) == 0 {
		return nil, malformed("contentInfo", "empty")
	}
	if len(der) > maxEnvelopeSize {
		return nil, malformed("contentInfo", fmt.Sprintf("longer than %d bytes", maxEnvelopeSize))
	}
	var (
		in                         = cryptobyte.String(der)
		ci, explicit, ed, ris, eci cryptobyte.String
		contentType                asn1.ObjectIdentifier
		version                    int64
		out                        envelope
		matches, count             int
	)
	if !in.ReadASN1(&ci, cbasn1.SEQUENCE) || !in.Empty() {
		return nil, malformed("contentInfo", "not a single DER SEQUENCE")
	}
	if !ci.ReadASN1ObjectIdentifier(&contentType) || !ci.ReadASN1(&explicit, tagExplicit0) || !ci.Empty() {
		return nil, malformed("contentInfo", "not { OID, [0] EXPLICIT content }")
	}
	if !contentType.Equal(oidEnvelopedData) {
		return nil, unsupported("contentInfo.contentType", fmt.Sprintf("%s, want GM/T 0010 envelopedData %s", contentType, oidEnvelopedData))
	}
	if !explicit.ReadASN1(&ed, cbasn1.SEQUENCE) || !explicit.Empty() {
		return nil, malformed("envelopedData", "not a SEQUENCE")
	}
	if !ed.ReadASN1Int64WithTag(&version, cbasn1.INTEGER) {
		return nil, malformed("envelopedData.version", "not an INTEGER")
	}
	if version < 0 || version > 2 {
		return nil, unsupported("envelopedData.version", fmt.Sprintf("%d, want 0, 1 or 2", version))
	}
	if !ed.ReadASN1(&ris, cbasn1.SET) {
		return nil, malformed("envelopedData.recipientInfos", "not a SET")
	}
	for !ris.Empty() {
		var (
			ri, issuer, ski cryptobyte.String
			serial          = new(big.Int)
			alg             asn1.ObjectIdentifier
			encryptedKey    []byte
			isMatch         bool
		)
		part := fmt.Sprintf("envelopedData.recipientInfos[%d]", count)
		count++
		if !ris.ReadASN1(&ri, cbasn1.SEQUENCE) || !ri.ReadASN1Int64WithTag(&version, cbasn1.INTEGER) {
			return nil, malformed(part, "not { version, ... }")
		}
		switch {
		case ri.PeekASN1Tag(cbasn1.SEQUENCE):
			var ias cryptobyte.String
			if !ri.ReadASN1(&ias, cbasn1.SEQUENCE) || !ias.ReadASN1Element(&issuer, cbasn1.SEQUENCE) ||
				!ias.ReadASN1Integer(serial) || !ias.Empty() {
				return nil, malformed(part+".issuerAndSerialNumber", "not { Name, INTEGER }")
			}
			isMatch = recipient != nil && recipient.SerialNumber.Cmp(serial) == 0 && bytes.Equal(recipient.RawIssuer, issuer)
		case ri.PeekASN1Tag(tagPrim0):
			if !ri.ReadASN1(&ski, tagPrim0) {
				return nil, malformed(part+".subjectKeyIdentifier", "not [0] IMPLICIT OCTET STRING")
			}
			isMatch = recipient != nil && len(recipient.SubjectKeyId) > 0 && bytes.Equal(recipient.SubjectKeyId, ski)
		default:
			return nil, malformed(part, "recipient is neither issuerAndSerialNumber nor subjectKeyIdentifier")
		}
		if !readAlgorithm(&ri, &alg) {
			return nil, malformed(part+".keyEncryptionAlgorithm", "not an AlgorithmIdentifier")
		}
		if !ri.ReadASN1Bytes(&encryptedKey, cbasn1.OCTET_STRING) || !ri.Empty() {
			return nil, malformed(part+".encryptedKey", "not an OCTET STRING at the end")
		}
		if recipient != nil && !isMatch {
			continue
		}
		matches++
		if !alg.Equal(oidSM2Enc) {
			return nil, unsupported(part+".keyEncryptionAlgorithm", fmt.Sprintf("%s, want SM2-3 %s", alg, oidSM2Enc))
		}
		ct, err := cosign.ParseCiphertext(encryptedKey, cosign.ASN1)
		if err != nil {
			return nil, newError(op, part+".encryptedKey", because(ErrMalformed, err))
		}
		if len(ct.C2) != sm4.BlockSize {
			return nil, newError(op, part+".encryptedKey", fmt.Errorf("%w: transports a %d-byte key, want %d (SM4)", ErrUnsupported, len(ct.C2), sm4.BlockSize))
		}
		out.encryptedKey, out.keyTransport = encryptedKey, ct
	}
	switch {
	case count == 0:
		return nil, malformed("envelopedData.recipientInfos", "empty")
	case matches == 0:
		return nil, newError(op, "envelopedData.recipientInfos", fmt.Errorf("%w: none for this certificate", ErrRecipient))
	case matches > 1:
		return nil, newError(op, "envelopedData.recipientInfos", fmt.Errorf("%w: %d recipients, name the certificate", ErrRecipient, matches))
	}
	// EncryptedContentInfo
	var (
		algSeq, params cryptobyte.String
		iv             []byte
	)
	if !ed.ReadASN1(&eci, cbasn1.SEQUENCE) || !ed.Empty() {
		return nil, malformed("envelopedData.encryptedContentInfo", "not a SEQUENCE at the end (unprotected attributes are not accepted)")
	}
	if !eci.ReadASN1ObjectIdentifier(&contentType) {
		return nil, malformed("encryptedContentInfo.contentType", "not an OID")
	}
	if !contentType.Equal(oidData) {
		return nil, unsupported("encryptedContentInfo.contentType", fmt.Sprintf("%s, want GM/T 0010 data %s", contentType, oidData))
	}
	if !eci.ReadASN1Element(&algSeq, cbasn1.SEQUENCE) {
		return nil, malformed("encryptedContentInfo.contentEncryptionAlgorithm", "not a SEQUENCE")
	}
	alg := cryptobyte.String(algSeq)
	var algBody cryptobyte.String
	var cipherOID asn1.ObjectIdentifier
	if !alg.ReadASN1(&algBody, cbasn1.SEQUENCE) || !algBody.ReadASN1ObjectIdentifier(&cipherOID) {
		return nil, malformed("encryptedContentInfo.contentEncryptionAlgorithm", "not { OID, parameters }")
	}
	if !cipherOID.Equal(oidSM4CBC) {
		return nil, unsupported("encryptedContentInfo.contentEncryptionAlgorithm", fmt.Sprintf("%s, want SM4-CBC %s", cipherOID, oidSM4CBC))
	}
	params = algBody
	if !params.ReadASN1Bytes(&iv, cbasn1.OCTET_STRING) || !params.Empty() || len(iv) != sm4.BlockSize {
		return nil, malformed("encryptedContentInfo.contentEncryptionAlgorithm", "SM4-CBC parameters are not a 16-byte IV")
	}
	// gmsm's cipher takes the AlgorithmIdentifier as encoding/asn1 decodes it.
	if _, err := asn1.Unmarshal(algSeq, &out.cipherAlg); err != nil {
		return nil, newError(op, "encryptedContentInfo.contentEncryptionAlgorithm", because(ErrMalformed, err))
	}
	if !eci.ReadASN1Bytes(&out.ciphertext, tagPrim0) || !eci.Empty() {
		return nil, malformed("encryptedContentInfo.encryptedContent", "not [0] IMPLICIT OCTET STRING (primitive) at the end")
	}
	if len(out.ciphertext) == 0 || len(out.ciphertext)%sm4.BlockSize != 0 {
		return nil, malformed("encryptedContentInfo.encryptedContent", fmt.Sprintf("%d bytes, not a positive multiple of %d", len(out.ciphertext), sm4.BlockSize))
	}
	return &out, nil
}

// KeyTransportC1 returns the key transport of an EnvelopedData for one recipient: the C1
// point of its SM2 ciphertext (checked on the curve, uncompressed) and the ciphertext itself,
// the GM/T 0009 ASN.1 bytes exactly as in the RecipientInfo. A bid opening registers these;
// the phone sends C1 for the two-party decryption. recipient chooses among several
// RecipientInfos; nil requires exactly one.
func KeyTransportC1(envelopedDER []byte, recipient *smx509.Certificate) (c1 cosign.Point, keyTransport []byte, err error) {
	env, err := parseEnvelope("key transport", envelopedDER, recipient)
	if err != nil {
		return cosign.Point{}, nil, err
	}
	return env.keyTransport.C1, env.encryptedKey, nil
}

// OpenEnvelope decrypts an EnvelopedData: decrypt recovers the 16-byte SM4 key from the
// recipient's key-transport ciphertext (GM/T 0009 ASN.1, as KeyTransportC1 returns it) —
// for the SDK a two-party cosign.Key, e.g.
//
//	func(ct []byte) ([]byte, error) { return key.Decrypt(nil, ct, nil) }
//
// — and the content is then decrypted with gmsm's SM4-CBC (PKCS#7 padding checked).
// recipient chooses among several RecipientInfos; nil requires exactly one. gmsm's own
// pkcs7 Decrypt accepts a crypto.Decrypter too, but needs the certificate to find the
// recipient and a Decrypter rather than a function; this path needs neither.
func OpenEnvelope(envelopedDER []byte, recipient *smx509.Certificate, decrypt func(keyTransport []byte) ([]byte, error)) ([]byte, error) {
	const op = "open envelope"
	if decrypt == nil {
		return nil, newError(op, "decrypt", fmt.Errorf("%w: no decryption function", ErrInput))
	}
	env, err := parseEnvelope(op, envelopedDER, recipient)
	if err != nil {
		return nil, err
	}
	key, err := decrypt(env.encryptedKey)
	if err != nil {
		return nil, newError(op, "key transport", because(ErrDecryption, err))
	}
	if len(key) != sm4.BlockSize {
		return nil, newError(op, "key transport", fmt.Errorf("%w: recovered a %d-byte key, want %d", ErrDecryption, len(key), sm4.BlockSize))
	}
	cipher, err := pkcs.GetCipher(env.cipherAlg)
	if err != nil {
		return nil, newError(op, "encryptedContentInfo.contentEncryptionAlgorithm", because(ErrUnsupported, err))
	}
	content, err := cipher.Decrypt(key, &env.cipherAlg.Parameters, env.ciphertext)
	if err != nil {
		return nil, newError(op, "encryptedContent", because(ErrDecryption, err))
	}
	return content, nil
}
