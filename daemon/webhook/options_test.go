package webhook_test

import (
	"errors"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/hufu-hsm/hufu/daemon/webhook"
	"go.yaml.in/yaml/v3"
)

func TestOptionsYAML(t *testing.T) {
	const doc = `
url: https://sms-gw.example.cn/hufu/v1
key_file: /etc/hufu/providers/sms.key
ca_file: /etc/hufu/providers/ca.pem
timeout: 8s
max_attempts: 4
retry_backoff: 100ms
max_backoff: 1s
max_clock_skew: 2m
circuit:
  failure_threshold: 7
  cooldown: 1m
`
	var o webhook.Options
	dec := yaml.NewDecoder(strings.NewReader(doc))
	dec.KnownFields(true)
	if err := dec.Decode(&o); err != nil {
		t.Fatal(err)
	}
	want := webhook.Options{URL: "https://sms-gw.example.cn/hufu/v1", KeyFile: "/etc/hufu/providers/sms.key",
		CAFile: "/etc/hufu/providers/ca.pem", Timeout: webhook.Duration(8 * time.Second), MaxAttempts: 4,
		RetryBackoff: webhook.Duration(100 * time.Millisecond), MaxBackoff: webhook.Duration(time.Second),
		MaxClockSkew: webhook.Duration(2 * time.Minute),
		Circuit:      webhook.Circuit{FailureThreshold: 7, Cooldown: webhook.Duration(time.Minute)}}
	if o != want {
		t.Fatalf("decoded %+v\nwant    %+v", o, want)
	}
	out, err := yaml.Marshal(o)
	if err != nil || !strings.Contains(string(out), "timeout: 8s\n") || !strings.Contains(string(out), "max_clock_skew: 2m0s\n") || strings.Contains(string(out), "\nclock:") {
		t.Fatalf("marshalled %s, %v", out, err)
	}
	var bad webhook.Options
	if err := yaml.Unmarshal([]byte("timeout: soon"), &bad); err == nil || !strings.Contains(err.Error(), `"soon" is not a duration`) {
		t.Fatalf("bad duration: %v", err)
	}
}

func TestOptionsDefaults(t *testing.T) {
	o := webhook.Options{URL: "https://gw.example.cn", KeyFile: "k"}
	o.EnsureDefaults()
	if o.Timeout.Std() != webhook.DefaultTimeout || o.MaxAttempts != webhook.DefaultMaxAttempts ||
		o.Circuit.FailureThreshold != webhook.DefaultFailureThreshold || o.Circuit.Cooldown.Std() != webhook.DefaultCooldown ||
		o.MaxClockSkew.Std() != webhook.DefaultMaxClockSkew || o.Clock == nil {
		t.Fatalf("defaults %+v", o)
	}
	if ps := o.Validate("providers.sms"); ps != nil {
		t.Fatalf("defaults are invalid: %v", ps)
	}
}

func TestOptionsValidate(t *testing.T) {
	tests := []struct {
		name     string
		edit     func(*webhook.Options)
		wantPath string // "" for valid
		wantMsg  string
	}{
		{"valid", func(*webhook.Options) {}, "", ""},
		{"loopback http", func(o *webhook.Options) { o.URL = "http://127.0.0.1:8080/hufu/v1" }, "", ""},
		{"loopback http v6", func(o *webhook.Options) { o.URL = "http://[::1]:8080" }, "", ""},
		{"no url", func(o *webhook.Options) { o.URL = "" }, "providers.sms.url", "must be set"},
		{"http elsewhere", func(o *webhook.Options) { o.URL = "http://gw.example.cn/hufu" }, "providers.sms.url", "http is allowed only to a literal loopback"},
		{"http localhost", func(o *webhook.Options) { o.URL = "http://localhost:8080" }, "providers.sms.url", "literal loopback"},
		{"ftp", func(o *webhook.Options) { o.URL = "ftp://gw.example.cn" }, "providers.sms.url", `scheme "ftp"`},
		{"user info", func(o *webhook.Options) { o.URL = "https://hufu:secret@gw.example.cn" }, "providers.sms.url", "user information"},
		{"query", func(o *webhook.Options) { o.URL = "https://gw.example.cn/?a=b" }, "providers.sms.url", "query"},
		{"no host", func(o *webhook.Options) { o.URL = "https:///x" }, "providers.sms.url", "no host"},
		{"no key file", func(o *webhook.Options) { o.KeyFile = "" }, "providers.sms.key_file", "must be set"},
		{"short timeout", func(o *webhook.Options) { o.Timeout = webhook.Duration(time.Millisecond) }, "providers.sms.timeout", "want 50ms..1m0s"},
		{"too many attempts", func(o *webhook.Options) { o.MaxAttempts = 11 }, "providers.sms.max_attempts", "11: want 1..10"},
		{"negative attempts", func(o *webhook.Options) { o.MaxAttempts = -1 }, "providers.sms.max_attempts", "want 1..10"},
		{"backoff inverted", func(o *webhook.Options) { o.MaxBackoff = webhook.Duration(10 * time.Millisecond) }, "providers.sms.max_backoff", "shorter than retry_backoff"},
		{"skew too wide", func(o *webhook.Options) { o.MaxClockSkew = webhook.Duration(time.Hour) }, "providers.sms.max_clock_skew", "want 10s..15m0s"},
		{"threshold", func(o *webhook.Options) { o.Circuit.FailureThreshold = 5000 }, "providers.sms.circuit.failure_threshold", "want 1..1000"},
		{"cooldown", func(o *webhook.Options) { o.Circuit.Cooldown = webhook.Duration(-time.Second) }, "providers.sms.circuit.cooldown", "want 1s..1h0m0s"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			o := webhook.Options{URL: "https://gw.example.cn/hufu/v1", KeyFile: "/etc/hufu/sms.key"}
			o.EnsureDefaults()
			tt.edit(&o)
			ps := o.Validate("providers.sms")
			if tt.wantPath == "" {
				if ps != nil {
					t.Fatalf("Validate = %v", ps)
				}
				return
			}
			for _, p := range ps {
				if p.Path == tt.wantPath && strings.Contains(p.Message, tt.wantMsg) {
					return
				}
			}
			t.Fatalf("Validate = %v; want %s: …%s…", ps, tt.wantPath, tt.wantMsg)
		})
	}
}

