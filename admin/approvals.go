package admin

import (
	"errors"
	"net/http"
	"regexp"
	"sort"
	"strings"
	"time"

	"github.com/hufu-hsm/hufu/store"
	"github.com/hufu-hsm/hufu/store/storepb"
)

// Approvals: the changes one security officer may ask for but not make alone. The grant of
// a desk permission to a system client (DeskOf), a new security_officer token and the
// revocation of an issuing CA (carevoke.go) are stored as a request at z/approval/<id>,
// audited in the batch that stores it; a different security officer approves it (the
// change and the decision are one batch, with their audit records) or any officer rejects
// it (the asker withdraws, the second refuses).
// Requests expire after Options.ApprovalTTL; an expired request can no longer be decided.
//
// "Different" means another token holder whose token the asker did not create: an officer
// cannot approve their own request with a token they made online for the purpose. (And a
// security_officer token made online is itself inactive until a second officer approves
// it, so one officer cannot mint the second.)

var approvalRecords = store.NewCollection(store.KindAdmin, func() *storepb.AdminApproval { return new(storepb.AdminApproval) })

const approvalIDPrefix = "approval/"

// approvalRetention is how long a decided or expired request stays listed.
const approvalRetention = 30 * 24 * time.Hour

// Approval kinds.
const (
	ApprovalSystemClient = "system_client.register"
	ApprovalToken        = "token.create"
)

// Approval states, as GET /approvals shows them.
const (
	ApprovalPending  = "pending"
	ApprovalApproved = "approved"
	ApprovalRejected = "rejected"
	ApprovalExpired  = "expired" // still pending at its expiry: it can no longer be decided
)

var approvalIDRE = regexp.MustCompile(`^[0-9a-f]{16}$`)

// Approval is one request as the admin surface shows it.
type Approval struct {
	ID            string        `json:"id"`
	Kind          string        `json:"kind"`
	State         string        `json:"state"`
	RequestedBy   string        `json:"requested_by"`
	RequestedRole Role          `json:"requested_role"`
	Requested     time.Time     `json:"requested"`
	Expires       time.Time     `json:"expires"`
	DecidedBy     string        `json:"decided_by,omitempty"`
	Decided       *time.Time    `json:"decided,omitempty"`
	SystemClient  *SystemClient `json:"system_client,omitempty"`
	Desks         []string      `json:"desks,omitempty"`
	TokenName     string        `json:"token_name,omitempty"`
	// IssuingCARevocation is the issuing CA a ca.revoke_issuing request revokes.
	IssuingCARevocation *IssuingCARevocation `json:"issuing_ca_revocation,omitempty"`
}

// Decision is the answer to POST /approvals/{id}/approve or /reject: the request as
// decided and, for an approval, what it made.
type Decision struct {
	Approval    Approval           `json:"approval"`
	Client      *SystemClient      `json:"client,omitempty"`
	Certificate *IssuedCertificate `json:"certificate,omitempty"`
	Token       *TokenInfo         `json:"token,omitempty"`
	// IssuingCARevoked is what an approved ca.revoke_issuing request did.
	IssuingCARevoked *IssuingCARevoked `json:"issuing_ca_revoked,omitempty"`
}

func approvalState(a *storepb.AdminApproval, now time.Time) string {
	switch a.State {
	case storepb.ApprovalState_APPROVAL_STATE_APPROVED:
		return ApprovalApproved
	case storepb.ApprovalState_APPROVAL_STATE_REJECTED:
		return ApprovalRejected
	}
	if now.UnixNano() >= a.ExpiresUnixNano {
		return ApprovalExpired
	}
	return ApprovalPending
}

func approvalJSON(a *storepb.AdminApproval, now time.Time) Approval {
	out := Approval{
		ID: a.Id, Kind: a.Kind, State: approvalState(a, now), RequestedBy: a.RequestedBy, RequestedRole: Role(a.RequestedRole),
		Requested: time.Unix(0, a.RequestedUnixNano).UTC(), Expires: time.Unix(0, a.ExpiresUnixNano).UTC(),
		DecidedBy: a.DecidedBy, Decided: unixTime(a.DecidedUnixNano), Desks: a.Desks, TokenName: a.TokenName,
	}
	if c := a.SystemClient; c != nil {
		out.SystemClient = &SystemClient{Name: c.Name, Services: c.Services, Desks: a.Desks}
	}
	if c := a.IssuingCaRevocation; c != nil {
		out.IssuingCARevocation = &IssuingCARevocation{CA: c.CaId, Reason: IssuingCAReasonName(c.Reason)}
	}
	return out
}

