package ocsp_test

import (
	"bytes"
	"encoding/asn1"
	"errors"
	"math/big"
	"testing"

	"golang.org/x/crypto/cryptobyte"
	cbasn1 "golang.org/x/crypto/cryptobyte/asn1"

	"github.com/hufu-hsm/hufu/daemon/ca/ocsp"
)

var (
	oidSHA1   = asn1.ObjectIdentifier{1, 3, 14, 3, 2, 26}
	oidSHA256 = asn1.ObjectIdentifier{2, 16, 840, 1, 101, 3, 4, 2, 1}
	oidSM3    = asn1.ObjectIdentifier{1, 2, 156, 10197, 1, 401}
	oidMD5    = asn1.ObjectIdentifier{1, 2, 840, 113549, 2, 5}
)

// reqSpec describes a request to encode by hand, so that the table can also make the
// malformed ones.
type reqSpec struct {
	version       *int64
	requestorName bool
	certIDs       []idSpec
	extensions    []extSpec
	signature     bool
	trailingTBS   bool // an element after requestExtensions
	trailingOuter bool // a byte after the request
}

type idSpec struct {
	alg        asn1.ObjectIdentifier
	noParams   bool
	hashLen    int
	serial     []byte // INTEGER content
	trailing   bool   // an element after serialNumber
	singleExts []extSpec
}

type extSpec struct {
	oid      asn1.ObjectIdentifier
	critical bool
	value    []byte
}

func goodID() idSpec { return idSpec{alg: oidSHA1, hashLen: 20, serial: []byte{0x40, 1, 2, 3}} }

func nonceExt(n []byte) extSpec {
	v, _ := asn1.Marshal(n)
	return extSpec{oid: ocsp.OIDNonce, value: v}
}

func addExtensions(b *cryptobyte.Builder, tag cbasn1.Tag, exts []extSpec) {
	b.AddASN1(tag, func(b *cryptobyte.Builder) {
		b.AddASN1(cbasn1.SEQUENCE, func(b *cryptobyte.Builder) {
			for _, e := range exts {
				b.AddASN1(cbasn1.SEQUENCE, func(b *cryptobyte.Builder) {
					b.AddASN1ObjectIdentifier(e.oid)
					if e.critical {
						b.AddASN1Boolean(true)
					}
					b.AddASN1OctetString(e.value)
				})
			}
		})
	})
}

func (s reqSpec) der() []byte {
	var b cryptobyte.Builder
	b.AddASN1(cbasn1.SEQUENCE, func(b *cryptobyte.Builder) {
		b.AddASN1(cbasn1.SEQUENCE, func(b *cryptobyte.Builder) {
			if s.version != nil {
				b.AddASN1(cbasn1.Tag(0).Constructed().ContextSpecific(), func(b *cryptobyte.Builder) { b.AddASN1Int64(*s.version) })
			}
			if s.requestorName {
				b.AddASN1(cbasn1.Tag(1).Constructed().ContextSpecific(), func(b *cryptobyte.Builder) {
					b.AddASN1(cbasn1.Tag(2).ContextSpecific(), func(b *cryptobyte.Builder) { b.AddBytes([]byte("rp.example")) })
				})
			}
			b.AddASN1(cbasn1.SEQUENCE, func(b *cryptobyte.Builder) {
				for _, id := range s.certIDs {
					b.AddASN1(cbasn1.SEQUENCE, func(b *cryptobyte.Builder) {
						b.AddASN1(cbasn1.SEQUENCE, func(b *cryptobyte.Builder) {
							b.AddASN1(cbasn1.SEQUENCE, func(b *cryptobyte.Builder) {
								b.AddASN1ObjectIdentifier(id.alg)
								if !id.noParams {
									b.AddASN1NULL()
								}
							})
							b.AddASN1OctetString(bytes.Repeat([]byte{1}, id.hashLen))
							b.AddASN1OctetString(bytes.Repeat([]byte{2}, id.hashLen))
							b.AddASN1(cbasn1.INTEGER, func(b *cryptobyte.Builder) { b.AddBytes(id.serial) })
							if id.trailing {
								b.AddASN1NULL()
							}
						})
						if id.singleExts != nil {
							addExtensions(b, cbasn1.Tag(0).Constructed().ContextSpecific(), id.singleExts)
						}
					})
				}
			})
			if s.extensions != nil {
				addExtensions(b, cbasn1.Tag(2).Constructed().ContextSpecific(), s.extensions)
			}
			if s.trailingTBS {
				b.AddASN1NULL()
			}
		})
		if s.signature {
			b.AddASN1(cbasn1.Tag(0).Constructed().ContextSpecific(), func(b *cryptobyte.Builder) {
				b.AddASN1(cbasn1.SEQUENCE, func(b *cryptobyte.Builder) {
					b.AddASN1(cbasn1.SEQUENCE, func(b *cryptobyte.Builder) {
						b.AddASN1ObjectIdentifier(asn1.ObjectIdentifier{1, 2, 156, 10197, 1, 501})
					})
					b.AddASN1BitString([]byte{1, 2, 3})
				})
			})
		}
	})
	der := b.BytesOrPanic()
	if s.trailingOuter {
		der = append(der, 0)
	}
	return der
}

