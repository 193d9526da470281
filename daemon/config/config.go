// Package config is hufud's configuration: one YAML file, strictly decoded, with every key
// overridable by a HUFU_* environment variable and, above that, by a command-line flag (the
// order of Vault, etcd and step-ca: what is typed for this one run wins). The key
// "listen.grpc" is the variable HUFU_LISTEN_GRPC and the flag -listen.grpc. Secrets are
// never values here, only paths to files that hold them.
//
// The embedded defaults are a production appliance that still lacks what only its operator
// can name (HSM, TLS material, providers, platforms); development is asked for explicitly,
// with development: true, and then fills in its own material (see Development).
//
// Load applies the layers in order (embedded defaults, file, environment, flags) and
// Validate reports every problem at once, each with its key path, so an operator fixes a file
// in one round.
package config

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"time"

	"github.com/hufu-hsm/hufu/daemon/webhook"
	"go.yaml.in/yaml/v3"
)

// Config is the whole of hufud's configuration. The yaml tags are the key paths.
type Config struct {
	// DataDir holds the store, the development SoftHSM2 token and development TLS material.
	DataDir string `yaml:"data_dir"`
	// Development enables the development SMS sender, identity verifier and login
	// providers. Never in production: codes are written to a file.
	Development bool `yaml:"development"`

	Listen  Listen    `yaml:"listen"`
	TLS     TLS       `yaml:"tls"`
	HSM     HSM       `yaml:"hsm"`
	GRPC    GRPC      `yaml:"grpc"`
	Log     Log       `yaml:"log"`
	Audit   Audit     `yaml:"audit"`
	Store   Store     `yaml:"store"`
	Account Account   `yaml:"account"`
	Keys    KeyPolicy `yaml:"keys"`

	// Certificates configures the CAs an applicant can choose and their prices.
	Certificates Certificates `yaml:"certificates"`
	Admin        Admin        `yaml:"admin"`
	// Enterprises configures corporate-transfer verification (对公打款认证).
	Enterprises Enterprises `yaml:"enterprises"`
	// Scan is the business systems' scan sessions (seed manual §2).
	Scan Scan `yaml:"scan"`
	// Openings is the bid openings of bid-opening systems (seed manual §3.1).
	Openings Openings `yaml:"openings"`
	// Invoices is invoicing (seed manual §1.8.6), invoices.go.
	Invoices Invoices `yaml:"invoices"`
	// Providers are the gateways to the trading centre's SMS, real-name, login and payment
	// services (docs/providers.md).
	Providers Providers `yaml:"providers"`
	// Support is help, FAQ, the consultation number and the bank-card limit (support.go).
	Support Support `yaml:"support"`
	// Payments is the payment methods per platform and the offline receiving account.
	Payments Payments `yaml:"payments"`
	// Wallet is the mutual-recognition catalogue: national CAs, platforms, plans (wallet.go).
	Wallet Wallet `yaml:"wallet"`
	// AfterSales is after-sales: reasons' labels and limits (aftersales.go).
	AfterSales AfterSales `yaml:"aftersales"`

	// Platforms are the trading platforms people can choose (seed manual §1.3).
	Platforms []Platform `yaml:"platforms"`
	// SystemClients are the business and bid-opening systems allowed to call hufu with a
	// client certificate, and the services each may use.
	SystemClients []SystemClient `yaml:"system_clients"`
}

type Listen struct {
	// GRPC is the address of the gRPC listener for phones and systems.
	GRPC string `yaml:"grpc"`
	// PKI is the address of the public PKI listener (plain HTTP: CRLs, CA certificates,
	// OCSP; package pki); empty: off. Development fills in 127.0.0.1:7081.
	PKI string `yaml:"pki"`
	// JSON is the address of the JSON/HTTP gateway (HTTPS with the gRPC listener's
	// certificate and client-CA verification, the same services through the same gate, the
	// OpenAPI document at /openapi.json); empty turns it off. Development serves it on
	// 127.0.0.1:7444 unless it names another address.
	JSON string `yaml:"json"`
}

type TLS struct {
	CertFile string `yaml:"cert_file"`
	KeyFile  string `yaml:"key_file"`
	// ClientCAFile holds the CA certificates that sign system clients' certificates.
	ClientCAFile string `yaml:"client_ca_file"`
	// MinVersion is "1.2" or "1.3".
	MinVersion string `yaml:"min_version"`
}

type HSM struct {
	// Module is the PKCS#11 module path; empty means "find SoftHSM2" (development only).
	Module          string   `yaml:"module"`
	TokenLabel      string   `yaml:"token_label"`
	TokenSerial     string   `yaml:"token_serial"`
	PINFile         string   `yaml:"pin_file"`
	KEKPrefix       string   `yaml:"kek_prefix"`
	MaxSessions     int      `yaml:"max_sessions"`
	PoolWaitTimeout Duration `yaml:"pool_wait_timeout"`
	// ReopenBackoff is the wait after the keyring's first, immediate attempt to reconnect
	// after an HSM outage (the token removed or reset, its sessions gone) fails; each
	// further failed attempt doubles it up to ReopenMaxBackoff.
	ReopenBackoff    Duration `yaml:"reopen_backoff"`
	ReopenMaxBackoff Duration `yaml:"reopen_max_backoff"`
}

type GRPC struct {
	// Reflection serves the gRPC server reflection service (for grpcurl and the like): off
	// by default, because it lists every service and message to anyone who can connect.
	Reflection bool `yaml:"reflection"`
	// MaxRecvBytes bounds one request message: an enterprise claim carries its business
	// licence, letter and the CA's attachments (5 MiB each at most) in one.
	MaxRecvBytes int `yaml:"max_recv_bytes"`
	// MaxDeadline caps the deadline of any unary call; calls without one get it. Streams
	// (a scan session's watch, health) bound their own life.
	MaxDeadline Duration `yaml:"max_deadline"`
	// ShutdownGrace is how long a stopping daemon lets calls in flight finish.
	ShutdownGrace Duration `yaml:"shutdown_grace"`
}

