package client

import (
	"bytes"
	"context"
	"crypto/ecdsa"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"

	"github.com/emmansun/gmsm/sm2"
	"github.com/emmansun/gmsm/sm3"
	"github.com/emmansun/gmsm/smx509"

	hufuv1 "github.com/hufu-hsm/hufu/api/hufu/v1"
	"github.com/hufu-hsm/hufu/client/keystore"
	"github.com/hufu-hsm/hufu/cosign"
)

// The phone's half of delegated enterprise key pairs (seed manual §1.6.3, §1.7.4.4): the
// administrator's device derives a new pair for a staff member's device without the whole
// key ever existing anywhere — it sends ρ to the appliance and d1·ρ sealed to the member
// device's SM2 key, which the appliance relays but cannot open — and the member's device
// opens it, checks the pair against the enterprise's public key and proves it holds it.

// delegationKeyFile holds this device's SM2 key for receiving delegated shares, beside the
// keystore's device key and protected the same way (0600, never sent anywhere).
const delegationKeyFile = "delegation-device.key"

// DelegationDeviceKey returns this device's SM2 key for receiving delegated shares, made on
// first use and kept in the keystore's directory.
func DelegationDeviceKey(ks *keystore.Store) (*sm2.PrivateKey, error) {
	path := filepath.Join(ks.Dir(), delegationKeyFile)
	if der, err := os.ReadFile(path); err == nil {
		k, err := smx509.ParsePKCS8PrivateKey(der)
		if err != nil {
			return nil, fmt.Errorf("client: delegation device key %s: %w", path, err)
		}
		sk, ok := k.(*sm2.PrivateKey)
		if !ok {
			return nil, fmt.Errorf("client: delegation device key %s is not an SM2 key", path)
		}
		return sk, nil
	} else if !errors.Is(err, os.ErrNotExist) {
		return nil, err
	}
	sk, err := sm2.GenerateKey(rand.Reader)
	if err != nil {
		return nil, err
	}
	der, err := smx509.MarshalPKCS8PrivateKey(sk)
	if err != nil {
		return nil, err
	}
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o600)
	if errors.Is(err, os.ErrExist) { // made concurrently: use that one
		return DelegationDeviceKey(ks)
	}
	if err != nil {
		return nil, err
	}
	if _, err := f.Write(der); err != nil {
		f.Close()
		return nil, err
	}
	if err := f.Close(); err != nil {
		return nil, err
	}
	return sk, nil
}

// DeviceFingerprint is the fingerprint of a device's delegation key as people compare it:
// the first 20 bytes of SM3 of the 65-byte point, in five groups of eight hex digits. The
// administrator's device seals the enterprise key's share to a member device only if the
// fingerprint the member reads from their own phone matches: the appliance relays the
// device key, and an appliance that swapped in its own would otherwise open the envelope and,
// with ρ and d2, have the whole key.
func DeviceFingerprint(devicePublicKey []byte) string {
	h := sm3.Sum(devicePublicKey)
	x := hex.EncodeToString(h[:20])
	return strings.Join([]string{x[0:8], x[8:16], x[16:24], x[24:32], x[32:40]}, "-")
}

// ThisDeviceFingerprint is DeviceFingerprint of this device's delegation key, to read out to
// the administrator.
func ThisDeviceFingerprint(ks *keystore.Store) (string, error) {
	sk, err := DelegationDeviceKey(ks)
	if err != nil {
		return "", err
	}
	pub, err := cosign.PointFromPublicKey(&sk.PublicKey)
	if err != nil {
		return "", err
	}
	return DeviceFingerprint(pub[:]), nil
}

// ErrFingerprint means the member device key the appliance returned is not the one whose
// fingerprint the member read out: nothing was sent.
var ErrFingerprint = errors.New("client: the member's device key does not match the fingerprint read from their phone")

// RegisterDelegationDevice registers this device (its delegation key) with an enterprise the
// account belongs to, so that the administrator can grant it a pair of the enterprise key.
func RegisterDelegationDevice(ctx context.Context, conn *Conn, ks *keystore.Store, uscc string) (*hufuv1.Member, error) {
	sk, err := DelegationDeviceKey(ks)
	if err != nil {
		return nil, err
	}
	pub, err := cosign.PointFromPublicKey(&sk.PublicKey)
	if err != nil {
		return nil, err
	}
	resp, err := conn.Enterprises.RegisterDevice(ctx, &hufuv1.RegisterDeviceRequest{Uscc: uscc, DevicePublicKey: pub[:]})
	if err != nil {
		return nil, fmt.Errorf("client: register device: %w", err)
	}
	return resp.GetMember(), nil
}

