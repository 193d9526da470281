package config

import (
	"net/url"
	"strings"
)

// The configured parts of the certificate profile (docs/certificates.md): where relying
// parties fetch CRLs, CA certificates and OCSP answers, and what a person's certificate
// carries to be matched to the person.

// Subject identity policies (certificates.subject_identity), the values of ca.IdentityPolicy.
const (
	SubjectIdentityFull      = "full"
	SubjectIdentityKeyedHash = "keyed_hash"
)

// DevelopmentPublicURL is the development PKI listener (listen.pki in development), which
// development certificates point to.
const DevelopmentPublicURL = "http://127.0.0.1:7081"

// fillDevelopment points development certificates at the development PKI listener.
func (cc *Certificates) fillDevelopment() {
	if cc.PublicURL == "" {
		cc.PublicURL = DevelopmentPublicURL
	}
}

func (cc Certificates) validateProfile(development bool, bad func(path, format string, args ...any)) {
	if cc.PublicURL == "" {
		if !development {
			bad("certificates.public_url", "must be set outside development: the base URL at which relying parties fetch CRLs and CA certificates (certificates carry it)")
		}
	} else if msg := checkPublicURL(cc.PublicURL); msg != "" {
		bad("certificates.public_url", "%q: %s", cc.PublicURL, msg)
	}
	if cc.OCSP && cc.PublicURL == "" {
		bad("certificates.ocsp", "needs certificates.public_url (the responder's URL is under it)")
	}
	switch cc.SubjectIdentity {
	case SubjectIdentityFull:
		if cc.SubjectIdentityKeyFile != "" {
			bad("certificates.subject_identity_key_file", "is for subject_identity: keyed_hash only")
		}
	case SubjectIdentityKeyedHash:
		if cc.SubjectIdentityKeyFile == "" && !development {
			bad("certificates.subject_identity_key_file", "must be set outside development with subject_identity: keyed_hash: the HMAC-SM3 key, 64 hex digits (`openssl rand -hex 32`)")
		}
	default:
		bad("certificates.subject_identity", "%q: want full or keyed_hash", cc.SubjectIdentity)
	}
}

// checkPublicURL says what is wrong with a public base URL, or "".
func checkPublicURL(raw string) string {
	u, err := url.Parse(raw)
	switch {
	case err != nil:
		return "not a URL"
	case u.Scheme != "http" && u.Scheme != "https":
		return "want an http or https URL"
	case u.Host == "" || u.Hostname() == "":
		return "no host"
	case u.User != nil:
		return "must not carry user information"
	case u.RawQuery != "" || u.ForceQuery:
		return "must not have a query"
	case u.Fragment != "" || strings.Contains(raw, "#"):
		return "must not have a fragment"
	case strings.ContainsAny(raw, " \t\r\n"):
		return "must not contain white space"
	}
	return ""
}
