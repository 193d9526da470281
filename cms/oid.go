package cms

import (
	"encoding/asn1"

	"github.com/emmansun/gmsm/pkcs7"
)

// Object identifiers of GM/T 0010-2012, GM/T 0006 and RFC 5652 used here. The GM/T 0010
// ones are gmsm's own variables, so what we emit is what its pkcs7 package emits and
// accepts.
var (
	oidData          = pkcs7.SM2OIDData          // 1.2.156.10197.6.1.4.2.1
	oidSignedData    = pkcs7.SM2OIDSignedData    // 1.2.156.10197.6.1.4.2.2
	oidEnvelopedData = pkcs7.SM2OIDEnvelopedData // 1.2.156.10197.6.1.4.2.3

	oidSM3    = pkcs7.OIDDigestAlgorithmSM3           // 1.2.156.10197.1.401
	oidSM2Sig = pkcs7.OIDDigestEncryptionAlgorithmSM2 // 1.2.156.10197.1.301.1 (SM2-1)
	oidSM2Enc = pkcs7.OIDKeyEncryptionAlgorithmSM2    // 1.2.156.10197.1.301.3 (SM2-3)
	oidSM4CBC = asn1.ObjectIdentifier{1, 2, 156, 10197, 1, 104, 2}

	oidAttrContentType   = pkcs7.OIDAttributeContentType   // 1.2.840.113549.1.9.3
	oidAttrMessageDigest = pkcs7.OIDAttributeMessageDigest // 1.2.840.113549.1.9.4
	oidAttrSigningTime   = pkcs7.OIDAttributeSigningTime   // 1.2.840.113549.1.9.5
)