// New reports file problems with their key path, never the key.
func TestNewFileProblems(t *testing.T) {
	dir := t.TempDir()
	write := func(name, content string) string {
		path := filepath.Join(dir, name)
		if err := os.WriteFile(path, []byte(content), 0o600); err != nil {
			t.Fatal(err)
		}
		return path
	}
	const secretHex = "5ec7e75ec7e75ec7e75ec7e75ec7e75ec7e75ec7e75ec7e75ec7e75ec7e7" // 30 bytes
	good := write("good.key", strings.Repeat("ab", 32)+"\n")
	tests := []struct {
		name, keyFile, caFile, wantPath, wantMsg string
	}{
		{"missing key file", filepath.Join(dir, "none"), "", "providers.sms.key_file", "no such file"},
		{"short key", write("short.key", secretHex), "", "providers.sms.key_file", "a 30-byte key: want 32 to 64 bytes"},
		{"long key", write("long.key", strings.Repeat("ab", 65)), "", "providers.sms.key_file", "want 32 to 64 bytes"},
		{"not hex", write("text.key", "my-secret-password-"+secretHex), "", "providers.sms.key_file", "not hex"},
		{"huge file", write("huge.key", strings.Repeat("a", 4096)), "", "providers.sms.key_file", "4096 characters"},
		{"ca not pem", good, write("ca.pem", "hello"), "providers.sms.ca_file", "no PEM certificate"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			o := webhook.Options{URL: "https://gw.example.cn", KeyFile: tt.keyFile, CAFile: tt.caFile}
			_, err := webhook.New("sms", o, nil, nil)
			var ps webhook.Problems
			if !errors.As(err, &ps) || len(ps) != 1 || ps[0].Path != tt.wantPath || !strings.Contains(ps[0].Message, tt.wantMsg) {
				t.Fatalf("New = %v; want %s: …%s…", err, tt.wantPath, tt.wantMsg)
			}
			if strings.Contains(err.Error(), "5ec7e7") || strings.Contains(err.Error(), "password") {
				t.Fatalf("the error quotes the key: %v", err)
			}
			o.EnsureDefaults()
			if got := o.CheckFiles("providers.sms"); len(got) != 1 || got[0] != ps[0] {
				t.Fatalf("CheckFiles = %v, New said %v", got, ps)
			}
		})
	}
	if _, err := webhook.New("SMS!", webhook.Options{URL: "https://gw.example.cn", KeyFile: good}, nil, nil); err == nil {
		t.Fatal("a provider name that is not a label was accepted")
	}
	if _, err := webhook.New("sms", webhook.Options{URL: "https://gw.example.cn", KeyFile: good}, nil, nil); err != nil {
		t.Fatalf("valid options: %v", err)
	}
	// A key file others can read works, with a warning that names the file, not the key.
	open := write("open.key", strings.Repeat("cd", 32))
	os.Chmod(open, 0o644)
	var logs strings.Builder
	if _, err := webhook.New("sms", webhook.Options{URL: "https://gw.example.cn", KeyFile: open}, nil, slog.New(slog.NewTextHandler(&logs, nil))); err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(logs.String(), "can be read by other users") || !strings.Contains(logs.String(), open) || strings.Contains(logs.String(), "cdcd") {
		t.Fatalf("logs: %s", logs.String())
	}
}
