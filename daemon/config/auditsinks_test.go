package config

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

func TestValidateAuditSinks(t *testing.T) {
	syslog := AuditSink{Name: "siem", Kind: AuditSinkSyslog, Address: "siem.example:6514", CAFile: "/etc/hufu/siem-ca.pem"}
	file := AuditSink{Name: "archive", Kind: AuditSinkFile, Path: "/var/log/hufu/audit.jsonl"}
	for _, tc := range []struct {
		name   string
		mutate func(*AuditSink)
		base   AuditSink
		path   string // "" for valid
	}{
		{"syslog", func(*AuditSink) {}, syslog, ""},
		{"syslog with a client certificate", func(s *AuditSink) { s.CertFile, s.KeyFile = "/c.pem", "/k.pem" }, syslog, ""},
		{"file", func(*AuditSink) {}, file, ""},
		{"bad name", func(s *AuditSink) { s.Name = "a b" }, syslog, "audit.sinks[0].name"},
		{"empty name", func(s *AuditSink) { s.Name = "" }, syslog, "audit.sinks[0].name"},
		{"unknown kind", func(s *AuditSink) { s.Kind = "kafka" }, syslog, "audit.sinks[0].kind"},
		{"address without port", func(s *AuditSink) { s.Address = "siem.example" }, syslog, "audit.sinks[0].address"},
		{"syslog without a CA", func(s *AuditSink) { s.CAFile = "" }, syslog, "audit.sinks[0].ca_file"},
		{"certificate without key", func(s *AuditSink) { s.CertFile = "/c.pem" }, syslog, "audit.sinks[0]"},
		{"hostname with a space", func(s *AuditSink) { s.Hostname = "hufu 1" }, syslog, "audit.sinks[0].hostname"},
		{"path on a syslog sink", func(s *AuditSink) { s.Path = "/tmp/x" }, syslog, "audit.sinks[0].path"},
		{"file without a path", func(s *AuditSink) { s.Path = "" }, file, "audit.sinks[0].path"},
		{"address on a file sink", func(s *AuditSink) { s.Address = "a:1" }, file, "audit.sinks[0].address"},
		{"buffer too large", func(s *AuditSink) { s.MaxBufferedRecords = MaxAuditSinkBuffer + 1 }, file, "audit.sinks[0].max_buffered_records"},
		{"negative buffer", func(s *AuditSink) { s.MaxBufferedRecords = -1 }, file, "audit.sinks[0].max_buffered_records"},
		{"negative replay", func(s *AuditSink) { s.ReplayOnReconnect = -1 }, syslog, "audit.sinks[0].replay_on_reconnect"},
		{"negative poll", func(s *AuditSink) { s.PollInterval = Duration(-time.Second) }, file, "audit.sinks[0].poll_interval"},
		{"backoff bounds crossed", func(s *AuditSink) { s.MinBackoff = Duration(2 * time.Minute) }, syslog, "audit.sinks[0].min_backoff"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c := Development()
			c.DataDir = t.TempDir()
			s := tc.base
			tc.mutate(&s)
			c.Audit.Sinks = []AuditSink{s}
			err := c.Validate()
			if tc.path == "" {
				if err != nil {
					t.Fatal(err)
				}
				return
			}
			if err == nil || !strings.Contains(err.Error(), tc.path+": ") {
				t.Fatalf("want a problem at %s, got %v", tc.path, err)
			}
		})
	}
	t.Run("names are unique", func(t *testing.T) {
		c := Development()
		c.DataDir = t.TempDir()
		twin := file
		twin.Path = "/var/log/hufu/other.jsonl"
		c.Audit.Sinks = []AuditSink{file, twin}
		if err := c.Validate(); err == nil || !strings.Contains(err.Error(), "audit.sinks[1].name: ") {
			t.Fatalf("want a problem at audit.sinks[1].name, got %v", err)
		}
	})
}

func TestAuditSinkDefaults(t *testing.T) {
	s := AuditSink{Name: "a", Kind: AuditSinkFile, Path: "/x", PollInterval: Duration(time.Minute)}.WithDefaults()
	if s.MaxBufferedRecords != 1000 || s.WriteTimeout.Std() != 10*time.Second || s.MinBackoff.Std() != time.Second ||
		s.MaxBackoff.Std() != time.Minute || s.ReplayOnReconnect != 1000 {
		t.Fatalf("defaults not applied: %+v", s)
	}
	if s.PollInterval.Std() != time.Minute {
		t.Fatalf("poll_interval set in the file was overwritten: %s", s.PollInterval.Std())
	}
}

func TestAuditSinkYAMLAndFiles(t *testing.T) {
	dir := t.TempDir()
	ca := filepath.Join(dir, "ca.pem")
	if err := os.WriteFile(ca, []byte("x"), 0o600); err != nil {
		t.Fatal(err)
	}
	c := Development()
	c.DataDir = dir
	yml := "audit:\n  sinks:\n    - name: siem\n      kind: syslog\n      address: 127.0.0.1:6514\n      ca_file: " + ca +
		"\n      cert_file: " + filepath.Join(dir, "missing.pem") + "\n      key_file: " + ca + "\n      max_buffered_records: 50\n"
	if err := c.Parse(strings.NewReader(yml)); err != nil {
		t.Fatal(err)
	}
	if len(c.Audit.Sinks) != 1 || c.Audit.Sinks[0].MaxBufferedRecords != 50 || c.Audit.Sinks[0].CAFile != ca {
		t.Fatalf("decoded %+v", c.Audit.Sinks)
	}
	if err := c.Validate(); err != nil {
		t.Fatal(err)
	}
	err := c.CheckFiles()
	if err == nil || !strings.Contains(err.Error(), "audit.sinks[0].cert_file: ") || strings.Contains(err.Error(), "ca_file") {
		t.Fatalf("CheckFiles = %v, want only the missing cert_file", err)
	}
}

// TestLoadFillsAuditSinkDefaults: `hufud config show` prints what a sink really uses.
func TestLoadFillsAuditSinkDefaults(t *testing.T) {
	path := filepath.Join(t.TempDir(), "hufu.yaml")
	if err := os.WriteFile(path, []byte("audit:\n  sinks:\n    - {name: archive, kind: file, path: /tmp/a.jsonl}\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	c, err := Load(path, nil, nil)
	if err != nil {
		t.Fatal(err)
	}
	if got := c.Audit.Sinks[0]; got.MaxBufferedRecords != 1000 || got.PollInterval.Std() != time.Second {
		t.Fatalf("Load left defaults unset: %+v", got)
	}
}
