package config

import (
	"fmt"
	"slices"
	"strings"
	"unicode/utf8"
)

// AfterSales is after-sales (退款/售后, seed manual §1.8.1.4; daemon/commerce/aftersales):
// what the phone shows for each reason and the bounds of an application.
type AfterSales struct {
	// Reasons overrides the labels of reasons, e.g. {reason: not_needed, label: 不需要了}.
	// Reasons not named keep their default label.
	Reasons []AfterSalesReasonLabel `yaml:"reasons"`
	// MaxTextChars bounds the free text (default 500, at most 2000).
	MaxTextChars int `yaml:"max_text_chars"`
	// MaxAttachments bounds the files of one application (default 3, at most 9), each at
	// most MaxAttachmentBytes (default 2 MiB, at most 5 MiB).
	MaxAttachments     int `yaml:"max_attachments"`
	MaxAttachmentBytes int `yaml:"max_attachment_bytes"`
}

// AfterSalesReasonLabel is what the phone shows for one reason.
type AfterSalesReasonLabel struct {
	// Reason is one of AfterSalesReasonNames.
	Reason string `yaml:"reason"`
	Label  string `yaml:"label"`
}

// AfterSalesReasonNames are the reason names aftersales.reasons may relabel.
var AfterSalesReasonNames = []string{"not_needed", "wrong_information", "duplicate", "certificate_unusable", "platform_unsupported", "other"}

func (c *Config) validateAfterSales(bad func(path, format string, args ...any)) {
	a := c.AfterSales
	seen := map[string]bool{}
	for i, r := range a.Reasons {
		path := fmt.Sprintf("aftersales.reasons[%d]", i)
		switch {
		case !slices.Contains(AfterSalesReasonNames, r.Reason):
			bad(path+".reason", "%q: want one of %s", r.Reason, strings.Join(AfterSalesReasonNames, ", "))
		case seen[r.Reason]:
			bad(path+".reason", "%q is labelled twice", r.Reason)
		}
		seen[r.Reason] = true
		if n := utf8.RuneCountInString(strings.TrimSpace(r.Label)); n == 0 || n > 50 || !utf8.ValidString(r.Label) {
			bad(path+".label", "must be 1..50 characters")
		}
	}
	if a.MaxTextChars < 0 || a.MaxTextChars > 2000 {
		bad("aftersales.max_text_chars", "%d: want 1..2000 (0 for the default, 500)", a.MaxTextChars)
	}
	if a.MaxAttachments < 0 || a.MaxAttachments > 9 {
		bad("aftersales.max_attachments", "%d: want 1..9 (0 for the default, 3)", a.MaxAttachments)
	}
	if a.MaxAttachmentBytes < 0 || a.MaxAttachmentBytes > 5<<20 {
		bad("aftersales.max_attachment_bytes", "%d: want 1..%d (0 for the default, 2 MiB)", a.MaxAttachmentBytes, 5<<20)
	}
}
