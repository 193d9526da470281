package enterprises

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"slices"
	"time"

	"github.com/hufu-hsm/hufu/daemon/apierr"
	"github.com/hufu-hsm/hufu/daemon/authn"
	"github.com/hufu-hsm/hufu/daemon/keys"
	"github.com/hufu-hsm/hufu/store"
	"github.com/hufu-hsm/hufu/store/storepb"
)

// scopeCertificate is what a grant gives: use of the enterprise certificate's key, to sign
// and decrypt. Nothing narrower can be enforced — the appliance sees only digests, never
// documents — so a grant carries no other scope; seals are authorised in the seals domain.
const scopeCertificate = "certificate"

func sha256Hex(b []byte) string {
	h := sha256.Sum256(b)
	return hex.EncodeToString(h[:])
}

func checkScope(scope []string) ([]string, error) {
	for i, sc := range scope {
		if sc != scopeCertificate {
			return nil, apierr.Invalidf(fmt.Sprintf("scope[%d]", i), "a grant gives the use of the enterprise certificate's key (%q); seals are authorised with SealService", scopeCertificate)
		}
	}
	return []string{scopeCertificate}, nil
}

// pairLive reports a delegated pair that is pending or active; pairActive one accepted.
func pairLive(d *storepb.DelegatedShare) bool {
	return d.Status == storepb.DelegationStatus_DELEGATION_STATUS_PENDING || pairActive(d)
}

func pairActive(d *storepb.DelegatedShare) bool {
	return d.Status == storepb.DelegationStatus_DELEGATION_STATUS_ACTIVE
}

// enterpriseKeys lists the keys a delegation covers, signing first: the enterprise key and,
// for an enterprise claimed with a certificate pair, its encryption key. Every delegation
// operation acts on all of them in one transaction (keys.GrantDelegations and the rest), so a
// member holds pairs of both keys or of neither.
func enterpriseKeys(e *storepb.Enterprise) []string {
	if e.EncryptionKeyId == "" {
		return []string{e.KeyId}
	}
	return []string{e.KeyId, e.EncryptionKeyId}
}

// authRecord is an authorisation record of the enterprise's keys.
func authRecord(e *storepb.Enterprise, action, by, memberUser, memberDevice string, scope []string) *storepb.AuthorisationRecord {
	return &storepb.AuthorisationRecord{Uscc: e.Uscc, Action: action, ByUserId: by, MemberUserId: memberUser,
		MemberDeviceId: memberDevice, Scope: scope, KeyId: e.KeyId, EncryptionKeyId: e.EncryptionKeyId}
}

// keysAudit names the enterprise's keys in an audit record's details.
func keysAudit(e *storepb.Enterprise, details map[string]string) map[string]string {
	details["key"] = e.KeyId
	if e.EncryptionKeyId != "" {
		details["encryption_key"] = e.EncryptionKeyId
	}
	return details
}

// pairsOf lists a member's delegated pairs of the enterprise (signing) key that are pending
// or active; its pairs of the encryption key live and die with them.
func (s *Service) pairsOf(ctx context.Context, e *storepb.Enterprise, userID string) ([]*storepb.DelegatedShare, error) {
	if e.KeyId == "" {
		return nil, nil
	}
	all, err := s.deps.Keys.ListDelegations(ctx, e.KeyId)
	if err != nil {
		return nil, err
	}
	var out []*storepb.DelegatedShare
	for _, d := range all {
		if d.MemberUserId == userID && pairLive(d) {
			out = append(out, d)
		}
	}
	return out, nil
}

