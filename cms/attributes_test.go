package cms

import (
	"bytes"
	"encoding/asn1"
	"encoding/hex"
	"strings"
	"testing"
	"time"

	"github.com/emmansun/gmsm/sm2"
	"golang.org/x/crypto/cryptobyte"
	cbasn1 "golang.org/x/crypto/cryptobyte/asn1"
)

func unhex(t testing.TB, s string) []byte {
	t.Helper()
	b, err := hex.DecodeString(strings.Join(strings.Fields(s), ""))
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// TestSignedAttributesKnownAnswer pins the exact signed bytes, worked out by hand from
// RFC 5652 and GM/T 0010: three attributes, sorted as DER SET OF (by encoding: 0x30 0x19 <
// 0x30 0x1c < 0x30 0x2f).
func TestSignedAttributesKnownAnswer(t *testing.T) {
	digest := unhex(t, "66c7f0f462eeedd9d1f2d46bdc10e4e24167c4875cf2f7a2297da02b8f4ba8e0") // SM3("abc")
	want := unhex(t, `
		31 6a
		30 19 06 09 2a 86 48 86 f7 0d 01 09 03
		      31 0c 06 0a 2a 81 1c cf 55 06 01 04 02 01
		30 1c 06 09 2a 86 48 86 f7 0d 01 09 05
		      31 0f 17 0d 32 35 30 36 30 31 30 38 33 30 31 35 5a
		30 2f 06 09 2a 86 48 86 f7 0d 01 09 04
		      31 22 04 20 66c7f0f462eeedd9d1f2d46bdc10e4e24167c4875cf2f7a2297da02b8f4ba8e0`)
	got, err := SignedAttributes(digest, signingTime)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(got, want) {
		t.Fatalf("SignedAttributes:\n got %x\nwant %x", got, want)
	}
}

func TestSignedAttributesTimes(t *testing.T) {
	cst := time.FixedZone("CST", 8*3600)
	tests := []struct {
		name    string
		at      time.Time
		want    string // the encoded time value, tag and all, as hex of tag ‖ length ‖ ASCII
		wantUTC time.Time
		wantErr error
	}{
		{"UTCTime", signingTime, "170d" + hex.EncodeToString([]byte("250601083015Z")), signingTime, nil},
		{"China Standard Time is written in UTC", time.Date(2025, 6, 1, 16, 30, 15, 0, cst), "170d" + hex.EncodeToString([]byte("250601083015Z")), signingTime, nil},
		{"fractions are dropped", signingTime.Add(999 * time.Millisecond), "170d" + hex.EncodeToString([]byte("250601083015Z")), signingTime, nil},
		{"first UTCTime", time.Date(1950, 1, 1, 0, 0, 0, 0, time.UTC), "170d" + hex.EncodeToString([]byte("500101000000Z")), time.Date(1950, 1, 1, 0, 0, 0, 0, time.UTC), nil},
		{"last UTCTime", time.Date(2049, 12, 31, 23, 59, 59, 0, time.UTC), "170d" + hex.EncodeToString([]byte("491231235959Z")), time.Date(2049, 12, 31, 23, 59, 59, 0, time.UTC), nil},
		{"GeneralizedTime from 2050", time.Date(2050, 1, 1, 0, 0, 0, 0, time.UTC), "180f" + hex.EncodeToString([]byte("20500101000000Z")), time.Date(2050, 1, 1, 0, 0, 0, 0, time.UTC), nil},
		{"before 1950", time.Date(1949, 12, 31, 23, 59, 59, 0, time.UTC), "", time.Time{}, ErrInput},
		{"after 9999", time.Date(10000, 1, 1, 0, 0, 0, 0, time.UTC), "", time.Time{}, ErrInput},
		{"zero time", time.Time{}, "", time.Time{}, ErrInput},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			der, err := SignedAttributes(documentHash[:], tc.at)
			if tc.wantErr != nil {
				wantErr(t, err, "signing time", tc.wantErr)
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if !bytes.Contains(der, unhex(t, tc.want)) {
				t.Fatalf("%x does not contain the time %s", der, tc.want)
			}
			got, err := CheckSignedAttributes(der, documentHash[:])
			if err != nil {
				t.Fatal(err)
			}
			if !got.Equal(tc.wantUTC) || got.Location() != time.UTC {
				t.Fatalf("signing time %v, want %v UTC", got, tc.wantUTC)
			}
		})
	}
}

