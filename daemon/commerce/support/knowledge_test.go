package support

import (
	"slices"
	"strings"
	"testing"
	"unicode/utf8"
)

func TestTerms(t *testing.T) {
	for _, tc := range []struct {
		name, query    string
		terms, phrases []string
	}{
		{"a CJK run gives its bigrams and is a phrase", "忘记证书密码", []string{"忘记", "记证", "证书", "书密", "密码"}, []string{"忘记证书密码"}},
		{"two characters are one bigram, no phrase", "发票", []string{"发票"}, nil},
		{"a lone character is a term", "码", []string{"码"}, nil},
		{"words are lower-cased terms and phrases", "Reset PIN", []string{"reset", "pin"}, []string{"reset", "pin"}},
		{"letters and CJK split", "PIN码", []string{"pin", "码"}, []string{"pin"}},
		{"punctuation separates", "证书，到期？续期!", []string{"证书", "到期", "续期"}, nil},
		{"duplicates once", "证书 证书", []string{"证书"}, nil},
		{"digits are words", "400 电话", []string{"400", "电话"}, []string{"400"}},
		{"nothing", " ？！ ", nil, nil},
	} {
		t.Run(tc.name, func(t *testing.T) {
			terms, phrases := Terms(tc.query)
			if !slices.Equal(terms, tc.terms) || !slices.Equal(phrases, tc.phrases) {
				t.Fatalf("Terms(%q) = %q, %q; want %q, %q", tc.query, terms, phrases, tc.terms, tc.phrases)
			}
		})
	}
}

var testFAQ = []FAQ{
	{ID: "pin", Question: "忘记证书密码怎么办？", Keywords: []string{"证书密码"}, Answer: "在【设置】中选择【忘记证书密码】。"},
	{ID: "renew", Question: "证书如何续期？", Keywords: []string{"续期"}, Answer: "在【我的证书】中点击【续期】。"},
	{ID: "card", Question: "为什么银行卡绑定失败？", Keywords: []string{"银行卡"}, Answer: "请检查预留手机号。"},
	{ID: "same-a", Question: "甲乙", Answer: "x"},
	{ID: "same-b", Question: "甲乙", Answer: "y"},
}

func TestScoreWeights(t *testing.T) {
	idx := newIndex(testFAQ)
	for _, tc := range []struct {
		name, query string
		entry       int
		want        int
	}{
		// 证书, 书密, 密码: 4+3+1 each, and the phrase 证书密码 in the question: 2.
		{"keyword, question, answer and phrase", "证书密码", 0, 3*(4+3+1) + 2},
		// 续期 in keyword, question and answer; 证书 in question and answer.
		{"two terms", "证书续期", 1, (4 + 3 + 1) + (3 + 1) + 0},
		{"answer only", "预留", 2, 1},
		{"no match", "发票", 2, 0},
	} {
		t.Run(tc.name, func(t *testing.T) {
			terms, phrases := Terms(tc.query)
			if got := idx[tc.entry].score(terms, phrases); got != tc.want {
				t.Fatalf("score(%q, %s) = %d, want %d", tc.query, testFAQ[tc.entry].ID, got, tc.want)
			}
		})
	}
}

func TestSearchRanking(t *testing.T) {
	idx := newIndex(testFAQ)
	ids := func(hits []Hit) string {
		var out []string
		for _, h := range hits {
			out = append(out, h.ID)
		}
		return strings.Join(out, ",")
	}
	for _, tc := range []struct {
		name, query string
		limit       int
		want        string
	}{
		{"best first", "证书密码", 10, "pin,renew"},
		{"the other way round", "证书续期", 10, "renew,pin"},
		{"ties keep the configured order", "甲乙", 10, "same-a,same-b"},
		{"limit", "证书", 1, "pin"},
		{"no hits", "发票", 10, ""},
		{"an empty query lists in order", "", 2, "pin,renew"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if got := ids(search(testFAQ, idx, tc.query, tc.limit)); got != tc.want {
				t.Fatalf("search(%q) = %s, want %s", tc.query, got, tc.want)
			}
		})
	}
}

// FuzzSearch: any query (untrusted text from a phone) is cut into terms that are non-empty,
// valid UTF-8 pieces of the lower-cased query, and ranks within the limit, best first.
func FuzzSearch(f *testing.F) {
	idx := newIndex(testFAQ)
	f.Fuzz(func(t *testing.T, query string) {
		terms, phrases := Terms(query)
		lower := strings.ToLower(query)
		for _, p := range append(terms, phrases...) {
			if p == "" || !utf8.ValidString(p) || !strings.Contains(lower, p) {
				t.Fatalf("Terms(%q) gave %q", query, p)
			}
		}
		hits := search(testFAQ, idx, query, 3)
		if len(hits) > 3 {
			t.Fatalf("%d hits", len(hits))
		}
		for i, h := range hits {
			if len(terms) > 0 && h.Score <= 0 || i > 0 && h.Score > hits[i-1].Score {
				t.Fatalf("hits %v", hits)
			}
		}
	})
}
