package config

import (
	"strings"
	"testing"
)

func TestValidateAfterSales(t *testing.T) {
	for _, tc := range []struct {
		name   string
		mutate func(*AfterSales)
		path   string // "" for valid
	}{
		{"defaults", func(*AfterSales) {}, ""},
		{"a label", func(a *AfterSales) { a.Reasons = []AfterSalesReasonLabel{{"duplicate", "重复下单"}} }, ""},
		{"unknown reason", func(a *AfterSales) { a.Reasons = []AfterSalesReasonLabel{{"bored", "无聊"}} }, "aftersales.reasons[0].reason"},
		{"reason twice", func(a *AfterSales) { a.Reasons = []AfterSalesReasonLabel{{"other", "其他"}, {"other", "别的"}} }, "aftersales.reasons[1].reason"},
		{"empty label", func(a *AfterSales) { a.Reasons = []AfterSalesReasonLabel{{"other", " "}} }, "aftersales.reasons[0].label"},
		{"long label", func(a *AfterSales) { a.Reasons = []AfterSalesReasonLabel{{"other", strings.Repeat("长", 51)}} }, "aftersales.reasons[0].label"},
		{"text", func(a *AfterSales) { a.MaxTextChars = 2001 }, "aftersales.max_text_chars"},
		{"attachments", func(a *AfterSales) { a.MaxAttachments = 10 }, "aftersales.max_attachments"},
		{"attachment size", func(a *AfterSales) { a.MaxAttachmentBytes = 6 << 20 }, "aftersales.max_attachment_bytes"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c := Development()
			c.DataDir = t.TempDir()
			tc.mutate(&c.AfterSales)
			err := c.Validate()
			if tc.path == "" {
				if err != nil {
					t.Fatal(err)
				}
				return
			}
			if err == nil || !strings.Contains(err.Error(), tc.path+": ") {
				t.Fatalf("want a problem at %s, got %v", tc.path, err)
			}
		})
	}
}
