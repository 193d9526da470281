package config

import (
	"bytes"
	"os"
	"path/filepath"
	"reflect"
	"slices"
	"strings"
	"testing"
)

// emptyNilSlices makes every nil slice in v empty: YAML writes both as [] and reads [] back
// as an empty slice.
func emptyNilSlices(v reflect.Value) {
	switch v.Kind() {
	case reflect.Struct:
		for i := range v.NumField() {
			emptyNilSlices(v.Field(i))
		}
	case reflect.Slice:
		if v.IsNil() {
			v.Set(reflect.MakeSlice(v.Type(), 0, 0))
		}
		for i := range v.Len() {
			emptyNilSlices(v.Index(i))
		}
	}
}

const tokenHash = "9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08"

// TestShowRoundTrips: what config show writes parses back strictly, into a zero Config
// (so every key is written), equal to the effective configuration with its secrets
// redacted, and never contains a secret.
func TestShowRoundTrips(t *testing.T) {
	file := filepath.Join(t.TempDir(), "hufu.yaml")
	doc := "development: false\nhsm:\n  module: /usr/lib/pkcs11/hsm.so\n  pin_file: /run/credentials/hufud.service/pin\n" +
		"tls:\n  cert_file: /etc/hufu/server.pem\n  key_file: /etc/hufu/server.key\n" +
		"scan:\n  address: hufu.example.cn:443\n" +
		"platforms:\n  - {id: p1, name: 平台一, region: \"110000\"}\n" +
		"admin:\n  tokens:\n    - {name: ops, role: operator, sha256: " + tokenHash + "}\n    - {name: audit, role: auditor, sha256: \"\"}\n"
	if err := os.WriteFile(file, []byte(doc), 0o600); err != nil {
		t.Fatal(err)
	}
	cases := []struct {
		name    string
		path    string
		flags   Overrides
		environ []string
	}{
		{"defaults", "", nil, nil},
		{"file", file, nil, nil},
		{"file, flags and environment", file, Overrides{"log.level": "debug", "grpc.max_deadline": "45s"}, []string{"HUFU_TLS_MIN_VERSION=1.3", "HUFU_DATA_DIR=/var/lib/hufu"}},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			effective, err := Load(c.path, c.flags, c.environ)
			if err != nil {
				t.Fatal(err)
			}
			var out bytes.Buffer
			if err := effective.WriteYAML(&out); err != nil {
				t.Fatal(err)
			}
			if strings.Contains(out.String(), tokenHash) {
				t.Fatalf("an admin token hash is shown:\n%s", out.String())
			}
			var back Config
			if err := back.Parse(bytes.NewReader(out.Bytes())); err != nil {
				t.Fatalf("the output does not parse back strictly: %v\n%s", err, out.String())
			}
			want := effective.Redact()
			emptyNilSlices(reflect.ValueOf(&want).Elem())
			emptyNilSlices(reflect.ValueOf(&back).Elem())
			if !reflect.DeepEqual(back, want) {
				t.Fatalf("parsed back:\n%+v\nwant:\n%+v\noutput:\n%s", back, want, out.String())
			}
		})
	}
}

func TestRedact(t *testing.T) {
	c := Default()
	c.Admin.Tokens = []AdminToken{{Name: "ops", Role: RoleOperator, SHA256: tokenHash}, {Name: "unset", Role: RoleAuditor}}
	c.HSM.PINFile = "/etc/hufu/pin"
	r := c.Redact()
	checks := []struct {
		name      string
		got, want string
	}{
		{"secret redacted", r.Admin.Tokens[0].SHA256, Redacted},
		{"empty secret stays empty", r.Admin.Tokens[1].SHA256, ""},
		{"not secret kept", r.Admin.Tokens[0].Name, "ops"},
		{"paths to secrets shown", r.HSM.PINFile, "/etc/hufu/pin"},
		{"original untouched", c.Admin.Tokens[0].SHA256, tokenHash},
	}
	for _, ch := range checks {
		if ch.got != ch.want {
			t.Errorf("%s: got %q, want %q", ch.name, ch.got, ch.want)
		}
	}
	// The secret fields, all marked with the struct tag `secret:"true"`: a new one is a
	// decision, made here on purpose.
	if got, want := SecretPaths(), []string{"admin.tokens[].sha256"}; !slices.Equal(got, want) {
		t.Errorf("secret fields %v, want %v", got, want)
	}
}

func TestUnknownEnv(t *testing.T) {
	cases := []struct {
		name    string
		environ []string
		want    []EnvWarning
	}{
		{"keys and others are known", []string{"HUFU_LISTEN_GRPC=1.2.3.4:5", "HUFU_PKCS11_MODULE=/x.so", "HUFU_PIN=1234", "HUFU_SOFTHSMTEST_DIR=/tmp", "HUFUD_TEST_MAIN=1", "PATH=/bin"}, nil},
		{"typo", []string{"HUFU_LISTEN_GRCP=1.2.3.4:5"}, []EnvWarning{{"HUFU_LISTEN_GRCP", "HUFU_LISTEN_GRPC"}}},
		{"missing letter", []string{"HUFU_HSM_PIN_FLE=/x"}, []EnvWarning{{"HUFU_HSM_PIN_FLE", "HUFU_HSM_PIN_FILE"}}},
		{"lower case", []string{"hufu_log_level=debug"}, []EnvWarning{{"hufu_log_level", "HUFU_LOG_LEVEL"}}},
		{"nothing near", []string{"HUFU_SECRET_SAUCE=s3cr3t"}, []EnvWarning{{"HUFU_SECRET_SAUCE", ""}}},
		{"a section, not a key", []string{"HUFU_ADMIN_TOKENS=x"}, []EnvWarning{{"HUFU_ADMIN_TOKENS", ""}}},
		{"sorted", []string{"HUFU_ZZZ=1", "HUFU_AAA=2"}, []EnvWarning{{"HUFU_AAA", ""}, {"HUFU_ZZZ", ""}}},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			got := UnknownEnv(c.environ)
			if !slices.Equal(got, c.want) {
				t.Fatalf("got %v, want %v", got, c.want)
			}
			for _, w := range got {
				if s := w.String(); !strings.Contains(s, w.Name) || strings.Contains(s, "=") {
					t.Errorf("warning %q", s)
				}
			}
		})
	}
	if s := (EnvWarning{"HUFU_SECRET_SAUCE", ""}).String(); strings.Contains(s, "s3cr3t") || strings.Contains(s, "did you mean") {
		t.Errorf("warning %q", s)
	}
}
