package cards

import "strings"

// bins are the issuer identification numbers (first six digits) of common debit cards of
// the large mainland banks. The list is short on purpose: a bank's name is a convenience on
// the phone, and an unknown BIN shows none.
var bins = map[string]string{
	"622202": "中国工商银行", "622208": "中国工商银行", "621226": "中国工商银行",
	"622848": "中国农业银行", "622845": "中国农业银行",
	"621700": "中国建设银行", "622700": "中国建设银行",
	"621661": "中国银行", "621785": "中国银行",
	"622262": "交通银行",
	"622588": "招商银行", "621483": "招商银行",
	"621799": "中国邮政储蓄银行",
}

// BankName returns the bank of a card number from its BIN, or "" if it is not known.
func BankName(number string) string {
	if len(number) < 6 {
		return ""
	}
	return bins[number[:6]]
}

// Masked is a card number as shown: groups of four stars and the last four digits.
func Masked(last4 string) string {
	return strings.Repeat("**** ", 3) + last4
}
