package admin

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"

	"github.com/hufu-hsm/hufu/store"
)

// SystemClient is a business or bid-opening system allowed to call hufu's gRPC services
// with a client certificate whose common name is Name.
type SystemClient struct {
	Name     string   `json:"name"`
	Services []string `json:"services"`
	// Source is "config" (system_clients in hufu.yaml, read-only here) or "registered".
	Source            string `json:"source,omitempty"`
	RegisteredBy      string `json:"registered_by,omitempty"`
	CertificateSerial string `json:"certificate_serial,omitempty"`
}

// IssuedCertificate is a client certificate made at registration (development CA). The
// private key is in the answer to the registering request only; it is not kept.
type IssuedCertificate struct {
	Serial         string `json:"serial"`
	CertificatePEM string `json:"certificate_pem"`
	KeyPEM         string `json:"key_pem"`
}

// Actor is the admin caller on whose behalf a change is made and audited.
type Actor struct {
	Name string
	Role Role
}

// SystemClients registers system clients (the daemon implements it over the store).
type SystemClients interface {
	List(ctx context.Context) ([]SystemClient, error)
	// Register stores the permissions, auditing the change with by in the same batch, and
	// returns the issued certificate (nil when the deployment's CA issues it).
	Register(ctx context.Context, c SystemClient, by Actor) (*IssuedCertificate, error)
	Remove(ctx context.Context, name string, by Actor) error
}

// RequestError is an error the admin surface answers with its HTTP status and message.
type RequestError struct {
	Status  int
	Message string
}

func (e *RequestError) Error() string { return e.Message }

// Invalid is a 400 answer.
func Invalid(format string, args ...any) error {
	return &RequestError{Status: http.StatusBadRequest, Message: fmt.Sprintf(format, args...)}
}

// Conflict is a 409 answer.
func Conflict(format string, args ...any) error {
	return &RequestError{Status: http.StatusConflict, Message: fmt.Sprintf(format, args...)}
}

// NotFound is a 404 answer.
func NotFound(format string, args ...any) error {
	return &RequestError{Status: http.StatusNotFound, Message: fmt.Sprintf(format, args...)}
}

func (s *Server) writeError(w http.ResponseWriter, what string, err error) {
	var re *RequestError
	if errors.As(err, &re) {
		writeText(w, re.Status, re.Message+"\n")
		return
	}
	s.opts.Log.Error("admin: "+what, "err", err)
	writeText(w, http.StatusInternalServerError, what+" failed (see the daemon log)\n")
}

func (s *Server) listSystems(w http.ResponseWriter, r *http.Request, _ Token) {
	list, err := s.opts.SystemClients.List(r.Context())
	if err != nil {
		s.writeError(w, "listing system clients", err)
		return
	}
	if list == nil {
		list = []SystemClient{}
	}
	writeJSON(w, http.StatusOK, struct {
		Clients []SystemClient `json:"clients"`
	}{list})
}

// registerSystem takes {"name": ..., "services": [...]}; the change and its audit record
// are one store batch (SystemClients.Register), a refusal is audited here.
func (s *Server) registerSystem(w http.ResponseWriter, r *http.Request, who Token) {
	var c SystemClient
	dec := json.NewDecoder(io.LimitReader(r.Body, 64<<10))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&c); err != nil {
		writeText(w, http.StatusBadRequest, "body: want {\"name\": ..., \"services\": [...]}: "+err.Error()+"\n")
		return
	}
	c.Source, c.RegisteredBy, c.CertificateSerial = "", "", ""
	issued, err := s.opts.SystemClients.Register(r.Context(), c, Actor{Name: who.Name, Role: who.Role})
	if err != nil {
		_ = s.audit(r, who, "system_client.register", store.OutcomeDenied, map[string]string{"client": c.Name, "error": err.Error()})
		s.writeError(w, "registering a system client", err)
		return
	}
	c.Source, c.RegisteredBy = "registered", who.Name
	if issued != nil {
		c.CertificateSerial = issued.Serial
	}
	writeJSON(w, http.StatusCreated, struct {
		Client      SystemClient       `json:"client"`
		Certificate *IssuedCertificate `json:"certificate,omitempty"`
		Note        string             `json:"note,omitempty"`
	}{c, issued, map[bool]string{true: "", false: "issue the client certificate (common name = name) with the CA in tls.client_ca_file"}[issued != nil]})
}

func (s *Server) removeSystem(w http.ResponseWriter, r *http.Request, who Token) {
	name := r.PathValue("name")
	if err := s.opts.SystemClients.Remove(r.Context(), name, Actor{Name: who.Name, Role: who.Role}); err != nil {
		_ = s.audit(r, who, "system_client.remove", store.OutcomeDenied, map[string]string{"client": name, "error": err.Error()})
		s.writeError(w, "removing a system client", err)
		return
	}
	w.WriteHeader(http.StatusNoContent)
}