// Grant (administrator) delegates the enterprise keys to a staff member's registered device
// (授权): the appliance keeps d2′ = ρ⁻¹·d2 of each key for that device and relays the
// envelopes it cannot read. sign is the signing key's part (its KeyID is filled in here);
// encryption the encryption key's, required exactly when the enterprise has one (nil
// otherwise). Both pairs are granted in one transaction. The member accepts with Accept.
func (s *Service) Grant(ctx context.Context, caller authn.Caller, uscc, memberUserID string, sign keys.KeyGrant, encryption *keys.KeyGrant, scope []string) (*storepb.AuthorisationRecord, error) {
	scope, err := checkScope(scope)
	if err != nil {
		return nil, err
	}
	e, err := s.asAdmin(ctx, caller, uscc, true)
	if err != nil {
		return nil, err
	}
	grants := []keys.KeyGrant{sign}
	grants[0].KeyID, grants[0].Field = e.KeyId, ""
	switch {
	case e.EncryptionKeyId != "" && encryption == nil:
		return nil, apierr.Invalidf("encryption", "the enterprise has an encryption certificate (key %s): grant its key too, with its own grant, envelope and credential", e.EncryptionKeyId)
	case e.EncryptionKeyId == "" && encryption != nil:
		return nil, apierr.Invalidf("encryption", "the enterprise has one key (claimed before certificate pairs): grant it alone")
	case encryption != nil:
		enc := *encryption
		enc.KeyID, enc.Field = e.EncryptionKeyId, "encryption."
		grants = append(grants, enc)
	}
	if memberUserID == caller.UserID {
		return nil, apierr.Invalidf("member_user_id", "the administrator holds the primary pair already")
	}
	m, err := members.Read(ctx, s.deps.Store, memberID(e.Uscc, memberUserID))
	if errors.Is(err, store.ErrNotFound) || store.ValidPart(memberUserID) != nil {
		return nil, apierr.New(apierr.NotFound, "no member %q", memberUserID)
	}
	if err != nil {
		return nil, err
	}
	if m.DeviceId == "" {
		return nil, apierr.New(apierr.FailedPrecondition, "the member has not registered a device to receive the key (RegisterDevice)")
	}
	var rec *storepb.AuthorisationRecord
	_, err = s.deps.Keys.GrantDelegations(ctx, caller, memberUserID, m.DeviceId, grants, scope, func(tx *store.Tx) error {
		// Still a member with that device, under the member record's lock.
		cur, err := members.Get(tx, memberID(e.Uscc, memberUserID))
		if errors.Is(err, store.ErrNotFound) || (err == nil && cur.DeviceId != m.DeviceId) {
			return apierr.New(apierr.Aborted, "the member's membership or device changed; retry")
		}
		if err != nil {
			return err
		}
		rec = authRecord(e, "grant", caller.UserID, memberUserID, m.DeviceId, scope)
		if err := record(tx, rec); err != nil {
			return err
		}
		if err := notice(tx, memberUserID, "企业证书授权", fmt.Sprintf("管理员已将企业 %s 的证书授权给您的设备，请在该设备上接受授权", e.Name)); err != nil {
			return err
		}
		return audit(tx, caller, "delegation.grant", e.Uscc, keysAudit(e, map[string]string{"member": memberUserID, "device": m.DeviceId}))
	})
	if err != nil {
		return nil, err
	}
	s.m.changes.WithLabelValues("delegation.grant").Inc()
	return rec, nil
}

// KeyOffer is a pending grant of one enterprise key as the member's device fetches it.
type KeyOffer struct {
	Pair                     *storepb.DelegatedShare
	KeyID                    string
	PublicKey, P2, Challenge []byte
}

// Offer is the pending grant of the signing key and, for an enterprise with a certificate
// pair, of the encryption key (nil otherwise).
type Offer struct {
	KeyOffer
	Encryption *KeyOffer
}

// Offer returns the calling device's pending grants of the enterprise keys.
func (s *Service) Offer(ctx context.Context, caller authn.Caller, uscc string) (*Offer, error) {
	e, _, err := s.membership(ctx, caller, "uscc", uscc)
	if err != nil {
		return nil, err
	}
	if e.KeyId == "" {
		return nil, apierr.New(apierr.FailedPrecondition, "the enterprise has no key yet")
	}
	var offers []KeyOffer
	for _, keyID := range enterpriseKeys(e) {
		pair, public, p2, challenge, err := s.deps.Keys.DelegationOffer(ctx, caller, keyID)
		if err != nil {
			return nil, err
		}
		offers = append(offers, KeyOffer{Pair: pair, KeyID: keyID, PublicKey: public, P2: p2, Challenge: challenge})
	}
	out := &Offer{KeyOffer: offers[0]}
	if len(offers) > 1 {
		out.Encryption = &offers[1]
	}
	return out, nil
}

