package cms

import (
	"bytes"
	"encoding/asn1"
	"slices"
	"time"

	"golang.org/x/crypto/cryptobyte"
	cbasn1 "golang.org/x/crypto/cryptobyte/asn1"
)

// Tags used by the structures here beyond the universal ones.
var (
	tagExplicit0 = cbasn1.Tag(0).Constructed().ContextSpecific() // [0] EXPLICIT, [0] IMPLICIT SET
	tagImplicit1 = cbasn1.Tag(1).Constructed().ContextSpecific() // [1] IMPLICIT SET
	tagPrim0     = cbasn1.Tag(0).ContextSpecific()               // [0] IMPLICIT OCTET STRING
)

// readAlgorithm reads an AlgorithmIdentifier whose parameters must be absent or NULL.
func readAlgorithm(s *cryptobyte.String, oid *asn1.ObjectIdentifier) bool {
	var alg cryptobyte.String
	if !s.ReadASN1(&alg, cbasn1.SEQUENCE) || !alg.ReadASN1ObjectIdentifier(oid) {
		return false
	}
	if alg.Empty() {
		return true
	}
	var null cryptobyte.String
	return alg.ReadASN1(&null, cbasn1.NULL) && null.Empty() && alg.Empty()
}

// addAlgorithm writes an AlgorithmIdentifier with NULL parameters, as gmsm does.
func addAlgorithm(b *cryptobyte.Builder, oid asn1.ObjectIdentifier) {
	b.AddASN1(cbasn1.SEQUENCE, func(b *cryptobyte.Builder) {
		b.AddASN1ObjectIdentifier(oid)
		b.AddASN1NULL()
	})
}

// addSetOf writes a DER SET OF: the encoded elements sorted as octet strings (X.690 11.6).
func addSetOf(b *cryptobyte.Builder, tag cbasn1.Tag, elements [][]byte) {
	sorted := slices.Clone(elements)
	slices.SortFunc(sorted, bytes.Compare)
	b.AddASN1(tag, func(b *cryptobyte.Builder) {
		for _, e := range sorted {
			b.AddBytes(e)
		}
	})
}

const (
	utcTimeLayout         = "060102150405Z"
	generalizedTimeLayout = "20060102150405Z"
)

// minTime and maxTime bound a signing time: UTCTime starts at 1950 and GeneralizedTime
// ends with 9999.
var (
	minTime = time.Date(1950, 1, 1, 0, 0, 0, 0, time.UTC)
	maxTime = time.Date(10000, 1, 1, 0, 0, 0, 0, time.UTC)
	utcEnd  = time.Date(2050, 1, 1, 0, 0, 0, 0, time.UTC)
)

// addTime writes t (already UTC, whole seconds) as RFC 5652 §11.3 asks: UTCTime for
// 1950–2049, GeneralizedTime otherwise; both in Zulu form without fractions.
func addTime(b *cryptobyte.Builder, t time.Time) {
	if t.Before(utcEnd) {
		b.AddASN1(cbasn1.UTCTime, func(b *cryptobyte.Builder) { b.AddBytes([]byte(t.Format(utcTimeLayout))) })
		return
	}
	b.AddASN1(cbasn1.GeneralizedTime, func(b *cryptobyte.Builder) { b.AddBytes([]byte(t.Format(generalizedTimeLayout))) })
}

// readTime reads a Time written as addTime writes it, and nothing else: a UTCTime of
// exactly "YYMMDDHHMMSSZ", or a GeneralizedTime "YYYYMMDDHHMMSSZ" outside 1950–2049.
func readTime(s *cryptobyte.String, out *time.Time) bool {
	var (
		v      cryptobyte.String
		layout string
		tag    cbasn1.Tag
	)
	if !s.ReadAnyASN1(&v, &tag) {
		return false
	}
	switch tag {
	case cbasn1.UTCTime:
		layout = utcTimeLayout
	case cbasn1.GeneralizedTime:
		layout = generalizedTimeLayout
	default:
		return false
	}
	if len(v) != len(layout) {
		return false
	}
	for _, c := range v[:len(v)-1] {
		if c < '0' || c > '9' {
			return false
		}
	}
	t, err := time.Parse(layout, string(v))
	if err != nil || t.Format(layout) != string(v) {
		return false
	}
	if tag == cbasn1.UTCTime && !t.Before(utcEnd) {
		t = t.AddDate(-100, 0, 0) // YY of 50–99 is 19YY (RFC 5280 4.1.2.5.1); Go reads 69–99 only so
	}
	if tag == cbasn1.GeneralizedTime && !t.Before(minTime) && t.Before(utcEnd) {
		return false // must have been a UTCTime
	}
	*out = t.UTC()
	return true
}
