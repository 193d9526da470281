package webhook

import (
	"bytes"
	"encoding/hex"
	"encoding/json"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

type signatureVector struct {
	Key       string    `json:"key"`
	Direction Direction `json:"direction"`
	Operation string    `json:"operation"`
	Timestamp string    `json:"timestamp"`
	Nonce     string    `json:"nonce"`
	RequestID string    `json:"request_id"`
	Body      string    `json:"body"`
	Signature string    `json:"signature"`
}

func loadVectors(t *testing.T) []signatureVector {
	t.Helper()
	raw, err := os.ReadFile("testdata/signature_vectors.json")
	if err != nil {
		t.Fatal(err)
	}
	var vs []signatureVector
	if err := json.Unmarshal(raw, &vs); err != nil {
		t.Fatal(err)
	}
	if len(vs) == 0 {
		t.Fatal("no vectors")
	}
	return vs
}

func (v signatureVector) signed() Signed {
	return Signed{Direction: v.Direction, Operation: v.Operation, Timestamp: v.Timestamp, Nonce: v.Nonce, RequestID: v.RequestID}
}

// The vectors were computed with openssl, independently of this code.
func TestSignKnownAnswers(t *testing.T) {
	for _, v := range loadVectors(t) {
		t.Run(string(v.Direction), func(t *testing.T) {
			key, _ := hex.DecodeString(v.Key)
			if got := Sign(key, v.signed(), []byte(v.Body)); got != v.Signature {
				t.Fatalf("Sign = %s, want %s", got, v.Signature)
			}
			ts := time.Unix(1767225600, 0)
			if err := Verify(key, v.signed(), []byte(v.Body), v.Signature, ts, time.Minute); err != nil {
				t.Fatalf("Verify: %v", err)
			}
		})
	}
}

func TestVerifyRefuses(t *testing.T) {
	v := loadVectors(t)[0]
	key, _ := hex.DecodeString(v.Key)
	at := time.Unix(1767225600, 0)
	flip := func(s string) string { // change the last hex digit
		last := s[len(s)-1]
		if last == '0' {
			return s[:len(s)-1] + "1"
		}
		return s[:len(s)-1] + "0"
	}
	tests := []struct {
		name   string
		edit   func(s *Signed, body *string, sig *string, now *time.Time)
		target error
	}{
		{"other body", func(_ *Signed, b *string, _ *string, _ *time.Time) { *b += " " }, ErrBadSignature},
		{"other operation", func(s *Signed, _ *string, _ *string, _ *time.Time) { s.Operation = "payment.charge" }, ErrBadSignature},
		{"other nonce", func(s *Signed, _ *string, _ *string, _ *time.Time) { s.Nonce = flip(s.Nonce) }, ErrBadSignature},
		{"other request id", func(s *Signed, _ *string, _ *string, _ *time.Time) { s.RequestID = flip(s.RequestID) }, ErrBadSignature},
		{"other timestamp", func(s *Signed, _ *string, _ *string, _ *time.Time) { s.Timestamp = "1767225601" }, ErrBadSignature},
		{"response for request", func(s *Signed, _ *string, _ *string, _ *time.Time) { s.Direction = DirectionResponse }, ErrBadSignature},
		{"flipped signature", func(_ *Signed, _ *string, sig *string, _ *time.Time) { *sig = flip(*sig) }, ErrBadSignature},
		{"uppercase signature", func(_ *Signed, _ *string, sig *string, _ *time.Time) { *sig = strings.ToUpper(*sig) }, ErrBadSignature},
		{"empty signature", func(_ *Signed, _ *string, sig *string, _ *time.Time) { *sig = "" }, ErrBadSignature},
		{"newline in operation", func(s *Signed, _ *string, _ *string, _ *time.Time) { s.Operation = "sms.send\nx" }, ErrBadSignature},
		{"too old", func(_ *Signed, _ *string, _ *string, now *time.Time) { *now = now.Add(6 * time.Minute) }, ErrStale},
		{"too new", func(_ *Signed, _ *string, _ *string, now *time.Time) { *now = now.Add(-6 * time.Minute) }, ErrStale},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s, body, sig, now := v.signed(), v.Body, v.Signature, at
			tt.edit(&s, &body, &sig, &now)
			err := Verify(key, s, []byte(body), sig, now, 5*time.Minute)
			if !errors.Is(err, tt.target) {
				t.Fatalf("Verify = %v, want %v", err, tt.target)
			}
		})
	}
}

// TestSignatureRecipeWithOpenSSL runs the openssl recipe of docs/providers.md, exactly as
// written there, on the vectors and on a fresh key and body, and compares with Sign.
func TestSignatureRecipeWithOpenSSL(t *testing.T) {
	if _, err := exec.LookPath("openssl"); err != nil {
		t.Skip("openssl not installed")
	}
	doc, err := os.ReadFile("../../docs/providers.md")
	if err != nil {
		t.Fatal(err)
	}
	const begin, end = "<!-- recipe:sign -->\n```sh\n", "```\n<!-- /recipe:sign -->"
	i, j := bytes.Index(doc, []byte(begin)), bytes.Index(doc, []byte(end))
	if i < 0 || j < i {
		t.Fatal("docs/providers.md has no recipe:sign block")
	}
	recipe := string(doc[i+len(begin) : j])
	vectors := loadVectors(t)
	fresh := vectors[0]
	fresh.Key = hex.EncodeToString([]byte(strings.Repeat("k", 64)))      // a 64-byte key, the longest allowed
	fresh.Body = `{"name":"张三","id_number":"11010519491231002X"}` + "\n" // UTF-8 and a final newline are signed as is
	fresh.Operation = OpIdentityNameID
	fresh.Signature = ""
	for i, v := range append(vectors, fresh) {
		dir := t.TempDir()
		keyFile, bodyFile := filepath.Join(dir, "key"), filepath.Join(dir, "body")
		os.WriteFile(keyFile, []byte(v.Key+"\n"), 0o600)
		os.WriteFile(bodyFile, []byte(v.Body), 0o600)
		cmd := exec.Command("sh", "-c", recipe)
		cmd.Env = append(os.Environ(), "KEY_FILE="+keyFile, "DIRECTION="+string(v.Direction), "OP="+v.Operation,
			"TS="+v.Timestamp, "NONCE="+v.Nonce, "REQUEST_ID="+v.RequestID, "BODY_FILE="+bodyFile)
		out, err := cmd.Output()
		if err != nil {
			t.Fatalf("vector %d: the recipe failed: %v", i, err)
		}
		key, _ := hex.DecodeString(v.Key)
		want := Sign(key, v.signed(), []byte(v.Body))
		if got := strings.TrimSpace(string(out)); got != want {
			t.Fatalf("vector %d: openssl says %q, Sign says %q", i, got, want)
		}
		if v.Signature != "" && want != v.Signature {
			t.Fatalf("vector %d: Sign = %s, want %s", i, want, v.Signature)
		}
	}
}
