package identity

import (
	"errors"
	"strings"
	"testing"
)

// FuzzCheckUSCC: any input is answered without a panic by exactly one of the rules; what is
// accepted is in standard form with both check characters right; normalising is idempotent;
// no error contains the input. Seeds are in testdata/fuzz/FuzzCheckUSCC.
func FuzzCheckUSCC(f *testing.F) {
	for _, c := range validUSCCs {
		f.Add(c)
	}
	f.Fuzz(func(t *testing.T, s string) {
		err := CheckUSCC(s)
		n := NormaliseUSCC(s)
		if NormaliseUSCC(n) != n {
			t.Fatalf("NormaliseUSCC is not idempotent: %q -> %q", s, n)
		}
		if err != nil {
			matched := 0
			for _, rule := range []error{ErrUSCCLength, ErrUSCCCharacter, ErrUSCCDivision, ErrUSCCOrgCode, ErrUSCCCheck} {
				if errors.Is(err, rule) {
					matched++
				}
			}
			if matched != 1 {
				t.Fatalf("error %v matches %d rules", err, matched)
			}
			// Only a code-like input can be told apart from the messages' own words.
			if len(s) == 18 && strings.Trim(s, usccAlphabet) == "" && strings.Contains(err.Error(), s) {
				t.Fatalf("the error echoes the input: %v", err)
			}
			return
		}
		if n != s || len(s) != 18 {
			t.Fatalf("accepted a code not in standard form: %q", s)
		}
		if orgCodeCheck(s[8:16]) != s[16] {
			t.Fatalf("accepted a code whose organisation code is wrong: %q", s)
		}
		sum := 0
		for i, w := range usccWeights {
			sum += strings.IndexByte(usccAlphabet, s[i]) * w
		}
		if (sum+strings.IndexByte(usccAlphabet, s[17]))%31 != 0 {
			t.Fatalf("accepted a code whose check character is wrong: %q", s)
		}
	})
}
