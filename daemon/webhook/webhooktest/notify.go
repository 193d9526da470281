package webhooktest

import (
	"bytes"
	"crypto/hmac"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"io"
	"net/http"
	"strconv"
	"testing"
	"time"

	"github.com/hufu-hsm/hufu/daemon/webhook"
)

// Notification is the body of payment.notify, as docs/providers.md §4 gives it.
type Notification struct {
	OrderID        string `json:"order_id"`
	IdempotencyKey string `json:"idempotency_key"`
	PaymentRef     string `json:"payment_ref"`
	AmountFen      int64  `json:"amount_fen"`
	Method         string `json:"method"`
}

// Sent is a notification as sent, to replay it.
type Sent struct {
	header http.Header
	body   []byte
}

// NotifyAnswer is what hufu answered a notification: the HTTP status, and for a 200 the
// result of the verified, signed answer (else the refusal text).
type NotifyAnswer struct {
	Status int
	Result string
	Text   string
}

// ChargeRef is the payment reference the server gave a charge of (order, idempotency key),
// also one whose answer was lost (Fault LostAnswer).
func (s *Server) ChargeRef(orderID, idempotencyKey string) (string, bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	ref, ok := s.charges[orderID+"\x00"+idempotencyKey]
	return ref, ok
}

// Notify sends payment.notify to url (hufu's callback, https://<admin>/providers/payment/
// payment.notify) as the payment service does: signed under the shared key, with a fresh
// nonce and request id, stamped with the server's clock. Spoil, if not zero, spoils the
// request: BadSignature signs it with another key, StaleTimestamp stamps it ten minutes
// old. A 200 answer's signature is checked with this package's own code (bound to the
// request's nonce and request id) before its result is believed; t fails if it is wrong.
func (s *Server) Notify(t testing.TB, client *http.Client, url string, n Notification, spoil Fault) (NotifyAnswer, Sent) {
	t.Helper()
	body, err := json.Marshal(n)
	if err != nil {
		t.Fatal(err)
	}
	nonce, rid := randomHex32(t), randomHex32(t)
	key, stamp := s.Key, s.clock()
	switch spoil {
	case BadSignature:
		key = bytes.Repeat([]byte{0x5a}, 32)
	case StaleTimestamp:
		stamp = stamp.Add(-10 * time.Minute)
	}
	ts := strconv.FormatInt(stamp.Unix(), 10)
	h := http.Header{}
	h.Set("Content-Type", "application/json; charset=utf-8")
	h.Set(webhook.HeaderTimestamp, ts)
	h.Set(webhook.HeaderNonce, nonce)
	h.Set(webhook.HeaderRequestID, rid)
	h.Set(webhook.HeaderSignature, hex.EncodeToString(hmacSM3(key, stringToSign("REQUEST", webhook.OpPaymentNotify, ts, nonce, rid, body))))
	sent := Sent{header: h, body: body}
	return s.send(t, client, url, sent), sent
}

// Replay sends a notification again byte for byte, as an attacker who captured it would.
func (s *Server) Replay(t testing.TB, client *http.Client, url string, sent Sent) NotifyAnswer {
	t.Helper()
	return s.send(t, client, url, sent)
}

func (s *Server) send(t testing.TB, client *http.Client, url string, sent Sent) NotifyAnswer {
	t.Helper()
	req, err := http.NewRequest(http.MethodPost, url, bytes.NewReader(sent.body))
	if err != nil {
		t.Fatal(err)
	}
	req.Header = sent.header.Clone()
	resp, err := client.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	answer, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	if resp.StatusCode != http.StatusOK {
		return NotifyAnswer{Status: resp.StatusCode, Text: string(answer)}
	}
	ts, sig := resp.Header.Get(webhook.HeaderTimestamp), resp.Header.Get(webhook.HeaderSignature)
	want := hmacSM3(s.Key, stringToSign("RESPONSE", webhook.OpPaymentNotify, ts, sent.header.Get(webhook.HeaderNonce), sent.header.Get(webhook.HeaderRequestID), answer))
	got, _ := hex.DecodeString(sig)
	if !timestampRE.MatchString(ts) || !hmac.Equal(got, want) {
		t.Fatalf("webhooktest: hufu's answer to payment.notify is not signed for this request: %s", answer)
	}
	var out struct {
		Result string `json:"result"`
	}
	if err := json.Unmarshal(answer, &out); err != nil {
		t.Fatalf("webhooktest: hufu's answer is not JSON: %s", answer)
	}
	return NotifyAnswer{Status: resp.StatusCode, Result: out.Result, Text: string(answer)}
}

func randomHex32(t testing.TB) string {
	b := make([]byte, 16)
	if _, err := rand.Read(b); err != nil {
		t.Fatal(err)
	}
	return hex.EncodeToString(b)
}
