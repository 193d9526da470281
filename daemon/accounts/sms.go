package accounts

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/json"
	"errors"
	"fmt"
	"math/big"
	"net"
	"os"
	"sync"
	"time"

	"github.com/hufu-hsm/hufu/daemon/apierr"
	"github.com/hufu-hsm/hufu/daemon/identity"
	"github.com/hufu-hsm/hufu/store"
	"github.com/hufu-hsm/hufu/store/storepb"
)

// Purpose says what an SMS code may be used for; a code is valid for its purpose only.
type Purpose string

const (
	PurposeSignIn           Purpose = "sign-in"
	PurposeChangePhone      Purpose = "change-phone"
	PurposeResetPassword    Purpose = "reset-password"
	PurposeBindWeChat       Purpose = "bind-wechat"
	PurposeResetCertificate Purpose = "reset-certificate-pin"
	// PurposeDeleteAccount proves the number once more before an irreversible deletion.
	PurposeDeleteAccount Purpose = "delete-account"
)

// allPurposes lists every purpose (a deleted account's unused codes are deleted).
var allPurposes = []Purpose{PurposeSignIn, PurposeChangePhone, PurposeResetPassword, PurposeBindWeChat,
	PurposeResetCertificate, PurposeDeleteAccount}

// ErrNumberRefused: the SMS gateway will not send to this number (a number it cannot reach or
// has blocked). Reported as FailedPrecondition: retrying does not help.
var ErrNumberRefused = errors.New("accounts: the SMS gateway will not send to this number")

// SMSSender delivers codes. A real provider (Aliyun, Tencent Cloud SMS, a carrier gateway)
// implements it: Send must deliver or return an error, must not log the code, and should
// return quickly (the caller's deadline is in ctx).
type SMSSender interface {
	Send(ctx context.Context, phone string, purpose Purpose, code string) error
}

// DevSender writes codes as JSON lines to a file instead of sending them, so the CLI and
// tests can pick them up. Development only: the file holds live codes.
type DevSender struct {
	Path string
	mu   sync.Mutex
}

// DevMessage is one line of the development outbox.
type DevMessage struct {
	Phone   string    `json:"phone"`
	Purpose Purpose   `json:"purpose"`
	Code    string    `json:"code"`
	Sent    time.Time `json:"sent"`
}

func (d *DevSender) Send(_ context.Context, phone string, purpose Purpose, code string) error {
	d.mu.Lock()
	defer d.mu.Unlock()
	f, err := os.OpenFile(d.Path, os.O_WRONLY|os.O_APPEND|os.O_CREATE, 0o600)
	if err != nil {
		return err
	}
	line, _ := json.Marshal(DevMessage{Phone: phone, Purpose: purpose, Code: code, Sent: time.Now()})
	if _, err := f.Write(append(line, '\n')); err != nil {
		f.Close()
		return err
	}
	return f.Close()
}

// LatestDevCode returns the newest code in a development outbox for a number and purpose.
func LatestDevCode(path, phone string, purpose Purpose) (string, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return "", err
	}
	var code string
	dec := json.NewDecoder(bytes.NewReader(b))
	for dec.More() {
		var m DevMessage
		if err := dec.Decode(&m); err != nil {
			return "", err
		}
		if m.Phone == phone && m.Purpose == purpose {
			code = m.Code
		}
	}
	if code == "" {
		return "", fmt.Errorf("no %s code for %s in %s", purpose, identity.MaskPhone(phone), path)
	}
	return code, nil
}

const codeDigits = 6

