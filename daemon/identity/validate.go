// Package identity checks and verifies who a person or an organisation is: the formats of
// mainland mobile numbers, resident ID numbers (GB 11643), bank card numbers and unified
// social credit codes (GB 32100, with the organisation code of GB 11714 inside), and
// real-name verification by the three methods of the seed manual §1.4 behind a Verifier
// interface.
//
// The development Verifier accepts any well-formed input, but the format checks here run
// for real in every mode: a wrong check digit is refused before any provider is asked.
package identity

import (
	"errors"
	"regexp"
	"strings"
	"time"
	"unicode/utf8"
)

// Format errors. The API reports them as InvalidArgument on the field concerned.
var (
	ErrMobile       = errors.New("not a mainland mobile number (11 digits starting with 13-19)")
	ErrIDFormat     = errors.New("not an 18-character resident ID number")
	ErrIDBirthDate  = errors.New("resident ID number has an impossible birth date")
	ErrIDCheckDigit = errors.New("resident ID number check digit is wrong")
	ErrCardNumber   = errors.New("not a bank card number (12-19 digits)")
	ErrCardLuhn     = errors.New("bank card number check digit is wrong")
	ErrName         = errors.New("name must be 2-30 characters of Chinese, letters, · or spaces")
)

var (
	mobileRE = regexp.MustCompile(`^1[3-9][0-9]{9}$`)
	idRE     = regexp.MustCompile(`^[1-9][0-9]{16}[0-9X]$`)
	cardRE   = regexp.MustCompile(`^[0-9]{12,19}$`)
	nameRE   = regexp.MustCompile(`^[\p{Han}A-Za-z·• ]+$`)
)

// CheckMobile validates a mainland mobile number.
func CheckMobile(phone string) error {
	if !mobileRE.MatchString(phone) {
		return ErrMobile
	}
	return nil
}

// idWeights are the GB 11643-1999 weights 2^(17-i) mod 11 for the first 17 digits.
var idWeights = [17]int{7, 9, 10, 5, 8, 4, 2, 1, 6, 3, 7, 9, 10, 5, 8, 4, 2}

// idCheckChars maps the weighted sum mod 11 to the check character.
const idCheckChars = "10X98765432"

// CheckResidentID validates an 18-character resident ID number: digits, a real birth date in
// positions 7-14 not in the future, and the ISO 7064 MOD 11-2 check character (upper-case X
// for 10). now bounds the birth date.
func CheckResidentID(id string, now time.Time) error {
	if !idRE.MatchString(id) {
		return ErrIDFormat
	}
	birth, err := time.Parse("20060102", id[6:14])
	if err != nil || birth.Year() < 1900 || birth.After(now) {
		return ErrIDBirthDate
	}
	sum := 0
	for i, w := range idWeights {
		sum += int(id[i]-'0') * w
	}
	if id[17] != idCheckChars[sum%11] {
		return ErrIDCheckDigit
	}
	return nil
}

// CheckCardNumber validates a bank card number with the Luhn algorithm.
func CheckCardNumber(card string) error {
	if !cardRE.MatchString(card) {
		return ErrCardNumber
	}
	sum := 0
	for i := range len(card) {
		d := int(card[len(card)-1-i] - '0')
		if i%2 == 1 {
			d *= 2
			if d > 9 {
				d -= 9
			}
		}
		sum += d
	}
	if sum%10 != 0 {
		return ErrCardLuhn
	}
	return nil
}

// CheckName validates a person's legal name as the verification providers accept it.
func CheckName(name string) error {
	n := utf8.RuneCountInString(name)
	if n < 2 || n > 30 || !nameRE.MatchString(name) || strings.TrimSpace(name) != name {
		return ErrName
	}
	return nil
}

// MaskPhone shows the first 3 and last 4 digits: 138****5678.
func MaskPhone(phone string) string { return maskMiddle(phone, 3, 4) }

// MaskID shows the first 3 and last 4 characters of an ID number.
func MaskID(id string) string { return maskMiddle(id, 3, 4) }

// MaskCard shows the last 4 digits of a card number.
func MaskCard(card string) string { return maskMiddle(card, 0, 4) }

// MaskName shows the first character: 张*, 欧阳** .
func MaskName(name string) string {
	r := []rune(name)
	if len(r) == 0 {
		return ""
	}
	return string(r[0]) + strings.Repeat("*", len(r)-1)
}

func maskMiddle(s string, head, tail int) string {
	if len(s) <= head+tail {
		return strings.Repeat("*", len(s))
	}
	return s[:head] + strings.Repeat("*", len(s)-head-tail) + s[len(s)-tail:]
}