type Log struct {
	Level  string `yaml:"level"`  // debug, info, warn, error
	Format string `yaml:"format"` // json, text
}

type Audit struct {
	CheckpointEvery    int      `yaml:"checkpoint_every"`
	CheckpointInterval Duration `yaml:"checkpoint_interval"`
	// Sinks ship the audit log to SIEMs and archives as it grows (auditsinks.go).
	Sinks []AuditSink `yaml:"sinks"`
}

// Store is the Pebble store under data_dir/store.
type Store struct {
	// MinFreeMiB is the free space the store's filesystem must keep. Below it every write
	// is refused with ResourceExhausted ("store: no space left on device") before it
	// reaches the disk, readiness fails, and hufud will not start; writes resume by
	// themselves once space is freed. Pebble cannot survive running out of space inside a
	// write, so this is a margin, not a quota: size it above what the appliance writes
	// between two readiness probes, plus the WAL (64 MiB is plenty for one appliance).
	MinFreeMiB int `yaml:"min_free_mib"`
}

type Account struct {
	SMSCodeTTL          Duration `yaml:"sms_code_ttl"`
	SMSResendInterval   Duration `yaml:"sms_resend_interval"`
	SMSMaxPerPhoneHour  int      `yaml:"sms_max_per_phone_hour"`
	SMSMaxPerSourceHour int      `yaml:"sms_max_per_source_hour"`
	// CodeMaxAttempts wrong codes for one number within CodeFailureWindow lock the number
	// for CodeLockout, and so does each further wrong code in the window. The count is per
	// number, across codes and purposes: sending a new code does not reset it.
	CodeMaxAttempts     int      `yaml:"code_max_attempts"`
	CodeFailureWindow   Duration `yaml:"code_failure_window"`
	CodeLockout         Duration `yaml:"code_lockout"`
	PasswordMaxAttempts int      `yaml:"password_max_attempts"`
	AccessTokenTTL      Duration `yaml:"access_token_ttl"`
	RefreshTokenTTL     Duration `yaml:"refresh_token_ttl"`
	// DevOutbox is where the development SMS sender writes codes (default
	// <data_dir>/dev-sms.jsonl).
	DevOutbox string `yaml:"dev_outbox"`
	// DefaultPlatform is the platform a new account starts on (seed §1.3: the app shows the
	// chosen platform at once): a configured platform's id. Empty: the only platform when
	// one is configured, else none until the person chooses.
	DefaultPlatform string `yaml:"default_platform"`
}

type KeyPolicy struct {
	// PINMaxAttempts consecutive wrong certificate PINs lock a key for PINLockout.
	PINMaxAttempts int      `yaml:"pin_max_attempts"`
	PINLockout     Duration `yaml:"pin_lockout"`
	// A verified PIN opens a cosign ticket good for TicketUses operations within TicketTTL.
	TicketTTL  Duration `yaml:"ticket_ttl"`
	TicketUses int      `yaml:"ticket_uses"`
	// MaxBatch bounds SignBatch and DecryptBatch.
	MaxBatch int `yaml:"max_batch"`
	// DecryptPerMinute rate-limits decryptions per key.
	DecryptPerMinute int `yaml:"decrypt_per_minute"`
	// Unwrapped shares kept in memory: how many keys, for how long.
	CacheSize int      `yaml:"cache_size"`
	CacheTTL  Duration `yaml:"cache_ttl"`
	// MaxKeysPerAccount bounds the keys (not revoked) one account may hold, so that one
	// account cannot fill the store and the share cache with keys.
	MaxKeysPerAccount int `yaml:"max_keys_per_account"`
	// Erasure schedules the KEK erasure that makes revocations final (erasure.go).
	Erasure KEKErasure `yaml:"erasure"`
}

type Certificates struct {
	// ValidityYears are the validities an applicant may choose, each 1..3.
	ValidityYears []int `yaml:"validity_years"`
	// CRLNextUpdate is the validity of a CRL (its next-update); a new one is made at half.
	CRLNextUpdate Duration `yaml:"crl_next_update"`
	// CAs are the certificate authorities an applicant may choose (勾选CA机构).
	CAs []CertificateAuthority `yaml:"cas"`
	// PublicURL is the base URL at which relying parties reach the appliance's PKI
	// listener; certificates point to CRLs, CA certificates and OCSP under it. Required
	// outside development (certprofile.go, docs/certificates.md).
	PublicURL string `yaml:"public_url"`
	// OCSP: whether the OCSP responder is on (its URL then goes in every leaf).
	OCSP bool `yaml:"ocsp"`
	// SubjectIdentity is what a person's certificate carries in its subject serialNumber:
	// "keyed_hash" (default) or "full". SubjectIdentityKeyFile holds the HMAC-SM3 key of
	// keyed_hash, hex.
	SubjectIdentity        string `yaml:"subject_identity"`
	SubjectIdentityKeyFile string `yaml:"subject_identity_key_file"`
}

type CertificateAuthority struct {
	ID   string `yaml:"id"`
	Name string `yaml:"name"`
	// Type is "embedded" (hufu's own CA, created by hufud init); connectors for external
	// CAs come with their own types.
	Type string `yaml:"type"`
	// Prices per certificate kind ("personal", "enterprise") and validity, in fen (0.01 CNY).
	Prices []Price `yaml:"prices"`
	// UpgradePriceFen is the price of adding platforms to a certificate.
	UpgradePriceFen int `yaml:"upgrade_price_fen"`
	// RequiredAttachments names what this CA requires of an enterprise claim beyond the
	// stamped authorisation letter (注：部分CA认领企业时需要上传除了企业授权书之外的电子件);
	// shown with the letter template.
	RequiredAttachments []string `yaml:"required_attachments"`
}

