package daemon

import "net/http"

// OCSPHandlers exposes the OCSP responders to the external tests until the public PKI
// listener mounts them.
func (d *Daemon) OCSPHandlers() (map[string]http.Handler, error) { return d.ocspHandlers() }
