package certs

import (
	"context"
	"errors"
	"fmt"

	hufuv1 "github.com/hufu-hsm/hufu/api/hufu/v1"
	"github.com/hufu-hsm/hufu/daemon/apierr"
	"github.com/hufu-hsm/hufu/daemon/authn"
	"github.com/hufu-hsm/hufu/store"
	"github.com/hufu-hsm/hufu/store/storepb"
)

// Disabling (已禁用, seed §1.7.2): the review desk can take an active certificate out of use
// and put it back. A disabled certificate is not revoked (the CRL is unchanged and the key's
// share lives on); it is listed as no longer valid (已失效), cannot be renewed or upgraded,
// and the key gate (KeyUsable) no longer counts it, so a key whose only certificate is
// disabled can neither sign nor decrypt. A key with another active certificate (another CA)
// stays usable through that one. The holder is told through the inbox, with the reason.
// A certificate pair is disabled and enabled as one: the other certificate follows, with
// its own audit record.

// Disable disables an active certificate of any user, with a required reason.
func (s *Service) Disable(ctx context.Context, caller authn.Caller, serial, reason string) (*storepb.Certificate, error) {
	return s.setDisabled(ctx, caller, serial, reason, true)
}

// Enable re-enables a disabled certificate, with a required reason.
func (s *Service) Enable(ctx context.Context, caller authn.Caller, serial, reason string) (*storepb.Certificate, error) {
	return s.setDisabled(ctx, caller, serial, reason, false)
}

func (s *Service) setDisabled(ctx context.Context, caller authn.Caller, serial, reason string, disable bool) (*storepb.Certificate, error) {
	if err := checkSerial(serial); err != nil {
		return nil, err
	}
	reason, err := checkReason("reason", reason, true)
	if err != nil {
		return nil, err
	}
	var out *storepb.Certificate
	err = s.deps.Store.Update(ctx, func(tx *store.Tx) error {
		out = nil
		key, err := tx.Lookup(indexCert, serial)
		if errors.Is(err, store.ErrNotFound) {
			return apierr.New(apierr.NotFound, "no certificate %q", serial)
		}
		if err != nil {
			return err
		}
		c := new(storepb.Certificate)
		if err := tx.Get(key, c); err != nil {
			return err
		}
		now := tx.Now()
		action, kind, title, body := "cert.enable", hufuv1.MessageKind_MESSAGE_KIND_CERTIFICATE_ENABLED, "证书已恢复使用",
			fmt.Sprintf("证书 %s 已恢复使用。原因：%s", serial, reason)
		if disable {
			if st := s.effective(c); st != hufuv1.CertificateStatus_CERTIFICATE_STATUS_ACTIVE {
				return apierr.New(apierr.FailedPrecondition, "only an active certificate can be disabled; this one is %s", certStatusName(st))
			}
			c.Status, c.DisabledReason, c.DisabledUnixNano, c.DisabledBy = certDisabled, reason, now.UnixNano(), caller.Actor()
			action, kind, title, body = "cert.disable", hufuv1.MessageKind_MESSAGE_KIND_CERTIFICATE_DISABLED, "证书已禁用",
				fmt.Sprintf("证书 %s 已被禁用，不能签名或解密。原因：%s", serial, reason)
		} else {
			if c.Status != certDisabled {
				return apierr.New(apierr.FailedPrecondition, "the certificate is not disabled; it is %s", certStatusName(s.effective(c)))
			}
			c.Status, c.DisabledReason, c.DisabledUnixNano, c.DisabledBy = certActive, "", 0, ""
		}
		if err := tx.Put(key, c); err != nil {
			return err
		}
		if err := notify(tx, c.UserId, kind, title, body, "", serial); err != nil {
			return err
		}
		out = c
		if err := tx.Audit(store.Event{Actor: caller.Actor(), Action: action, Subject: key, Outcome: store.OutcomeOK,
			Details: map[string]string{"reason": reason, "key": c.KeyId}}); err != nil {
			return err
		}
		if c.PairSerial == "" {
			return nil
		}
		pairKey := certKey(c.UserId, c.PairSerial)
		pair := new(storepb.Certificate)
		if err := tx.Get(pairKey, pair); err != nil {
			return err
		}
		switch {
		case disable && pair.Status == certActive:
			pair.Status, pair.DisabledReason, pair.DisabledUnixNano, pair.DisabledBy = certDisabled, reason, now.UnixNano(), caller.Actor()
		case !disable && pair.Status == certDisabled:
			pair.Status, pair.DisabledReason, pair.DisabledUnixNano, pair.DisabledBy = certActive, "", 0, ""
		default:
			return nil
		}
		if err := tx.Put(pairKey, pair); err != nil {
			return err
		}
		return tx.Audit(store.Event{Actor: caller.Actor(), Action: action, Subject: pairKey, Outcome: store.OutcomeOK,
			Details: map[string]string{"reason": reason, "key": pair.KeyId, "pair": serial}})
	})
	if out != nil {
		for _, k := range pairKeys(out) {
			s.gate.forget(k)
		}
	}
	return out, err
}