type Price struct {
	CertKind      string `yaml:"cert_kind"`
	ValidityYears int    `yaml:"validity_years"`
	AmountFen     int    `yaml:"amount_fen"`
}

type Platform struct {
	ID     string `yaml:"id"`
	Name   string `yaml:"name"`
	Region string `yaml:"region"`
}

type SystemClient struct {
	// Name must equal the client certificate's subject common name.
	Name string `yaml:"name"`
	// Services lists the full gRPC service names the client may call.
	Services []string `yaml:"services"`
}

// Openings bounds bid openings.
type Openings struct {
	// MaxEnvelopes bounds the envelopes of one opening (20000; at most 50000, which keeps
	// the signed report of an opening, a line per envelope, consent, release and refused
	// attempt, well under its 64 MiB bound).
	MaxEnvelopes int `yaml:"max_envelopes"`
	// MaxWindow bounds an opening's window (168h).
	MaxWindow Duration `yaml:"max_window"`
	// ReleaseChunk is the envelopes one release batch computes and commits with its audit
	// record (256; at most 1000).
	ReleaseChunk int `yaml:"release_chunk"`
}

// Enterprises is the enterprise policy: corporate-transfer verification (seed §1.6.4).
// Scan configures scan sessions.
type Scan struct {
	// Address is the appliance's address as phones reach it, carried (signed) in QR
	// payloads; required outside development, where listen.grpc stands in.
	Address string `yaml:"address"`
	// SessionTTL is how long a QR code waits for its scan by default (3m); MaxSessionTTL
	// the longest a system may ask for (30m).
	SessionTTL    Duration `yaml:"session_ttl"`
	MaxSessionTTL Duration `yaml:"max_session_ttl"`
	// SessionsPerMinute bounds the sessions one system creates (600).
	SessionsPerMinute int `yaml:"sessions_per_minute"`
}

type Enterprises struct {
	// VerificationPriceFen is the price of the enterprise-verification order a verified
	// transfer makes (确认支付); 0 is free.
	VerificationPriceFen int `yaml:"verification_price_fen"`
	// Transfer is the receiving account and the rules of the small amounts.
	Transfer CorporateTransfer `yaml:"transfer"`
}

// CorporateTransfer is the account applicants transfer to, and how long and how much.
type CorporateTransfer struct {
	AccountName   string `yaml:"account_name"`
	Bank          string `yaml:"bank"`
	AccountNumber string `yaml:"account_number"`
	// Validity is how long an application waits for its transfer.
	Validity Duration `yaml:"validity"`
	// MaxAmountFen bounds the unique amounts (1 fen up to this): the number of applications
	// that can wait at once.
	MaxAmountFen int `yaml:"max_amount_fen"`
}

// Admin is the admin HTTP surface (package admin): metrics, health, audit export,
// backups, KEK rotation. Its tokens are listed only as SHA-256 hashes (hufud admin-token
// makes a token and its line); the tokens themselves are never in the configuration.
type Admin struct {
	// Listen is the admin listener's address: loopback unless TLS is configured.
	Listen string `yaml:"listen"`
	// CertFile and KeyFile, if set, serve the admin surface over TLS.
	CertFile string `yaml:"cert_file"`
	KeyFile  string `yaml:"key_file"`
	// Tokens are the bearer tokens and their roles.
	Tokens []AdminToken `yaml:"tokens"`
}

// AdminToken is one admin bearer token: who holds it, the role it grants, and the hex
// SHA-256 of the token.
type AdminToken struct {
	Name string `yaml:"name"`
	Role string `yaml:"role"` // operator, auditor, security_officer or metrics_reader
	// SHA256 is secret: not the token, but its verifier, which has no business in a
	// printed configuration (a hand-made, weak token could be guessed offline from it).
	// `hufud config show` redacts it.
	SHA256 string `yaml:"sha256" secret:"true"`
}

// Admin roles.
const (
	RoleOperator        = "operator"
	RoleAuditor         = "auditor"
	RoleSecurityOfficer = "security_officer"
	RoleMetricsReader   = "metrics_reader" // /metrics only: what Prometheus holds
)

// Duration is a time.Duration written as "30s" or "5m" in YAML.
type Duration time.Duration

func (d *Duration) UnmarshalYAML(n *yaml.Node) error {
	v, err := time.ParseDuration(n.Value)
	if err != nil {
		// A TypeError, not a plain error: the decoder then goes on to report the other
		// problems, and Parse names this one's key path.
		return &yaml.TypeError{Errors: []string{fmt.Sprintf("line %d: %q is not a duration like 30s or 5m", n.Line, n.Value)}}
	}
	*d = Duration(v)
	return nil
}

func (d Duration) MarshalYAML() (any, error) { return time.Duration(d).String(), nil }
func (d Duration) String() string            { return time.Duration(d).String() }

// Std returns d as a time.Duration.
func (d Duration) Std() time.Duration { return time.Duration(d) }

// Providers name the signed HTTP gateways (package webhook, docs/providers.md) through
// which the appliance sends SMS codes, verifies real names, checks WeChat and carrier login
// tokens and takes payments. Production needs sms, identity and payment; without login,
// WeChat and carrier sign-in are refused as not offered. In development a provider left out
// is the development one (the SMS outbox, test identities and logins, instant payments),
// and one that is configured is used. Set in the file only: providers have no flags or
// HUFU_* variables.
type Providers struct {
	SMS      *webhook.Options `yaml:"sms,omitempty"`
	Identity *webhook.Options `yaml:"identity,omitempty"`
	Login    *webhook.Options `yaml:"login,omitempty"`
	Payment  *webhook.Options `yaml:"payment,omitempty"`
}

