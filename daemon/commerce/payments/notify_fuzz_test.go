package payments

import (
	"errors"
	"testing"

	"github.com/hufu-hsm/hufu/daemon/webhook"
)

// FuzzDecodeNotification: any body is a well-formed notification or ErrInboundInvalid,
// never a panic, and what it accepts holds only well-formed fields.
func FuzzDecodeNotification(f *testing.F) {
	f.Add([]byte(`{"order_id":"0123456789abcdef012345","idempotency_key":"pay-2026-0001","payment_ref":"wx:42","amount_fen":36000,"method":"wechat"}`))
	f.Add([]byte(`{"order_id":"0123456789abcdef012345","idempotency_key":"pay-2026-0001","payment_ref":"wx:42","amount_fen":36000,"method":"offline"}`))
	f.Add([]byte(`{"order_id":"0123456789abcdef012345"} {}`))
	f.Add([]byte(`{"order_id":1}`))
	f.Add([]byte(`{"extra":true}`))
	f.Add([]byte(``))
	f.Fuzz(func(t *testing.T, body []byte) {
		n, err := DecodeNotification(body)
		if err != nil {
			if !errors.Is(err, webhook.ErrInboundInvalid) {
				t.Fatalf("%q: %v is not ErrInboundInvalid", body, err)
			}
			return
		}
		if !orderIDRE.MatchString(n.OrderID) || !paymentRefRE.MatchString(n.PaymentRef) || n.AmountFen <= 0 || n.Method == Offline || n.Method == Dev {
			t.Fatalf("%q: accepted %+v", body, n)
		}
	})
}