// Accept completes the calling device's grants, of both keys in one transaction: each
// signature on its key's challenge proves the device holds that new pair. pin is the member's
// own certificate PIN for the signing key's pair; encryptionPIN for the encryption key's
// ("" means pin: one PIN for the certificate pair, as the app asks for one). An enterprise
// with an encryption key requires encryptionConfirmation; one without refuses it.
func (s *Service) Accept(ctx context.Context, caller authn.Caller, uscc, pin string, confirmation []byte, encryptionPIN string, encryptionConfirmation []byte) (*storepb.AuthorisationRecord, error) {
	e, _, err := s.membership(ctx, caller, "uscc", uscc)
	if err != nil {
		return nil, err
	}
	if e.KeyId == "" {
		return nil, apierr.New(apierr.FailedPrecondition, "the enterprise has no key yet")
	}
	accepts := []keys.KeyAcceptance{{KeyID: e.KeyId, PIN: pin, Confirmation: confirmation}}
	switch {
	case e.EncryptionKeyId != "" && len(encryptionConfirmation) == 0:
		return nil, apierr.Invalidf("encryption_confirmation", "the enterprise has an encryption certificate: sign its key's challenge with the new pair of that key too")
	case e.EncryptionKeyId == "" && len(encryptionConfirmation) > 0:
		return nil, apierr.Invalidf("encryption_confirmation", "the enterprise has one key (claimed before certificate pairs): accept it alone")
	case e.EncryptionKeyId == "" && encryptionPIN != "":
		return nil, apierr.Invalidf("encryption_pin", "the enterprise has one key (claimed before certificate pairs): its pair takes pin alone")
	case e.EncryptionKeyId != "":
		if encryptionPIN == "" {
			encryptionPIN = pin
		}
		accepts = append(accepts, keys.KeyAcceptance{KeyID: e.EncryptionKeyId, PIN: encryptionPIN, Confirmation: encryptionConfirmation, Field: "encryption_"})
	}
	pairs, err := s.pairsOf(ctx, e, caller.UserID)
	if err != nil {
		return nil, err
	}
	var scope []string // the grant's, for the record
	for _, p := range pairs {
		if p.MemberDeviceId == caller.DeviceID {
			scope = p.Scope
		}
	}
	var rec *storepb.AuthorisationRecord
	err = s.deps.Keys.AcceptDelegations(ctx, caller, accepts, func(tx *store.Tx) error {
		if _, err := members.Get(tx, memberID(e.Uscc, caller.UserID)); err != nil {
			if errors.Is(err, store.ErrNotFound) {
				return notFound(e.Uscc)
			}
			return err
		}
		rec = authRecord(e, "accept", caller.UserID, caller.UserID, caller.DeviceID, scope)
		if err := record(tx, rec); err != nil {
			return err
		}
		if err := notice(tx, e.AdminUserId, "企业证书授权已接受", fmt.Sprintf("办事人员已在其设备上接受企业 %s 的证书授权", e.Name)); err != nil {
			return err
		}
		return audit(tx, caller, "delegation.accept", e.Uscc, keysAudit(e, map[string]string{"member": caller.UserID, "device": caller.DeviceID}))
	})
	if err != nil {
		return nil, err
	}
	s.m.changes.WithLabelValues("delegation.accept").Inc()
	return rec, nil
}