// GrantDelegation is the administrator's device granting a staff member's registered device
// a pair of each enterprise key held in ks — the signing key and, for an enterprise with a
// certificate pair, the encryption key, each with its own ρ and envelope, granted in one
// request (the appliance commits both or neither): ρ goes to the appliance, d1·ρ sealed to
// the member's device — only if that device's key has the fingerprint the member read from
// their phone (ThisDeviceFingerprint there). cred is the administrator's credential for both
// keys: normally the PIN of the pair (a ticket opens one key only; the request itself takes a
// credential per key).
func GrantDelegation(ctx context.Context, conn *Conn, ks *keystore.Store, uscc, memberUserID, fingerprint string, cred *hufuv1.Credential) (*hufuv1.AuthorisationRecord, error) {
	ent, err := conn.Enterprises.GetEnterprise(ctx, &hufuv1.GetEnterpriseRequest{Uscc: uscc})
	if err != nil {
		return nil, fmt.Errorf("client: grant: %w", err)
	}
	ms, err := conn.Enterprises.ListMembers(ctx, &hufuv1.ListMembersRequest{Uscc: uscc})
	if err != nil {
		return nil, fmt.Errorf("client: grant: %w", err)
	}
	var m *hufuv1.Member
	for _, x := range ms.GetMembers() {
		if x.GetUserId() == memberUserID {
			m = x
		}
	}
	if m == nil {
		return nil, fmt.Errorf("client: grant: %s is not a member of the enterprise", memberUserID)
	}
	if m.GetDeviceId() == "" {
		return nil, fmt.Errorf("client: grant: the member has not registered a device yet")
	}
	if !strings.EqualFold(strings.TrimSpace(fingerprint), DeviceFingerprint(m.GetDevicePublicKey())) {
		return nil, fmt.Errorf("client: grant: %w", ErrFingerprint)
	}
	device, err := cosign.ParsePoint(m.GetDevicePublicKey())
	if err != nil {
		return nil, fmt.Errorf("client: grant: the member's device key: %w", err)
	}
	req := &hufuv1.GrantDelegationRequest{Uscc: uscc, MemberUserId: memberUserID, Credential: cred}
	if req.Grant, req.Envelope, err = delegateKey(ks, ent.GetEnterprise().GetKeyId(), ent.GetEnterprise().GetPublicKey(), &device, memberUserID, m.GetDeviceId()); err != nil {
		return nil, fmt.Errorf("client: grant: %w", err)
	}
	defer clear(req.Grant)
	if encKeyID := ent.GetEnterprise().GetEncryptionKeyId(); encKeyID != "" {
		// The encryption key held here must be the one the enterprise's encryption certificate
		// carries (as the member's device checks the offer): otherwise this device would hand
		// the member a pair of some other key.
		encPublic, err := encryptionCertificateKey(ctx, conn, uscc)
		if err != nil {
			return nil, fmt.Errorf("client: grant: %w", err)
		}
		enc := &hufuv1.DelegationKeyGrant{Credential: cred}
		if enc.Grant, enc.Envelope, err = delegateKey(ks, encKeyID, encPublic[:], &device, memberUserID, m.GetDeviceId()); err != nil {
			return nil, fmt.Errorf("client: grant: the encryption key: %w", err)
		}
		defer clear(enc.Grant)
		req.Encryption = enc
	}
	resp, err := conn.Enterprises.GrantDelegation(ctx, req)
	if err != nil {
		return nil, fmt.Errorf("client: grant: %w", err)
	}
	return resp.GetRecord(), nil
}

