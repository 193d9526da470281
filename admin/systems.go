package admin

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"slices"
	"strings"
	"time"

	"github.com/hufu-hsm/hufu/store"
	"github.com/hufu-hsm/hufu/store/storepb"
)

// desks are the gRPC services that are operators' desks, by desk name. Granting one to a
// system client needs a second security officer (approvals.go). The payment and
// after-sales desks join here by name when their services exist, e.g.
// "hufu.v1.PaymentService": "payment".
var desks = map[string]string{
	"hufu.v1.ReviewService":         "review",
	"hufu.v1.ReconciliationService": "reconciliation",
	"hufu.v1.InvoiceDeskService":    "invoicing",
	"hufu.v1.SupportDeskService":    "support",
	"hufu.v1.PaymentDeskService":    "payment",
	"hufu.v1.AfterSalesDeskService": "aftersales",
}

// DeskOf names the desk a gRPC service is, if it is one.
func DeskOf(service string) (string, bool) {
	d, ok := desks[service]
	return d, ok
}

// DesksOf lists the desks among services, sorted, without duplicates.
func DesksOf(services []string) []string {
	var out []string
	for _, s := range services {
		if d, ok := desks[s]; ok {
			out = append(out, d)
		}
	}
	slices.Sort(out)
	return slices.Compact(out)
}

// SystemClient is a business or bid-opening system allowed to call hufu's gRPC services
// with a client certificate whose common name is Name.
type SystemClient struct {
	Name     string   `json:"name"`
	Services []string `json:"services"`
	// Desks are the desks among Services (DeskOf), filled in by the admin surface.
	Desks []string `json:"desks,omitempty"`
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
	// Check validates c as Register would, without storing anything, and returns it
	// normalised (services sorted, without duplicates). Its errors are RequestErrors
	// naming the field: a bad name, an unknown service, a service that has no methods for
	// system clients, a name already registered or configured.
	Check(ctx context.Context, c SystemClient) (SystemClient, error)
	// Register stores the permissions, auditing the change with by in the same batch, and
	// returns the issued certificate (nil when the deployment's CA issues it). If inTx is
	// not nil it runs first inside that same transaction (the approval's decision); its
	// error aborts the registration.
	Register(ctx context.Context, c SystemClient, by Actor, inTx func(tx *store.Tx) error) (*IssuedCertificate, error)
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

// Forbidden is a 403 answer: the caller's role may use the endpoint but not for this.
func Forbidden(format string, args ...any) error {
	return &RequestError{Status: http.StatusForbidden, Message: fmt.Sprintf(format, args...)}
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
	for i := range list {
		list[i].Desks = DesksOf(list[i].Services)
	}
	writeJSON(w, http.StatusOK, struct {
		Clients []SystemClient `json:"clients"`
	}{list})
}

// registerSystem takes {"name": ..., "services": [...]}. Without a desk among the services
// the client is registered at once: the change and its audit record are one store batch
// (SystemClients.Register). A desk needs a second security officer: the request is stored
// (with its audit record) and answered 202 with the approval request to decide. Refusals
// are audited here.
func (s *Server) registerSystem(w http.ResponseWriter, r *http.Request, who Token) {
	var c SystemClient
	err := decodeBody(r, &c, `{"name": ..., "services": [...]}`)
	if err == nil && (c.Source != "" || c.RegisteredBy != "" || c.CertificateSerial != "" || c.Desks != nil) {
		err = Invalid("body: only name and services may be given")
	}
	if err == nil {
		c, err = s.opts.SystemClients.Check(r.Context(), c)
	}
	if err != nil {
		s.refuse(w, r, who, "system_client.register", map[string]string{"client": safeName(c.Name)}, "registering a system client", err)
		return
	}
	if d := DesksOf(c.Services); len(d) > 0 {
		s.requestSystemClient(w, r, who, c, d)
		return
	}
	issued, err := s.opts.SystemClients.Register(r.Context(), c, Actor{Name: who.Name, Role: who.Role}, nil)
	if err != nil {
		s.refuse(w, r, who, "system_client.register", map[string]string{"client": c.Name}, "registering a system client", err)
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

// requestSystemClient stores a registration that grants desks as an approval request.
func (s *Server) requestSystemClient(w http.ResponseWriter, r *http.Request, who Token, c SystemClient, deskNames []string) {
	s.changeMu.Lock()
	defer s.changeMu.Unlock()
	var a *storepb.AdminApproval
	err := s.opts.Store.Update(r.Context(), func(tx *store.Tx) error {
		a = s.newApproval(tx.Now(), who, ApprovalSystemClient)
		a.SystemClient = &storepb.SystemClient{Name: c.Name, Services: c.Services}
		a.Desks = deskNames
		if err := putApproval(tx, a); err != nil {
			return err
		}
		return tx.Audit(store.Event{Actor: "admin:" + who.Name, Action: "admin.approval.request", Subject: "z/approval/" + a.Id, Outcome: store.OutcomeOK,
			Details: map[string]string{"role": string(who.Role), "token": who.Name, "approval": a.Id, "kind": a.Kind, "client": c.Name,
				"services": strings.Join(c.Services, ","), "desks": strings.Join(deskNames, ","),
				"expires": time.Unix(0, a.ExpiresUnixNano).UTC().Format(time.RFC3339)}})
	})
	if err != nil {
		s.refuse(w, r, who, "system_client.register", map[string]string{"client": c.Name}, "registering a system client", err)
		return
	}
	writeJSON(w, http.StatusAccepted, struct {
		Approval Approval `json:"approval"`
		Note     string   `json:"note"`
	}{approvalJSON(a, s.opts.Clock.Now()), "the services include a desk: a second security officer must approve (POST /approvals/" + a.Id + "/approve)"})
}

func (s *Server) removeSystem(w http.ResponseWriter, r *http.Request, who Token) {
	name := r.PathValue("name")
	if err := s.opts.SystemClients.Remove(r.Context(), name, Actor{Name: who.Name, Role: who.Role}); err != nil {
		s.refuse(w, r, who, "system_client.remove", map[string]string{"client": safeName(name)}, "removing a system client", err)
		return
	}
	w.WriteHeader(http.StatusNoContent)
}