// Each calls fn with the key path and options of each configured provider.
func (p Providers) Each(fn func(name string, o *webhook.Options)) {
	for _, e := range []struct {
		name string
		o    *webhook.Options
	}{{"sms", p.SMS}, {"identity", p.Identity}, {"login", p.Login}, {"payment", p.Payment}} {
		if e.o != nil {
			fn(e.name, e.o)
		}
	}
}

// Default returns the embedded defaults: a production appliance with its data in ./.hufu,
// listening on loopback, that names no HSM, TLS material, provider, platform, system client
// or receiving account: Validate lists each as missing until the configuration names it.
func Default() Config {
	return Config{
		DataDir: ".hufu",
		Listen:  Listen{GRPC: "127.0.0.1:7443"},
		TLS:     TLS{MinVersion: "1.2"},
		HSM: HSM{
			TokenLabel: "hufu", KEKPrefix: "hufu-kek",
			MaxSessions: 8, PoolWaitTimeout: Duration(2 * time.Second),
			ReopenBackoff: Duration(250 * time.Millisecond), ReopenMaxBackoff: Duration(30 * time.Second),
		},
		GRPC: GRPC{
			MaxRecvBytes: 24 << 20,
			MaxDeadline:  Duration(30 * time.Second), ShutdownGrace: Duration(10 * time.Second),
		},
		Log:   Log{Level: "info", Format: "json"},
		Admin: Admin{Listen: "127.0.0.1:7080"},
		Audit: Audit{CheckpointEvery: 1000, CheckpointInterval: Duration(time.Minute)},
		Store: Store{MinFreeMiB: 64},
		Account: Account{
			SMSCodeTTL: Duration(5 * time.Minute), SMSResendInterval: Duration(time.Minute),
			SMSMaxPerPhoneHour: 5, SMSMaxPerSourceHour: 50,
			CodeMaxAttempts: 5, CodeFailureWindow: Duration(24 * time.Hour), CodeLockout: Duration(15 * time.Minute),
			PasswordMaxAttempts: 10,
			AccessTokenTTL:      Duration(2 * time.Hour), RefreshTokenTTL: Duration(30 * 24 * time.Hour),
		},
		Keys: KeyPolicy{
			PINMaxAttempts: 5, PINLockout: Duration(30 * time.Minute),
			TicketTTL: Duration(5 * time.Minute), TicketUses: 1000, MaxBatch: 256,
			DecryptPerMinute: 600, CacheSize: 10000, CacheTTL: Duration(10 * time.Minute),
			MaxKeysPerAccount: 20,
			Erasure:           KEKErasure{Interval: Duration(DefaultErasureInterval)},
		},
		Scan:        Scan{SessionTTL: Duration(3 * time.Minute), MaxSessionTTL: Duration(30 * time.Minute), SessionsPerMinute: 600},
		Openings:    Openings{MaxEnvelopes: 20000, MaxWindow: Duration(7 * 24 * time.Hour), ReleaseChunk: 256},
		Enterprises: Enterprises{Transfer: CorporateTransfer{Validity: Duration(7 * 24 * time.Hour), MaxAmountFen: 99}},
		Certificates: Certificates{
			ValidityYears: []int{1, 2, 3}, CRLNextUpdate: Duration(24 * time.Hour),
			SubjectIdentity: SubjectIdentityKeyedHash,
			CAs: []CertificateAuthority{{ID: "hufu-ca", Name: "hufu 内置CA", Type: "embedded", UpgradePriceFen: 5000,
				Prices: []Price{{"personal", 1, 20000}, {"personal", 2, 36000}, {"personal", 3, 50000},
					{"enterprise", 1, 60000}, {"enterprise", 2, 110000}, {"enterprise", 3, 150000}}}},
		},
	}
}

// Development returns the defaults of a development appliance, what `make run` and the tests
// start: Default with development: true and what development fills in (fillDevelopment).
func Development() Config {
	c := Default()
	c.Development = true
	// A development appliance erases only when told to (hufu admin kek erase): a scheduled
	// erasure would make its backups unrestorable behind the developer's back.
	c.Keys.Erasure.Interval = 0
	c.fillDevelopment()
	return c
}

// fillDevelopment gives a development configuration what it does not name: the JSON
// gateway's address (127.0.0.1:7444), a demonstration platform, the development CLI's
// certificate (devpki.CLIClientName) as a system client of every desk and system service, a
// demonstration receiving account, and the PKI listener on 127.0.0.1:7081. A list, account or
// address the configuration names is kept as it is. Production configurations are never
// filled in.
func (c *Config) fillDevelopment() {
	if c.Listen.JSON == "" {
		c.Listen.JSON = "127.0.0.1:7444"
	}
	if c.Listen.PKI == "" {
		c.Listen.PKI = "127.0.0.1:7081"
	}
	if len(c.Platforms) == 0 {
		c.Platforms = []Platform{{ID: "demo", Name: "示范公共资源交易平台", Region: "330000"}}
	}
	if len(c.SystemClients) == 0 {
		c.SystemClients = []SystemClient{{Name: "hufu-cli", Services: []string{"hufu.v1.ReviewService",
			"hufu.v1.ReconciliationService", "hufu.v1.ScanService", "hufu.v1.OpeningService",
			"hufu.v1.PaymentDeskService", "hufu.v1.InvoiceDeskService", "hufu.v1.SupportDeskService",
			"hufu.v1.AfterSalesDeskService"}}}
	}
	c.Invoices.fillDevelopment()
	if t := &c.Enterprises.Transfer; t.AccountNumber == "" && t.AccountName == "" && t.Bank == "" {
		t.AccountName, t.Bank, t.AccountNumber = "hufu 开发测试收款账户", "示范银行杭州分行", "6222020000000000000"
	}
	c.Support.fillDevelopment()
	c.Wallet.fillDevelopment(c.Certificates.CAs)
	c.Certificates.fillDevelopment()
}