// SendCode issues a code for phone and purpose, subject to the resend interval, the hourly
// limits per number and per client address, and any lockout after wrong codes. It returns
// when the code expires and when another may be requested.
func (s *Service) SendCode(ctx context.Context, phone string, purpose Purpose, source string) (expires, retryAfter time.Time, err error) {
	if err := identity.CheckMobile(phone); err != nil {
		return expires, retryAfter, apierr.Invalid("phone", err)
	}
	ref, err := s.phoneKey(ctx, phone)
	if err != nil {
		return expires, retryAfter, err
	}
	code, err := randomDigits(codeDigits)
	if err != nil {
		return expires, retryAfter, err
	}
	salt := make([]byte, 16)
	rand.Read(salt)
	verifier, err := s.Keyring.PINVerifier(ctx, salt, codeContext(phone, purpose), []byte(code))
	if err != nil {
		return expires, retryAfter, &apierr.Error{Kind: apierr.Unavailable, Message: "HSM unavailable", Cause: err}
	}
	err = s.Store.Update(ctx, func(tx *store.Tx) error {
		now := tx.Now()
		if err := checkLock(tx, "code-lock", ref.fp); err != nil {
			return err
		}
		if prev, err := smsCodes.Get(tx, codeID(ref.fp, purpose)); err == nil {
			if wait := fromNanos(prev.SentUnixNano).Add(s.opts.SMSResendInterval).Sub(now); wait > 0 {
				return apierr.Exhausted(wait, "a code was sent less than %v ago; retry in %v", s.opts.SMSResendInterval, wait.Round(time.Second))
			}
		} else if !errors.Is(err, store.ErrNotFound) {
			return err
		}
		if err := bump(tx, "sms-phone", ref.fp, s.opts.SMSMaxPerPhoneHour, time.Hour, "too many codes for this number"); err != nil {
			return err
		}
		if err := bump(tx, "sms-source", sourceHost(source), s.opts.SMSMaxPerSourceHour, time.Hour, "too many codes from this address"); err != nil {
			return err
		}
		expires = now.Add(s.opts.SMSCodeTTL)
		retryAfter = now.Add(s.opts.SMSResendInterval)
		rec := &storepb.SmsCode{Verifier: verifier, Salt: salt, SentUnixNano: nanos(now), ExpiresUnixNano: nanos(expires)}
		if err := smsCodes.Put(tx, codeID(ref.fp, purpose), rec, store.ExpiresAt(expires)); err != nil {
			return err
		}
		return tx.Audit(store.Event{
			Actor: "anonymous", Action: "account.sms_code.send", Subject: "phone:" + identity.MaskPhone(phone),
			Outcome: store.OutcomeOK, Details: map[string]string{"purpose": string(purpose), "source": sourceHost(source)},
		})
	})
	if err != nil {
		return expires, retryAfter, err
	}
	if err := s.SMS.Send(ctx, phone, purpose, code); err != nil {
		s.Log.Warn("sms delivery failed", "phone", identity.MaskPhone(phone), "err", err)
		if errors.Is(err, ErrNumberRefused) {
			return expires, retryAfter, &apierr.Error{Kind: apierr.FailedPrecondition, Message: "the SMS gateway will not send codes to this number; use another sign-in method", Cause: err}
		}
		return expires, retryAfter, &apierr.Error{Kind: apierr.Unavailable, Message: "the SMS provider did not accept the message; retry later", RetryAfter: s.opts.SMSResendInterval, Cause: err}
	}
	return expires, retryAfter, nil
}

// ConsumeCode checks an SMS code for phone and purpose inside tx, for other domains whose
// operations need one (a certificate PIN reset). See consumeCode.
func (s *Service) ConsumeCode(ctx context.Context, tx *store.Tx, phone string, purpose Purpose, code string) error {
	if err := checkCode(code); err != nil {
		return err
	}
	ref, err := s.phoneKey(ctx, phone)
	if err != nil {
		return err
	}
	return s.consumeCode(ctx, tx, ref, purpose, code)
}

// consumeCode checks a code inside tx and deletes it when right. Wrong codes count per
// number, across codes and purposes, in a window (Options.CodeFailureWindow) that a new
// code does not reset: sending a fresh code after each few guesses would otherwise give
// CodeMaxAttempts guesses per code, indefinitely. From the CodeMaxAttempts-th wrong code in
// the window on, each wrong code kills the code and locks the number for CodeLockout, so a
// number gets at most CodeMaxAttempts-1 + window/lockout guesses per window. A right code
// clears the count. Those writes, and the audit record, commit with the refusal.
func (s *Service) consumeCode(ctx context.Context, tx *store.Tx, phone phoneRef, purpose Purpose, code string) error {
	if err := checkLock(tx, "code-lock", phone.fp); err != nil {
		return err
	}
	id := codeID(phone.fp, purpose)
	rec, err := smsCodes.Get(tx, id)
	if errors.Is(err, store.ErrNotFound) {
		return apierr.New(apierr.Unauthenticated, "no valid code for this number: it expired, was used, or none was sent; request a new one")
	}
	if err != nil {
		return err
	}
	ok, err := s.Keyring.VerifyPIN(ctx, rec.Verifier, rec.Salt, codeContext(phone.number, purpose), []byte(code))
	if err != nil {
		return &apierr.Error{Kind: apierr.Unavailable, Message: "HSM unavailable", Cause: err}
	}
	if ok {
		if err := counters.Delete(tx, codeFailuresID(phone.fp)); err != nil && !errors.Is(err, store.ErrNotFound) {
			return err
		}
		return smsCodes.Delete(tx, id)
	}
	rec.Failures++
	s.metrics.codeFailures.Inc()
	failures, err := countCodeFailure(tx, phone.fp, s.opts.CodeFailureWindow)
	if err != nil {
		return err
	}
	event := store.Event{
		Actor: "anonymous", Action: "account.sms_code.verify", Subject: "phone:" + identity.MaskPhone(phone.number),
		Outcome: "denied", Details: map[string]string{"purpose": string(purpose), "failures": fmt.Sprint(rec.Failures),
			"failures_in_window": fmt.Sprint(failures)},
	}
	var denial error
	if failures >= s.opts.CodeMaxAttempts {
		if err := smsCodes.Delete(tx, id); err != nil {
			return err
		}
		if err := lock(tx, "code-lock", phone.fp, s.opts.CodeLockout); err != nil {
			return err
		}
		event.Outcome = "locked"
		event.Details["locked_for"] = s.opts.CodeLockout.String()
		denial = apierr.Exhausted(s.opts.CodeLockout, "too many wrong codes: this number is locked for %v", s.opts.CodeLockout)
		// Counted when decided: a commit that then fails (the store fails closed) may leave
		// one counted lockout that did not happen, never the reverse.
		s.metrics.codeLockouts.Inc()
	} else {
		if err := smsCodes.Put(tx, id, rec, store.ExpiresAt(fromNanos(rec.ExpiresUnixNano))); err != nil {
			return err
		}
		denial = apierr.New(apierr.Unauthenticated, "wrong code: %d attempts left", s.opts.CodeMaxAttempts-failures)
	}
	if err := tx.Audit(event); err != nil {
		return err
	}
	return store.Refuse(denial)
}