func (s *Server) newApproval(now time.Time, who Token, kind string) *storepb.AdminApproval {
	return &storepb.AdminApproval{
		Id: store.RandomID(8), Kind: kind, RequestedBy: who.Name, RequestedRole: string(who.Role),
		RequestedUnixNano: now.UnixNano(), ExpiresUnixNano: now.Add(s.opts.ApprovalTTL).UnixNano(),
		State: storepb.ApprovalState_APPROVAL_STATE_PENDING,
	}
}

func putApproval(tx *store.Tx, a *storepb.AdminApproval) error {
	return approvalRecords.Put(tx, approvalIDPrefix+a.Id, a, store.ExpiresAt(time.Unix(0, a.ExpiresUnixNano).Add(approvalRetention)))
}

func (s *Server) listApprovals(w http.ResponseWriter, r *http.Request, _ Token) {
	want := r.URL.Query().Get("state")
	switch want {
	case "", ApprovalPending, ApprovalApproved, ApprovalRejected, ApprovalExpired:
	default:
		writeText(w, http.StatusBadRequest, "state: want pending, approved, rejected or expired\n")
		return
	}
	now := s.opts.Clock.Now()
	out := []Approval{}
	opts := store.ListOptions{Limit: store.MaxListLimit}
	for {
		page, err := approvalRecords.List(r.Context(), s.opts.Store, approvalIDPrefix, opts, nil)
		if err != nil {
			s.writeError(w, "listing approvals", err)
			return
		}
		for _, it := range page.Items {
			if a := approvalJSON(it.Value, now); want == "" || a.State == want {
				out = append(out, a)
			}
		}
		if page.Next == "" {
			break
		}
		opts.Cursor = page.Next
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Requested.After(out[j].Requested) })
	writeJSON(w, http.StatusOK, struct {
		Approvals []Approval `json:"approvals"`
	}{out})
}

// mayDecide refuses a request that is not pending, and an approval by the person who asked:
// the same token, or any token with the same principal (the officer's configured token and
// every token created from it, in either direction).
func (s *Server) mayDecide(a *storepb.AdminApproval, now time.Time, who Token, approve bool) error {
	switch st := approvalState(a, now); st {
	case ApprovalPending:
	case ApprovalExpired:
		return Conflict("approval request %s expired at %s; ask again", a.Id, time.Unix(0, a.ExpiresUnixNano).UTC().Format(time.RFC3339))
	default:
		return Conflict("approval request %s was already %s by %s", a.Id, st, a.DecidedBy)
	}
	if !approve {
		return nil
	}
	if who.Name == a.RequestedBy {
		return Forbidden("a second security officer must approve: %s asked for this", a.RequestedBy)
	}
	if p := s.principal(who.Name); p == s.principal(a.RequestedBy) {
		return Forbidden("a second security officer must approve: tokens %s and %s both go back to %s", who.Name, a.RequestedBy, p)
	}
	return nil
}

// principal is the person behind a token: a configured token is its own principal, an
// online token has the principal of the token that created it (stored at creation; for a
// record without one, the chain of creators is followed).
func (s *Server) principal(name string) string {
	for range maxPrincipalChain {
		t := s.online.get(name)
		if t == nil {
			return name
		}
		if t.Principal != "" {
			return t.Principal
		}
		name = t.CreatedBy
	}
	return name
}

// maxPrincipalChain bounds the walk up the creators of a token; creation chains are short,
// and a cycle cannot be stored (a token is created by one that exists).
const maxPrincipalChain = 64

func (s *Server) approve(w http.ResponseWriter, r *http.Request, who Token) {
	s.decide(w, r, who, true)
}
func (s *Server) reject(w http.ResponseWriter, r *http.Request, who Token) {
	s.decide(w, r, who, false)
}

