package config

import (
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

func TestDevelopmentDefaultsAndSampleAreValid(t *testing.T) {
	c := Development()
	if err := c.Validate(); err != nil {
		t.Fatalf("development defaults: %v", err)
	}
	c, err := Load(filepath.Join("..", "..", "deploy", "hufu.yaml"), nil, nil)
	if err != nil {
		t.Fatal(err)
	}
	if err := c.Validate(); err != nil {
		t.Fatalf("deploy/hufu.yaml: %v", err)
	}
}

// The embedded defaults are production, and name nothing only an operator can name: a
// configuration that omits development: runs nothing of development, it is refused with
// what it lacks.
func TestDefaultsAreProductionAndListWhatTheyLack(t *testing.T) {
	c, err := Load("", nil, nil)
	if err != nil {
		t.Fatal(err)
	}
	if c.Development {
		t.Fatal("the built-in default is development")
	}
	var ps Problems
	if err := c.Validate(); !errors.As(err, &ps) {
		t.Fatalf("got %v, want Problems", err)
	}
	got := map[string]bool{}
	for _, p := range ps {
		got[p.Path] = true
	}
	for _, path := range []string{"tls.cert_file", "tls.key_file", "hsm.module", "hsm.pin_file", "platforms",
		"scan.address", "enterprises.transfer.account_number", "providers.sms", "providers.identity", "providers.payment",
		"certificates.public_url", "certificates.subject_identity_key_file"} {
		if !got[path] {
			t.Errorf("no problem reported for %s:\n%v", path, ps)
		}
	}
}

func TestDevelopmentFillsOnlyWhatIsMissing(t *testing.T) {
	c, err := Load("", Overrides{"development": "true"}, nil)
	if err != nil {
		t.Fatal(err)
	}
	if len(c.Platforms) != 1 || c.Platforms[0].ID != "demo" || len(c.SystemClients) != 1 || c.Enterprises.Transfer.AccountNumber == "" {
		t.Fatalf("development not filled in: %+v %+v %+v", c.Platforms, c.SystemClients, c.Enterprises.Transfer)
	}
	file := filepath.Join(t.TempDir(), "dev.yaml")
	doc := "development: true\nplatforms:\n  - {id: p1, name: P1, region: \"110000\"}\n"
	if err := os.WriteFile(file, []byte(doc), 0o600); err != nil {
		t.Fatal(err)
	}
	if c, err = Load(file, nil, nil); err != nil {
		t.Fatal(err)
	}
	if len(c.Platforms) != 1 || c.Platforms[0].ID != "p1" {
		t.Errorf("a configured platform list was changed: %+v", c.Platforms)
	}
	if len(c.SystemClients) != 1 || c.SystemClients[0].Name != "hufu-cli" {
		t.Errorf("the development system client is missing: %+v", c.SystemClients)
	}
}

func TestStrictDecoding(t *testing.T) {
	cases := []struct {
		name, doc, want string
	}{
		{"unknown key", "listen:\n  grcp: 1.2.3.4:5\n", "line 2: listen.grcp: unknown key"},
		{"wrong type", "hsm:\n  max_sessions: many\n", "line 2: hsm.max_sessions: cannot unmarshal"},
		{"bad duration", "\naccount:\n  sms_code_ttl: five minutes\n", `line 3: account.sms_code_ttl: "five minutes" is not a duration`},
		{"unknown key in a list item", "platforms:\n  - id: a\n    nme: b\n", "line 3: platforms[0].nme: unknown key"},
		{"unknown key in a flow mapping", "platforms:\n  - {id: a, nme: b}\n", "line 2: platforms[0].nme: unknown key"},
		{"bad duration of a provider", "providers:\n  sms:\n    timeout: 5 seconds\n    max_attempts: many\n", `line 3: providers.sms.timeout: "5 seconds" is not a duration like 30s or 5m; line 4: providers.sms.max_attempts: cannot unmarshal`},
		{"every problem at once", "log:\n  levle: x\ngrpc:\n  max_deadline: soon\n", "line 2: log.levle: unknown key; line 4: grpc.max_deadline:"},
		{"duplicate key", "log:\n  level: info\n  level: debug\n", "already defined"},
		{"not YAML", "log: [\n", "config: yaml:"},
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
	cfg := Default()
	if err := cfg.Parse(strings.NewReader("")); err != nil {
		t.Errorf("an empty file: %v", err)
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
		"data_dir", "listen.grpc", "listen.json", "tls.cert_file", "tls.key_file", "tls.min_version", "hsm.module",
		"hsm.pin_file", "hsm.max_sessions", "log.level", "platforms[0].id", "platforms[0].name",
		"platforms[0].region", "platforms[2].id", "system_clients[0].services[0]", "scan.address",
		"enterprises.transfer.account_name", "enterprises.transfer.account_number", "enterprises.transfer.bank",
		"providers.sms", "providers.identity", "providers.payment",
		"certificates.public_url", "certificates.subject_identity_key_file",
	} {
		if !got[path] {
			t.Errorf("no problem reported for %s", path)
		}
	}
	if len(ps) != 24 {
		t.Errorf("%d problems, want 24:\n%v", len(ps), err)
	}
}

func TestPrecedenceDefaultsFileEnvironmentFlags(t *testing.T) {
	file := filepath.Join(t.TempDir(), "hufu.yaml")
	doc := "listen:\n  grpc: 10.0.0.1:7443\nlog:\n  level: warn\naccount:\n  sms_code_ttl: 3m\nplatforms:\n  - {id: p1, name: P1, region: \"110000\"}\n"
	if err := os.WriteFile(file, []byte(doc), 0o600); err != nil {
		t.Fatal(err)
	}
	overrides := Overrides{"log.level": "debug", "hsm.max_sessions": "4", "grpc.reflection": "true"}
	c, err := Load(file, overrides, []string{"HUFU_LOG_LEVEL=error", "HUFU_ACCOUNT_ACCESS_TOKEN_TTL=90m", "HUFU_HSM_TOKEN_LABEL=env", "PATH=/bin"})
	if err != nil {
		t.Fatal(err)
	}
	checks := []struct {
		name      string
		got, want any
	}{
		{"file over default", c.Listen.GRPC, "10.0.0.1:7443"},
		{"file duration", c.Account.SMSCodeTTL.Std(), 3 * time.Minute},
		{"default kept", c.HSM.KEKPrefix, "hufu-kek"},
		{"env over default", c.HSM.TokenLabel, "env"},
		{"flag over default", c.HSM.MaxSessions, 4},
		{"flag bool over default", c.GRPC.Reflection, true},
		{"flag over env over file", c.Log.Level, "debug"},
		{"env duration", c.Account.AccessTokenTTL.Std(), 90 * time.Minute},
		{"file list replaces default list", len(c.Platforms), 1},
	}
	for _, ch := range checks {
		if ch.got != ch.want {
			t.Errorf("%s: got %v, want %v", ch.name, ch.got, ch.want)
		}
	}
	if _, err := Load("", Overrides{"hsm.max_sessions": "lots"}, nil); err == nil || !strings.Contains(err.Error(), "flag -hsm.max_sessions") {
		t.Errorf("malformed flag value: %v", err)
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
	c := Development()
	c.TLS.CertFile = present
	c.TLS.KeyFile = filepath.Join(dir, "missing-key.pem")
	c.HSM.PINFile = filepath.Join(dir, "missing.pin")
	var ps Problems
	if err := c.CheckFiles(); !errors.As(err, &ps) || len(ps) != 2 || ps[0].Path != "tls.key_file" || ps[1].Path != "hsm.pin_file" {
		t.Fatalf("got %v", err)
	}
}

func TestEnterprisesValidation(t *testing.T) {
	c := Development()
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

func TestValidateInvoices(t *testing.T) {
	cases := []struct {
		name string
		mod  func(*Invoices)
		path string // "" if valid
	}{
		{"defaults", func(*Invoices) {}, ""},
		{"one type", func(i *Invoices) { i.Types = []string{"enterprise_ordinary"} }, ""},
		{"unknown type", func(i *Invoices) { i.Types = []string{"company"} }, "invoices.types[0]"},
		{"a type twice", func(i *Invoices) { i.Types = []string{"personal_ordinary", "personal_ordinary"} }, "invoices.types[1]"},
		{"mapping", func(i *Invoices) {
			i.Categories = []InvoiceCategoryRule{{"new", "ca_certificate"}, {"enterprise_verification", "platform_service"}}
		}, ""},
		{"unknown order kind", func(i *Invoices) { i.Categories = []InvoiceCategoryRule{{"refill", "ca_certificate"}} }, "invoices.categories[0].order_kind"},
		{"unknown category", func(i *Invoices) { i.Categories = []InvoiceCategoryRule{{"new", "hardware"}} }, "invoices.categories[0].category"},
		{"too many orders", func(i *Invoices) { i.MaxOrdersPerInvoice = 201 }, "invoices.max_orders_per_invoice"},
		{"negative titles", func(i *Invoices) { i.MaxTitlesPerUser = -1 }, "invoices.max_titles_per_user"},
		{"tiny documents", func(i *Invoices) { i.MaxDocumentBytes = 10 }, "invoices.max_document_bytes"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			cfg := Development()
			cfg.DataDir = t.TempDir()
			c.mod(&cfg.Invoices)
			err := cfg.Validate()
			if c.path == "" {
				if err != nil {
					t.Fatal(err)
				}
				return
			}
			if err == nil || !strings.Contains(err.Error(), c.path+":") {
				t.Fatalf("got %v, want a problem at %s", err, c.path)
			}
		})
	}
}

func TestDefaultPlatformMustBeConfigured(t *testing.T) {
	bad, err := Load("", Overrides{"development": "true", "account.default_platform": "nowhere"}, nil)
	if err == nil {
		err = bad.Validate()
	}
	if err == nil || !strings.Contains(err.Error(), "account.default_platform") {
		t.Fatalf("unknown default platform: %v", err)
	}
	c, err := Load("", Overrides{"development": "true", "account.default_platform": "demo"}, nil)
	if err == nil {
		err = c.Validate()
	}
	if err != nil || c.Account.DefaultPlatform != "demo" {
		t.Fatalf("the development platform as default: %v %v", c.Account.DefaultPlatform, err)
	}
}

// TestJSONListenerDefaults: production serves no JSON gateway unless listen.json names an
// address; development serves it on loopback, or where the configuration says.
func TestJSONListenerDefaults(t *testing.T) {
	if got := Default().Listen.JSON; got != "" {
		t.Errorf("production default listen.json = %q, want empty (off)", got)
	}
	if got := Development().Listen.JSON; got != "127.0.0.1:7444" {
		t.Errorf("development default listen.json = %q", got)
	}
	c := Default()
	c.Development = true
	c.Listen.JSON = "0.0.0.0:9444"
	c.fillDevelopment()
	if c.Listen.JSON != "0.0.0.0:9444" {
		t.Errorf("development replaced the configured listen.json with %q", c.Listen.JSON)
	}
}
