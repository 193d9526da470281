package webhook

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/url"
	"regexp"
	"slices"
	"time"

	"github.com/hufu-hsm/hufu/daemon/identity"
)

// Operations: the last segment of the path each request is POSTed to. docs/providers.md §4
// gives each one's request and response.
const (
	OpSMSSend          = "sms.send"
	OpIdentityNameID   = "identity.name-id"
	OpFaceStart        = "identity.face.start"
	OpFaceComplete     = "identity.face.complete"
	OpIdentityBankCard = "identity.bank-card"
	OpLoginWeChat      = "login.wechat"
	OpLoginCarrier     = "login.carrier"
	OpPaymentCharge    = "payment.charge"
	OpPaymentRefund    = "payment.refund"
)

// Operations lists every operation, for metrics and the contract server.
var Operations = []string{OpSMSSend, OpIdentityNameID, OpFaceStart, OpFaceComplete, OpIdentityBankCard,
	OpLoginWeChat, OpLoginCarrier, OpPaymentCharge, OpPaymentRefund}

// Results: the "result" of a response. "ok" carries the operation's fields; the others are
// the gateway's decisions, except "unavailable", which says the service behind the gateway
// failed and the request may be retried.
const (
	ResultOK             = "ok"
	ResultMismatch       = "mismatch"        // identity.*: the details do not belong together
	ResultUnknownSession = "unknown_session" // identity.face.complete: no such verification
	ResultPending        = "pending"         // identity.face.complete: the person has not finished
	ResultRejected       = "rejected"        // sms.send: number refused; login.*: credential refused
	ResultDeclined       = "declined"        // payment.*: the payment service refused
	ResultUnavailable    = "unavailable"     // any: retry later
)

// results are the results each operation may answer.
var results = map[string][]string{
	OpSMSSend:          {ResultOK, ResultRejected, ResultUnavailable},
	OpIdentityNameID:   {ResultOK, ResultMismatch, ResultUnavailable},
	OpFaceStart:        {ResultOK, ResultMismatch, ResultUnavailable},
	OpFaceComplete:     {ResultOK, ResultMismatch, ResultUnknownSession, ResultPending, ResultUnavailable},
	OpIdentityBankCard: {ResultOK, ResultMismatch, ResultUnavailable},
	OpLoginWeChat:      {ResultOK, ResultRejected, ResultUnavailable},
	OpLoginCarrier:     {ResultOK, ResultRejected, ResultUnavailable},
	OpPaymentCharge:    {ResultOK, ResultDeclined, ResultUnavailable},
	OpPaymentRefund:    {ResultOK, ResultDeclined, ResultUnavailable},
}

// Request bodies.
type (
	SMSRequest struct {
		Phone   string `json:"phone"`
		Purpose string `json:"purpose"`
		Code    string `json:"code"`
	}
	PersonRequest struct { // identity.name-id, identity.face.start
		Name     string `json:"name"`
		IDNumber string `json:"id_number"`
	}
	FaceCompleteRequest struct {
		CertifyID string `json:"certify_id"`
	}
	BankCardRequest struct {
		Name          string `json:"name"`
		IDNumber      string `json:"id_number"`
		CardNumber    string `json:"card_number"`
		ReservedPhone string `json:"reserved_phone"`
	}
	WeChatRequest struct {
		AuthCode string `json:"auth_code"`
	}
	CarrierRequest struct {
		Token string `json:"token"`
	}
	ChargeRequest struct {
		OrderID        string `json:"order_id"`
		UserID         string `json:"user_id"`
		Method         string `json:"method"`
		IdempotencyKey string `json:"idempotency_key"`
		AmountFen      int64  `json:"amount_fen"`
	}
	RefundRequest struct {
		PaymentRef string `json:"payment_ref"`
		AmountFen  int64  `json:"amount_fen"`
	}
)

// Response is every field a response may carry; which are required depends on the
// operation and the result (DecodeResponse checks).
type Response struct {
	Result string `json:"result"`
	// ErrorCode optionally says why a result is not "ok", for operators: 1-64 of
	// [A-Za-z0-9._-]. It is logged; a free-text message would not be (it may hold personal
	// data), so the contract has none.
	ErrorCode string `json:"error_code,omitempty"`

	CertifyID  string `json:"certify_id,omitempty"`  // identity.face.start
	URL        string `json:"url,omitempty"`         // identity.face.start
	Name       string `json:"name,omitempty"`        // identity.face.complete
	IDNumber   string `json:"id_number,omitempty"`   // identity.face.complete
	OpenID     string `json:"openid,omitempty"`      // login.wechat
	Phone      string `json:"phone,omitempty"`       // login.carrier
	PaymentRef string `json:"payment_ref,omitempty"` // payment.charge
}

