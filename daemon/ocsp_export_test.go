package daemon

import "net/http"

// OCSPResponder exposes the OCSP responders to the external tests until the public PKI
// listener mounts them.
func (d *Daemon) OCSPResponder() (http.Handler, error) { return d.ocspResponder() }