func TestParseRequest(t *testing.T) {
	one := []idSpec{goodID()}
	v0, v1 := int64(0), int64(1)
	ids := func(n int) []idSpec {
		out := make([]idSpec, n)
		for i := range out {
			out[i] = goodID()
		}
		return out
	}
	with := func(change func(*idSpec)) []idSpec {
		id := goodID()
		change(&id)
		return []idSpec{id}
	}
	unknownExt := asn1.ObjectIdentifier{1, 2, 3, 4}
	nonce16 := bytes.Repeat([]byte{7}, 16)
	for _, tc := range []struct {
		name      string
		spec      reqSpec
		ok        bool
		wantNonce []byte
		wantIDs   int
	}{
		{"sha1", reqSpec{certIDs: one}, true, nil, 1},
		{"sha1 without parameters", reqSpec{certIDs: with(func(i *idSpec) { i.noParams = true })}, true, nil, 1},
		{"sha256", reqSpec{certIDs: with(func(i *idSpec) { i.alg, i.hashLen = oidSHA256, 32 })}, true, nil, 1},
		{"sm3", reqSpec{certIDs: with(func(i *idSpec) { i.alg, i.hashLen = oidSM3, 32 })}, true, nil, 1},
		{"nonce", reqSpec{certIDs: one, extensions: []extSpec{nonceExt(nonce16)}}, true, append([]byte{4, 16}, nonce16...), 1},
		{"nonce of 1", reqSpec{certIDs: one, extensions: []extSpec{nonceExt([]byte{9})}}, true, []byte{4, 1, 9}, 1},
		{"nonce of 32", reqSpec{certIDs: one, extensions: []extSpec{nonceExt(make([]byte, 32))}}, true, append([]byte{4, 32}, make([]byte, 32)...), 1},
		{"explicit v1", reqSpec{version: &v0, certIDs: one}, true, nil, 1},
		{"requestor name and signature", reqSpec{requestorName: true, signature: true, certIDs: one}, true, nil, 1},
		{"unknown non-critical extension", reqSpec{certIDs: one, extensions: []extSpec{{oid: unknownExt, value: []byte{5, 0}}}}, true, nil, 1},
		{"ten certificates", reqSpec{certIDs: ids(10)}, true, nil, 10},

		{"version 2", reqSpec{version: &v1, certIDs: one}, false, nil, 0},
		{"eleven certificates", reqSpec{certIDs: ids(11)}, false, nil, 0},
		{"no certificates", reqSpec{certIDs: []idSpec{}}, false, nil, 0},
		{"trailing byte", reqSpec{certIDs: one, trailingOuter: true}, false, nil, 0},
		{"trailing element in tbsRequest", reqSpec{certIDs: one, trailingTBS: true}, false, nil, 0},
		{"trailing element in certID", reqSpec{certIDs: with(func(i *idSpec) { i.trailing = true })}, false, nil, 0},
		{"md5", reqSpec{certIDs: with(func(i *idSpec) { i.alg, i.hashLen = oidMD5, 16 })}, false, nil, 0},
		{"short hash", reqSpec{certIDs: with(func(i *idSpec) { i.hashLen = 19 })}, false, nil, 0},
		{"sm3 with sha1 length", reqSpec{certIDs: with(func(i *idSpec) { i.alg = oidSM3 })}, false, nil, 0},
		{"negative serial", reqSpec{certIDs: with(func(i *idSpec) { i.serial = []byte{0x80, 1} })}, false, nil, 0},
		{"zero serial", reqSpec{certIDs: with(func(i *idSpec) { i.serial = []byte{0} })}, false, nil, 0},
		{"non-minimal serial", reqSpec{certIDs: with(func(i *idSpec) { i.serial = []byte{0, 1} })}, false, nil, 0},
		{"21-octet serial", reqSpec{certIDs: with(func(i *idSpec) { i.serial = append([]byte{0x40}, make([]byte, 20)...) })}, false, nil, 0},
		{"empty nonce", reqSpec{certIDs: one, extensions: []extSpec{nonceExt([]byte{})}}, false, nil, 0},
		{"nonce of 33", reqSpec{certIDs: one, extensions: []extSpec{nonceExt(make([]byte, 33))}}, false, nil, 0},
		{"raw nonce", reqSpec{certIDs: one, extensions: []extSpec{{oid: ocsp.OIDNonce, value: nonce16}}}, false, nil, 0},
		{"two nonces", reqSpec{certIDs: one, extensions: []extSpec{nonceExt(nonce16), nonceExt(nonce16)}}, false, nil, 0},
		{"no extensions in Extensions", reqSpec{certIDs: one, extensions: []extSpec{}}, false, nil, 0},
		{"critical unknown extension", reqSpec{certIDs: one, extensions: []extSpec{{oid: unknownExt, critical: true, value: []byte{5, 0}}}}, false, nil, 0},
		{"critical unknown single extension", reqSpec{certIDs: with(func(i *idSpec) {
			i.singleExts = []extSpec{{oid: unknownExt, critical: true, value: []byte{5, 0}}}
		})}, false, nil, 0},
	} {
		t.Run(tc.name, func(t *testing.T) {
			req, err := ocsp.ParseRequest(tc.spec.der())
			if !tc.ok {
				if !errors.Is(err, ocsp.ErrMalformed) {
					t.Fatalf("accepted or wrong error: %v", err)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if len(req.CertIDs) != tc.wantIDs || !bytes.Equal(req.Nonce, tc.wantNonce) {
				t.Fatalf("%d CertIDs, nonce %x", len(req.CertIDs), req.Nonce)
			}
			if req.CertIDs[0].Serial.Cmp(big.NewInt(0x40010203)) != 0 {
				t.Fatalf("serial %v", req.CertIDs[0].Serial)
			}
		})
	}

	good := reqSpec{certIDs: one}.der()
	for name, der := range map[string][]byte{
		"indefinite length":  append([]byte{0x30, 0x80}, append(good[2:], 0, 0)...),
		"long-form length":   append([]byte{0x30, 0x81, good[1]}, good[2:]...),
		"too large":          append(good, make([]byte, ocsp.MaxRequestBytes)...),
		"not a SEQUENCE":     {0x04, 0x00},
		"empty":              nil,
		"truncated":          good[:len(good)-1],
		"length beyond data": append([]byte{0x30, good[1] + 1}, good[2:]...),
	} {
		t.Run(name, func(t *testing.T) {
			if _, err := ocsp.ParseRequest(der); !errors.Is(err, ocsp.ErrMalformed) {
				t.Fatalf("accepted or wrong error: %v", err)
			}
		})
	}
}

// FuzzParseRequest feeds the parser arbitrary bytes (seeds in testdata/fuzz, among them
// requests made by `openssl ocsp -reqout`). It must not panic, must keep its bounds, and
// what it accepts must survive being encoded again.
func FuzzParseRequest(f *testing.F) {
	f.Add(reqSpec{certIDs: []idSpec{goodID()}, extensions: []extSpec{nonceExt([]byte{1, 2, 3})}}.der())
	f.Add(reqSpec{requestorName: true, signature: true, certIDs: []idSpec{goodID(), goodID()}}.der())
	f.Fuzz(func(t *testing.T, der []byte) {
		req, err := ocsp.ParseRequest(der)
		if err != nil {
			if !errors.Is(err, ocsp.ErrMalformed) {
				t.Fatalf("error not ErrMalformed: %v", err)
			}
			return
		}
		if n := len(req.CertIDs); n < 1 || n > ocsp.MaxCertIDs {
			t.Fatalf("%d CertIDs", n)
		}
		var nonce []byte
		if req.Nonce != nil {
			var octets []byte
			if rest, err := asn1.Unmarshal(req.Nonce, &octets); err != nil || len(rest) != 0 || len(octets) < 1 || len(octets) > ocsp.MaxNonceBytes {
				t.Fatalf("nonce %x", req.Nonce)
			}
			nonce = octets
		}
		again, err := ocsp.MarshalRequest(req.CertIDs, nonce)
		if err != nil {
			t.Fatal(err)
		}
		back, err := ocsp.ParseRequest(again)
		if err != nil {
			t.Fatalf("re-encoded request refused: %v", err)
		}
		if !bytes.Equal(back.Nonce, req.Nonce) || len(back.CertIDs) != len(req.CertIDs) {
			t.Fatal("round trip changed the request")
		}
		for i, id := range req.CertIDs {
			b := back.CertIDs[i]
			if b.Hash != id.Hash || b.Serial.Cmp(id.Serial) != 0 || !bytes.Equal(b.IssuerNameHash, id.IssuerNameHash) ||
				!bytes.Equal(b.IssuerKeyHash, id.IssuerKeyHash) {
				t.Fatalf("CertID %d changed", i)
			}
		}
	})
}