// delegateKey makes the grant (ρ) and the envelope for a member's device of one key held in
// ks, which must have the public key wantPublic (what the appliance or the enterprise's
// certificate says the key is). The grant carries ρ: the caller clears it once sent.
func delegateKey(ks *keystore.Store, keyID string, wantPublic []byte, device *cosign.Point, memberUserID, memberDeviceID string) ([]byte, []byte, error) {
	e, err := ks.Load(keyID)
	if err != nil {
		return nil, nil, fmt.Errorf("the enterprise key %s is not on this device: %w", keyID, err)
	}
	defer e.Share.Destroy()
	if !bytes.Equal(e.Public[:], wantPublic) {
		return nil, nil, fmt.Errorf("%w: the enterprise's public key of key %s is not the key held here", ErrBadAnswer, keyID)
	}
	grant, envelope, err := e.Share.Delegate(rand.Reader, device, cosign.DelegationContext(keyID, memberUserID, memberDeviceID))
	if err != nil {
		return nil, nil, err
	}
	// ρ with the member's d1·ρ is the member's phone share: it leaves this device only in
	// the grant, which the caller clears once sent.
	rawGrant, _ := grant.MarshalBinary()
	clear(grant.Rho[:])
	return rawGrant, envelope, nil
}

// encryptionCertificateKey is the public key of an enterprise's encryption certificate.
func encryptionCertificateKey(ctx context.Context, conn *Conn, uscc string) (cosign.Point, error) {
	ec, err := conn.Enterprises.GetEnterpriseCertificate(ctx, &hufuv1.GetEnterpriseCertificateRequest{Uscc: uscc})
	if err != nil {
		return cosign.Point{}, err
	}
	cert, err := smx509.ParseCertificate(ec.GetEncryptionCertificate())
	if err != nil {
		return cosign.Point{}, fmt.Errorf("%w: the enterprise encryption certificate: %w", ErrBadAnswer, err)
	}
	pub, ok := cert.PublicKey.(*ecdsa.PublicKey)
	if !ok {
		return cosign.Point{}, fmt.Errorf("%w: the enterprise encryption certificate has no SM2 key", ErrBadAnswer)
	}
	return cosign.PointFromPublicKey(pub)
}

// keyOffer is one key's part of a delegation offer.
type keyOffer struct {
	keyID                              string
	publicKey, p2, challenge, envelope []byte
	shareVersion                       uint32
}

// acceptedPair is a new pair opened and proven, not yet accepted by the appliance.
type acceptedPair struct {
	keyID        string
	public       cosign.Point
	share        *cosign.PhoneShare
	version      uint32
	confirmation []byte
}

// openOffer opens one key's envelope with the device key, checks P + G = d1′⁻¹·P2′ against
// public, and signs the appliance's challenge with the new pair to prove it.
func openOffer(ctx context.Context, conn *Conn, sk *sm2.PrivateKey, accountID string, o keyOffer, public cosign.Point) (*acceptedPair, error) {
	if !bytes.Equal(o.publicKey, public[:]) {
		return nil, fmt.Errorf("%w: the offer of key %s is not for the enterprise's key", ErrBadAnswer, o.keyID)
	}
	p2, err := cosign.ParsePoint(o.p2)
	if err != nil {
		return nil, fmt.Errorf("%w: P2′: %w", ErrBadAnswer, err)
	}
	// The context is ours, not the appliance's: an envelope sealed for another key, member
	// or device does not open.
	share, err := cosign.AcceptDelegation(sk, o.envelope, cosign.DelegationContext(o.keyID, accountID, conn.DeviceID()), &public, &p2)
	if err != nil {
		return nil, err
	}
	if len(o.challenge) != cosign.ScalarSize {
		share.Destroy()
		return nil, fmt.Errorf("%w: challenge of %d bytes", ErrBadAnswer, len(o.challenge))
	}
	var challenge [cosign.ScalarSize]byte
	copy(challenge[:], o.challenge)
	// The pending pair answers only this challenge, without a credential.
	key := cosign.NewKey(public, share, &Remote{Conn: conn, KeyID: o.keyID, Credential: &hufuv1.Credential{}})
	sig, err := key.SignDigest(ctx, rand.Reader, &challenge)
	if err != nil {
		share.Destroy()
		return nil, fmt.Errorf("proving the new pair of key %s: %w", o.keyID, err)
	}
	raw, _ := sig.MarshalBinary()
	return &acceptedPair{keyID: o.keyID, public: public, share: share, version: o.shareVersion, confirmation: raw}, nil
}

