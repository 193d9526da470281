package cards

import (
	"strings"
	"testing"

	"github.com/hufu-hsm/hufu/daemon/identity"
)

func TestNormaliseAndShow(t *testing.T) {
	for _, tc := range []struct {
		name, in, number, bank, masked string
		valid                          bool
	}{
		{"spaces", "6222 0202 0011 2233 446", "6222020200112233446", "中国工商银行", "**** **** **** 3446", true},
		{"dashes and ideographic spaces", "6217-0012\u30003456-7890122", "6217001234567890122", "中国建设银行", "**** **** **** 0122", true},
		{"unknown BIN", "4000123412341234560", "4000123412341234560", "", "**** **** **** 4560", true},
		{"Luhn wrong", "6222020200112233447", "6222020200112233447", "中国工商银行", "**** **** **** 3447", false},
		{"letters stay and fail", "6222O20200112233446", "6222O20200112233446", "", "**** **** **** 3446", false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			n := NormaliseNumber(tc.in)
			if n != tc.number {
				t.Fatalf("NormaliseNumber(%q) = %q", tc.in, n)
			}
			if ok := identity.CheckCardNumber(n) == nil; ok != tc.valid {
				t.Fatalf("valid = %v", ok)
			}
			if b := BankName(n); b != tc.bank {
				t.Fatalf("BankName = %q", b)
			}
			if m := Masked(n[len(n)-4:]); m != tc.masked {
				t.Fatalf("Masked = %q", m)
			}
		})
	}
}

// FuzzCardNumber: whatever a phone sends as a card number, normalising and checking it
// never panics, and what passes is 12 to 19 digits whose display shows only the last four.
func FuzzCardNumber(f *testing.F) {
	f.Fuzz(func(t *testing.T, in string) {
		n := NormaliseNumber(in)
		_ = BankName(n)
		if identity.CheckCardNumber(n) != nil {
			return
		}
		if len(n) < 12 || len(n) > 19 || strings.Trim(n, "0123456789") != "" {
			t.Fatalf("%q passed as %q", in, n)
		}
		if m := Masked(n[len(n)-4:]); strings.Contains(m, n[:len(n)-4]) {
			t.Fatalf("Masked shows more than the last four: %q", m)
		}
	})
}
