package hsm

import (
	"errors"
	"fmt"
	"os"
	"regexp"
	"strings"
	"time"
)

// Defaults applied by Config.withDefaults.
const (
	DefaultKEKPrefix     = "hufu-kek"
	DefaultPINKeyLabel   = "hufu-pin-hmac"
	DefaultAuditKeyLabel = "hufu-audit"
	// DefaultAnchorLabel labels the audit anchor, a data object (anchor.go).
	DefaultAnchorLabel = "hufu-audit-anchor"
	// DefaultMaxSessions is crypto11's session cap: one session stays logged in to hold
	// the login, the others form the pool. Eight keeps a small HSM (and SoftHSM2 on a few
	// cores) busy without queueing inside the token; see the package benchmarks.
	DefaultMaxSessions = 8
	// DefaultPoolWaitTimeout bounds how long an operation waits for a free session before
	// failing with ErrBusy, so a stuck HSM shows up as errors rather than piling requests.
	DefaultPoolWaitTimeout = 2 * time.Second
	// DefaultReopenBackoff is the wait after the first, immediate reopen of the keyring after
	// an outage fails; each failed attempt doubles it, up to DefaultReopenMaxBackoff.
	DefaultReopenBackoff    = 250 * time.Millisecond
	DefaultReopenMaxBackoff = 30 * time.Second
)

// Config says which token to open and how. Exactly one of TokenLabel and TokenSerial
// selects the token; slot ids are deliberately not supported because tokens move between
// slots (SoftHSM2 renumbers them on every start).
type Config struct {
	ModulePath  string // path to the PKCS#11 module (.so); symlinks are resolved
	TokenLabel  string
	TokenSerial string
	// PINFile holds the user PIN. A trailing newline is ignored. The PIN is never logged
	// or put in an error.
	PINFile string

	KEKPrefix     string // KEK labels are <KEKPrefix>-v<N>; default DefaultKEKPrefix
	PINKeyLabel   string // default DefaultPINKeyLabel
	AuditKeyLabel string // default DefaultAuditKeyLabel
	AnchorLabel   string // the audit anchor's data object; default DefaultAnchorLabel

	MaxSessions     int           // default DefaultMaxSessions; 2..64
	PoolWaitTimeout time.Duration // default DefaultPoolWaitTimeout

	// ReopenBackoff is the wait after the first reopen (which is immediate) fails, doubled
	// after each failed attempt up to ReopenMaxBackoff (recovery.go). Defaults DefaultReopenBackoff
	// and DefaultReopenMaxBackoff.
	ReopenBackoff    time.Duration
	ReopenMaxBackoff time.Duration

	Metrics Metrics // default NopMetrics
}

// labelRE keeps labels printable and free of anything a shell or a log would mangle.
var labelRE = regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9._-]*$`)

func (c Config) withDefaults() Config {
	if c.KEKPrefix == "" {
		c.KEKPrefix = DefaultKEKPrefix
	}
	if c.PINKeyLabel == "" {
		c.PINKeyLabel = DefaultPINKeyLabel
	}
	if c.AuditKeyLabel == "" {
		c.AuditKeyLabel = DefaultAuditKeyLabel
	}
	if c.AnchorLabel == "" {
		c.AnchorLabel = DefaultAnchorLabel
	}
	if c.MaxSessions == 0 {
		c.MaxSessions = DefaultMaxSessions
	}
	if c.PoolWaitTimeout == 0 {
		c.PoolWaitTimeout = DefaultPoolWaitTimeout
	}
	if c.ReopenBackoff == 0 {
		c.ReopenBackoff = DefaultReopenBackoff
	}
	if c.ReopenMaxBackoff == 0 {
		c.ReopenMaxBackoff = max(DefaultReopenMaxBackoff, c.ReopenBackoff)
	}
	if c.Metrics == nil {
		c.Metrics = NopMetrics{}
	}
	return c
}

// Validate reports every problem with c (after defaults), joined, each wrapping
// ErrInvalidConfig.
func (c Config) Validate() error {
	c = c.withDefaults()
	var errs []error
	bad := func(format string, args ...any) {
		errs = append(errs, fmt.Errorf("hsm: config: "+format+": %w", append(args, ErrInvalidConfig)...))
	}
	if c.ModulePath == "" {
		bad("module path is empty")
	}
	if (c.TokenLabel == "") == (c.TokenSerial == "") {
		bad("set exactly one of token label and token serial")
	}
	if c.PINFile == "" {
		bad("PIN file is empty")
	}
	// The KEK label is <prefix>-v<N> and must fit the blob's one-byte label length.
	if !labelRE.MatchString(c.KEKPrefix) || len(c.KEKPrefix) > 64 {
		bad("KEK prefix %q: want 1..64 of [A-Za-z0-9._-], starting with a letter or digit", c.KEKPrefix)
	}
	for _, l := range []string{c.PINKeyLabel, c.AuditKeyLabel, c.AnchorLabel} {
		if !labelRE.MatchString(l) || len(l) > 64 {
			bad("key label %q: want 1..64 of [A-Za-z0-9._-], starting with a letter or digit", l)
		}
		if _, ok := parseKEKLabel(c.KEKPrefix, l); ok {
			bad("key label %q looks like a KEK label", l)
		}
	}
	if c.PINKeyLabel == c.AuditKeyLabel {
		bad("PIN key and audit key share the label %q", c.PINKeyLabel)
	}
	if c.AnchorLabel == c.PINKeyLabel || c.AnchorLabel == c.AuditKeyLabel {
		bad("the audit anchor shares the label %q with a key", c.AnchorLabel)
	}
	if c.MaxSessions < 2 || c.MaxSessions > 64 {
		bad("max sessions %d: want 2..64", c.MaxSessions)
	}
	if c.PoolWaitTimeout < 0 {
		bad("pool wait timeout %v is negative", c.PoolWaitTimeout)
	}
	if c.ReopenBackoff < 0 || c.ReopenMaxBackoff < c.ReopenBackoff {
		bad("reopen backoff %v..%v: want 0 < first <= max", c.ReopenBackoff, c.ReopenMaxBackoff)
	}
	return errors.Join(errs...)
}

// readPINFile returns the PIN without its trailing line ending. Errors name the file, never
// its content.
func readPINFile(path string) (string, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return "", fmt.Errorf("hsm: read PIN file: %w", err)
	}
	pin := strings.TrimRight(string(b), "\r\n")
	if pin == "" {
		return "", fmt.Errorf("hsm: PIN file %s is empty: %w", path, ErrInvalidConfig)
	}
	return pin, nil
}

// kekLabel is the label of KEK version v.
func kekLabel(prefix string, v int) string { return fmt.Sprintf("%s-v%d", prefix, v) }

// parseKEKLabel returns the version of a KEK label, or false if label is not
// <prefix>-v<N> with N a positive decimal without leading zeros.
func parseKEKLabel(prefix, label string) (int, bool) {
	rest, ok := strings.CutPrefix(label, prefix+"-v")
	if !ok || rest == "" || rest[0] == '0' || len(rest) > 9 {
		return 0, false
	}
	v := 0
	for _, r := range rest {
		if r < '0' || r > '9' {
			return 0, false
		}
		v = v*10 + int(r-'0')
	}
	return v, true
}

// KEKInfo describes one KEK version on the token.
type KEKInfo struct {
	Label   string
	Version int
	Current bool
}