// The ids of records kept per number take the number's fingerprint (phoneindex.go), never
// the number.
func codeFailuresID(phoneFP string) string { return "rate/code-fail/" + phoneFP }

// countCodeFailure counts one wrong code for the number in its failure window (which
// starts at the first wrong code and is not moved by later ones) and returns the count.
func countCodeFailure(tx *store.Tx, phoneFP string, window time.Duration) (int, error) {
	id := codeFailuresID(phoneFP)
	c, err := counters.Get(tx, id)
	if errors.Is(err, store.ErrNotFound) {
		c = &storepb.RateCounter{WindowEndUnixNano: nanos(tx.Now().Add(window))}
	} else if err != nil {
		return 0, err
	}
	c.Count++
	return int(c.Count), counters.Put(tx, id, c, store.ExpiresAt(fromNanos(c.WindowEndUnixNano)))
}

func codeID(phoneFP string, purpose Purpose) string { return "sms/" + string(purpose) + "/" + phoneFP }

// smsCounterID is the hourly count of codes sent to a number (bump "sms-phone").
func smsCounterID(phoneFP string) string { return "rate/sms-phone/" + phoneFP }

// codeContext binds a code's verifier to the number and purpose; it is HMAC input, not a
// key, so it names the number itself.
func codeContext(phone string, purpose Purpose) []byte {
	return []byte("hufu/accounts/v1 sms/" + string(purpose) + "/" + phone)
}

// bump counts one event against a limit of max per window for subject, refusing with
// ResourceExhausted and the time until the window ends when the limit is reached.
func bump(tx *store.Tx, limit, subject string, max int, window time.Duration, message string) error {
	id := "rate/" + limit + "/" + subject
	c, err := counters.Get(tx, id)
	if errors.Is(err, store.ErrNotFound) {
		c = &storepb.RateCounter{WindowEndUnixNano: nanos(tx.Now().Add(window))}
	} else if err != nil {
		return err
	}
	end := fromNanos(c.WindowEndUnixNano)
	if int(c.Count) >= max {
		wait := end.Sub(tx.Now())
		return apierr.Exhausted(wait, "%s; retry in %v", message, wait.Round(time.Second))
	}
	c.Count++
	return counters.Put(tx, id, c, store.ExpiresAt(end))
}

// lock and checkLock keep a lockout as a counter at its limit until it expires.
func lock(tx *store.Tx, limit, subject string, d time.Duration) error {
	end := tx.Now().Add(d)
	return counters.Put(tx, "rate/"+limit+"/"+subject, &storepb.RateCounter{Count: 1, WindowEndUnixNano: nanos(end)}, store.ExpiresAt(end))
}

func checkLock(tx *store.Tx, limit, subject string) error {
	c, err := counters.Get(tx, "rate/"+limit+"/"+subject)
	if errors.Is(err, store.ErrNotFound) {
		return nil
	}
	if err != nil {
		return err
	}
	wait := fromNanos(c.WindowEndUnixNano).Sub(tx.Now())
	return apierr.Exhausted(wait, "locked after too many failures; retry in %v", wait.Round(time.Second))
}

// sourceHost is the client address without its port (rate limits are per host).
func sourceHost(source string) string {
	if host, _, err := net.SplitHostPort(source); err == nil {
		return host
	}
	if source == "" {
		return "unknown"
	}
	return source
}

func randomDigits(n int) (string, error) {
	max := big.NewInt(1)
	for range n {
		max.Mul(max, big.NewInt(10))
	}
	v, err := rand.Int(rand.Reader, max)
	if err != nil {
		return "", err
	}
	return fmt.Sprintf("%0*d", n, v), nil
}

func invalidPurpose() error {
	return apierr.Invalidf("purpose", "must be one of the SMS_PURPOSE_* values")
}
