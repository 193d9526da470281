package ca

import (
	"crypto"
	"crypto/rand"
	"crypto/x509/pkix"
	"encoding/asn1"
	"errors"
	"fmt"
	"math/big"
	"time"

	"github.com/emmansun/gmsm/sm2"
	"github.com/emmansun/gmsm/smx509"
)

// The CRL encoder. smx509.CreateRevocationList takes every entry as a struct with a big.Int
// and an extension slice and marshals the whole list twice through encoding/asn1, which for
// 100,000 entries holds several copies of the list in memory and makes millions of
// allocations. This encoder writes the same DER (RFC 5280 §5.1, as gmsm writes it: v2, the
// SM2-with-SM3 algorithm without parameters, AKI and CRL number extensions, a reasonCode
// entry extension unless the reason is unspecified) into one buffer, entry by entry as the
// store yields them, and signs the TBSCertList in place, SM2 with SM3 and the default
// signer ID, as gmsm signs CRLs: the buffer is the only copy.

var (
	oidSM2WithSM3   = asn1.ObjectIdentifier{1, 2, 156, 10197, 1, 501}
	oidAuthorityKey = asn1.ObjectIdentifier{2, 5, 29, 35}
	oidCRLNumber    = asn1.ObjectIdentifier{2, 5, 29, 20}
	// The entry extensions of a reasonCode: SEQUENCE { SEQUENCE { OID 2.5.29.21,
	// OCTET STRING { ENUMERATED r } } }, r appended.
	reasonExtensionsPrefix = []byte{0x30, 0x0c, 0x30, 0x0a, 0x06, 0x03, 0x55, 0x1d, 0x15, 0x04, 0x03, 0x0a, 0x01}
)

// crlEntryEstimate is the size of a typical entry (a 16-byte serial, a UTCTime, a reason),
// to size the buffer from the expected count.
const crlEntryEstimate = 56

type crlEncoder struct {
	buf      []byte
	head     int // buf[:head] is room for the headers written in front of the entries
	entries  int
	finished bool
}

// newCRLEncoder returns an encoder for about expected entries issued by issuer.
func newCRLEncoder(issuer *smx509.Certificate, expected int) *crlEncoder {
	head := len(issuer.RawSubject) + 128
	return &crlEncoder{buf: make([]byte, head, head+expected*crlEntryEstimate+256), head: head}
}

// add appends one revokedCertificates entry.
func (c *crlEncoder) add(serial []byte, at time.Time, reason int) error {
	for len(serial) > 0 && serial[0] == 0 {
		serial = serial[1:]
	}
	if len(serial) == 0 || len(serial) > 20 {
		return fmt.Errorf("ca: CRL entry serial of %d bytes", len(serial))
	}
	if reason < 0 || reason > 10 {
		return fmt.Errorf("ca: CRL entry reason %d", reason)
	}
	pad := 0
	if serial[0]&0x80 != 0 {
		pad = 1
	}
	intLen := 2 + pad + len(serial)
	timeLen := 2 + timeContentLen(at)
	body := intLen + timeLen
	if reason != 0 {
		body += len(reasonExtensionsPrefix) + 1
	}
	b := appendHeader(c.buf, 0x30, body)
	b = append(b, 0x02, byte(pad+len(serial)))
	if pad == 1 {
		b = append(b, 0)
	}
	b = append(b, serial...)
	b = appendTime(b, at)
	if reason != 0 {
		b = append(b, reasonExtensionsPrefix...)
		b = append(b, byte(reason))
	}
	c.buf = b
	c.entries++
	return nil
}

