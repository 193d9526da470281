package webhook

import (
	"errors"
	"os"
	"strings"
	"testing"
	"time"
)

var testNow = time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)

func TestDecodeResponse(t *testing.T) {
	tests := []struct {
		name, op, body string
		want           Response
		wantErr        string // substring of the error; "" for success
	}{
		{"ok", OpSMSSend, `{"result":"ok"}`, Response{Result: ResultOK}, ""},
		{"unknown fields ignored", OpSMSSend, `{"result":"ok","trace":"x"}`, Response{Result: ResultOK}, ""},
		{"rejected with code", OpSMSSend, `{"result":"rejected","error_code":"BLACKLISTED"}`, Response{Result: ResultRejected, ErrorCode: "BLACKLISTED"}, ""},
		{"mismatch", OpIdentityNameID, `{"result":"mismatch"}`, Response{Result: ResultMismatch}, ""},
		{"face started", OpFaceStart, `{"result":"ok","certify_id":"abc_1","url":"https://render.alipay.com/x"}`,
			Response{Result: ResultOK, CertifyID: "abc_1", URL: "https://render.alipay.com/x"}, ""},
		{"face person", OpFaceComplete, `{"result":"ok","name":"张三","id_number":"11010519491231002X"}`,
			Response{Result: ResultOK, Name: "张三", IDNumber: "11010519491231002X"}, ""},
		{"pending", OpFaceComplete, `{"result":"pending"}`, Response{Result: ResultPending}, ""},
		{"openid", OpLoginWeChat, `{"result":"ok","openid":"oAbC-12_x"}`, Response{Result: ResultOK, OpenID: "oAbC-12_x"}, ""},
		{"phone", OpLoginCarrier, `{"result":"ok","phone":"13800138000"}`, Response{Result: ResultOK, Phone: "13800138000"}, ""},
		{"charge", OpPaymentCharge, `{"result":"ok","payment_ref":"wx:4200001"}`, Response{Result: ResultOK, PaymentRef: "wx:4200001"}, ""},
		{"declined", OpPaymentCharge, `{"result":"declined"}`, Response{Result: ResultDeclined}, ""},

		{"unknown operation", "sms.receive", `{"result":"ok"}`, Response{}, "unknown operation"},
		{"empty", OpSMSSend, ``, Response{}, "truncated or empty"},
		{"truncated", OpSMSSend, `{"result":"ok"`, Response{}, "truncated"},
		{"syntax", OpSMSSend, `{"result":ok}`, Response{}, "invalid JSON at byte"},
		{"array", OpSMSSend, `["ok"]`, Response{}, "not a JSON object"},
		{"null", OpSMSSend, `null`, Response{}, "result is missing"},
		{"trailing data", OpSMSSend, `{"result":"ok"} {}`, Response{}, "data after"},
		{"result of another operation", OpSMSSend, `{"result":"mismatch"}`, Response{}, `result "mismatch" is not one of`},
		{"result not a word", OpSMSSend, `{"result":"13800138000"}`, Response{}, "result is missing or not a word"},
		{"wrong type", OpSMSSend, `{"result":1}`, Response{}, "field result is not a string"},
		{"bad error code", OpSMSSend, `{"result":"rejected","error_code":"no spaces"}`, Response{}, "error_code"},
		{"face without url", OpFaceStart, `{"result":"ok","certify_id":"abc"}`, Response{}, "url"},
		{"face http url", OpFaceStart, `{"result":"ok","certify_id":"abc","url":"http://x/"}`, Response{}, "url"},
		{"certify id with slash", OpFaceStart, `{"result":"ok","certify_id":"a/b","url":"https://x/"}`, Response{}, "certify_id"},
		{"person without id", OpFaceComplete, `{"result":"ok","name":"张三"}`, Response{}, "id_number"},
		{"person bad check digit", OpFaceComplete, `{"result":"ok","name":"张三","id_number":"110105194912310021"}`, Response{}, "id_number"},
		{"openid empty", OpLoginWeChat, `{"result":"ok"}`, Response{}, "openid"},
		{"phone not mobile", OpLoginCarrier, `{"result":"ok","phone":"0101234567"}`, Response{}, "phone"},
		{"charge without ref", OpPaymentCharge, `{"result":"ok"}`, Response{}, "payment_ref"},
		{"too long", OpSMSSend, `{"result":"ok","x":"` + strings.Repeat("a", MaxResponseBytes) + `"}`, Response{}, "more than"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := DecodeResponse(tt.op, []byte(tt.body), testNow)
			if tt.wantErr == "" {
				if err != nil || got != tt.want {
					t.Fatalf("DecodeResponse = %+v, %v; want %+v", got, err, tt.want)
				}
				return
			}
			if !errors.Is(err, ErrMalformed) || !strings.Contains(err.Error(), tt.wantErr) {
				t.Fatalf("DecodeResponse error = %v; want ErrMalformed containing %q", err, tt.wantErr)
			}
		})
	}
}

// Errors about a response never quote the personal data it carries.
func TestDecodeResponseErrorsQuoteNothing(t *testing.T) {
	secrets := []string{"13912345678", "110105194912310021", "王五"}
	bodies := map[string]string{
		OpFaceComplete: `{"result":"ok","name":"王五","id_number":"110105194912310021"}`,
		OpLoginCarrier: `{"result":"ok","phone":"13912345678x"}`,
		OpLoginWeChat:  `{"result":"ok","openid":"13912345678/"}`,
		OpSMSSend:      `{"result":"13912345678"}`,
	}
	for op, body := range bodies {
		_, err := DecodeResponse(op, []byte(body), testNow)
		if err == nil {
			t.Fatalf("%s: accepted %s", op, body)
		}
		for _, s := range secrets {
			if strings.Contains(err.Error(), s) || strings.Contains(err.Error(), "1391234") {
				t.Fatalf("%s: error %q quotes the response", op, err)
			}
		}
	}
}

func FuzzDecodeResponse(f *testing.F) {
	for _, op := range Operations {
		f.Add(op, []byte(`{"result":"ok"}`))
	}
	f.Fuzz(func(t *testing.T, op string, body []byte) {
		r, err := DecodeResponse(op, body, testNow)
		if err != nil {
			if !errors.Is(err, ErrMalformed) {
				t.Fatalf("error %v does not wrap ErrMalformed", err)
			}
			if r != (Response{}) {
				t.Fatalf("an error with a response: %+v", r)
			}
			return
		}
		// Whatever was accepted satisfies the operation's contract.
		allowed := results[op]
		found := false
		for _, a := range allowed {
			found = found || a == r.Result
		}
		if !found {
			t.Fatalf("accepted result %q for %s", r.Result, op)
		}
		if r.Result == ResultOK {
			if err := checkOK(op, &r, testNow); err != nil {
				t.Fatalf("accepted an ok answer that fails its checks: %v", err)
			}
		}
	})
}

// The seed corpus in testdata/fuzz must exist, so that plain `go test` runs it.
func TestFuzzCorpusPresent(t *testing.T) {
	entries, err := os.ReadDir("testdata/fuzz/FuzzDecodeResponse")
	if err != nil || len(entries) < 5 {
		t.Fatalf("seed corpus: %d entries, %v", len(entries), err)
	}
}