// Parse strictly decodes a YAML document over c: unknown keys, duplicate keys and type
// mismatches are errors that name the line and the key path ("line 3: listen.grcp: unknown
// key"), so that an operator finds the key as Validate names it.
func (c *Config) Parse(r io.Reader) error {
	b, err := io.ReadAll(r)
	if err != nil {
		return fmt.Errorf("config: %w", err)
	}
	// Parsed once as a tree, for the key path of each line, and decoded once strictly into
	// c: yaml.Node.Decode has no KnownFields switch.
	var doc yaml.Node
	if err := yaml.Unmarshal(b, &doc); err != nil {
		return fmt.Errorf("config: %w", err) // not YAML: the parser's line is all there is
	}
	paths := linePaths{}
	paths.add(&doc, "")
	dec := yaml.NewDecoder(bytes.NewReader(b))
	dec.KnownFields(true)
	if err := dec.Decode(c); err != nil && !errors.Is(err, io.EOF) {
		var te *yaml.TypeError
		if !errors.As(err, &te) {
			return fmt.Errorf("config: %w", err)
		}
		msgs := make([]string, len(te.Errors))
		for i, m := range te.Errors {
			msgs[i] = withKeyPath(m, paths)
		}
		return fmt.Errorf("config: %s", strings.Join(msgs, "; "))
	}
	var extra yaml.Node
	if err := dec.Decode(&extra); !errors.Is(err, io.EOF) {
		return errors.New("config: more than one YAML document")
	}
	return nil
}

// linePaths are the key paths that start on each line of a document: the mapping keys
// ("listen.grpc") and the list items ("platforms[1]").
type linePaths map[int]struct{ keys, items []string }

func (lp linePaths) add(n *yaml.Node, prefix string) {
	switch n.Kind {
	case yaml.DocumentNode:
		for _, c := range n.Content {
			lp.add(c, prefix)
		}
	case yaml.MappingNode:
		for i := 0; i+1 < len(n.Content); i += 2 {
			path := n.Content[i].Value
			if prefix != "" {
				path = prefix + "." + path
			}
			e := lp[n.Content[i].Line]
			e.keys = append(e.keys, path)
			lp[n.Content[i].Line] = e
			lp.add(n.Content[i+1], path)
		}
	case yaml.SequenceNode:
		for i, item := range n.Content {
			path := fmt.Sprintf("%s[%d]", prefix, i)
			e := lp[item.Line]
			e.items = append(e.items, path)
			lp[item.Line] = e
			lp.add(item, path)
		}
	}
}

// at names what is on a line: its one key ("- id: x" is platforms[1].id), or else what
// everything on it shares ("- {id: a, name: b}" is platforms[0]).
func (lp linePaths) at(line int) string {
	e := lp[line]
	if len(e.keys) == 1 {
		return e.keys[0]
	}
	all := append(append([]string(nil), e.keys...), e.items...)
	if len(all) == 0 {
		return ""
	}
	common := strings.Split(all[0], ".")
	for _, p := range all[1:] {
		segs := strings.Split(p, ".")
		n := 0
		for n < len(common) && n < len(segs) && common[n] == segs[n] {
			n++
		}
		common = common[:n]
	}
	return strings.Join(common, ".")
}

var yamlLineRE = regexp.MustCompile(`^line (\d+): (.*)$`)

// withKeyPath rewrites one of the decoder's "line N: ..." messages to name the key on line
// N, and says "unknown key" for the decoder's "field x not found in type config.Listen".
func withKeyPath(msg string, paths linePaths) string {
	m := yamlLineRE.FindStringSubmatch(msg)
	if m == nil {
		return msg
	}
	var line int
	fmt.Sscan(m[1], &line)
	path, rest := paths.at(line), m[2]
	if path == "" {
		return msg
	}
	if field, ok := strings.CutPrefix(rest, "field "); ok && strings.Contains(field, " not found in type ") {
		// On a line of several keys the path is their parent's: name the unknown one.
		if field, _, _ = strings.Cut(field, " "); !strings.HasSuffix(path, "."+field) && path != field {
			path += "." + field
		}
		rest = "unknown key"
	}
	return fmt.Sprintf("line %d: %s: %s", line, path, rest)
}

// ParseFile is Parse on a file.
func (c *Config) ParseFile(path string) error {
	b, err := os.ReadFile(path)
	if err != nil {
		return fmt.Errorf("config: %w", err)
	}
	if err := c.Parse(bytes.NewReader(b)); err != nil {
		return fmt.Errorf("%s: %w", path, err)
	}
	return nil
}

// Problem is one thing wrong with a configuration.
type Problem struct {
	Path    string // key path, e.g. "listen.grpc"
	Message string
}

func (p Problem) String() string { return p.Path + ": " + p.Message }

// Problems is every problem found; as an error it lists them one per line.
type Problems []Problem

func (ps Problems) Error() string {
	lines := make([]string, len(ps))
	for i, p := range ps {
		lines[i] = p.String()
	}
	return "invalid configuration:\n  " + strings.Join(lines, "\n  ")
}

