package admin

import (
	"context"
	"net/http"
	"regexp"
	"strconv"
	"time"

	"github.com/hufu-hsm/hufu/store"
	"github.com/hufu-hsm/hufu/store/storepb"
)

// Revoking an embedded CA's issuing CA (issue 17): the answer to a compromised issuing key.
// A security officer asks (POST /ca/revoke-issuing), which stores an approval request of
// kind ApprovalIssuingCARevocation with its audit record; a second, different officer
// approves it (POST /approvals/{id}/approve), and the decision, the root's revocation entry
// and their audit records are one batch (IssuingCAs.RevokeIssuing). The daemon then signs
// and publishes a new root CRL at once, so relying parties fetching it from the PKI listener
// (/ca/<id>/root.crl) or /crl see the issuing CA listed. The revocation cannot be undone,
// and the CA issues nothing more: docs/operations.md says what the operator does next.

// ApprovalIssuingCARevocation is the approval kind of an issuing CA's revocation.
const ApprovalIssuingCARevocation = "ca.revoke_issuing"

// IssuingCAReasons are the RFC 5280 §5.3.1 reasons an issuing CA certificate may be revoked
// for, by the names the request uses, with their codes.
var IssuingCAReasons = map[string]int{
	"keyCompromise":        1,
	"cACompromise":         2,
	"affiliationChanged":   3,
	"superseded":           4,
	"cessationOfOperation": 5,
}

// caIDRE is the form of a configured CA id (certificates.cas[].id), checked before the id
// goes into a lookup, an error or an audit record.
var caIDRE = regexp.MustCompile(`^[a-z0-9-]{1,32}$`)

// issuingCAReasonList is IssuingCAReasons' names in code order, for error messages and help.
const issuingCAReasonList = "keyCompromise, cACompromise, affiliationChanged, superseded or cessationOfOperation"

// IssuingCAReasonName is the IssuingCAReasons name of a reason code (the number itself if
// it has none).
func IssuingCAReasonName(code int32) string {
	for name, c := range IssuingCAReasons {
		if int32(c) == code {
			return name
		}
	}
	return strconv.Itoa(int(code))
}

// IssuingCAs revokes the issuing CAs of the embedded CAs (the daemon implements it).
type IssuingCAs interface {
	// CheckRevocable refuses, as RequestErrors, a CA id that is not a configured embedded CA
	// (404) and one whose issuing CA is revoked already (409).
	CheckRevocable(ctx context.Context, caID string) error
	// RevokeIssuing puts caID's issuing CA on its root's revocation list with reason (an
	// IssuingCAReasons code), auditing it as by; inTx (the approval's decision) runs first
	// in the same batch and its error aborts the revocation. After the commit it publishes
	// a new root CRL. It refuses what CheckRevocable refuses, checked again in the batch.
	// It returns an error only if the batch did not commit: once the revocation (and with
	// it the approval) is committed it answers, Revoked being the batch's time, whatever
	// happens after (a root CRL not signed now is RootCRLError, not an error).
	RevokeIssuing(ctx context.Context, caID string, reason int, by Actor, inTx func(tx *store.Tx) error) (*IssuingCARevoked, error)
}

// IssuingCARevocation is what a ca.revoke_issuing request asks for.
type IssuingCARevocation struct {
	CA     string `json:"ca"`
	Reason string `json:"reason"`
}

// IssuingCARevoked is what an approved revocation did.
type IssuingCARevoked struct {
	CA            string    `json:"ca"`
	IssuingSerial string    `json:"issuing_serial"` // lower-case hex, as on the root CRL
	Reason        string    `json:"reason"`
	Revoked       time.Time `json:"revoked"`
	// RootCRLNumber is the number of the root CRL published with the entry; 0 if the CRL
	// could not be signed now (it is then signed at the next fetch: the entry is stored).
	RootCRLNumber uint64 `json:"root_crl_number,omitempty"`
	// RootCRLError says why the root CRL was not published now, if it was not.
	RootCRLError string `json:"root_crl_error,omitempty"`
}

// requestIssuingCARevocation takes {"ca": ..., "reason": ...}, checks both and stores the
// request for a second officer (202). Refusals are audited.
func (s *Server) requestIssuingCARevocation(w http.ResponseWriter, r *http.Request, who Token) {
	const action, what = "admin.ca.revoke_issuing", "requesting the revocation of an issuing CA"
	var req IssuingCARevocation
	err := decodeBody(r, &req, `{"ca": ..., "reason": ...}`)
	reason, known := IssuingCAReasons[req.Reason]
	switch {
	case err != nil:
	case !caIDRE.MatchString(req.CA):
		err = Invalid("ca: want the id of an embedded CA (certificates.cas[].id: 1..32 of [a-z0-9-])")
	case !known:
		err = Invalid("reason: want %s (RFC 5280 reasons for a CA certificate)", issuingCAReasonList)
	default:
		err = s.opts.IssuingCAs.CheckRevocable(r.Context(), req.CA)
	}
	details := map[string]string{"ca": "(invalid)", "reason": "(invalid)"}
	if caIDRE.MatchString(req.CA) {
		details["ca"] = req.CA
	}
	if known {
		details["reason"] = req.Reason
	}
	if err != nil {
		s.refuse(w, r, who, action, details, what, err)
		return
	}
	s.changeMu.Lock()
	defer s.changeMu.Unlock()
	var a *storepb.AdminApproval
	err = s.opts.Store.Update(r.Context(), func(tx *store.Tx) error {
		a = s.newApproval(tx.Now(), who, ApprovalIssuingCARevocation)
		a.IssuingCaRevocation = &storepb.IssuingCARevocation{CaId: req.CA, Reason: int32(reason)}
		if err := putApproval(tx, a); err != nil {
			return err
		}
		return tx.Audit(store.Event{Actor: "admin:" + who.Name, Action: "admin.approval.request", Subject: "z/approval/" + a.Id, Outcome: store.OutcomeOK,
			Details: map[string]string{"role": string(who.Role), "token": who.Name, "approval": a.Id, "kind": a.Kind, "ca": req.CA,
				"reason": req.Reason, "expires": time.Unix(0, a.ExpiresUnixNano).UTC().Format(time.RFC3339)}})
	})
	if err != nil {
		s.refuse(w, r, who, action, details, what, err)
		return
	}
	writeJSON(w, http.StatusAccepted, struct {
		Approval Approval `json:"approval"`
		Note     string   `json:"note"`
	}{approvalJSON(a, s.opts.Clock.Now()), "revoking an issuing CA needs a second security officer: POST /approvals/" + a.Id + "/approve"})
}