// AcceptDelegation is the staff member's device accepting its pending grant: for each
// enterprise key offered (the signing key and, of a certificate pair, the encryption key) it
// opens the envelope with the device key, checks P + G = d1′⁻¹·P2′ against the key's public
// key, signs the appliance's challenge with the new pair to prove it; the appliance accepts
// both pairs in one transaction with pin as the member's own certificate PIN of each. The
// shares are saved in ks under the keys' ids; it returns the signing key's entry.
func AcceptDelegation(ctx context.Context, conn *Conn, ks *keystore.Store, uscc, pin string) (*keystore.Entry, error) {
	acct, err := conn.Accounts.GetAccount(ctx, &hufuv1.GetAccountRequest{})
	if err != nil {
		return nil, fmt.Errorf("client: accept: %w", err)
	}
	ent, err := conn.Enterprises.GetEnterprise(ctx, &hufuv1.GetEnterpriseRequest{Uscc: uscc})
	if err != nil {
		return nil, fmt.Errorf("client: accept: %w", err)
	}
	offer, err := conn.Enterprises.GetDelegationOffer(ctx, &hufuv1.GetDelegationOfferRequest{Uscc: uscc})
	if err != nil {
		return nil, fmt.Errorf("client: accept: %w", err)
	}
	public, err := cosign.ParsePoint(ent.GetEnterprise().GetPublicKey())
	if err != nil || offer.GetKeyId() != ent.GetEnterprise().GetKeyId() {
		return nil, fmt.Errorf("client: accept: %w: the offer is not for the enterprise's key", ErrBadAnswer)
	}
	offers := []keyOffer{{keyID: offer.GetKeyId(), publicKey: offer.GetPublicKey(), p2: offer.GetP2(), challenge: offer.GetChallenge(),
		envelope: offer.GetEnvelope(), shareVersion: offer.GetShareVersion()}}
	publics := []cosign.Point{public}
	switch enc, encKeyID := offer.GetEncryption(), ent.GetEnterprise().GetEncryptionKeyId(); {
	case (enc == nil) != (encKeyID == "") || (enc != nil && enc.GetKeyId() != encKeyID):
		return nil, fmt.Errorf("client: accept: %w: the offer does not cover the enterprise's encryption key", ErrBadAnswer)
	case enc != nil:
		// The encryption key's public key is the one the enterprise's encryption certificate
		// carries; the pair check in openOffer binds the share to it.
		encPublic, err := encryptionCertificateKey(ctx, conn, uscc)
		if err != nil {
			return nil, fmt.Errorf("client: accept: %w", err)
		}
		offers = append(offers, keyOffer{keyID: enc.GetKeyId(), publicKey: enc.GetPublicKey(), p2: enc.GetP2(), challenge: enc.GetChallenge(),
			envelope: enc.GetEnvelope(), shareVersion: enc.GetShareVersion()})
		publics = append(publics, encPublic)
	}
	sk, err := DelegationDeviceKey(ks)
	if err != nil {
		return nil, err
	}
	var pairs []*acceptedPair
	defer func() {
		for _, p := range pairs {
			p.share.Destroy()
		}
	}()
	for i, o := range offers {
		p, err := openOffer(ctx, conn, sk, acct.GetAccount().GetId(), o, publics[i])
		if err != nil {
			return nil, fmt.Errorf("client: accept: %w", err)
		}
		pairs = append(pairs, p)
	}
	req := &hufuv1.AcceptDelegationRequest{Uscc: uscc, Pin: pin, Confirmation: pairs[0].confirmation}
	if len(pairs) > 1 {
		req.EncryptionConfirmation = pairs[1].confirmation // and the same PIN (encryption_pin empty)
	}
	if _, err := conn.Enterprises.AcceptDelegation(ctx, req); err != nil {
		return nil, fmt.Errorf("client: accept: %w", err)
	}
	var first *keystore.Entry
	for i, p := range pairs {
		label := ent.GetEnterprise().GetName()
		if i > 0 {
			label += " (encryption)"
		}
		e := &keystore.Entry{ID: p.keyID, Label: label, AccountID: acct.GetAccount().GetId(),
			PhoneKey: cosign.PhoneKey{Public: p.public, Version: p.version, Share: p.share}}
		if err := ks.Save(e); err != nil {
			return nil, fmt.Errorf("client: accept: the pairs are active but this device did not save the share of %s: %w", p.keyID, err)
		}
		if first == nil {
			first = e
		}
	}
	pairs = nil // saved: the entries own the shares now
	return first, nil
}

