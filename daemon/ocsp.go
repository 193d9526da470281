package daemon

import (
	"fmt"

	"github.com/hufu-hsm/hufu/daemon/ca"
	"github.com/hufu-hsm/hufu/daemon/ca/ocsp"
)

// ocspResponder builds the OCSP responders (daemon/ca/ocsp) of every embedded CA behind
// one handler for the public PKI listener's routes POST /ocsp/{ca} and
// GET /ocsp/{ca}/{request...}. An answer is valid as long as a CRL
// (certificates.crl_next_update), so the two never disagree for longer than a CRL may be
// cached. Call it once per daemon: it registers the responders' metrics.
func (d *Daemon) ocspResponder() (ocsp.ByCA, error) {
	metrics := ocsp.NewMetrics(d.opts.Registry)
	out := ocsp.ByCA{}
	for _, c := range d.cfg.Certificates.CAs {
		conn, ok := d.certs.Connector(c.ID)
		if !ok {
			return nil, fmt.Errorf("ocsp: CA %s is not open", c.ID)
		}
		e, ok := conn.(*ca.Embedded)
		if !ok {
			continue // an external CA runs its own responder
		}
		h, err := ocsp.NewHandler(ocsp.Config{CAID: c.ID, Issuer: e.Issuing(), Source: e.OCSPSource(d.certs.IssuedBy(c.ID)),
			Signer: e, Clock: d.opts.Clock, Validity: d.cfg.Certificates.CRLNextUpdate.Std(), IncludeIssuer: true,
			Metrics: metrics, Log: d.opts.Log})
		if err != nil {
			return nil, fmt.Errorf("ocsp: CA %s: %w", c.ID, err)
		}
		out[c.ID] = h
	}
	return out, nil
}