var (
	platformIDRE = regexp.MustCompile(`^[a-z0-9][a-z0-9-]{0,31}$`)
	regionRE     = regexp.MustCompile(`^[0-9]{6}$`)
	serviceRE    = regexp.MustCompile(`^hufu\.v1\.[A-Z][A-Za-z]*Service$`)
	tokenNameRE  = regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9._@-]{0,63}$`)
	sha256RE     = regexp.MustCompile(`^[0-9a-f]{64}$`)
)

// systemNameRE is what a system client's name may be: it becomes part of store keys.
var systemNameRE = regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$`)

// Validate checks every key and returns all problems, or nil.
func (c *Config) Validate() error {
	var ps Problems
	bad := func(path, format string, args ...any) {
		ps = append(ps, Problem{Path: path, Message: fmt.Sprintf(format, args...)})
	}
	if c.DataDir == "" {
		bad("data_dir", "must be set")
	}
	if _, _, err := net.SplitHostPort(c.Listen.GRPC); err != nil {
		bad("listen.grpc", "%q is not host:port", c.Listen.GRPC)
	}
	if c.Listen.PKI != "" {
		if _, _, err := net.SplitHostPort(c.Listen.PKI); err != nil {
			bad("listen.pki", "%q is not host:port (leave it empty to turn the PKI listener off)", c.Listen.PKI)
		}
	}
	if c.Listen.JSON != "" {
		if _, _, err := net.SplitHostPort(c.Listen.JSON); err != nil {
			bad("listen.json", "%q is not host:port (or leave it empty to serve no JSON gateway)", c.Listen.JSON)
		}
	}
	for path, f := range map[string]string{"tls.cert_file": c.TLS.CertFile, "tls.key_file": c.TLS.KeyFile} {
		if f == "" && !c.Development {
			bad(path, "must be set outside development: the gRPC server's certificate and key (in development, hufud init makes them)")
		}
	}
	if (c.TLS.CertFile == "") != (c.TLS.KeyFile == "") {
		bad("tls", "cert_file and key_file go together")
	}
	if c.TLS.MinVersion != "1.2" && c.TLS.MinVersion != "1.3" {
		bad("tls.min_version", "%q: want \"1.2\" or \"1.3\"", c.TLS.MinVersion)
	}
	if c.HSM.Module == "" && !c.Development {
		bad("hsm.module", "must be set outside development (the PKCS#11 module of your HSM)")
	}
	if (c.HSM.TokenLabel == "") == (c.HSM.TokenSerial == "") {
		bad("hsm", "set exactly one of token_label and token_serial")
	}
	if c.HSM.PINFile == "" && !c.Development {
		bad("hsm.pin_file", "must be set outside development")
	}
	if c.HSM.MaxSessions < 2 || c.HSM.MaxSessions > 64 {
		bad("hsm.max_sessions", "%d: want 2..64", c.HSM.MaxSessions)
	}
	if c.HSM.ReopenMaxBackoff < c.HSM.ReopenBackoff {
		bad("hsm.reopen_max_backoff", "%v is below hsm.reopen_backoff %v", c.HSM.ReopenMaxBackoff.Std(), c.HSM.ReopenBackoff.Std())
	}
	positive := map[string]Duration{
		"hsm.pool_wait_timeout": c.HSM.PoolWaitTimeout, "grpc.max_deadline": c.GRPC.MaxDeadline,
		"hsm.reopen_backoff": c.HSM.ReopenBackoff, "hsm.reopen_max_backoff": c.HSM.ReopenMaxBackoff,
		"grpc.shutdown_grace": c.GRPC.ShutdownGrace, "audit.checkpoint_interval": c.Audit.CheckpointInterval,
		"account.sms_code_ttl": c.Account.SMSCodeTTL, "account.sms_resend_interval": c.Account.SMSResendInterval,
		"account.code_lockout": c.Account.CodeLockout, "account.code_failure_window": c.Account.CodeFailureWindow, "account.access_token_ttl": c.Account.AccessTokenTTL,
		"account.refresh_token_ttl": c.Account.RefreshTokenTTL, "keys.pin_lockout": c.Keys.PINLockout,
		"keys.ticket_ttl": c.Keys.TicketTTL, "keys.cache_ttl": c.Keys.CacheTTL,
	}
	for path, d := range positive {
		if d <= 0 {
			bad(path, "must be a positive duration")
		}
	}
	counts := map[string]int{
		"audit.checkpoint_every": c.Audit.CheckpointEvery, "store.min_free_mib": c.Store.MinFreeMiB, "account.sms_max_per_phone_hour": c.Account.SMSMaxPerPhoneHour,
		"account.sms_max_per_source_hour": c.Account.SMSMaxPerSourceHour, "account.code_max_attempts": c.Account.CodeMaxAttempts,
		"account.password_max_attempts": c.Account.PasswordMaxAttempts, "keys.pin_max_attempts": c.Keys.PINMaxAttempts,
		"keys.ticket_uses": c.Keys.TicketUses, "keys.decrypt_per_minute": c.Keys.DecryptPerMinute, "keys.cache_size": c.Keys.CacheSize,
		"keys.max_keys_per_account": c.Keys.MaxKeysPerAccount,
	}
	for path, n := range counts {
		if n < 1 {
			bad(path, "must be at least 1")
		}
	}
	if c.GRPC.MaxRecvBytes < 4<<10 || c.GRPC.MaxRecvBytes > 64<<20 {
		bad("grpc.max_recv_bytes", "%d: want 4 KiB..64 MiB", c.GRPC.MaxRecvBytes)
	}
	c.Keys.Erasure.validate(bad)
	if c.Keys.MaxBatch < 1 || c.Keys.MaxBatch > 4096 {
		bad("keys.max_batch", "%d: want 1..4096", c.Keys.MaxBatch)
	}
	if c.Account.RefreshTokenTTL < c.Account.AccessTokenTTL {
		bad("account.refresh_token_ttl", "shorter than access_token_ttl")
	}
	switch c.Log.Level {
	case "debug", "info", "warn", "error":
	default:
		bad("log.level", "%q: want debug, info, warn or error", c.Log.Level)
	}
	if c.Log.Format != "json" && c.Log.Format != "text" {
		bad("log.format", "%q: want json or text", c.Log.Format)
	}
	if len(c.Platforms) == 0 {
		bad("platforms", "configure at least one trading platform")
	}
	seen := map[string]bool{}
	for i, p := range c.Platforms {
		path := fmt.Sprintf("platforms[%d]", i)
		if !platformIDRE.MatchString(p.ID) {
			bad(path+".id", "%q: want 1..32 of [a-z0-9-]", p.ID)
		}
		if seen[p.ID] {
			bad(path+".id", "%q is configured twice", p.ID)
		}
		seen[p.ID] = true
		if p.Name == "" || len(p.Name) > 128 {
			bad(path+".name", "must be 1..128 bytes")
		}
		if !regionRE.MatchString(p.Region) {
			bad(path+".region", "%q: want a 6-digit region code", p.Region)
		}
	}
	if d := c.Account.DefaultPlatform; d != "" && !seen[d] {
		bad("account.default_platform", "%q is not a configured platform", d)
	}
	c.validateCertificates(bad)
	c.validateEnterprises(bad)
	if c.Scan.SessionTTL.Std() < 30*time.Second || c.Scan.SessionTTL > c.Scan.MaxSessionTTL {
		bad("scan.session_ttl", "must be at least 30s and at most scan.max_session_ttl")
	}
	if c.Scan.SessionsPerMinute < 1 {
		bad("scan.sessions_per_minute", "must be at least 1")
	}
	if c.Openings.MaxEnvelopes < 1 || c.Openings.MaxEnvelopes > 50000 {
		bad("openings.max_envelopes", "must be 1 to 50000")
	}
	if c.Openings.MaxWindow.Std() < time.Minute {
		bad("openings.max_window", "must be at least 1m")
	}
	if c.Openings.ReleaseChunk < 1 || c.Openings.ReleaseChunk > 1000 {
		bad("openings.release_chunk", "must be 1 to 1000")
	}
	if !c.Development && c.Scan.Address == "" {
		// Signed into every QR code: phones must reach the appliance there.
		bad("scan.address", "set the address phones reach the appliance at")
	}
	clients := map[string]bool{}
	for i, sc := range c.SystemClients {
		path := fmt.Sprintf("system_clients[%d]", i)
		if !systemNameRE.MatchString(sc.Name) || clients[sc.Name] {
			bad(path+".name", "%q: must be unique, 1 to 64 of [A-Za-z0-9._-] (the client certificate's common name)", sc.Name)
		}
		clients[sc.Name] = true
		for j, s := range sc.Services {
			if !serviceRE.MatchString(s) {
				bad(fmt.Sprintf("%s.services[%d]", path, j), "%q is not a hufu service name like hufu.v1.CosignService", s)
			}
		}
	}
	c.validateAdmin(bad)
	c.validateProviders(bad)
	c.validateInvoices(bad)
	c.validateSupport(bad)
	c.validatePayments(bad)
	c.validateWallet(bad)
	c.validateAfterSales(bad)
	c.validateAuditSinks(bad)
	if len(ps) == 0 {
		return nil
	}
	sortProblems(ps)
	return ps
}