// Recall (收回, administrator) destroys a member's delegated server shares of both enterprise
// keys at once: the member's next signature or decryption is refused, everyone else's still
// works.
func (s *Service) Recall(ctx context.Context, caller authn.Caller, uscc, memberUserID string) (*storepb.AuthorisationRecord, error) {
	e, err := s.asAdmin(ctx, caller, uscc, true)
	if err != nil {
		return nil, err
	}
	if store.ValidPart(memberUserID) != nil {
		return nil, apierr.New(apierr.NotFound, "no member %q", memberUserID)
	}
	pairs, err := s.pairsOf(ctx, e, memberUserID)
	if err != nil {
		return nil, err
	}
	if len(pairs) == 0 {
		return nil, apierr.New(apierr.FailedPrecondition, "the member holds no delegated pair of the enterprise key")
	}
	var rec *storepb.AuthorisationRecord
	for _, p := range pairs {
		if rec, err = s.recallPair(ctx, caller, e, p, true); err != nil {
			return nil, err
		}
	}
	s.m.changes.WithLabelValues("delegation.recall").Inc()
	return rec, nil
}

// recallPair destroys one device's delegated pairs of the enterprise keys (both, in one
// transaction) with its authorisation record, notice and audit record. asAdmin re-checks, under the enterprise record's lock, that the caller still
// administers the enterprise (a transfer may have committed since the caller was checked);
// a member's removal, which checked the role under the same lock just before, passes false.
func (s *Service) recallPair(ctx context.Context, caller authn.Caller, e *storepb.Enterprise, p *storepb.DelegatedShare, asAdmin bool) (*storepb.AuthorisationRecord, error) {
	var rec *storepb.AuthorisationRecord
	err := s.deps.Keys.RecallDelegations(ctx, caller, enterpriseKeys(e), p.MemberUserId, p.MemberDeviceId, func(tx *store.Tx) error {
		if asAdmin {
			ent, err := enterprises.Get(tx, infoID(e.Uscc))
			if err != nil {
				return err
			}
			if ent.AdminUserId != caller.UserID {
				return apierr.New(apierr.PermissionDenied, "only the enterprise's administrator may do this")
			}
		}
		rec = authRecord(e, "recall", caller.UserID, p.MemberUserId, p.MemberDeviceId, p.Scope)
		if err := record(tx, rec); err != nil {
			return err
		}
		if err := notice(tx, p.MemberUserId, "企业证书授权已收回", fmt.Sprintf("企业 %s 的证书授权已收回", e.Name)); err != nil {
			return err
		}
		return audit(tx, caller, "delegation.recall", e.Uscc, keysAudit(e, map[string]string{"member": p.MemberUserId, "device": p.MemberDeviceId}))
	})
	return rec, err
}

// Records lists the authorisation records (授权记录): all for the administrator, the
// caller's own for staff; newest first.
func (s *Service) Records(ctx context.Context, caller authn.Caller, uscc string) ([]*storepb.AuthorisationRecord, error) {
	e, m, err := s.membership(ctx, caller, "uscc", uscc)
	if err != nil {
		return nil, err
	}
	page, err := authRecords.List(ctx, s.deps.Store, e.Uscc+"/auth/", store.ListOptions{Limit: store.MaxListLimit},
		func(_ string, r *storepb.AuthorisationRecord) bool {
			return m.Role == roleAdmin || r.MemberUserId == caller.UserID || r.ByUserId == caller.UserID
		})
	if err != nil {
		return nil, err
	}
	out := make([]*storepb.AuthorisationRecord, len(page.Items))
	for i, it := range page.Items {
		out[i] = it.Value
	}
	return out, nil
}

