package daemon

import (
	"fmt"
	"net/http"

	"github.com/hufu-hsm/hufu/daemon/ca"
	"github.com/hufu-hsm/hufu/daemon/ca/ocsp"
)

// ocspHandlers builds the OCSP responder (daemon/ca/ocsp) of every embedded CA, by CA id,
// for the public PKI listener to mount at /ocsp/<ca id>/ under http.StripPrefix. An
// answer is valid as long as a CRL (certificates.crl_next_update), so the two never
// disagree for longer than a CRL may be cached. Call it once per daemon: it registers the
// responders' metrics.
func (d *Daemon) ocspHandlers() (map[string]http.Handler, error) {
	metrics := ocsp.NewMetrics(d.opts.Registry)
	out := map[string]http.Handler{}
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