// finish writes the headers and the extensions around the entries, signs, and returns the
// CertificateList DER, which shares the encoder's buffer.
func (c *crlEncoder) finish(issuer *smx509.Certificate, key *sm2.PrivateKey, number uint64, thisUpdate, nextUpdate time.Time) ([]byte, error) {
	if c.finished {
		return nil, errors.New("ca: CRL encoder reused")
	}
	c.finished = true
	entriesLen := len(c.buf) - c.head
	aki, err := asn1.Marshal(authorityKeyID{ID: issuer.SubjectKeyId})
	if err != nil {
		return nil, err
	}
	num, err := asn1.Marshal(new(big.Int).SetUint64(number))
	if err != nil {
		return nil, err
	}
	exts, err := asn1.Marshal([]pkix.Extension{{Id: oidAuthorityKey, Value: aki}, {Id: oidCRLNumber, Value: num}})
	if err != nil {
		return nil, err
	}
	c.buf = appendHeader(c.buf, 0xa0, len(exts)) // crlExtensions [0] EXPLICIT
	c.buf = append(c.buf, exts...)
	algID, err := asn1.Marshal(pkix.AlgorithmIdentifier{Algorithm: oidSM2WithSM3})
	if err != nil {
		return nil, err
	}
	// Headers, written backwards from the first entry.
	var front []byte
	front = append(front, 0x02, 0x01, 0x01) // version v2
	front = append(front, algID...)
	front = append(front, issuer.RawSubject...)
	front = appendTime(front, thisUpdate.UTC())
	front = appendTime(front, nextUpdate.UTC())
	if entriesLen > 0 {
		front = appendHeader(front, 0x30, entriesLen)
	}
	start := c.head - len(front)
	tbsBody := len(c.buf) - start
	tbsHeader := appendHeader(nil, 0x30, tbsBody)
	start -= len(tbsHeader)
	if start < 0 {
		return nil, errors.New("ca: CRL header room too small")
	}
	copy(c.buf[start:], tbsHeader)
	copy(c.buf[start+len(tbsHeader):], front)
	tbs := c.buf[start:]
	sig, err := crypto.SignMessage(key, rand.Reader, tbs, sm2.DefaultSM2SignerOpts)
	if err != nil {
		return nil, fmt.Errorf("ca: signing the CRL: %w", err)
	}
	tbsLen, bitLen := len(tbs), len(sig)+1 // the BIT STRING: no unused bits, then the signature
	c.buf = append(c.buf, algID...)
	c.buf = appendHeader(c.buf, 0x03, bitLen)
	c.buf = append(c.buf, 0)
	c.buf = append(c.buf, sig...)
	outer := appendHeader(nil, 0x30, tbsLen+len(algID)+headerLen(bitLen)+bitLen)
	start -= len(outer)
	if start < 0 {
		return nil, errors.New("ca: CRL header room too small")
	}
	copy(c.buf[start:], outer)
	return c.buf[start:], nil
}

type authorityKeyID struct {
	ID []byte `asn1:"optional,tag:0"`
}

// headerLen is the length of a DER tag and length for n content bytes.
func headerLen(n int) int {
	switch {
	case n < 0x80:
		return 2
	case n < 0x100:
		return 3
	case n < 0x10000:
		return 4
	case n < 0x1000000:
		return 5
	}
	return 6
}

func appendHeader(b []byte, tag byte, n int) []byte {
	b = append(b, tag)
	switch {
	case n < 0x80:
		return append(b, byte(n))
	case n < 0x100:
		return append(b, 0x81, byte(n))
	case n < 0x10000:
		return append(b, 0x82, byte(n>>8), byte(n))
	case n < 0x1000000:
		return append(b, 0x83, byte(n>>16), byte(n>>8), byte(n))
	}
	return append(b, 0x84, byte(n>>24), byte(n>>16), byte(n>>8), byte(n))
}

// RFC 5280 §5.1.2.4: UTCTime through 2049, GeneralizedTime from 2050, in seconds, "Z".
func utcTime(t time.Time) bool { return t.Year() >= 1950 && t.Year() < 2050 }

func timeContentLen(t time.Time) int {
	if utcTime(t.UTC()) {
		return 13
	}
	return 15
}

func appendTime(b []byte, t time.Time) []byte {
	t = t.UTC()
	if utcTime(t) {
		b = append(b, 0x17, 13)
		return t.AppendFormat(b, "060102150405Z")
	}
	b = append(b, 0x18, 15)
	return t.AppendFormat(b, "20060102150405Z")
}
