package invoices

import (
	"errors"
	"testing"

	hufuv1 "github.com/hufu-hsm/hufu/api/hufu/v1"
	"github.com/hufu-hsm/hufu/daemon/apierr"
)

func TestCheckTitle(t *testing.T) {
	ent := func(mod func(*hufuv1.InvoiceTitle)) *hufuv1.InvoiceTitle {
		t := &hufuv1.InvoiceTitle{Kind: hufuv1.InvoiceTitleKind_INVOICE_TITLE_KIND_ENTERPRISE, Name: " 福州示范科技有限公司 ",
			TaxNumber: "91350100m000100y43", Address: "福州市", Telephone: "0591-87654321", Bank: "示范银行", BankAccount: "6222 0200 0001 2345"}
		if mod != nil {
			mod(t)
		}
		return t
	}
	person := &hufuv1.InvoiceTitle{Kind: hufuv1.InvoiceTitleKind_INVOICE_TITLE_KIND_PERSONAL, Name: "张三"}
	cases := []struct {
		name  string
		in    *hufuv1.InvoiceTitle
		field string // "" if valid
	}{
		{"enterprise, normalised", ent(nil), ""},
		{"person", person, ""},
		{"missing", nil, "title"},
		{"no kind", &hufuv1.InvoiceTitle{Name: "张三"}, "title.kind"},
		{"no name", ent(func(t *hufuv1.InvoiceTitle) { t.Name = "  " }), "title.name"},
		{"long name", ent(func(t *hufuv1.InvoiceTitle) { t.Name = string(make([]rune, 101)) }), "title.name"},
		{"control character", ent(func(t *hufuv1.InvoiceTitle) { t.Name = "a\x00b" }), "title.name"},
		{"no tax number", ent(func(t *hufuv1.InvoiceTitle) { t.TaxNumber = "" }), "title.tax_number"},
		{"check digit", ent(func(t *hufuv1.InvoiceTitle) { t.TaxNumber = "91350100M000100Y44" }), "title.tax_number"},
		{"short tax number", ent(func(t *hufuv1.InvoiceTitle) { t.TaxNumber = "913501" }), "title.tax_number"},
		{"telephone", ent(func(t *hufuv1.InvoiceTitle) { t.Telephone = "call me" }), "title.telephone"},
		{"bank account", ent(func(t *hufuv1.InvoiceTitle) { t.BankAccount = "12ab" }), "title.bank_account"},
		{"person with a bank", &hufuv1.InvoiceTitle{Kind: hufuv1.InvoiceTitleKind_INVOICE_TITLE_KIND_PERSONAL, Name: "张三", Bank: "x"}, "title.bank"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			got, err := CheckTitle("title", c.in)
			if c.field == "" {
				if err != nil {
					t.Fatal(err)
				}
				if c.in.Kind == hufuv1.InvoiceTitleKind_INVOICE_TITLE_KIND_ENTERPRISE &&
					(got.TaxNumber != "91350100M000100Y43" || got.Name != "福州示范科技有限公司" || got.BankAccount != "6222020000012345" || fullForSpecialVAT(got) != "") {
					t.Fatalf("stored form %v", got)
				}
				return
			}
			var ae *apierr.Error
			if !errors.As(err, &ae) || ae.Kind != apierr.InvalidArgument || ae.Field != c.field {
				t.Fatalf("got %v, want InvalidArgument on %s", err, c.field)
			}
		})
	}
}
