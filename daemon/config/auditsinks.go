package config

import (
	"fmt"
	"net"
	"os"
	"regexp"
	"time"
)

// AuditSink is one destination the audit log is shipped to as it grows (package
// daemon/auditsink, docs/operations.md "Streaming the audit log to a SIEM"). The store stays
// the source of truth: a sink that is down falls behind and catches up, it never loses a
// record and never holds more than MaxBufferedRecords of them in memory.
//
// A zero number or duration means the default (WithDefaults).
type AuditSink struct {
	// Name identifies the sink in metrics and its delivery cursor in the store: renaming a
	// sink ships the whole log again. 1..64 of [A-Za-z0-9._-].
	Name string `yaml:"name"`
	// Kind is "syslog" (RFC 5424 over TLS, RFC 5425) or "file" (JSON lines).
	Kind string `yaml:"kind"`

	// Address is the syslog receiver's host:port (TLS syslog is usually port 6514).
	Address string `yaml:"address"`
	// CAFile holds the CA certificates that sign the receiver's certificate. Required for
	// syslog: audit records never cross a network in clear.
	CAFile string `yaml:"ca_file"`
	// CertFile and KeyFile are a client certificate for receivers that require one.
	CertFile string `yaml:"cert_file"`
	KeyFile  string `yaml:"key_file"`
	// ServerName is the name the receiver's certificate must carry; default the host of
	// Address.
	ServerName string `yaml:"server_name"`
	// Hostname is the HOSTNAME field of each message; default the machine's host name.
	Hostname string `yaml:"hostname"`

	// Path is the file a file sink appends to. It is reopened when it is moved or removed
	// (log rotation).
	Path string `yaml:"path"`

	// MaxBufferedRecords bounds the records read from the store and not yet delivered, which
	// is also the largest batch (default 1000, at most 10000).
	MaxBufferedRecords int `yaml:"max_buffered_records"`
	// PollInterval is how often an idle sink looks for new records (default 1s).
	PollInterval Duration `yaml:"poll_interval"`
	// WriteTimeout bounds connecting and delivering one batch (default 10s).
	WriteTimeout Duration `yaml:"write_timeout"`
	// MinBackoff and MaxBackoff bound the wait before retrying a failed sink; it doubles
	// from MinBackoff on each consecutive failure (defaults 1s and 1m).
	MinBackoff Duration `yaml:"min_backoff"`
	MaxBackoff Duration `yaml:"max_backoff"`
	// ReplayOnReconnect is how many already-written records a syslog sink sends again after
	// a broken connection, because TCP may have lost what was written last and syslog has no
	// acknowledgements (default 1000; receivers drop them by sequence number).
	ReplayOnReconnect int `yaml:"replay_on_reconnect"`
}

// Audit sink kinds.
const (
	AuditSinkSyslog = "syslog"
	AuditSinkFile   = "file"
)

// MaxAuditSinkBuffer is the most records a sink may hold in memory.
const MaxAuditSinkBuffer = 10000

var auditSinkNameRE = regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$`)

// syslogHostnameRE is RFC 5424's HOSTNAME: 1..255 printable US-ASCII characters.
var syslogHostnameRE = regexp.MustCompile(`^[!-~]{1,255}$`)

// WithDefaults returns s with every zero number and duration set to its default.
func (s AuditSink) WithDefaults() AuditSink {
	if s.MaxBufferedRecords == 0 {
		s.MaxBufferedRecords = 1000
	}
	if s.PollInterval == 0 {
		s.PollInterval = Duration(time.Second)
	}
	if s.WriteTimeout == 0 {
		s.WriteTimeout = Duration(10 * time.Second)
	}
	if s.MinBackoff == 0 {
		s.MinBackoff = Duration(time.Second)
	}
	if s.MaxBackoff == 0 {
		s.MaxBackoff = Duration(time.Minute)
	}
	if s.ReplayOnReconnect == 0 {
		s.ReplayOnReconnect = 1000
	}
	return s
}

func (c *Config) validateAuditSinks(bad func(path, format string, args ...any)) {
	names := map[string]bool{}
	for i, raw := range c.Audit.Sinks {
		path := fmt.Sprintf("audit.sinks[%d]", i)
		if !auditSinkNameRE.MatchString(raw.Name) || names[raw.Name] {
			bad(path+".name", "%q: must be unique, 1 to 64 of [A-Za-z0-9._-]", raw.Name)
		}
		names[raw.Name] = true
		switch raw.Kind {
		case AuditSinkSyslog:
			if _, port, err := net.SplitHostPort(raw.Address); err != nil || port == "" {
				bad(path+".address", "%q is not host:port", raw.Address)
			}
			if raw.CAFile == "" {
				bad(path+".ca_file", "must be set: the CA of the receiver's certificate (audit records are only sent over TLS)")
			}
			if (raw.CertFile == "") != (raw.KeyFile == "") {
				bad(path, "cert_file and key_file go together")
			}
			if raw.Hostname != "" && !syslogHostnameRE.MatchString(raw.Hostname) {
				bad(path+".hostname", "%q: want 1 to 255 printable ASCII characters without spaces", raw.Hostname)
			}
			if raw.Path != "" {
				bad(path+".path", "is for file sinks, this one is syslog")
			}
		case AuditSinkFile:
			if raw.Path == "" {
				bad(path+".path", "must be set: the file the records are appended to")
			}
			for key, v := range map[string]string{"address": raw.Address, "ca_file": raw.CAFile, "cert_file": raw.CertFile,
				"key_file": raw.KeyFile, "server_name": raw.ServerName, "hostname": raw.Hostname} {
				if v != "" {
					bad(path+"."+key, "is for syslog sinks, this one is file")
				}
			}
		default:
			bad(path+".kind", "%q: want syslog or file", raw.Kind)
		}
		if raw.MaxBufferedRecords < 0 || raw.MaxBufferedRecords > MaxAuditSinkBuffer {
			bad(path+".max_buffered_records", "%d: want 1..%d (0 for the default, 1000)", raw.MaxBufferedRecords, MaxAuditSinkBuffer)
		}
		if raw.ReplayOnReconnect < 0 {
			bad(path+".replay_on_reconnect", "%d: must not be negative (0 for the default, 1000)", raw.ReplayOnReconnect)
		}
		for key, d := range map[string]Duration{"poll_interval": raw.PollInterval, "write_timeout": raw.WriteTimeout,
			"min_backoff": raw.MinBackoff, "max_backoff": raw.MaxBackoff} {
			if d < 0 {
				bad(path+"."+key, "must not be negative (0 for the default)")
			}
		}
		if s := raw.WithDefaults(); s.MinBackoff > s.MaxBackoff {
			bad(path+".min_backoff", "%s is longer than max_backoff %s", s.MinBackoff.Std(), s.MaxBackoff.Std())
		}
	}
}

// checkAuditSinkFiles reports the TLS files of syslog sinks that cannot be read (the file
// sink's path is created when missing).
func (c *Config) checkAuditSinkFiles() Problems {
	var ps Problems
	for i, s := range c.Audit.Sinks {
		for key, file := range map[string]string{"ca_file": s.CAFile, "cert_file": s.CertFile, "key_file": s.KeyFile} {
			if file == "" {
				continue
			}
			if fh, err := os.Open(file); err != nil {
				ps = append(ps, Problem{Path: fmt.Sprintf("audit.sinks[%d].%s", i, key), Message: err.Error()})
			} else {
				fh.Close()
			}
		}
	}
	return ps
}
