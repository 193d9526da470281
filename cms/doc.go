// Package cms builds and checks the GM/T 0010-2012 (SM2/SM3/SM4) CMS structures that hufu
// exchanges: the signed attributes and detached SignedData of scan signing, and the
// EnvelopedData of bid files. It is shared by the daemon and the client SDK, so it imports
// only gmsm, cosign and the standard library (and x/crypto/cryptobyte, which both already
// use, for strict DER).
//
// # Scan signing
//
// A business system registers the SM3 digest of a document. When the signer's certificate
// is chosen, the appliance builds the signed attributes (SignedAttributes), computes
// e = SM3(Z_A ‖ DER(attributes)) (Digest) with Z_A over the certificate's public key and the
// default signer ID "1234567812345678", pins e and sends the attributes to the phone. The
// phone checks them against the digest it was shown (CheckSignedAttributes), recomputes e
// itself, and both parties produce an ordinary SM2 signature (r, s) on e. The appliance then
// assembles the detached SignedData (DetachedSignedData), which is what a PDF signature's
// /Contents holds, and the business system checks it (VerifyDetached).
//
// # Wire formats
//
// Signed attributes are the DER SET OF Attribute that is signed (tag 0x31), with exactly
// three attributes in canonical DER order:
//
//	contentType   1.2.840.113549.1.9.3  SET { 1.2.156.10197.6.1.4.2.1 (GM/T 0010 data) }
//	signingTime   1.2.840.113549.1.9.5  SET { UTCTime "YYMMDDHHMMSSZ" for 1950–2049,
//	                                          GeneralizedTime "YYYYMMDDHHMMSSZ" otherwise }
//	messageDigest 1.2.840.113549.1.9.4  SET { OCTET STRING (32 bytes, SM3) }
//
// The detached SignedData is
//
//	ContentInfo { 1.2.156.10197.6.1.4.2.2 (signedData), [0] EXPLICIT SignedData {
//	  version 1,
//	  digestAlgorithms SET { { 1.2.156.10197.1.401 (SM3), NULL } },
//	  contentInfo { 1.2.156.10197.6.1.4.2.1 (data) }           -- no content: detached
//	  certificates [0] IMPLICIT SET OF Certificate              -- signer and chain, DER order
//	  signerInfos SET { SignerInfo {
//	    version 1, issuerAndSerialNumber (the signer certificate's issuer and serial),
//	    digestAlgorithm { SM3, NULL },
//	    authenticatedAttributes [0] IMPLICIT (the signed attributes above),
//	    digestEncryptionAlgorithm { 1.2.156.10197.1.301.1 (SM2-1), NULL },
//	    encryptedDigest OCTET STRING (DER SEQUENCE { r INTEGER, s INTEGER }) } } } }
//
// GM/T 0010-2012 names SM2-1 (1.2.156.10197.1.301.1) as the SignerInfo's
// digestEncryptionAlgorithm, and it is the only SM2 value gmsm's pkcs7 verifier accepts;
// 1.2.156.10197.1.501 (SM2-with-SM3) is the X.509 signature algorithm and is refused here.
// The signature is over the DER signed attributes with tag 0x31, e = SM3(Z_A ‖ attributes).
//
// The EnvelopedData (Envelope) is gmsm's GM/T 0010 form:
//
//	ContentInfo { 1.2.156.10197.6.1.4.2.3 (envelopedData), [0] EXPLICIT EnvelopedData {
//	  version 1,
//	  recipientInfos SET { KeyTransRecipientInfo {
//	    version 1, issuerAndSerialNumber,
//	    keyEncryptionAlgorithm { 1.2.156.10197.1.301.3 (SM2-3), NULL },
//	    encryptedKey OCTET STRING (GM/T 0009 SM2 ciphertext SEQUENCE { x, y, C3, C2 }) } },
//	  encryptedContentInfo { 1.2.156.10197.6.1.4.2.1 (data),
//	    { 1.2.156.10197.1.104.2 (SM4-CBC), OCTET STRING iv (16) },
//	    [0] IMPLICIT OCTET STRING ciphertext (PKCS#7 padded) } } }
//
// The SM4 key is 16 random bytes, so the key transport's C2 is 16 bytes. A bid opening
// registers the C1 of that ciphertext (KeyTransportC1), which is the point the phone sends
// to the appliance for the two-party decryption.
//
// # Strictness
//
// Every decoder of untrusted bytes (CheckSignedAttributes, VerifyDetached, KeyTransportC1,
// OpenEnvelope) parses DER only (definite, minimal lengths, minimal integers, no trailing
// bytes), accepts only the algorithms above, and returns an *Error naming the part that
// failed and wrapping one of the sentinel errors, so callers can test with errors.Is.
package cms
