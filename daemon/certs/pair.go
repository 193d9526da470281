package certs

import (
	"encoding/pem"

	"context"

	hufuv1 "github.com/hufu-hsm/hufu/api/hufu/v1"
	"github.com/hufu-hsm/hufu/daemon/apierr"
	"github.com/hufu-hsm/hufu/daemon/authn"
	"github.com/hufu-hsm/hufu/daemon/ca"
	"github.com/hufu-hsm/hufu/daemon/keys"
	"github.com/hufu-hsm/hufu/store/storepb"
)

// Certificate pairs (issue 17, GM/T 0015 practice): an application certifies two split keys
// of the applicant, both generated two-party at application time, and its payment issues a
// signing certificate (digitalSignature, nonRepudiation) on one and an encryption
// certificate (keyEncipherment, dataEncipherment) on the other. The two records name each
// other (pair_serial, pair_key_id) and live and die together: one order renews or upgrades
// both on the same two keys (续期 and 升级 keep the key, as for a single certificate), a
// revocation by any path revokes both and destroys both server shares, and the signing key
// of a pair refuses to decrypt (KeyDecrypts). Certificates issued before pairs have usage 0
// and keep working as one key that signs and decrypts.

// certified is one certificate an order issues: what for, on which key, from which CSR.
type certified struct {
	usage ca.Usage // 0: a certificate of an order made before pairs
	keyID string
	csr   []byte
}

// orderCertifies lists what an order certifies, signing first: the pair of a pair
// application (a person's or an enterprise claim), or the one key of an order made before
// pairs.
func orderCertifies(o *storepb.Order) []certified {
	if o.EncryptionKeyId == "" {
		return []certified{{keyID: o.KeyId, csr: o.Csr}}
	}
	return []certified{
		{usage: ca.UsageSigning, keyID: o.KeyId, csr: o.Csr},
		{usage: ca.UsageEncryption, keyID: o.EncryptionKeyId, csr: o.EncryptionCsr},
	}
}

// requirePair refuses an application that does not name its encryption key: every new
// application, a person's or an enterprise claim, issues a pair. A client made before pairs
// gets this error, not a single certificate it would then use for both.
func requirePair(keyID, encKeyID string) error {
	switch {
	case encKeyID == "":
		return apierr.Invalidf("encryption_key_id", "an application certifies a pair of split keys: key_id for the signing certificate and a second key, made the same way, for the encryption certificate, with its CSR (encryption_csr); clients made before certificate pairs must be updated")
	case encKeyID == keyID:
		return apierr.Invalidf("encryption_key_id", "must be a key other than key_id: the signing and the encryption certificate are on two distinct keys")
	}
	return nil
}

// checkEncryptionKey checks the encryption key of a pair application as apply checks its
// signing key: the caller's, not revoked, proven by its own CSR, certifying no other subject
// and no other usage.
func (s *Service) checkEncryptionKey(ctx context.Context, caller authn.Caller, a application, subject string) error {
	key, err := s.deps.Keys.OwnedKey(ctx, caller, a.encKeyID)
	if err != nil {
		return err
	}
	if keys.KeyRevoked(key) {
		return apierr.Invalidf("encryption_key_id", "the key is revoked; create a new key")
	}
	pub, err := publicKey(key.PublicKey)
	if err != nil {
		return err
	}
	if err := checkCSR("encryption_csr", a.encCSR, pub); err != nil {
		return err
	}
	if err := s.keyCertifies(ctx, key.Id, subject); err != nil {
		return err
	}
	return s.checkUsageOf(ctx, "encryption_key_id", key.Id, ca.UsageEncryption, true)
}

// checkUsageOf refuses, for a pair application, a key that already has a certificate of
// another usage: a signing key must not become an encryption key (nor a key that signs and
// decrypts), or the refusal of decryption by signing keys would depend on which of its
// certificates one looked at.
func (s *Service) checkUsageOf(ctx context.Context, field, keyID string, want ca.Usage, pair bool) error {
	if !pair {
		return nil
	}
	existing, err := s.keyCertificates(ctx, keyID)
	if err != nil {
		return err
	}
	for _, c := range existing {
		if got := ca.Usage(c.cert.Usage); got != want {
			return apierr.Invalidf(field, "key %s already has a certificate for %s use (%s); a pair needs a key for %s only: create a new key", keyID, got, c.cert.Serial, want)
		}
	}
	return nil
}

// usagePB is a stored certificate's usage as the API names it.
func usagePB(u int32) hufuv1.CertificateUsage {
	switch ca.Usage(u) {
	case ca.UsageSigning:
		return hufuv1.CertificateUsage_CERTIFICATE_USAGE_SIGNING
	case ca.UsageEncryption:
		return hufuv1.CertificateUsage_CERTIFICATE_USAGE_ENCRYPTION
	}
	return hufuv1.CertificateUsage_CERTIFICATE_USAGE_UNSPECIFIED
}

// pairKeys lists the keys a revocation of c destroys: c's key and, of a pair, the other
// certificate's key.
func pairKeys(c *storepb.Certificate) []string {
	if c.PairKeyId == "" || c.PairKeyId == c.KeyId {
		return []string{c.KeyId}
	}
	return []string{c.KeyId, c.PairKeyId}
}

// listedAsOne drops from a listing the encryption certificates whose signing certificate is
// listed too: a pair is one entry (the app shows one certificate per application), its
// signing certificate naming the encryption one (pair_serial, pair_key_id).
func listedAsOne(cs []*storepb.Certificate) []*storepb.Certificate {
	listed := make(map[string]bool, len(cs))
	for _, c := range cs {
		listed[c.Serial] = true
	}
	out := cs[:0:0]
	for _, c := range cs {
		if ca.Usage(c.Usage) == ca.UsageEncryption && listed[c.PairSerial] {
			continue
		}
		out = append(out, c)
	}
	return out
}

// DownloadPair returns the other certificate of c's pair in format, as Download returns c
// (the chain is the same: one CA issues a pair).
func (s *Service) DownloadPair(ctx context.Context, caller authn.Caller, c *storepb.Certificate, format hufuv1.CertificateFormat) (*storepb.Certificate, []byte, error) {
	pair, err := s.ownedCert(ctx, caller, c.PairSerial)
	if err != nil {
		return nil, nil, err
	}
	if format == hufuv1.CertificateFormat_CERTIFICATE_FORMAT_DER {
		return pair, pair.Der, nil
	}
	return pair, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: pair.Der}), nil
}

var _ keys.DecryptionGate = (*Service)(nil)