func TestSignedAttributesDigestLength(t *testing.T) {
	for _, n := range []int{0, 20, 31, 33, 64} {
		_, err := SignedAttributes(make([]byte, n), signingTime)
		wantErr(t, err, "content digest", ErrInput)
	}
}

// attr builds one Attribute with the given raw values (each a full TLV).
func attr(oid asn1.ObjectIdentifier, values ...[]byte) []byte {
	var b cryptobyte.Builder
	b.AddASN1(cbasn1.SEQUENCE, func(b *cryptobyte.Builder) {
		b.AddASN1ObjectIdentifier(oid)
		b.AddASN1(cbasn1.SET, func(b *cryptobyte.Builder) {
			for _, v := range values {
				b.AddBytes(v)
			}
		})
	})
	return b.BytesOrPanic()
}

// rawSet writes a SET of the elements in the order given (not sorted).
func rawSet(elements ...[]byte) []byte {
	var b cryptobyte.Builder
	b.AddASN1(cbasn1.SET, func(b *cryptobyte.Builder) {
		for _, e := range elements {
			b.AddBytes(e)
		}
	})
	return b.BytesOrPanic()
}

// sortedSet writes a SET of the elements in DER order.
func sortedSet(elements ...[]byte) []byte {
	var b cryptobyte.Builder
	addSetOf(&b, cbasn1.SET, elements)
	return b.BytesOrPanic()
}

func tlv(tag cbasn1.Tag, content []byte) []byte {
	var b cryptobyte.Builder
	b.AddASN1(tag, func(b *cryptobyte.Builder) { b.AddBytes(content) })
	return b.BytesOrPanic()
}

func oidTLV(oid asn1.ObjectIdentifier) []byte {
	var b cryptobyte.Builder
	b.AddASN1ObjectIdentifier(oid)
	return b.BytesOrPanic()
}

