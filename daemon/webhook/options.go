package webhook

import (
	"crypto/tls"
	"crypto/x509"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/url"
	"os"
	"strings"
	"time"

	"go.yaml.in/yaml/v3"
)

// Options configure one provider: one gateway URL and one key. A deployment that sends SMS,
// checks identities, checks logins and takes payments through different services configures
// one Options for each (suggested YAML: providers.sms, providers.identity, providers.login,
// providers.payment).
//
// As with Pebble's options, a zero field means "the default": EnsureDefaults fills them and
// New calls it, so a configuration names only what it changes.
type Options struct {
	// URL is the gateway's base URL; an operation is POSTed to URL + "/" + operation. It must
	// be https, except to a literal loopback address (127.0.0.0/8, ::1): a gateway agent on
	// the appliance itself, where the personal data never crosses a network. No user
	// information (secrets are never configuration values), query or fragment.
	URL string `yaml:"url"`
	// KeyFile holds the HMAC-SM3 key shared with the gateway, as hex (32 to 64 bytes, so 64
	// to 128 hex digits; `openssl rand -hex 32`). The key itself is never logged.
	KeyFile string `yaml:"key_file"`
	// CAFile, if set, holds the PEM certificates that alone are trusted to have issued the
	// gateway's TLS certificate (a trading centre's private CA). Empty: the system roots.
	CAFile string `yaml:"ca_file"`
	// Timeout bounds one HTTP attempt (default 5s). The caller's deadline bounds the whole
	// call, retries included.
	Timeout Duration `yaml:"timeout"`
	// MaxAttempts bounds the attempts of one call, the first included (default 3, at most 10).
	MaxAttempts int `yaml:"max_attempts"`
	// RetryBackoff is the wait before the second attempt (default 200ms); each further wait
	// doubles, up to MaxBackoff (default 2s), and is jittered down by up to half.
	RetryBackoff Duration `yaml:"retry_backoff"`
	MaxBackoff   Duration `yaml:"max_backoff"`
	// MaxClockSkew is how far a response's timestamp may be from this appliance's clock
	// (default 5m); the gateway applies the same window to requests.
	MaxClockSkew Duration `yaml:"max_clock_skew"`
	Circuit      Circuit  `yaml:"circuit"`

	// Clock is where the provider reads the time for timestamps and the circuit's cool-down;
	// nil means the wall clock. Not configuration: tests inject a fake.
	Clock Clock `yaml:"-"`
}

// Circuit configures the circuit breaker of a provider.
type Circuit struct {
	// FailureThreshold consecutive failed attempts open the circuit (default 5).
	FailureThreshold int `yaml:"failure_threshold"`
	// Cooldown is how long an open circuit fails calls fast before it lets one probe through
	// (default 30s).
	Cooldown Duration `yaml:"cooldown"`
}

// Clock is the time source of a provider.
type Clock interface{ Now() time.Time }

type wallClock struct{}

func (wallClock) Now() time.Time { return time.Now() }

// Defaults of Options; documented on the fields.
const (
	DefaultTimeout          = 5 * time.Second
	DefaultMaxAttempts      = 3
	DefaultRetryBackoff     = 200 * time.Millisecond
	DefaultMaxBackoff       = 2 * time.Second
	DefaultMaxClockSkew     = 5 * time.Minute
	DefaultFailureThreshold = 5
	DefaultCooldown         = 30 * time.Second
)

// EnsureDefaults sets every zero field that has a default.
func (o *Options) EnsureDefaults() {
	setDuration := func(d *Duration, def time.Duration) {
		if *d == 0 {
			*d = Duration(def)
		}
	}
	setDuration(&o.Timeout, DefaultTimeout)
	setDuration(&o.RetryBackoff, DefaultRetryBackoff)
	setDuration(&o.MaxBackoff, DefaultMaxBackoff)
	setDuration(&o.MaxClockSkew, DefaultMaxClockSkew)
	setDuration(&o.Circuit.Cooldown, DefaultCooldown)
	if o.MaxAttempts == 0 {
		o.MaxAttempts = DefaultMaxAttempts
	}
	if o.Circuit.FailureThreshold == 0 {
		o.Circuit.FailureThreshold = DefaultFailureThreshold
	}
	if o.Clock == nil {
		o.Clock = wallClock{}
	}
}