// AcceptAdminTransfer completes an administrator transfer (转移) offered to this account, from
// the device that holds its pairs of the enterprise keys: the pairs (of the signing key and,
// of a certificate pair, the encryption key) become the keys' primary pairs, under new share
// versions that the keystore entries record, and are then refreshed (the old administrator's
// device made these phone shares and still knows them). cred is this device's credential for
// the pairs (its PIN, the same for both as AcceptDelegation sets it).
//
// A share refresh of this device's pairs left pending (in the keystore or on the appliance)
// is finished first: the appliance does not promote a pair with a refresh pending, and the
// version recorded after the promotion must belong to the share this device then uses.
func AcceptAdminTransfer(ctx context.Context, conn *Conn, ks *keystore.Store, uscc string, cred *hufuv1.Credential) (*hufuv1.Enterprise, error) {
	ent, err := conn.Enterprises.GetEnterprise(ctx, &hufuv1.GetEnterpriseRequest{Uscc: uscc})
	if err != nil {
		return nil, fmt.Errorf("client: accept transfer: %w", err)
	}
	for _, keyID := range enterpriseKeyIDs(ent.GetEnterprise()) {
		if err := finishPairRefresh(ctx, conn, ks, keyID, cred); err != nil {
			return nil, fmt.Errorf("client: accept transfer: finishing the pending share refresh of this device's pair of %s: %w", keyID, err)
		}
	}
	resp, err := conn.Enterprises.AcceptAdminTransfer(ctx, &hufuv1.AcceptAdminTransferRequest{Uscc: uscc})
	if err != nil {
		return nil, fmt.Errorf("client: accept transfer: %w", err)
	}
	versions := []uint32{resp.GetShareVersion(), resp.GetEncryptionShareVersion()}
	keyIDs := enterpriseKeyIDs(resp.GetEnterprise())
	for i, keyID := range keyIDs {
		if err := recordVersion(ks, keyID, versions[i]); err != nil {
			return nil, fmt.Errorf("client: accept transfer: the role moved but this device did not record the share version of %s: %w", keyID, err)
		}
	}
	for _, keyID := range keyIDs {
		if _, err := RefreshKey(ctx, conn, ks, keyID, cred, nil); err != nil {
			return resp.GetEnterprise(), fmt.Errorf("client: accept transfer: the role moved but the share refresh did not finish (run it again: hufu key refresh %s): %w", keyID, err)
		}
	}
	return resp.GetEnterprise(), nil
}

// enterpriseKeyIDs lists an enterprise's keys, signing first.
func enterpriseKeyIDs(e *hufuv1.Enterprise) []string {
	if e.GetEncryptionKeyId() == "" {
		return []string{e.GetKeyId()}
	}
	return []string{e.GetKeyId(), e.GetEncryptionKeyId()}
}

// finishPairRefresh runs RefreshKey on a key held in ks if a refresh of it is pending in the
// keystore or on the appliance, which settles or completes it.
func finishPairRefresh(ctx context.Context, conn *Conn, ks *keystore.Store, keyID string, cred *hufuv1.Credential) error {
	info, err := ks.Stat(keyID)
	if err != nil {
		return err
	}
	if info.PendingVersion == 0 {
		k, err := conn.Keys.GetKey(ctx, &hufuv1.GetKeyRequest{KeyId: keyID})
		if err != nil {
			return err
		}
		if k.GetKey().GetPendingVersion() == 0 {
			return nil
		}
	}
	_, err = RefreshKey(ctx, conn, ks, keyID, cred, nil)
	return err
}

// recordVersion sets the share version of a key held in ks.
func recordVersion(ks *keystore.Store, keyID string, version uint32) error {
	unlock, err := ks.Lock(keyID)
	if err != nil {
		return err
	}
	defer unlock()
	e, err := ks.Load(keyID)
	if err != nil {
		return err
	}
	defer e.Share.Destroy()
	e.Version = version
	return ks.Save(e)
}
