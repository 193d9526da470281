package daemon_test

import (
	"crypto/hmac"
	"encoding/asn1"
	"encoding/hex"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/emmansun/gmsm/sm3"
	"github.com/emmansun/gmsm/smx509"

	"github.com/hufu-hsm/hufu/daemon/config"
)

// subjectSerialNumber returns the subject serialNumber of a certificate as encoded, with its
// ASN.1 string tag, read from the raw subject as a relying party's parser would.
func subjectSerialNumber(t *testing.T, cert *smx509.Certificate) (tag int, value string) {
	t.Helper()
	type rdnSET []struct {
		Type  asn1.ObjectIdentifier
		Value asn1.RawValue
	}
	var rdns []rdnSET
	if rest, err := asn1.Unmarshal(cert.RawSubject, &rdns); err != nil || len(rest) != 0 {
		t.Fatalf("subject: %v", err)
	}
	for _, rdn := range rdns {
		for _, atv := range rdn {
			if atv.Type.Equal(asn1.ObjectIdentifier{2, 5, 4, 5}) {
				return atv.Value.Tag, string(atv.Value.Bytes)
			}
		}
	}
	t.Fatal("no serialNumber in the subject")
	return 0, ""
}

// A personal certificate issued through the order flow carries the identity a relying party
// can match, per certificates.subject_identity: the HMAC-SM3 of the ID number under the
// configured key, which the relying party recomputes from the number it knows, or the number
// itself; and the URLs under certificates.public_url, the issuing CA's included.
func TestCertificateSubjectIdentityEndToEnd(t *testing.T) {
	const idNumber = "11010519491231002X" // verifiedUser's identity
	key := "00112233445566778899aabbccddeeff00112233445566778899aabbccddeeff"
	keyFile := filepath.Join(t.TempDir(), "subject-identity.key")
	if err := os.WriteFile(keyFile, []byte(key+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	raw, _ := hex.DecodeString(key)
	m := hmac.New(sm3.New, raw)
	m.Write([]byte(idNumber))
	keyedHash := strings.ToUpper(hex.EncodeToString(m.Sum(nil)))

	for _, tc := range []struct {
		name   string
		mutate func(c *config.Config)
		want   string
		ocsp   []string
	}{
		{"keyed_hash", func(c *config.Config) {
			c.Certificates.PublicURL, c.Certificates.OCSP = "https://pki.example.cn", true
			c.Certificates.SubjectIdentity, c.Certificates.SubjectIdentityKeyFile = config.SubjectIdentityKeyedHash, keyFile
		}, keyedHash, []string{"https://pki.example.cn/ocsp/hufu-ca"}},
		{"full", func(c *config.Config) {
			c.Certificates.PublicURL = "https://pki.example.cn"
			c.Certificates.SubjectIdentity = config.SubjectIdentityFull
		}, idNumber, nil},
	} {
		t.Run(tc.name, func(t *testing.T) {
			a := certAppliance(t, tc.mutate)
			p := newApplicant(t, a, phone, "device-0001", "key-profile-0001")
			cert, _, _, issuing := p.download(p.issue(a.desk()))
			if tag, got := subjectSerialNumber(t, cert); tag != asn1.TagPrintableString || got != tc.want {
				t.Fatalf("subject serialNumber %q (tag %d), want %q as PrintableString", got, tag, tc.want)
			}
			if cert.KeyUsage != smx509.KeyUsageDigitalSignature|smx509.KeyUsageContentCommitment {
				t.Fatalf("the order issued key usage %b, want the signing profile", cert.KeyUsage)
			}
			if !slices.Equal(cert.CRLDistributionPoints, []string{"https://pki.example.cn/ca/hufu-ca/issuing.crl"}) ||
				!slices.Equal(cert.IssuingCertificateURL, []string{"https://pki.example.cn/ca/hufu-ca/issuing.cer"}) ||
				!slices.Equal(cert.OCSPServer, tc.ocsp) {
				t.Fatalf("leaf URLs: %v %v %v", cert.CRLDistributionPoints, cert.IssuingCertificateURL, cert.OCSPServer)
			}
			if !slices.Equal(issuing.CRLDistributionPoints, []string{"https://pki.example.cn/ca/hufu-ca/root.crl"}) ||
				!slices.Equal(issuing.IssuingCertificateURL, []string{"https://pki.example.cn/ca/hufu-ca/root.cer"}) {
				t.Fatalf("issuing CA URLs: %v %v", issuing.CRLDistributionPoints, issuing.IssuingCertificateURL)
			}
		})
	}
}
