package enterprises

import (
	"encoding/base64"
	"strings"
	"testing"
)

func TestNameKey(t *testing.T) {
	for _, tc := range []struct{ name, in, want string }{
		{"plain", "福州示范科技有限公司", "福州示范科技有限公司"},
		{"full-width brackets and letters", "ＡＢＣ科技（北京）有限公司", "ABC科技(北京)有限公司"},
		{"spaces of every width", " 福州\u3000示范 科技有限公司\t", "福州示范科技有限公司"},
		{"lower-case latin", "abc 科技", "ABC科技"},
		{"full-width digits", "第１２３号公司", "第123号公司"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if got := NameKey(tc.in); got != tc.want {
				t.Fatalf("NameKey(%q) = %q, want %q", tc.in, got, tc.want)
			}
		})
	}
}

var validInvite = "HUFU1.INV.0123456789abcdef0123.91350100M000100Y43.1796157738." + base64.RawURLEncoding.EncodeToString(make([]byte, 32))

func TestParseInvite(t *testing.T) {
	p, err := parseInvite(validInvite)
	if err != nil || p.id != "0123456789abcdef0123" || p.uscc != "91350100M000100Y43" || p.expires != 1796157738 ||
		!strings.HasSuffix(p.body, ".1796157738") || len(p.mac) != 32 {
		t.Fatalf("parse: %+v %v", p, err)
	}
	for _, tc := range []struct{ name, payload string }{
		{"empty", ""},
		{"other prefix", strings.Replace(validInvite, "HUFU1.INV.", "HUFU2.INV.", 1)},
		{"short id", strings.Replace(validInvite, "0123456789abcdef0123", "0123", 1)},
		{"upper-case id", strings.Replace(validInvite, "abcdef", "ABCDEF", 1)},
		{"corrupted USCC", strings.Replace(validInvite, "Y43", "Y44", 1)},
		{"signed expiry", strings.Replace(validInvite, ".1796157738.", ".+1796157738.", 1)},
		{"zero-padded expiry", strings.Replace(validInvite, ".1796157738.", ".01796157738.", 1)},
		{"negative expiry", strings.Replace(validInvite, ".1796157738.", ".-1.", 1)},
		{"short MAC", validInvite[:len(validInvite)-2]},
		{"padded MAC", validInvite + "="},
		{"extra part", validInvite + ".x"},
		{"too long", validInvite + strings.Repeat("A", 200)},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if _, err := parseInvite(tc.payload); err != errInvite {
				t.Fatalf("parseInvite(%q) = %v, want the invite error", tc.payload, err)
			}
		})
	}
}

// FuzzParseInvite: invites are scanned from QR codes; parsing never panics, and whatever
// parses re-assembles to the payload it came from.
func FuzzParseInvite(f *testing.F) {
	f.Add(validInvite)
	f.Add("HUFU1.INV.....")
	f.Add("HUFU1.INV.0123456789abcdef0123.91350100M000100Y43.1.")
	f.Fuzz(func(t *testing.T, payload string) {
		p, err := parseInvite(payload)
		if err != nil {
			return
		}
		if p.body+"."+base64.RawURLEncoding.EncodeToString(p.mac) != payload {
			t.Fatalf("%q parsed to %+v", payload, p)
		}
	})
}
