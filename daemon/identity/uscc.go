package identity

import (
	"errors"
	"fmt"
	"strings"
	"unicode"
)

// Unified social credit code (统一社会信用代码) errors, one per rule of GB 32100-2015. They
// name the rule and the position, never the code. The API reports them as InvalidArgument
// on the field concerned.
var (
	ErrUSCCLength = errors.New("unified social credit code must be 18 characters")
	// ErrUSCCCharacter: a character outside the code alphabet 0-9 A-H J-N P-R T-U W-Y (no
	// I, O, Z, S, V). Wrapped with the position.
	ErrUSCCCharacter = errors.New("unified social credit code has a character outside 0-9 and A-Z without I, O, Z, S, V")
	// ErrUSCCDivision: positions 3-8 (the registration authority's administrative division,
	// GB/T 2260) are not 6 digits starting with a province-level code or 10 (national).
	ErrUSCCDivision = errors.New("unified social credit code positions 3-8 are not an administrative division code")
	// ErrUSCCOrgCode: positions 9-17 (the organisation code, GB 11714) fail their own check
	// character at position 17.
	ErrUSCCOrgCode = errors.New("unified social credit code positions 9-17 are not a valid organisation code (GB 11714 check character)")
	// ErrUSCCCheck: the check character at position 18 is wrong.
	ErrUSCCCheck = errors.New("unified social credit code check character (position 18) is wrong")
)

// usccAlphabet is the GB 32100-2015 code character set in value order: the value of a
// character is its index (0-9, A=10 ... Y=30).
const usccAlphabet = "0123456789ABCDEFGHJKLMNPQRTUWXY"

// usccWeights are the GB 32100-2015 weights 3^(i-1) mod 31 of positions 1-17.
var usccWeights = [17]int{1, 3, 9, 27, 19, 26, 16, 17, 20, 29, 25, 13, 8, 24, 10, 30, 28}

// orgCodeWeights are the GB 11714-1997 weights of the organisation code's 8 body characters.
var orgCodeWeights = [8]int{3, 7, 9, 10, 5, 8, 4, 2}

// provinces are the province-level codes of GB/T 2260 (the first two digits of an
// administrative division code), with 10 for registrations at the national level (100000).
var provinces = map[string]bool{
	"10": true,
	"11": true, "12": true, "13": true, "14": true, "15": true,
	"21": true, "22": true, "23": true,
	"31": true, "32": true, "33": true, "34": true, "35": true, "36": true, "37": true,
	"41": true, "42": true, "43": true, "44": true, "45": true, "46": true,
	"50": true, "51": true, "52": true, "53": true, "54": true,
	"61": true, "62": true, "63": true, "64": true, "65": true,
	"71": true, "81": true, "82": true,
}

// usccValue returns the GB 32100 value of a code character, or -1.
func usccValue(c byte) int { return strings.IndexByte(usccAlphabet, c) }

// NormaliseUSCC puts a unified social credit code as typed into its standard form: surrounding
// white space (including the ideographic space) removed, full-width letters and digits
// (Ａ, ９, as Chinese input methods produce them) made half-width, letters upper-case. It
// does not check the result: call CheckUSCC.
func NormaliseUSCC(s string) string {
	s = strings.Map(func(r rune) rune {
		switch {
		case r == '\u3000':
			return ' '
		case r >= '\uff01' && r <= '\uff5e': // the full-width forms of ASCII ! to ~
			r -= 0xfee0
		}
		return unicode.ToUpper(r)
	}, s)
	return strings.TrimSpace(s)
}

// CheckUSCC validates a unified social credit code in its standard form (see NormaliseUSCC)
// against GB 32100-2015:
//
//	position  1     registration authority code (登记管理部门代码)
//	position  2     organisation category code (机构类别代码)
//	positions 3-8   administrative division code of the registration authority (GB/T 2260)
//	positions 9-17  organisation code (组织机构代码, GB 11714), position 17 its check character
//	position  18    check character
//
// Every character is from the alphabet 0-9 A-H J-N P-R T-U W-Y. Positions 3-8 are digits,
// the first two a province-level code or 10 (national). The organisation code's check
// character is C9 = 11 - (Σ Ci·Wi mod 11) over the 8 body characters with weights
// 3 7 9 10 5 8 4 2 and letter values A=10 ... Z=35 (GB 11714 counts the whole Latin
// alphabet), written X for 10 and 0 for 11. The code's check character is the character of
// value 31 - (Σ Ci·Wi mod 31) (31 written 0) with weights 3^(i-1) mod 31 and the values of
// the code alphabet.
//
// Positions 1 and 2 are checked against the alphabet only: the table of registration
// authorities and their categories is extended by notice (外交, 司法行政, 农业, ... came
// after 2015), and refusing a code an authority has actually issued would lock that
// organisation out; a mistyped character is caught by the check character.
//
// The errors wrap ErrUSCCLength, ErrUSCCCharacter, ErrUSCCDivision, ErrUSCCOrgCode or
// ErrUSCCCheck, in the order the rules are checked, and never contain the code.
func CheckUSCC(code string) error {
	if len(code) != 18 {
		return ErrUSCCLength
	}
	var v [18]int
	for i := range len(code) {
		if v[i] = usccValue(code[i]); v[i] < 0 {
			return fmt.Errorf("%w (position %d, %s)", ErrUSCCCharacter, i+1, usccPart(i))
		}
	}
	for i := 2; i < 8; i++ {
		if v[i] > 9 {
			return ErrUSCCDivision
		}
	}
	if !provinces[code[2:4]] {
		return ErrUSCCDivision
	}
	if orgCodeCheck(code[8:16]) != code[16] {
		return ErrUSCCOrgCode
	}
	sum := 0
	for i, w := range usccWeights {
		sum += v[i] * w
	}
	if usccAlphabet[(31-sum%31)%31] != code[17] {
		return ErrUSCCCheck
	}
	return nil
}

// usccPart names the part of the code a position (0-based) belongs to.
func usccPart(i int) string {
	switch {
	case i == 0:
		return "registration authority code"
	case i == 1:
		return "organisation category code"
	case i < 8:
		return "administrative division code"
	case i < 17:
		return "organisation code"
	}
	return "check character"
}

// orgCodeCheck returns the GB 11714 check character of an 8-character organisation code
// body of digits and upper-case letters (the caller has checked the characters).
func orgCodeCheck(body string) byte {
	sum := 0
	for i, w := range orgCodeWeights {
		c := body[i]
		n := int(c - '0')
		if c >= 'A' {
			n = int(c-'A') + 10
		}
		sum += n * w
	}
	switch c9 := 11 - sum%11; c9 {
	case 10:
		return 'X'
	case 11:
		return '0'
	default:
		return byte('0' + c9)
	}
}
