package client

import (
	"bytes"
	"context"
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
// a pair of the enterprise key held in ks: ρ goes to the appliance, d1·ρ sealed to the
// member's device — only if that device's key has the fingerprint the member read from
// their phone (ThisDeviceFingerprint there). cred is the enterprise key's credential.
func GrantDelegation(ctx context.Context, conn *Conn, ks *keystore.Store, uscc, memberUserID, fingerprint string, cred *hufuv1.Credential) (*hufuv1.AuthorisationRecord, error) {
	ent, err := conn.Enterprises.GetEnterprise(ctx, &hufuv1.GetEnterpriseRequest{Uscc: uscc})
	if err != nil {
		return nil, fmt.Errorf("client: grant: %w", err)
	}
	keyID := ent.GetEnterprise().GetKeyId()
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
	e, err := ks.Load(keyID)
	if err != nil {
		return nil, fmt.Errorf("client: grant: the enterprise key %s is not on this device: %w", keyID, err)
	}
	defer e.Share.Destroy()
	if !bytes.Equal(e.Public[:], ent.GetEnterprise().GetPublicKey()) {
		return nil, fmt.Errorf("client: grant: %w: the enterprise's public key is not the key held here", ErrBadAnswer)
	}
	grant, envelope, err := e.Share.Delegate(rand.Reader, &device, cosign.DelegationContext(keyID, memberUserID, m.GetDeviceId()))
	if err != nil {
		return nil, fmt.Errorf("client: grant: %w", err)
	}
	rawGrant, _ := grant.MarshalBinary()
	defer clear(rawGrant)
	resp, err := conn.Enterprises.GrantDelegation(ctx, &hufuv1.GrantDelegationRequest{Uscc: uscc, MemberUserId: memberUserID,
		Credential: cred, Grant: rawGrant, Envelope: envelope})
	if err != nil {
		return nil, fmt.Errorf("client: grant: %w", err)
	}
	return resp.GetRecord(), nil
}

// AcceptDelegation is the staff member's device accepting its pending grant: it opens the
// envelope with the device key, checks P + G = d1′⁻¹·P2′ against the enterprise's public key,
// signs the appliance's challenge with the new pair to prove it, sets pin as its own
// certificate PIN for the pair, and saves the share in ks under the enterprise key's id.
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
	keyID := offer.GetKeyId()
	public, err := cosign.ParsePoint(ent.GetEnterprise().GetPublicKey())
	if err != nil || !bytes.Equal(offer.GetPublicKey(), public[:]) || keyID != ent.GetEnterprise().GetKeyId() {
		return nil, fmt.Errorf("client: accept: %w: the offer is not for the enterprise's key", ErrBadAnswer)
	}
	p2, err := cosign.ParsePoint(offer.GetP2())
	if err != nil {
		return nil, fmt.Errorf("client: accept: %w: P2′: %w", ErrBadAnswer, err)
	}
	sk, err := DelegationDeviceKey(ks)
	if err != nil {
		return nil, err
	}
	// The context is ours, not the appliance's: an envelope sealed for another key, member
	// or device does not open.
	context := cosign.DelegationContext(keyID, acct.GetAccount().GetId(), conn.DeviceID())
	share, err := cosign.AcceptDelegation(sk, offer.GetEnvelope(), context, &public, &p2)
	if err != nil {
		return nil, fmt.Errorf("client: accept: %w", err)
	}
	if len(offer.GetChallenge()) != cosign.ScalarSize {
		share.Destroy()
		return nil, fmt.Errorf("client: accept: %w: challenge of %d bytes", ErrBadAnswer, len(offer.GetChallenge()))
	}
	var challenge [cosign.ScalarSize]byte
	copy(challenge[:], offer.GetChallenge())
	// The pending pair answers only this challenge, without a credential.
	key := cosign.NewKey(public, share, &Remote{Conn: conn, KeyID: keyID, Credential: &hufuv1.Credential{}})
	sig, err := key.SignDigest(ctx, rand.Reader, &challenge)
	if err != nil {
		share.Destroy()
		return nil, fmt.Errorf("client: accept: proving the new pair: %w", err)
	}
	raw, _ := sig.MarshalBinary()
	if _, err := conn.Enterprises.AcceptDelegation(ctx, &hufuv1.AcceptDelegationRequest{Uscc: uscc, Pin: pin, Confirmation: raw}); err != nil {
		share.Destroy()
		return nil, fmt.Errorf("client: accept: %w", err)
	}
	e := &keystore.Entry{ID: keyID, Label: ent.GetEnterprise().GetName(), AccountID: acct.GetAccount().GetId(),
		PhoneKey: cosign.PhoneKey{Public: public, Version: offer.GetShareVersion(), Share: share}}
	if err := ks.Save(e); err != nil {
		return nil, fmt.Errorf("client: accept: the pair is active but this device did not save its share: %w", err)
	}
	return e, nil
}

// AcceptAdminTransfer completes an administrator transfer (转移) offered to this account, from
// the device that holds its pair of the enterprise key: the pair becomes the key's primary
// pair, under a new share version that the keystore entry records, and is then refreshed
// (the old administrator's device made this phone share and still knows it). cred is this
// device's credential for the pair (its PIN).
//
// A share refresh of this device's pair left pending (in the keystore or on the appliance)
// is finished first: the appliance does not promote a pair with a refresh pending, and the
// version recorded after the promotion must belong to the share this device then uses.
func AcceptAdminTransfer(ctx context.Context, conn *Conn, ks *keystore.Store, uscc string, cred *hufuv1.Credential) (*hufuv1.Enterprise, error) {
	ent, err := conn.Enterprises.GetEnterprise(ctx, &hufuv1.GetEnterpriseRequest{Uscc: uscc})
	if err != nil {
		return nil, fmt.Errorf("client: accept transfer: %w", err)
	}
	if err := finishPairRefresh(ctx, conn, ks, ent.GetEnterprise().GetKeyId(), cred); err != nil {
		return nil, fmt.Errorf("client: accept transfer: finishing the pending share refresh of this device's pair: %w", err)
	}
	resp, err := conn.Enterprises.AcceptAdminTransfer(ctx, &hufuv1.AcceptAdminTransferRequest{Uscc: uscc})
	if err != nil {
		return nil, fmt.Errorf("client: accept transfer: %w", err)
	}
	keyID := resp.GetEnterprise().GetKeyId()
	if err := recordVersion(ks, keyID, resp.GetShareVersion()); err != nil {
		return nil, fmt.Errorf("client: accept transfer: the role moved but this device did not record the share version: %w", err)
	}
	if _, err := RefreshKey(ctx, conn, ks, keyID, cred, nil); err != nil {
		return resp.GetEnterprise(), fmt.Errorf("client: accept transfer: the role moved but the share refresh did not finish (run it again: hufu key refresh %s): %w", keyID, err)
	}
	return resp.GetEnterprise(), nil
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
