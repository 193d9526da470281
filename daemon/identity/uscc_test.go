package identity

import (
	"errors"
	"strings"
	"testing"
)

// validUSCCs are codes that organisations actually hold, each checked by computing both
// check characters independently of this package (a short Python script) and, for the
// first, by hand:
//
//	91350100M000100Y43 (the example of GB 32100-2015)
//	organisation code M000100Y4, GB 11714 values M=22, Y=34:
//	  22·3 + 0·7 + 0·9 + 0·10 + 1·5 + 0·8 + 0·4 + 34·2 = 139; 139 mod 11 = 7; 11-7 = 4 ✓
//	code values (M=21, Y=30 in the code alphabet) times weights 1 3 9 27 19 26 16 17 20 29 25 13 8 24 10 30 28:
//	  9 + 3 + 27 + 135 + 0 + 26 + 0 + 0 + 420 + 0 + 0 + 0 + 8 + 0 + 0 + 900 + 112 = 1640;
//	  1640 mod 31 = 28; 31-28 = 3 ✓
//
// 911100001000013367, sometimes quoted as an example, fails both checks (the organisation
// code's check character would be 4 and the code's P) and is listed among the invalid ones.
var validUSCCs = []string{
	"91350100M000100Y43",
	"91110000802100433B",
	"91440300708461136T",
	"914403001922038216",
	"91110108551385082Q",
	"91310000775785552L",
}

func TestCheckUSCC(t *testing.T) {
	cases := []struct {
		name string
		code string
		want error
	}{
		{"GB 32100 example", "91350100M000100Y43", nil},
		{"Beijing, digits only", "91110000802100433B", nil},
		{"check character 6", "914403001922038216", nil},
		{"quoted example that fails both checks", "911100001000013367", ErrUSCCOrgCode},
		{"empty", "", ErrUSCCLength},
		{"17 characters", "91350100M000100Y4", ErrUSCCLength},
		{"19 characters", "91350100M000100Y433", ErrUSCCLength},
		{"multi-byte but 18 runes", "91350100M000100Y4三", ErrUSCCLength},
		{"lower case", "91350100m000100y43", ErrUSCCCharacter},
		{"letter I", "91350100M000100I43", ErrUSCCCharacter},
		{"letter O", "9135010OM000100Y43", ErrUSCCCharacter},
		{"letter Z", "Z1350100M000100Y43", ErrUSCCCharacter},
		{"letter S", "9S350100M000100Y43", ErrUSCCCharacter},
		{"letter V", "91350100M000100V43", ErrUSCCCharacter},
		{"space", "91350100 000100Y43", ErrUSCCCharacter},
		{"hyphen", "91350100-000100Y43", ErrUSCCCharacter},
		{"full-width, not normalised", "９１３５０１００Ｍ０００１００Ｙ４３", ErrUSCCLength},
		{"letter in the division", "9135A100M000100Y43", ErrUSCCDivision},
		{"no province 99", "91990100M000100Y43", ErrUSCCDivision},
		{"no province 00", "91000000M000100Y43", ErrUSCCDivision},
		{"organisation check character", "91350100M000100Y53", ErrUSCCOrgCode},
		{"organisation code transposed", "91350100M001000Y43", ErrUSCCOrgCode},
		{"code check character", "91350100M000100Y44", ErrUSCCCheck},
		{"authority changed", "Y1350100M000100Y43", ErrUSCCCheck},
		{"category changed", "92350100M000100Y43", ErrUSCCCheck},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			err := CheckUSCC(c.code)
			if !errors.Is(err, c.want) || (c.want == nil) != (err == nil) {
				t.Fatalf("got %v, want %v", err, c.want)
			}
			if err != nil && c.code != "" && strings.Contains(err.Error(), c.code) {
				t.Fatalf("the error echoes the code: %v", err)
			}
		})
	}
}

