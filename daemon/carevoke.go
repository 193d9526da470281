package daemon

import (
	"context"
	"errors"
	"fmt"
	"sort"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/hufu-hsm/hufu/admin"
	"github.com/hufu-hsm/hufu/daemon/ca"
	"github.com/hufu-hsm/hufu/store"
)

// issuingCAs is the daemon's side of the admin surface's issuing CA revocation
// (admin.IssuingCAs): the embedded CAs by id, the revocation in the approval's batch, and
// the root CRL published right after, so that relying parties see the revocation at their
// next fetch rather than when half of the old root CRL's validity has passed.
type issuingCAs struct{ d *Daemon }

var (
	_ admin.IssuingCAs     = issuingCAs{}
	_ prometheus.Collector = issuingCAs{}
)

func (c issuingCAs) embedded(caID string) (*ca.Embedded, error) {
	e := c.d.EmbeddedCA(caID)
	if e == nil {
		return nil, admin.NotFound("ca: no embedded CA %q (the configured embedded CAs: %v)", caID, c.ids())
	}
	return e, nil
}

func (c issuingCAs) ids() []string {
	ids := make([]string, 0, len(c.d.pki.cas))
	for id := range c.d.pki.cas {
		ids = append(ids, id)
	}
	sort.Strings(ids)
	return ids
}

func (c issuingCAs) CheckRevocable(ctx context.Context, caID string) error {
	e, err := c.embedded(caID)
	if err != nil {
		return err
	}
	r, revoked, err := e.IssuingCARevocation(ctx)
	if err != nil {
		return err
	}
	if revoked {
		return admin.Conflict("ca: the issuing CA of %s was revoked already, at %s", caID, r.At.Format("2006-01-02T15:04:05Z"))
	}
	return nil
}

func (c issuingCAs) RevokeIssuing(ctx context.Context, caID string, reason int, by admin.Actor, inTx func(tx *store.Tx) error) (*admin.IssuingCARevoked, error) {
	e, err := c.embedded(caID)
	if err != nil {
		return nil, err
	}
	at, err := e.RevokeIssuingCAApproved(ctx, reason, "admin:"+by.Name, inTx)
	if err != nil {
		if errors.Is(err, ca.ErrIssuingCARevoked) {
			return nil, admin.Conflict("ca: the issuing CA of %s was revoked already", caID)
		}
		return nil, err
	}
	// From here the revocation and the approval are committed: nothing below may return an
	// error (the admin surface would audit a refusal of an approval that took effect), and
	// nothing below stops because the officer's client went away.
	ctx = context.WithoutCancel(ctx)
	out := &admin.IssuingCARevoked{CA: caID, IssuingSerial: fmt.Sprintf("%032x", e.Issuing().SerialNumber), Revoked: at,
		Reason: admin.IssuingCAReasonName(int32(reason))}
	// A CRL that cannot be signed now (the HSM busy, the store refusing writes) is signed at
	// the next fetch, which finds the entry count ahead of the stored CRL. The answer says so
	// instead of failing an approval that took effect.
	crl, err := e.CRLAt(ctx, ca.LevelRoot)
	if err != nil {
		c.d.opts.Log.Error("publishing the root CRL after revoking the issuing CA", "ca", caID, "err", err)
		out.RootCRLError = "the root CRL was not signed now (see the daemon log); it is signed at its next fetch"
		return out, nil
	}
	out.RootCRLNumber = crl.Number
	return out, nil
}

var issuingRevokedDesc = prometheus.NewDesc("hufu_ca_issuing_revoked",
	"1 if the embedded CA's issuing CA is on its root's revocation list (it issues nothing more; replace the CA), else 0, by CA id.",
	[]string{"ca"}, nil)

func (c issuingCAs) Describe(ch chan<- *prometheus.Desc) { ch <- issuingRevokedDesc }

func (c issuingCAs) Collect(ch chan<- prometheus.Metric) {
	for _, id := range c.ids() {
		v := 0.0
		if c.d.pki.cas[id].IssuingRevoked() {
			v = 1
		}
		ch <- prometheus.MustNewConstMetric(issuingRevokedDesc, prometheus.GaugeValue, v, id)
	}
}
