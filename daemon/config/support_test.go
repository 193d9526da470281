package config

import (
	"strings"
	"testing"
)

func TestValidateSupport(t *testing.T) {
	for _, tc := range []struct {
		name   string
		mutate func(*Support)
		path   string // "" for valid
	}{
		{"development defaults", func(*Support) {}, ""},
		{"no support at all", func(s *Support) { *s = Support{} }, ""},
		{"phone", func(s *Support) { s.Phone = "call us" }, "support.phone"},
		{"id shared by an article and a faq entry", func(s *Support) { s.FAQ[0].ID = s.Articles[0].ID }, "support.faq[0].id"},
		{"id format", func(s *Support) { s.Articles[1].ID = "Bad ID" }, "support.articles[1].id"},
		{"empty title", func(s *Support) { s.Articles[0].Title = " " }, "support.articles[0].title"},
		{"empty answer", func(s *Support) { s.FAQ[2].Answer = "" }, "support.faq[2].answer"},
		{"long keyword", func(s *Support) { s.FAQ[0].Keywords = []string{strings.Repeat("长", 31)} }, "support.faq[0].keywords[0]"},
		{"bank card limit", func(s *Support) { s.MaxBankCards = 21 }, "support.max_bank_cards"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c := Development()
			c.DataDir = t.TempDir()
			tc.mutate(&c.Support)
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