func TestCheckUSCCValidCodes(t *testing.T) {
	for _, code := range validUSCCs {
		if err := CheckUSCC(code); err != nil {
			t.Errorf("%s: %v", code, err)
		}
	}
}

// TestCheckUSCCEverySubstitution changes each position of each valid code to every other
// character of the alphabet: all are refused (31 is prime and no weight is 0 mod 31, so the
// check character catches every single substitution), and with the rule of the position.
func TestCheckUSCCEverySubstitution(t *testing.T) {
	for _, code := range validUSCCs {
		for i := range 18 {
			for j := range len(usccAlphabet) {
				c := usccAlphabet[j]
				if c == code[i] {
					continue
				}
				bad := code[:i] + string(c) + code[i+1:]
				err := CheckUSCC(bad)
				var ok bool
				switch {
				case i < 2 || i == 17:
					ok = errors.Is(err, ErrUSCCCheck)
				case i < 8:
					ok = errors.Is(err, ErrUSCCDivision) || (c <= '9' && errors.Is(err, ErrUSCCCheck))
				default:
					// A body character changed by a multiple of 11 (0 -> B, 1 -> C, ...) keeps
					// the organisation code valid; the code's own check catches it.
					ok = errors.Is(err, ErrUSCCOrgCode) || (i < 16 && errors.Is(err, ErrUSCCCheck))
				}
				if !ok {
					t.Errorf("%s position %d -> %c: %v", code, i+1, c, err)
				}
			}
		}
	}
}

func TestCheckUSCCCharacterPosition(t *testing.T) {
	err := CheckUSCC("91350100M000100I43")
	if !errors.Is(err, ErrUSCCCharacter) || !strings.Contains(err.Error(), "position 16, organisation code") {
		t.Fatalf("got %v", err)
	}
	err = CheckUSCC("O1350100M000100Y43")
	if !strings.Contains(err.Error(), "position 1, registration authority code") {
		t.Fatalf("got %v", err)
	}
}

func TestNormaliseUSCC(t *testing.T) {
	cases := []struct {
		name, in, want string
	}{
		{"standard form unchanged", "91350100M000100Y43", "91350100M000100Y43"},
		{"full-width", "９１３５０１００Ｍ０００１００Ｙ４３", "91350100M000100Y43"},
		{"full-width lower case", "９１３５０１００ｍ０００１００ｙ４３", "91350100M000100Y43"},
		{"mixed widths", "9135０１００M000100Ｙ43", "91350100M000100Y43"},
		{"lower case", "91110000802100433b", "91110000802100433B"},
		{"surrounding spaces and tabs", " \t91110000802100433B\n", "91110000802100433B"},
		{"ideographic spaces", "\u300091110000802100433B\u3000", "91110000802100433B"},
		{"inner space kept (then refused)", "9111000080 2100433B", "9111000080 2100433B"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			if got := NormaliseUSCC(c.in); got != c.want {
				t.Fatalf("got %q, want %q", got, c.want)
			}
		})
	}
	if err := CheckUSCC(NormaliseUSCC(" ９１３５０１００ｍ０００１００ｙ４３\u3000")); err != nil {
		t.Fatalf("full-width input did not normalise to a valid code: %v", err)
	}
}

func TestOrgCodeCheckKnownAnswers(t *testing.T) {
	// GB 11714 organisation codes as printed on pre-2015 certificates (XXXXXXXX-C).
	for body, want := range map[string]byte{
		"M000100Y": '4', // 22·3 + 1·5 + 34·2 = 139 -> 11 - 7
		"80210043": '3',
		"19220382": '1',
		"00000000": '0', // sum 0 -> 11 -> '0'
		"00000001": '9', // sum 2 -> 11 - 2
		"00000700": 'X', // 7·8 = 56, 56 mod 11 = 1 -> 11 - 1 = 10 -> X
	} {
		if got := orgCodeCheck(body); got != want {
			t.Errorf("%s: got %c, want %c", body, got, want)
		}
	}
}