// Problem is one thing wrong with Options, named by its YAML key path.
type Problem struct {
	Path    string // e.g. "providers.sms.url"
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
	return "invalid provider configuration:\n  " + strings.Join(lines, "\n  ")
}

// Validate checks every field of defaulted Options (call EnsureDefaults first) and returns
// all problems, each under prefix, the key path of these Options (e.g. "providers.sms").
// It reads no files: CheckFiles does, for a configuration checked where it will run.
func (o *Options) Validate(prefix string) Problems {
	var ps Problems
	bad := func(key, format string, args ...any) {
		ps = append(ps, Problem{Path: prefix + "." + key, Message: fmt.Sprintf(format, args...)})
	}
	if _, err := parseBaseURL(o.URL); err != nil {
		bad("url", "%v", err)
	}
	if o.KeyFile == "" {
		bad("key_file", "must be set (a file holding the shared HMAC-SM3 key as hex)")
	}
	ranges := []struct {
		key      string
		d        Duration
		min, max time.Duration
	}{
		{"timeout", o.Timeout, 50 * time.Millisecond, time.Minute},
		{"retry_backoff", o.RetryBackoff, time.Millisecond, 10 * time.Second},
		{"max_backoff", o.MaxBackoff, time.Millisecond, 30 * time.Second},
		{"max_clock_skew", o.MaxClockSkew, 10 * time.Second, 15 * time.Minute},
		{"circuit.cooldown", o.Circuit.Cooldown, time.Second, time.Hour},
	}
	for _, r := range ranges {
		if r.d.Std() < r.min || r.d.Std() > r.max {
			bad(r.key, "%v: want %v..%v", r.d, r.min, r.max)
		}
	}
	if o.MaxBackoff < o.RetryBackoff {
		bad("max_backoff", "%v is shorter than retry_backoff %v", o.MaxBackoff, o.RetryBackoff)
	}
	if o.MaxAttempts < 1 || o.MaxAttempts > 10 {
		bad("max_attempts", "%d: want 1..10", o.MaxAttempts)
	}
	if o.Circuit.FailureThreshold < 1 || o.Circuit.FailureThreshold > 1000 {
		bad("circuit.failure_threshold", "%d: want 1..1000", o.Circuit.FailureThreshold)
	}
	if len(ps) == 0 {
		return nil
	}
	return ps
}

// CheckFiles reads and checks key_file and ca_file, reporting problems under prefix. It
// never reports the key's content.
func (o *Options) CheckFiles(prefix string) Problems {
	var ps Problems
	if _, err := readKey(o.KeyFile); err != nil {
		ps = append(ps, Problem{Path: prefix + ".key_file", Message: err.Error()})
	}
	if o.CAFile != "" {
		if _, err := readCAs(o.CAFile); err != nil {
			ps = append(ps, Problem{Path: prefix + ".ca_file", Message: err.Error()})
		}
	}
	return ps
}

// Key lengths: below 32 bytes (256 bits) a key is weaker than SM3's output; above 64 bytes
// (SM3's block) HMAC hashes it down anyway, so a longer key is a mistake, not strength.
const (
	minKeyBytes = 32
	maxKeyBytes = 64
)

// secretKey is the HMAC key. It prints redacted, so a key that reaches a log by mistake
// does not leak.
type secretKey []byte

func (secretKey) LogValue() slog.Value       { return slog.StringValue("[redacted]") }
func (secretKey) String() string             { return "[redacted]" }
func (secretKey) GoString() string           { return "[redacted]" }
func (secretKey) Format(f fmt.State, _ rune) { io.WriteString(f, "[redacted]") }

