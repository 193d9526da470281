package certs

import (
	"errors"
	"strings"
	"time"

	hufuv1 "github.com/hufu-hsm/hufu/api/hufu/v1"
	"github.com/hufu-hsm/hufu/daemon/apierr"
	"github.com/hufu-hsm/hufu/store"
	"github.com/hufu-hsm/hufu/store/storepb"
)

// Renewals and upgrades (follow-up orders) of an issued certificate.
//
// A certificate has at most one open (awaiting payment) renewal or upgrade order: the
// unique index x/cert-follow/<serial> names it from its creation until it is completed or
// cancelled. An order whose certificate was replaced or disabled since it was made is
// refused at payment (stale), before any charge; the payment transaction checks again.
//
// A renewal extends from the old certificate's expiry when it is renewed early (a 2-year
// certificate renewed a month before it ends is valid for 2 years after that end), and from
// the day of issue when it has expired. An upgrade keeps the old expiry.

// indexCertFollow holds, per certificate serial, its open renewal or upgrade order.
const indexCertFollow = "cert-follow"

func isFollow(o *storepb.Order) bool {
	return o.ReplacesSerial != "" && (o.Kind == int32(hufuv1.OrderKind_ORDER_KIND_RENEWAL) || o.Kind == int32(hufuv1.OrderKind_ORDER_KIND_UPGRADE))
}

// claimFollow makes o the one open follow-up order of its certificate inside tx.
func claimFollow(tx *store.Tx, o *storepb.Order) error {
	key := orderKey(o.UserId, o.Id)
	if owner, err := tx.Lookup(indexCertFollow, o.ReplacesSerial); err == nil && owner != key {
		return apierr.New(apierr.FailedPrecondition, "certificate %s already has an open renewal or upgrade order %s: pay or cancel it first",
			o.ReplacesSerial, owner[strings.LastIndex(owner, "/")+1:])
	} else if err != nil && !errors.Is(err, store.ErrNotFound) {
		return err
	}
	return tx.Claim(indexCertFollow, o.ReplacesSerial, key)
}

// releaseFollow ends o's claim as its certificate's open follow-up order inside tx (the
// order completed or was cancelled). Orders made before the index existed hold none.
func releaseFollow(tx *store.Tx, o *storepb.Order) error {
	if !isFollow(o) {
		return nil
	}
	return tx.Unclaim(indexCertFollow, o.ReplacesSerial, orderKey(o.UserId, o.Id))
}

// staleFollow refuses the payment of a follow-up order whose certificate is no longer the
// one it was made for: replaced by another renewal or upgrade, disabled or revoked.
func staleFollow(o *storepb.Order, base *storepb.Certificate) error {
	what := "renews"
	if o.Kind == int32(hufuv1.OrderKind_ORDER_KIND_UPGRADE) {
		what = "upgrades"
	}
	switch base.Status {
	case certSuperseded:
		return apierr.New(apierr.FailedPrecondition, "stale order: the certificate %s it %s was replaced by %s since; cancel this order and renew or upgrade %s instead",
			base.Serial, what, base.SupersededBy, base.SupersededBy)
	case certDisabled:
		return apierr.New(apierr.FailedPrecondition, "the certificate %s this order %s is disabled (已禁用) by an operator", base.Serial, what)
	case certRevoked:
		return apierr.New(apierr.FailedPrecondition, "the certificate %s this order %s is revoked; cancel the order", base.Serial, what)
	}
	return nil
}

// renewalNotAfter is the expiry of a renewal of base for years, issued at now: from base's
// expiry if it has not passed, else from now (zero: the CA counts from the day of issue).
func renewalNotAfter(base *storepb.Certificate, years int, now time.Time) time.Time {
	end := time.Unix(0, base.NotAfterUnixNano)
	if !end.After(now) {
		return time.Time{}
	}
	return end.AddDate(years, 0, 0)
}