func (c *Config) validateProviders(bad func(path, format string, args ...any)) {
	if !c.Development {
		for _, r := range []struct {
			name, what string
			o          *webhook.Options
		}{{"sms", "SMS gateway", c.Providers.SMS}, {"identity", "real-name verification service", c.Providers.Identity}} {
			if r.o == nil {
				bad("providers."+r.name, "must be set outside development: the gateway to the trading centre's %s (docs/providers.md)", r.what)
			}
		}
		// A centre that takes only offline payments needs no payment gateway; which methods
		// need it is checked with payments.methods (validatePayments).
		if c.Providers.Payment == nil && len(c.Payments.Methods) == 0 {
			bad("providers.payment", "must be set outside development unless payments.methods lists only offline payment: the gateway to the trading centre's payment service (docs/providers.md)")
		}
	}
	c.Providers.Each(func(name string, o *webhook.Options) {
		defaulted := *o
		defaulted.EnsureDefaults()
		for _, p := range defaulted.Validate("providers." + name) {
			bad(p.Path, "%s", p.Message)
		}
	})
}

func (c *Config) validateAdmin(bad func(path, format string, args ...any)) {
	a := c.Admin
	host, _, err := net.SplitHostPort(a.Listen)
	if err != nil {
		bad("admin.listen", "%q is not host:port", a.Listen)
	}
	if (a.CertFile == "") != (a.KeyFile == "") {
		bad("admin", "cert_file and key_file go together")
	}
	if ip := net.ParseIP(host); err == nil && a.CertFile == "" && host != "localhost" && (ip == nil || !ip.IsLoopback()) {
		bad("admin.listen", "%q is not a loopback address: set admin.cert_file and admin.key_file, bearer tokens must not cross a network in clear", a.Listen)
	}
	names, hashes := map[string]bool{}, map[string]bool{}
	for i, t := range a.Tokens {
		path := fmt.Sprintf("admin.tokens[%d]", i)
		if !tokenNameRE.MatchString(t.Name) || names[t.Name] {
			bad(path+".name", "%q: must be unique, 1..64 of [A-Za-z0-9._@-]", t.Name)
		}
		names[t.Name] = true
		switch t.Role {
		case RoleOperator, RoleAuditor, RoleSecurityOfficer, RoleMetricsReader:
		default:
			bad(path+".role", "%q: want operator, auditor, security_officer or metrics_reader", t.Role)
		}
		if !sha256RE.MatchString(t.SHA256) {
			bad(path+".sha256", "want the 64 lower-case hex digits of the token's SHA-256 (hufud admin-token prints it), never the token")
		} else if hashes[t.SHA256] {
			bad(path+".sha256", "the same token is configured twice")
		}
		hashes[t.SHA256] = true
	}
}

