package enterprises

import (
	"errors"
	"slices"
	"strings"
	"testing"
	"time"
)

func TestParseFen(t *testing.T) {
	for _, tc := range []struct {
		in   string
		want int64
		err  string
	}{
		{"0.37", 37, ""}, {"0.01", 1, ""}, {"12", 1200, ""}, {"1.5", 150, ""}, {"1234.50", 123450, ""},
		{"999999999.99", 99999999999, ""},
		{"0.375", 0, "more than 2 decimals"}, {"0.00", 0, "positive"}, {"0", 0, "positive"},
		{"-1.00", 0, "not an amount"}, {"+1", 0, "not an amount"}, {"01.00", 0, "not an amount"}, {"1,000.00", 0, "not an amount"},
		{".5", 0, "not an amount"}, {"1.", 0, "not an amount"}, {"¥1.00", 0, "not an amount"}, {"1e2", 0, "not an amount"},
		{"", 0, "not an amount"}, {"1000000000.00", 0, "not an amount"},
	} {
		t.Run(tc.in, func(t *testing.T) {
			got, err := ParseFen(tc.in)
			if tc.err == "" {
				if err != nil || got != tc.want {
					t.Fatalf("ParseFen(%q) = %d, %v; want %d", tc.in, got, err, tc.want)
				}
				return
			}
			if err == nil || !strings.Contains(err.Error(), tc.err) {
				t.Fatalf("ParseFen(%q) = %d, %v; want an error saying %q", tc.in, got, err, tc.err)
			}
		})
	}
}

func TestParseStatement(t *testing.T) {
	good := "\ufeffDate, Amount ,payer_account,payer_name,remark\n2025-03-01,0.37,6222000000654321,福州示范科技有限公司,认证 HF7KQ2MX\n\n2025-03-02, 12 ,622200,某公司,\"货款, 三月\"\n"
	lines, err := ParseStatement([]byte(good))
	if err != nil {
		t.Fatal(err)
	}
	if len(lines) != 2 || lines[0].Line != 2 || lines[0].AmountFen != 37 || lines[0].Tail() != "654321" ||
		lines[1].Line != 4 || lines[1].AmountFen != 1200 || lines[1].Remark != "货款, 三月" || !lines[1].Date.Equal(time.Date(2025, 3, 2, 0, 0, 0, 0, time.UTC)) {
		t.Fatalf("lines: %+v", lines)
	}
	if lines[0].Canonical() != "2025-03-01|37|6222000000654321|福州示范科技有限公司|认证 HF7KQ2MX" || lines[0].PayerName != "福州示范科技有限公司" || len(lines[0].ID()) != 64 {
		t.Fatalf("canonical form: %q %q", lines[0].Canonical(), lines[0].ID())
	}
	for _, tc := range []struct {
		name, csv string
		want      []string
	}{
		{"empty", "", []string{"no lines"}},
		{"header only", "date,amount,payer_account,payer_name,remark\n", []string{"no lines"}},
		{"three decimals", "2025-03-01,0.375,6222000000654321,某公司,x\n", []string{`line 1, column 2 (amount): "0.375" has more than 2 decimals`}},
		{"slashed date", "x,1,123456,某公司,y\n2025/03/01,1,123456,某公司,y\n", []string{"line 1, column 1 (date)", "line 2, column 1 (date)"}},
		{"impossible date", "2025-02-30,1,123456,某公司,y\n", []string{"line 1, column 1 (date): \"2025-02-30\" is not a date"}},
		{"account with dashes", "2025-03-01,1,6222-0000,某公司,y\n", []string{"line 1, column 3 (payer_account)"}},
		{"short account", "2025-03-01,1,12345,某公司,y\n", []string{"line 1, column 3 (payer_account)"}},
		{"field count", "2025-03-01,1,123456,y\n2025-03-01,1,123456,y,z,w\n", []string{"line 1: 4 fields", "line 2: 6 fields"}},
		{"no payer name", "2025-03-01,1,123456,,y\n", []string{"line 1, column 4 (payer_name)"}},
		{"control character", "2025-03-01,1,123456,某公司,\"a\x07b\"\n", []string{"line 1, column 5 (remark): contains control characters"}},
		{"bidi override", "2025-03-01,1,123456,某\u202E司,y\n", []string{"line 1, column 4 (payer_name): contains bidirectional-override characters"}},
		{"long remark", "2025-03-01,1,123456,某公司," + strings.Repeat("款", 141) + "\n", []string{"line 1, column 5 (remark): longer than 140"}},
		{"bad quote", "2025-03-01,1,123456,某公司,\"open\n", []string{"line 1"}},
		{"not UTF-8", "2025-03-01,1,123456,某公司,\xff\n", []string{"line 1, column 5 (remark): not UTF-8"}},
		{"several errors on one line", "2025-3-1,0,abc,某公司,x\n", []string{"line 1, column 1 (date)", "line 1, column 2 (amount)", "line 1, column 3 (payer_account)"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := ParseStatement([]byte(tc.csv))
			if err == nil {
				t.Fatal("accepted")
			}
			for _, w := range tc.want {
				if !strings.Contains(err.Error(), w) {
					t.Fatalf("error %q does not say %q", err, w)
				}
			}
		})
	}
	big := make([]byte, MaxStatementBytes+1)
	if _, err := ParseStatement(big); err == nil || !strings.Contains(err.Error(), "larger than") {
		t.Fatalf("oversized statement: %v", err)
	}
	var many strings.Builder
	for range MaxStatementLines + 1 {
		many.WriteString("2025-03-01,1,123456,某公司,x\n")
	}
	var se StatementError
	if _, err := ParseStatement([]byte(many.String())); !errors.As(err, &se) || !strings.Contains(err.Error(), "more than 10000 lines") {
		t.Fatalf("too many lines: %v", err)
	}
	// A statement with many bad lines lists at most maxLineErrors.
	var bad strings.Builder
	for range 50 {
		bad.WriteString("x,x,x,x,x\n")
	}
	if _, err := ParseStatement([]byte(bad.String())); !errors.As(err, &se) || len(se) != maxLineErrors {
		t.Fatalf("error list: %d entries, %v", len(se), err)
	}
}