// TransferAdmin (转移, the administrator's consent) offers the administrator role to a staff
// member whose device holds accepted pairs of the enterprise keys (of both keys of a
// certificate pair).
func (s *Service) TransferAdmin(ctx context.Context, caller authn.Caller, uscc, toUserID string) (time.Time, error) {
	e, err := s.asAdmin(ctx, caller, uscc, true)
	if err != nil {
		return time.Time{}, err
	}
	if toUserID == caller.UserID || store.ValidPart(toUserID) != nil {
		return time.Time{}, apierr.Invalidf("to_user_id", "name another member of the enterprise")
	}
	if _, err := members.Read(ctx, s.deps.Store, memberID(e.Uscc, toUserID)); errors.Is(err, store.ErrNotFound) {
		return time.Time{}, apierr.New(apierr.NotFound, "no member %q", toUserID)
	} else if err != nil {
		return time.Time{}, err
	}
	if _, err := s.activePair(ctx, e, toUserID, ""); err != nil {
		return time.Time{}, err
	}
	expires := s.deps.Clock.Now().Add(s.opts.AdminTransferTTL)
	err = s.deps.Store.Update(ctx, func(tx *store.Tx) error {
		if err := adminTransfers.Put(tx, adminTransferID(e.Uscc), &storepb.AdminTransfer{Uscc: e.Uscc, FromUserId: caller.UserID,
			ToUserId: toUserID, CreatedUnixNano: tx.Now().UnixNano(), ExpiresUnixNano: expires.UnixNano()}, store.ExpiresAt(expires)); err != nil {
			return err
		}
		if err := notice(tx, toUserID, "管理员转移", fmt.Sprintf("管理员请您接任企业 %s 的管理员，请在已获授权的设备上确认", e.Name)); err != nil {
			return err
		}
		return audit(tx, caller, "admin.transfer.offer", e.Uscc, map[string]string{"to": toUserID})
	})
	return expires, err
}

// activePair is the member's accepted pair of the enterprise key, on device if given, on a
// device that holds an accepted pair of the encryption key too (an enterprise with a
// certificate pair).
func (s *Service) activePair(ctx context.Context, e *storepb.Enterprise, userID, device string) (*storepb.DelegatedShare, error) {
	pairs, err := s.pairsOf(ctx, e, userID)
	if err != nil {
		return nil, err
	}
	encryption := map[string]bool{} // devices with an accepted pair of the encryption key
	if e.EncryptionKeyId != "" {
		all, err := s.deps.Keys.ListDelegations(ctx, e.EncryptionKeyId)
		if err != nil {
			return nil, err
		}
		for _, p := range all {
			if p.MemberUserId == userID && pairActive(p) {
				encryption[p.MemberDeviceId] = true
			}
		}
	}
	for _, p := range pairs {
		if pairActive(p) && (device == "" || p.MemberDeviceId == device) && (e.EncryptionKeyId == "" || encryption[p.MemberDeviceId]) {
			return p, nil
		}
	}
	if device != "" && len(pairs) > 0 {
		return nil, apierr.New(apierr.PermissionDenied, "accept from the device that holds your pair of the enterprise key")
	}
	return nil, apierr.New(apierr.FailedPrecondition, "the member must hold an accepted delegated pair of the enterprise key (grant and accept first)")
}