// MaxResponseBytes bounds a response body; a longer one is refused unread.
const MaxResponseBytes = 64 << 10

// ErrMalformed: a signed response that does not follow the contract. Its text never quotes
// the response (which may hold personal data).
var ErrMalformed = errors.New("webhook: malformed response")

var (
	errorCodeRE  = regexp.MustCompile(`^[A-Za-z0-9._-]{1,64}$`)
	certifyIDRE  = regexp.MustCompile(`^[A-Za-z0-9_-]{1,64}$`)
	openIDRE     = regexp.MustCompile(`^[A-Za-z0-9_-]{1,128}$`)
	paymentRefRE = regexp.MustCompile(`^[A-Za-z0-9._:-]{1,128}$`)
)

// DecodeResponse parses and checks the body of a response to op, which comes from the
// network: any byte string gets a Response or an error wrapping ErrMalformed, never a
// panic. now is for checking the birth date of a returned ID number.
func DecodeResponse(op string, body []byte, now time.Time) (Response, error) {
	var r Response
	allowed, known := results[op]
	if !known {
		return r, fmt.Errorf("%w: unknown operation %q", ErrMalformed, op)
	}
	if len(body) > MaxResponseBytes {
		return r, fmt.Errorf("%w: %d bytes, more than %d", ErrMalformed, len(body), MaxResponseBytes)
	}
	dec := json.NewDecoder(bytes.NewReader(body))
	if err := dec.Decode(&r); err != nil {
		return Response{}, fmt.Errorf("%w: %s", ErrMalformed, describeJSONError(err))
	}
	if _, err := dec.Token(); err != io.EOF {
		return Response{}, fmt.Errorf("%w: data after the JSON object", ErrMalformed)
	}
	if !slices.Contains(allowed, r.Result) {
		if len(r.Result) > 32 || !operationRE.MatchString(r.Result) {
			return Response{}, fmt.Errorf("%w: result is missing or not a word", ErrMalformed)
		}
		return Response{}, fmt.Errorf("%w: result %q is not one of %q for %s", ErrMalformed, r.Result, allowed, op)
	}
	if r.ErrorCode != "" && !errorCodeRE.MatchString(r.ErrorCode) {
		return Response{}, fmt.Errorf("%w: error_code: want 1-64 of [A-Za-z0-9._-]", ErrMalformed)
	}
	if r.Result != ResultOK {
		return r, nil
	}
	if err := checkOK(op, &r, now); err != nil {
		return Response{}, fmt.Errorf("%w: %s: %v", ErrMalformed, op, err)
	}
	return r, nil
}

// checkOK checks the fields an "ok" response to op must carry. Errors name fields, never
// values.
func checkOK(op string, r *Response, now time.Time) error {
	switch op {
	case OpFaceStart:
		if !certifyIDRE.MatchString(r.CertifyID) {
			return errors.New("certify_id: want 1-64 of [A-Za-z0-9_-]")
		}
		if u, err := url.Parse(r.URL); err != nil || u.Scheme != "https" || u.Host == "" || len(r.URL) > 2048 {
			return errors.New("url: want an https URL of at most 2048 bytes")
		}
	case OpFaceComplete:
		if err := identity.CheckName(r.Name); err != nil {
			return fmt.Errorf("name: %v", err)
		}
		if err := identity.CheckResidentID(r.IDNumber, now); err != nil {
			return fmt.Errorf("id_number: %v", err)
		}
	case OpLoginWeChat:
		if !openIDRE.MatchString(r.OpenID) {
			return errors.New("openid: want 1-128 of [A-Za-z0-9_-]")
		}
	case OpLoginCarrier:
		if err := identity.CheckMobile(r.Phone); err != nil {
			return fmt.Errorf("phone: %v", err)
		}
	case OpPaymentCharge:
		if !paymentRefRE.MatchString(r.PaymentRef) {
			return errors.New("payment_ref: want 1-128 of [A-Za-z0-9._:-]")
		}
	}
	return nil
}

// describeJSONError says what is wrong without quoting the input: a syntax error's text
// may carry a character of it, a type error's the field's value.
func describeJSONError(err error) string {
	var (
		syntax *json.SyntaxError
		typ    *json.UnmarshalTypeError
	)
	switch {
	case errors.As(err, &syntax):
		return fmt.Sprintf("invalid JSON at byte %d", syntax.Offset)
	case errors.As(err, &typ):
		if typ.Field == "" {
			return "not a JSON object"
		}
		return fmt.Sprintf("field %s is not a %s", typ.Field, typ.Type)
	case errors.Is(err, io.EOF), errors.Is(err, io.ErrUnexpectedEOF):
		return "truncated or empty JSON"
	}
	return "invalid JSON"
}