// decide approves or rejects a pending request. The request's new state, the change it
// asked for and the audit records of both are one batch: an approval that fails leaves the
// request pending and changes nothing.
func (s *Server) decide(w http.ResponseWriter, r *http.Request, who Token, approve bool) {
	id := r.PathValue("id")
	action := "admin.approval.reject"
	if approve {
		action = "admin.approval.approve"
	}
	what := strings.TrimPrefix(action, "admin.approval.") + "ing a request"
	if !approvalIDRE.MatchString(id) {
		s.refuse(w, r, who, action, map[string]string{"approval": "(invalid)"}, what, Invalid("id: want the 16 hex digits of an approval request"))
		return
	}
	s.changeMu.Lock()
	defer s.changeMu.Unlock()
	pending, err := approvalRecords.Read(r.Context(), s.opts.Store, approvalIDPrefix+id)
	if errors.Is(err, store.ErrNotFound) {
		err = NotFound("no approval request %s", id)
	}
	if err != nil {
		s.refuse(w, r, who, action, map[string]string{"approval": id}, what, err)
		return
	}
	// Refuse early what the transaction would refuse, before a registration does any work
	// (in development it issues a certificate first).
	if err := s.mayDecide(pending, s.opts.Clock.Now(), who, approve); err != nil {
		s.refuse(w, r, who, action, map[string]string{"approval": id}, what, err)
		return
	}
	// decideInTx checks the request again under the transaction's lock and records the
	// decision with its audit record.
	var decided *storepb.AdminApproval
	decideInTx := func(tx *store.Tx) error {
		a, err := approvalRecords.Get(tx, approvalIDPrefix+id)
		if errors.Is(err, store.ErrNotFound) {
			return NotFound("no approval request %s", id)
		} else if err != nil {
			return err
		}
		now := tx.Now()
		if err := s.mayDecide(a, now, who, approve); err != nil {
			return err
		}
		if approve {
			a.State = storepb.ApprovalState_APPROVAL_STATE_APPROVED
		} else {
			a.State = storepb.ApprovalState_APPROVAL_STATE_REJECTED
		}
		a.DecidedBy, a.DecidedUnixNano = who.Name, now.UnixNano()
		if err := putApproval(tx, a); err != nil {
			return err
		}
		d := map[string]string{"role": string(who.Role), "token": who.Name, "approval": id, "kind": a.Kind, "requested_by": a.RequestedBy}
		if c := a.SystemClient; c != nil {
			d["client"], d["services"], d["desks"] = c.Name, strings.Join(c.Services, ","), strings.Join(a.Desks, ",")
		}
		if a.TokenName != "" {
			d["name"] = a.TokenName
		}
		if c := a.IssuingCaRevocation; c != nil {
			d["ca"], d["reason"] = c.CaId, IssuingCAReasonName(c.Reason)
		}
		decided = a
		return tx.Audit(store.Event{Actor: "admin:" + who.Name, Action: action, Subject: "z/approval/" + id, Outcome: store.OutcomeOK, Details: d})
	}

	var out Decision
	switch {
	case pending.Kind == ApprovalSystemClient && approve:
		if s.opts.SystemClients == nil || pending.SystemClient == nil {
			err = Conflict("approval request %s: this daemon registers no system clients", id)
			break
		}
		c := SystemClient{Name: pending.SystemClient.Name, Services: pending.SystemClient.Services}
		out.Certificate, err = s.opts.SystemClients.Register(r.Context(), c, Actor{Name: who.Name, Role: who.Role}, decideInTx)
		if err == nil {
			c.Source, c.RegisteredBy, c.Desks = "registered", who.Name, DesksOf(c.Services)
			if out.Certificate != nil {
				c.CertificateSerial = out.Certificate.Serial
			}
			out.Client = &c
		}
	case pending.Kind == ApprovalToken:
		var tok *storepb.AdminToken
		err = s.opts.Store.Update(r.Context(), func(tx *store.Tx) error {
			if err := decideInTx(tx); err != nil {
				return err
			}
			t, err := tokenRecords.Get(tx, tokenIDPrefix+decided.TokenName)
			if errors.Is(err, store.ErrNotFound) {
				return Conflict("approval request %s: token %q is gone", id, decided.TokenName)
			} else if err != nil {
				return err
			}
			if t.ApprovalId != id || t.RevokedUnixNano != 0 {
				return Conflict("approval request %s: token %q was revoked", id, decided.TokenName)
			}
			if approve {
				t.ApprovalId = ""
			} else {
				// A rejected token is dead: it must never become active by another route.
				t.RevokedUnixNano, t.RevokedBy = tx.Now().UnixNano(), who.Name
			}
			tok = t
			return tokenRecords.Put(tx, tokenIDPrefix+t.Name, t, store.ExpiresAt(time.Unix(0, t.ExpiresUnixNano).Add(tokenRetention)))
		})
		if err == nil {
			s.online.set(tok)
			info := onlineInfo(tok, s.opts.Clock.Now())
			out.Token = &info
		}
	case pending.Kind == ApprovalIssuingCARevocation && approve:
		c := pending.IssuingCaRevocation
		if s.opts.IssuingCAs == nil || c == nil {
			err = Conflict("approval request %s: this daemon revokes no issuing CAs", id)
			break
		}
		// An error here means nothing was committed (RevokeIssuing's contract), so refusing
		// below never contradicts an approval the log already holds.
		out.IssuingCARevoked, err = s.opts.IssuingCAs.RevokeIssuing(r.Context(), c.CaId, int(c.Reason), Actor{Name: who.Name, Role: who.Role}, decideInTx)
	default:
		err = s.opts.Store.Update(r.Context(), decideInTx)
	}
	if err != nil {
		s.refuse(w, r, who, action, map[string]string{"approval": id}, what, err)
		return
	}
	out.Approval = approvalJSON(decided, s.opts.Clock.Now())
	code := http.StatusOK
	if out.Client != nil {
		code = http.StatusCreated
	}
	writeJSON(w, code, out)
}