func TestCheckSignedAttributes(t *testing.T) {
	var (
		good      = mustAttrs(t, documentHash[:], signingTime)
		ct        = attr(oidAttrContentType, oidTLV(oidData))
		st        = attr(oidAttrSigningTime, tlv(cbasn1.UTCTime, []byte("250601083015Z")))
		md        = attr(oidAttrMessageDigest, tlv(cbasn1.OCTET_STRING, documentHash[:]))
		otherHash = bytes.Repeat([]byte{0x5a}, DigestSize)
		pkcs7Data = asn1.ObjectIdentifier{1, 2, 840, 113549, 1, 7, 1}
		// signingCertificateV2, which CAdES signers add: not allowed here.
		signingCertV2 = attr(asn1.ObjectIdentifier{1, 2, 840, 113549, 1, 9, 16, 2, 47}, tlv(cbasn1.SEQUENCE, nil))
	)
	if !bytes.Equal(rawSet(ct, st, md), good) {
		t.Fatalf("test pieces do not make the canonical attributes")
	}
	longForm := append([]byte{0x31, 0x81, good[1]}, good[2:]...)
	tests := []struct {
		name  string
		der   []byte
		want  []byte
		part  string
		errIs []error
	}{
		{"valid", good, documentHash[:], "", nil},
		{"other document", good, otherHash, "attribute messageDigest", []error{ErrDigestMismatch}},
		{"wanted digest not SM3-sized", good, documentHash[:20], "wanted digest", []error{ErrInput}},
		{"empty", nil, documentHash[:], "signed attributes", []error{ErrMalformed}},
		{"garbage", []byte("not DER at all"), documentHash[:], "signed attributes", []error{ErrMalformed}},
		{"truncated", good[:len(good)-1], documentHash[:], "signed attributes", []error{ErrMalformed}},
		{"trailing byte", append(append([]byte{}, good...), 0), documentHash[:], "signed attributes", []error{ErrMalformed}},
		{"non-minimal length", longForm, documentHash[:], "signed attributes", []error{ErrMalformed}},
		{"[0] IMPLICIT instead of SET", append([]byte{0xa0}, good[1:]...), documentHash[:], "signed attributes", []error{ErrMalformed}},
		{"not in DER order", rawSet(md, ct, st), documentHash[:], "attribute", []error{ErrMalformed}},
		{"same attribute twice", rawSet(ct, ct, st, md), documentHash[:], "attribute", []error{ErrMalformed}},
		{"two signing times", rawSet(ct, st, attr(oidAttrSigningTime, tlv(cbasn1.UTCTime, []byte("250601083016Z"))), md), documentHash[:], "attribute signingTime", []error{ErrMalformed}},
		{"no message digest", rawSet(ct, st), documentHash[:], "attribute messageDigest", []error{ErrMalformed}},
		{"no content type", rawSet(st, md), documentHash[:], "attribute contentType", []error{ErrMalformed}},
		{"no signing time", rawSet(ct, md), documentHash[:], "attribute signingTime", []error{ErrMalformed}},
		{"extra attribute", sortedSet(ct, st, md, signingCertV2), documentHash[:], "attribute 1.2.840.113549.1.9.16.2.47", []error{ErrUnsupported}},
		{"PKCS#7 data content type", rawSet(attr(oidAttrContentType, oidTLV(pkcs7Data)), st, md), documentHash[:], "attribute contentType", []error{ErrUnsupported}},
		{"two message digests in one attribute", rawSet(ct, st, attr(oidAttrMessageDigest, tlv(cbasn1.OCTET_STRING, documentHash[:]), tlv(cbasn1.OCTET_STRING, otherHash))), documentHash[:], "attribute messageDigest", []error{ErrMalformed}},
		{"empty value set", sortedSet(ct, st, attr(oidAttrMessageDigest)), documentHash[:], "attribute messageDigest", []error{ErrMalformed}},
		{"SHA-1-sized digest", rawSet(ct, st, attr(oidAttrMessageDigest, tlv(cbasn1.OCTET_STRING, documentHash[:20]))), documentHash[:], "attribute messageDigest", []error{ErrMalformed}},
		{"GeneralizedTime before 2050", rawSet(ct, attr(oidAttrSigningTime, tlv(cbasn1.GeneralizedTime, []byte("20250601083015Z"))), md), documentHash[:], "attribute signingTime", []error{ErrMalformed}},
		{"UTCTime with offset", rawSet(ct, attr(oidAttrSigningTime, tlv(cbasn1.UTCTime, []byte("250601163015+0800"))), md), documentHash[:], "attribute signingTime", []error{ErrMalformed}},
		{"UTCTime without seconds", rawSet(ct, attr(oidAttrSigningTime, tlv(cbasn1.UTCTime, []byte("2506010830Z"))), md), documentHash[:], "attribute signingTime", []error{ErrMalformed}},
		{"UTCTime 31 June", rawSet(ct, attr(oidAttrSigningTime, tlv(cbasn1.UTCTime, []byte("250631083015Z"))), md), documentHash[:], "attribute signingTime", []error{ErrMalformed}},
		{"content type as a string", rawSet(attr(oidAttrContentType, tlv(cbasn1.UTF8String, []byte("data"))), st, md), documentHash[:], "attribute contentType", []error{ErrMalformed}},
		{"too long", append([]byte{0x31, 0x82, 0x10, 0x00}, make([]byte, 4096)...), documentHash[:], "signed attributes", []error{ErrMalformed}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			got, err := CheckSignedAttributes(tc.der, tc.want)
			wantErr(t, err, tc.part, tc.errIs...)
			if err == nil && !got.Equal(signingTime) {
				t.Fatalf("signing time %v, want %v", got, signingTime)
			}
		})
	}
}

func TestDigest(t *testing.T) {
	c := newCA(t, "Test SM2 CA")
	s := newSigner(t, c, "signer")
	attrs := mustAttrs(t, documentHash[:], signingTime)
	e, err := Digest(&s.key.PublicKey, attrs)
	if err != nil {
		t.Fatal(err)
	}
	// Independently: Z_A ‖ M hashed by gmsm's signer, checked by gmsm's verifier.
	za, err := sm2.CalculateZA(&s.key.PublicKey, []byte("1234567812345678"))
	if err != nil {
		t.Fatal(err)
	}
	if want := sm3Sum(append(za, attrs...)); e != want {
		t.Fatalf("Digest %x, want SM3(Z_A ‖ attrs) %x", e, want)
	}
	sig, err := s.key.Sign(nil, attrs, sm2.DefaultSM2SignerOpts) // gmsm hashes Z_A ‖ attrs itself
	if err != nil {
		t.Fatal(err)
	}
	if !sm2.VerifyASN1(&s.key.PublicKey, e[:], sig) {
		t.Fatal("gmsm's signature on the attributes does not verify on Digest")
	}
	for name, pub := range map[string]*ecdsaPub{"nil": nil, "P-256": p256Cert(t, c).PublicKey.(*ecdsaPub), "no point": {Curve: sm2.P256()}} {
		if _, err := Digest(pub, attrs); err == nil {
			t.Errorf("%s key: no error", name)
		} else {
			wantErr(t, err, "public key", ErrInput)
		}
	}
}
