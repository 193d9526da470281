package config

import (
	"errors"
	"slices"
	"testing"
)

// The profile keys are validated with their paths: a public URL relying parties can use, OCSP
// only under it, a known subject identity policy with its key file outside development.
func TestCertificateProfileValidation(t *testing.T) {
	if c := Development(); c.Certificates.PublicURL != DevelopmentPublicURL || c.Certificates.SubjectIdentity != SubjectIdentityKeyedHash {
		t.Fatalf("development profile: %q %q", c.Certificates.PublicURL, c.Certificates.SubjectIdentity)
	}
	for _, tc := range []struct {
		name string
		set  func(cc *Certificates)
		want string // the problem's path, "" for none
	}{
		{"https with a path", func(cc *Certificates) { cc.PublicURL = "https://pki.example.cn/hufu/" }, ""},
		{"http with a port", func(cc *Certificates) { cc.PublicURL = "http://10.0.0.1:7081"; cc.OCSP = true }, ""},
		{"full without a key", func(cc *Certificates) { cc.SubjectIdentity, cc.SubjectIdentityKeyFile = "full", "" }, ""},
		{"ftp", func(cc *Certificates) { cc.PublicURL = "ftp://pki.example.cn" }, "certificates.public_url"},
		{"no host", func(cc *Certificates) { cc.PublicURL = "https:///ca" }, "certificates.public_url"},
		{"relative", func(cc *Certificates) { cc.PublicURL = "pki.example.cn" }, "certificates.public_url"},
		{"query", func(cc *Certificates) { cc.PublicURL = "https://pki.example.cn/?a=1" }, "certificates.public_url"},
		{"empty query", func(cc *Certificates) { cc.PublicURL = "https://pki.example.cn/?" }, "certificates.public_url"},
		{"fragment", func(cc *Certificates) { cc.PublicURL = "https://pki.example.cn/#x" }, "certificates.public_url"},
		{"user", func(cc *Certificates) { cc.PublicURL = "https://u:p@pki.example.cn" }, "certificates.public_url"},
		{"missing", func(cc *Certificates) { cc.PublicURL = "" }, "certificates.public_url"},
		{"ocsp without a URL", func(cc *Certificates) { cc.PublicURL, cc.OCSP = "", true }, "certificates.ocsp"},
		{"unknown policy", func(cc *Certificates) { cc.SubjectIdentity = "masked" }, "certificates.subject_identity"},
		{"full with a key", func(cc *Certificates) { cc.SubjectIdentity = "full" }, "certificates.subject_identity_key_file"},
		{"keyed hash without a key", func(cc *Certificates) { cc.SubjectIdentityKeyFile = "" }, "certificates.subject_identity_key_file"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c := Default()
			c.Certificates.PublicURL, c.Certificates.SubjectIdentityKeyFile = "https://pki.example.cn", "/etc/hufu/subject-identity.key"
			tc.set(&c.Certificates)
			var got []string
			c.Certificates.validateProfile(false, func(path, _ string, _ ...any) { got = append(got, path) })
			if tc.want == "" && len(got) != 0 || tc.want != "" && !slices.Contains(got, tc.want) {
				t.Fatalf("problems at %v, want %q", got, tc.want)
			}
		})
	}
	// Development needs neither the URL (filled in) nor the key file (the development key).
	c := Development()
	var ps Problems
	if err := c.Validate(); errors.As(err, &ps) {
		t.Fatalf("development: %v", err)
	}
}