func TestReferences(t *testing.T) {
	for _, tc := range []struct {
		remark string
		want   []string
	}{
		{"认证 HF7KQ2MX 福州", []string{"HF7KQ2MX"}},
		{"hf7kq2mx", []string{"HF7KQ2MX"}},
		{"XHFHF7KQ2MX", []string{"HFHF7KQ2", "HF7KQ2MX"}}, // overlapping candidates all tried
		{"HF7KQ2M", nil},           // too short
		{"HF7KQ0MX HF1KQ2MX", nil}, // 0 and 1 are not in the alphabet
		{"", nil},
	} {
		if got := References(tc.remark); !slices.Equal(got, tc.want) {
			t.Errorf("References(%q) = %v, want %v", tc.remark, got, tc.want)
		}
	}
}

// FuzzParseStatement: the parser never panics, and what it accepts is well-formed and
// survives a round trip through its canonical form. Seeds: testdata/fuzz/FuzzParseStatement.
func FuzzParseStatement(f *testing.F) {
	f.Add([]byte("date,amount,payer_account,payer_name,remark\n2025-03-01,0.37,6222000000654321,某公司,HF7KQ2MX\n"))
	f.Fuzz(func(t *testing.T, data []byte) {
		lines, err := ParseStatement(data)
		if err != nil {
			var se StatementError
			if errors.As(err, &se) && (len(se) == 0 || len(se) > maxLineErrors) {
				t.Fatalf("%d line errors", len(se))
			}
			return
		}
		var again strings.Builder
		for _, l := range lines {
			if l.AmountFen <= 0 || len(l.Payer) < 6 || len(l.Payer) > 32 || len(l.Tail()) != 6 || l.Date.IsZero() || l.Line < 1 {
				t.Fatalf("accepted a malformed line: %+v", l)
			}
			remark := strings.ReplaceAll(l.Remark, `"`, `""`)
			name := strings.ReplaceAll(l.PayerName, `"`, `""`)
			again.WriteString(l.Date.Format(time.DateOnly) + "," + yuan(l.AmountFen) + "," + l.Payer + ",\"" + name + "\",\"" + remark + "\"\n")
		}
		back, err := ParseStatement([]byte(again.String()))
		if err != nil || len(back) != len(lines) {
			t.Fatalf("round trip: %v (%d lines, want %d)\n%s", err, len(back), len(lines), again.String())
		}
		for i := range lines {
			if back[i].ID() != lines[i].ID() {
				t.Fatalf("round trip changed line %d: %q -> %q", i, lines[i].Canonical(), back[i].Canonical())
			}
		}
	})
}
