package support

import (
	"slices"
	"strings"
	"unicode"
	"unicode/utf8"

	"github.com/hufu-hsm/hufu/daemon/apierr"
)

// Article is one help article (使用帮助).
type Article struct {
	ID, Title, Category, Body string
}

// FAQ is one entry of the knowledge base that 智能客服 searches.
type FAQ struct {
	ID, Question, Answer string
	Keywords             []string
}

// Knowledge is the help content, from the configuration.
type Knowledge struct {
	Articles     []Article
	FAQ          []FAQ
	Phone, Hours string
}

// Hit is an FAQ entry that matched a query, with its score.
type Hit struct {
	FAQ
	Score int
}

// indexed is an FAQ entry with its fields lower-cased once for matching.
type indexed struct {
	question, answer, keywords string
}

// Search limits.
const (
	MaxQueryRunes = 100
	DefaultHits   = 10
	MaxHits       = 50
)

// Score weights: see SearchFaq in api/hufu/v1/support.proto, which documents the ranking.
const (
	weightKeyword  = 4
	weightQuestion = 3
	weightAnswer   = 1
	weightPhrase   = 2
)

func isCJK(r rune) bool {
	return unicode.In(r, unicode.Han, unicode.Hiragana, unicode.Katakana, unicode.Hangul)
}

// Terms cuts a query into the terms it is matched by, and the phrases that earn the
// phrase bonus. Each run of letters or digits (other than CJK) is one lower-cased term and
// one phrase; each run of CJK characters gives its overlapping two-character pieces as
// terms (a lone character is itself a term), and is a phrase if it has three or more.
// Everything else separates. Terms and phrases are distinct, in order of first appearance.
func Terms(query string) (terms, phrases []string) {
	add := func(list []string, s string) []string {
		if s == "" || slices.Contains(list, s) {
			return list
		}
		return append(list, s)
	}
	var run []rune
	cjk := false
	flush := func() {
		if len(run) == 0 {
			return
		}
		switch {
		case !cjk:
			w := strings.ToLower(string(run))
			terms, phrases = add(terms, w), add(phrases, w)
		case len(run) == 1:
			terms = add(terms, string(run))
		default:
			for i := 0; i+1 < len(run); i++ {
				terms = add(terms, string(run[i:i+2]))
			}
			if len(run) >= 3 {
				phrases = add(phrases, string(run))
			}
		}
		run = run[:0]
	}
	for _, r := range query {
		switch {
		case r == utf8.RuneError:
			flush()
		case isCJK(r):
			if !cjk {
				flush()
			}
			cjk = true
			run = append(run, r)
		case unicode.IsLetter(r) || unicode.IsDigit(r):
			if cjk {
				flush()
			}
			cjk = false
			run = append(run, r)
		default:
			flush()
		}
	}
	flush()
	return terms, phrases
}

func newIndex(faq []FAQ) []indexed {
	out := make([]indexed, len(faq))
	for i, f := range faq {
		out[i] = indexed{question: strings.ToLower(f.Question), answer: strings.ToLower(f.Answer),
			keywords: strings.ToLower(strings.Join(f.Keywords, "\n"))}
	}
	return out
}

// score is an entry's score for the terms and phrases of a query.
func (e indexed) score(terms, phrases []string) int {
	n := 0
	for _, t := range terms {
		if strings.Contains(e.keywords, t) {
			n += weightKeyword
		}
		if strings.Contains(e.question, t) {
			n += weightQuestion
		}
		if strings.Contains(e.answer, t) {
			n += weightAnswer
		}
	}
	for _, p := range phrases {
		if strings.Contains(e.question, p) {
			n += weightPhrase
		}
	}
	return n
}

// checkQuery validates a search query and its limit, returning the limit to use.
func checkQuery(query string, limit int) (int, error) {
	if !utf8.ValidString(query) || utf8.RuneCountInString(query) > MaxQueryRunes {
		return 0, apierr.Invalidf("query", "at most %d characters of UTF-8", MaxQueryRunes)
	}
	switch {
	case limit == 0:
		return DefaultHits, nil
	case limit < 0 || limit > MaxHits:
		return 0, apierr.Invalidf("limit", "want 1..%d", MaxHits)
	}
	return limit, nil
}

// search ranks the FAQ for query (see Terms and the weights): best first, ties in the
// configured order, entries scoring 0 left out; an empty query lists the FAQ in order.
func search(faq []FAQ, index []indexed, query string, limit int) []Hit {
	terms, phrases := Terms(query)
	var hits []Hit
	if len(terms) == 0 {
		for _, f := range faq[:min(limit, len(faq))] {
			hits = append(hits, Hit{FAQ: f})
		}
		return hits
	}
	for i, e := range index {
		if s := e.score(terms, phrases); s > 0 {
			hits = append(hits, Hit{FAQ: faq[i], Score: s})
		}
	}
	slices.SortStableFunc(hits, func(a, b Hit) int { return b.Score - a.Score })
	return hits[:min(limit, len(hits))]
}
