package config

import (
	"errors"
	"flag"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

func TestDefaultsAndSampleAreValid(t *testing.T) {
	c := Default()
	if err := c.Validate(); err != nil {
		t.Fatalf("embedded defaults: %v", err)
	}
	sample := filepath.Join("..", "..", "deploy", "hufu.yaml")
	if _, err := os.Stat(sample); err != nil {
		t.Skip("no deploy/hufu.yaml yet")
	}
	c, err := Load(sample, nil, nil)
	if err != nil {
		t.Fatal(err)
	}
	if err := c.Validate(); err != nil {
		t.Fatalf("deploy/hufu.yaml: %v", err)
	}
}

func TestStrictDecoding(t *testing.T) {
	cases := []struct {
		name, doc, want string
	}{
		{"unknown key", "listen:\n  grcp: 1.2.3.4:5\n", "field grcp not found"},
		{"wrong type", "hsm:\n  max_sessions: many\n", "cannot unmarshal"},
		{"bad duration", "account:\n  sms_code_ttl: five minutes\n", "not a duration"},
		{"two documents", "log:\n  level: info\n---\nlog:\n  level: debug\n", "more than one YAML document"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			cfg := Default()
			err := cfg.Parse(strings.NewReader(c.doc))
			if err == nil || !strings.Contains(err.Error(), c.want) {
				t.Fatalf("got %v, want an error containing %q", err, c.want)
			}
		})
	}
}

func TestValidateReportsEveryProblemWithItsPath(t *testing.T) {
	c, err := Load("testdata/bad.yaml", nil, nil)
	if err != nil {
		t.Fatal(err)
	}
	c.Development = false
	err = c.Validate()
	var ps Problems
	if !errors.As(err, &ps) {
		t.Fatalf("got %v, want Problems", err)
	}
	got := map[string]bool{}
	for _, p := range ps {
		got[p.Path] = true
	}
	for _, path := range []string{
		"data_dir", "listen.grpc", "tls.cert_file", "tls.key_file", "tls.min_version", "hsm.module",
		"hsm.pin_file", "hsm.max_sessions", "log.level", "platforms[0].id", "platforms[0].name",
		"platforms[0].region", "platforms[2].id", "system_clients[0].services[0]", "scan.address",
	} {
		if !got[path] {
			t.Errorf("no problem reported for %s", path)
		}
	}
	if len(ps) != 15 {
		t.Errorf("%d problems, want 15:\n%v", len(ps), err)
	}
}

func TestPrecedenceDefaultsFileFlagsEnvironment(t *testing.T) {
	file := filepath.Join(t.TempDir(), "hufu.yaml")
	doc := "listen:\n  grpc: 10.0.0.1:7443\nlog:\n  level: warn\naccount:\n  sms_code_ttl: 3m\nplatforms:\n  - {id: p1, name: P1, region: \"110000\"}\n"
	if err := os.WriteFile(file, []byte(doc), 0o600); err != nil {
		t.Fatal(err)
	}
	fs := flag.NewFlagSet("hufud", flag.ContinueOnError)
	overrides := RegisterFlags(fs)
	if err := fs.Parse([]string{"-log.level=debug", "-hsm.max_sessions", "4", "-grpc.reflection=true"}); err != nil {
		t.Fatal(err)
	}
	c, err := Load(file, overrides, []string{"HUFU_LOG_LEVEL=error", "HUFU_ACCOUNT_ACCESS_TOKEN_TTL=90m", "PATH=/bin"})
	if err != nil {
		t.Fatal(err)
	}
	checks := []struct {
		name      string
		got, want any
	}{
		{"file over default", c.Listen.GRPC, "10.0.0.1:7443"},
		{"file duration", c.Account.SMSCodeTTL.Std(), 3 * time.Minute},
		{"default kept", c.HSM.TokenLabel, "hufu"},
		{"flag over default", c.HSM.MaxSessions, 4},
		{"flag bool over default", c.GRPC.Reflection, true},
		{"env over flag over file", c.Log.Level, "error"},
		{"env duration", c.Account.AccessTokenTTL.Std(), 90 * time.Minute},
		{"file list replaces default list", len(c.Platforms), 1},
	}
	for _, ch := range checks {
		if ch.got != ch.want {
			t.Errorf("%s: got %v, want %v", ch.name, ch.got, ch.want)
		}
	}
	if err := fs.Parse([]string{"-hsm.max_sessions=lots"}); err == nil {
		t.Error("a malformed flag value must be refused")
	}
	if _, err := Load("", nil, []string{"HUFU_GRPC_MAX_DEADLINE=soon"}); err == nil || !strings.Contains(err.Error(), "HUFU_GRPC_MAX_DEADLINE") {
		t.Errorf("malformed environment value: %v", err)
	}
}

func TestEveryKeyHasDistinctNames(t *testing.T) {
	seen := map[string]bool{}
	for _, k := range Keys() {
		if seen[k.Env] {
			t.Errorf("two keys map to %s", k.Env)
		}
		seen[k.Env] = true
	}
	if !seen["HUFU_HSM_PIN_FILE"] || !seen["HUFU_LISTEN_GRPC"] {
		t.Fatalf("keys missing: %v", seen)
	}
}

func TestCheckFiles(t *testing.T) {
	dir := t.TempDir()
	present := filepath.Join(dir, "server.pem")
	if err := os.WriteFile(present, []byte("x"), 0o600); err != nil {
		t.Fatal(err)
	}
	c := Default()
	c.TLS.CertFile = present
	c.TLS.KeyFile = filepath.Join(dir, "missing-key.pem")
	c.HSM.PINFile = filepath.Join(dir, "missing.pin")
	var ps Problems
	if err := c.CheckFiles(); !errors.As(err, &ps) || len(ps) != 2 || ps[0].Path != "tls.key_file" || ps[1].Path != "hsm.pin_file" {
		t.Fatalf("got %v", err)
	}
}

func TestEnterprisesValidation(t *testing.T) {
	c := Default()
	c.Enterprises.VerificationPriceFen = -1
	c.Enterprises.Transfer = CorporateTransfer{AccountName: " ", Bank: "", AccountNumber: "6222-0200", Validity: Duration(time.Minute), MaxAmountFen: 100000}
	var ps Problems
	if err := c.Validate(); !errors.As(err, &ps) {
		t.Fatalf("got %v, want Problems", err)
	}
	got := map[string]bool{}
	for _, p := range ps {
		got[p.Path] = true
	}
	for _, path := range []string{"enterprises.verification_price_fen", "enterprises.transfer.account_name", "enterprises.transfer.bank",
		"enterprises.transfer.account_number", "enterprises.transfer.validity", "enterprises.transfer.max_amount_fen"} {
		if !got[path] {
			t.Errorf("no problem reported for %s", path)
		}
	}
	if len(ps) != 6 {
		t.Errorf("%d problems, want 6:\n%v", len(ps), ps)
	}
}