var accountNumberRE = regexp.MustCompile(`^[0-9]{8,32}$`)

func (c *Config) validateEnterprises(bad func(path, format string, args ...any)) {
	e := c.Enterprises
	if e.VerificationPriceFen < 0 {
		bad("enterprises.verification_price_fen", "must not be negative")
	}
	t := e.Transfer
	for path, v := range map[string]string{"enterprises.transfer.account_name": t.AccountName, "enterprises.transfer.bank": t.Bank} {
		if v = strings.TrimSpace(v); v == "" || len(v) > 128 {
			bad(path, "must be 1..128 bytes (shown to applicants)")
		}
	}
	if !accountNumberRE.MatchString(t.AccountNumber) {
		bad("enterprises.transfer.account_number", "want 8 to 32 digits")
	}
	if t.Validity < Duration(time.Hour) || t.Validity > Duration(30*24*time.Hour) {
		bad("enterprises.transfer.validity", "%v: want 1h..720h", t.Validity)
	}
	if t.MaxAmountFen < 9 || t.MaxAmountFen > 9999 {
		bad("enterprises.transfer.max_amount_fen", "%d: want 9..9999", t.MaxAmountFen)
	}
}

func (c *Config) validateCertificates(bad func(path, format string, args ...any)) {
	cc := c.Certificates
	if len(cc.ValidityYears) == 0 {
		bad("certificates.validity_years", "offer at least one validity")
	}
	for i, y := range cc.ValidityYears {
		if y < 1 || y > 3 {
			bad(fmt.Sprintf("certificates.validity_years[%d]", i), "%d: want 1..3 years", y)
		}
	}
	if cc.CRLNextUpdate < Duration(time.Minute) || cc.CRLNextUpdate > Duration(31*24*time.Hour) {
		bad("certificates.crl_next_update", "%v: want 1m..744h", cc.CRLNextUpdate)
	}
	if len(cc.CAs) == 0 {
		bad("certificates.cas", "configure at least one CA")
	}
	cc.validateProfile(c.Development, bad)
	ids := map[string]bool{}
	for i, ca := range cc.CAs {
		path := fmt.Sprintf("certificates.cas[%d]", i)
		if !platformIDRE.MatchString(ca.ID) || ids[ca.ID] {
			bad(path+".id", "%q: want 1..32 of [a-z0-9-], unique", ca.ID)
		}
		ids[ca.ID] = true
		if ca.Name == "" || len(ca.Name) > 128 {
			bad(path+".name", "must be 1..128 bytes")
		}
		if ca.Type != "embedded" {
			bad(path+".type", "%q: only \"embedded\" is supported", ca.Type)
		}
		if ca.UpgradePriceFen < 0 {
			bad(path+".upgrade_price_fen", "must not be negative")
		}
		priced := map[int]bool{}
		for j, p := range ca.Prices {
			pp := fmt.Sprintf("%s.prices[%d]", path, j)
			if p.CertKind != "personal" && p.CertKind != "enterprise" {
				bad(pp+".cert_kind", "%q: want personal or enterprise", p.CertKind)
			}
			if p.ValidityYears < 1 || p.ValidityYears > 3 {
				bad(pp+".validity_years", "%d: want 1..3", p.ValidityYears)
			}
			if p.AmountFen < 0 {
				bad(pp+".amount_fen", "must not be negative")
			}
			if p.CertKind == "personal" {
				priced[p.ValidityYears] = true
			}
		}
		for _, y := range cc.ValidityYears {
			if !priced[y] {
				bad(path+".prices", "no personal price for %d years", y)
			}
		}
	}
}

// Path resolves a possibly relative path against the data directory.
func (c *Config) Path(p string) string {
	if p == "" || filepath.IsAbs(p) {
		return p
	}
	return filepath.Join(c.DataDir, p)
}

// CheckFiles reports every configured file that cannot be read, with its key path. It is
// separate from Validate because a configuration is often checked on another machine than
// the one that will run it.
func (c *Config) CheckFiles() error {
	var ps Problems
	for _, f := range []struct{ path, file string }{
		{"tls.cert_file", c.TLS.CertFile}, {"tls.key_file", c.TLS.KeyFile},
		{"tls.client_ca_file", c.TLS.ClientCAFile}, {"hsm.module", c.HSM.Module}, {"hsm.pin_file", c.HSM.PINFile},
		{"admin.cert_file", c.Admin.CertFile}, {"admin.key_file", c.Admin.KeyFile},
		{"certificates.subject_identity_key_file", c.Certificates.SubjectIdentityKeyFile},
	} {
		if f.file == "" {
			continue
		}
		if fh, err := os.Open(f.file); err != nil {
			ps = append(ps, Problem{Path: f.path, Message: err.Error()})
		} else {
			fh.Close()
		}
	}
	c.Providers.Each(func(name string, o *webhook.Options) {
		for _, p := range o.CheckFiles("providers." + name) {
			ps = append(ps, Problem{Path: p.Path, Message: p.Message})
		}
	})
	ps = append(ps, c.checkAuditSinkFiles()...)
	if len(ps) == 0 {
		return nil
	}
	return ps
}