// AcceptAdminTransfer (the new administrator's consent, from the device holding the pairs)
// completes a transfer: that device's pairs of the enterprise keys (signing and encryption)
// become the keys' primary pairs, the old administrator's pairs are destroyed, the enterprise
// certificates (both of a pair) move to the new administrator, every other delegated pair of
// either key is recalled (the old administrator's device made their phone shares, d1·ρ, and
// still knows them: the new administrator grants them anew), and the roles swap — all in one
// transaction. The new administrator's own pairs, which that device made too, are refreshed
// by client.AcceptAdminTransfer.
func (s *Service) AcceptAdminTransfer(ctx context.Context, caller authn.Caller, uscc string) (*storepb.Enterprise, error) {
	e, _, err := s.membership(ctx, caller, "uscc", uscc)
	if err != nil {
		return nil, err
	}
	t, err := adminTransfers.Read(ctx, s.deps.Store, adminTransferID(e.Uscc))
	if errors.Is(err, store.ErrNotFound) || (err == nil && t.ToUserId != caller.UserID) {
		return nil, apierr.New(apierr.FailedPrecondition, "no administrator transfer to you is waiting")
	}
	if err != nil {
		return nil, err
	}
	if _, err := s.activePair(ctx, e, caller.UserID, caller.DeviceID); err != nil {
		return nil, err
	}
	keyIDs := enterpriseKeys(e)
	certKeys := make([][]string, len(keyIDs))
	for i, keyID := range keyIDs {
		if certKeys[i], err = s.deps.Certs.KeyCertificates(ctx, keyID); err != nil {
			return nil, err
		}
	}
	// The other live pairs, which the promotion recalls (keys.PromoteDelegation), for their
	// authorisation records.
	all, err := s.deps.Keys.ListDelegations(ctx, e.KeyId)
	if err != nil {
		return nil, err
	}
	var others []*storepb.DelegatedShare
	for _, p := range all {
		if pairLive(p) && !(p.MemberUserId == caller.UserID && p.MemberDeviceId == caller.DeviceID) {
			others = append(others, p)
		}
	}
	var out *storepb.Enterprise
	err = s.deps.Keys.PromoteDelegations(ctx, caller, keyIDs, caller.UserID, caller.DeviceID, func(tx *store.Tx) error {
		cur, err := adminTransfers.Get(tx, adminTransferID(e.Uscc))
		if err != nil || cur.ToUserId != caller.UserID || cur.FromUserId != t.FromUserId {
			return apierr.New(apierr.Aborted, "the transfer changed; retry")
		}
		ent, err := enterprises.Get(tx, infoID(e.Uscc))
		if err != nil {
			return err
		}
		if ent.AdminUserId != t.FromUserId {
			return apierr.New(apierr.FailedPrecondition, "the administrator changed since the transfer was offered")
		}
		if !slices.Equal(enterpriseKeys(ent), keyIDs) {
			return apierr.New(apierr.Aborted, "the enterprise's keys changed; retry")
		}
		ent.AdminUserId, ent.UpdatedUnixNano = caller.UserID, tx.Now().UnixNano()
		if err := enterprises.Put(tx, infoID(ent.Uscc), ent); err != nil {
			return err
		}
		for i, keyID := range keyIDs {
			if err := s.deps.Certs.MoveKeyCertificates(tx, certKeys[i], keyID, t.FromUserId, caller.UserID); err != nil {
				return err
			}
		}
		for user, role := range map[string]int32{t.FromUserId: roleStaff, caller.UserID: roleAdmin} {
			m, err := members.Get(tx, memberID(ent.Uscc, user))
			if err != nil {
				return err
			}
			m.Role = role
			if role == roleStaff { // the old administrator's pair is destroyed with the promotion
				m.Via = "admin-transfer"
			}
			if err := members.Put(tx, memberID(ent.Uscc, user), m); err != nil {
				return err
			}
		}
		if err := adminTransfers.Delete(tx, adminTransferID(ent.Uscc)); err != nil {
			return err
		}
		if err := record(tx, authRecord(ent, "transfer", t.FromUserId, caller.UserID, caller.DeviceID, []string{"admin"})); err != nil {
			return err
		}
		for _, p := range others {
			if err := record(tx, authRecord(ent, "recall", caller.UserID, p.MemberUserId, p.MemberDeviceId, p.Scope)); err != nil {
				return err
			}
			if err := notice(tx, p.MemberUserId, "企业证书授权已收回", fmt.Sprintf("企业 %s 的管理员已转移，原授权已收回，请新管理员重新授权", ent.Name)); err != nil {
				return err
			}
		}
		for _, u := range []string{t.FromUserId, caller.UserID} {
			if err := notice(tx, u, "管理员已转移", fmt.Sprintf("企业 %s 的管理员已转移", ent.Name)); err != nil {
				return err
			}
		}
		out = ent
		return audit(tx, caller, "admin.transfer", ent.Uscc, keysAudit(ent, map[string]string{"from": t.FromUserId, "to": caller.UserID}))
	})
	if err != nil {
		return nil, err
	}
	s.m.changes.WithLabelValues("admin.transfer").Inc()
	return out, nil
}