// readKey reads a hex key file. Errors say what is wrong with the file, never its content.
func readKey(path string) (secretKey, error) {
	if path == "" {
		return nil, errors.New("no key file configured")
	}
	raw, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	text := strings.TrimSpace(string(raw))
	if len(text) > 2*maxKeyBytes+2 {
		return nil, fmt.Errorf("%s: %d characters: want %d to %d hex digits", path, len(text), 2*minKeyBytes, 2*maxKeyBytes)
	}
	key, err := hex.DecodeString(text)
	if err != nil {
		// hex errors quote the offending byte: say where, not what.
		return nil, fmt.Errorf("%s: not hex (want %d to %d hex digits, e.g. from `openssl rand -hex 32`)", path, 2*minKeyBytes, 2*maxKeyBytes)
	}
	if len(key) < minKeyBytes || len(key) > maxKeyBytes {
		return nil, fmt.Errorf("%s: a %d-byte key: want %d to %d bytes", path, len(key), minKeyBytes, maxKeyBytes)
	}
	return secretKey(key), nil
}

// keyFileTooOpen reports whether a key file can be read by users other than its owner.
func keyFileTooOpen(path string) bool {
	fi, err := os.Stat(path)
	return err == nil && fi.Mode().Perm()&0o077 != 0
}

func readCAs(path string) (*x509.CertPool, error) {
	pem, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	pool := x509.NewCertPool()
	if !pool.AppendCertsFromPEM(pem) {
		return nil, fmt.Errorf("%s: no PEM certificate in the file", path)
	}
	return pool, nil
}

// parseBaseURL checks a gateway base URL (see Options.URL) and returns it without a trailing
// slash.
func parseBaseURL(raw string) (*url.URL, error) {
	if raw == "" {
		return nil, errors.New("must be set (the gateway's base URL, https://…)")
	}
	u, err := url.Parse(raw)
	if err != nil {
		return nil, errors.New("not a URL")
	}
	switch {
	case u.Scheme != "https" && u.Scheme != "http":
		return nil, fmt.Errorf("scheme %q: want https", u.Scheme)
	case u.Host == "":
		return nil, errors.New("no host")
	case u.User != nil:
		return nil, errors.New("must not carry user information: the request signature authenticates hufu")
	case u.RawQuery != "" || u.ForceQuery || u.Fragment != "":
		return nil, errors.New("must not have a query or fragment: operations are appended to its path")
	case u.Scheme == "http" && !isLoopback(u.Hostname()):
		return nil, errors.New("http is allowed only to a literal loopback address (127.0.0.1, ::1); use https: requests carry personal data")
	}
	u.Path = strings.TrimSuffix(u.Path, "/")
	u.RawPath = ""
	return u, nil
}

// isLoopback is true for literal loopback IPs only: a name such as localhost could be made to
// resolve elsewhere.
func isLoopback(host string) bool {
	ip := net.ParseIP(host)
	return ip != nil && ip.IsLoopback()
}

func tlsConfig(cas *x509.CertPool) *tls.Config {
	return &tls.Config{MinVersion: tls.VersionTLS12, RootCAs: cas}
}

// Duration is a time.Duration written as "30s" or "5m" in YAML, as in the daemon's
// configuration.
type Duration time.Duration

func (d *Duration) UnmarshalYAML(n *yaml.Node) error {
	v, err := time.ParseDuration(n.Value)
	if err != nil {
		// A TypeError, like config.Duration's: the decoder goes on to the other problems and
		// the configuration names this one's key path.
		return &yaml.TypeError{Errors: []string{fmt.Sprintf("line %d: %q is not a duration like 30s or 5m", n.Line, n.Value)}}
	}
	*d = Duration(v)
	return nil
}

func (d Duration) MarshalYAML() (any, error) { return time.Duration(d).String(), nil }
func (d Duration) String() string            { return time.Duration(d).String() }

// Std returns d as a time.Duration.
func (d Duration) Std() time.Duration { return time.Duration(d) }
