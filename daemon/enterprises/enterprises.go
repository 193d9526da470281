// Package enterprises is the enterprise side of hufu (seed manual §1.6, §1.7.4.4): the
// enterprises that bid, their one administrator (管理员) and their staff (办事人员), how a
// person gets there — claim (认领), join (加入) by application or invite, approval and
// return — and the enterprise key whose use the administrator delegates to staff devices,
// each with its own share pair (package keys does the cryptography; this package decides who
// may hold a pair and keeps the authorisation records, 授权记录).
//
// # Invariants
//
//   - An enterprise has at most one administrator. A claim makes its applicant the
//     administrator in the transaction that stores the enterprise certificate (certs calls
//     EnterpriseCertificateIssued), under the lock of the enterprise's record, so of two
//     claims paid at once exactly one succeeds; the other payment is refused with
//     FailedPrecondition and refunded.
//   - Only members see an enterprise beyond search results; to anyone else it does not exist
//     (NotFound), and a join application that names the wrong administrator is refused
//     without saying who the administrator is.
//   - Every change is audited in its own transaction; audit details carry ids, never names,
//     ID numbers or phone numbers.
//
// # Records
//
//	e/<uscc>/info                     storepb.Enterprise
//	e/<uscc>/member/<user id>         storepb.Member
//	e/<uscc>/claim/<order id>         storepb.Claim: a claim waiting for its payment
//	e/<uscc>/join/<application id>    storepb.JoinApplication
//	e/<uscc>/invite/<invite id>       storepb.Invite
//	e/<uscc>/auth/<inverted time id>  storepb.AuthorisationRecord, newest first
//	e/<uscc>/admin-transfer           storepb.AdminTransfer (with an expiry)
//	x/enterprise-name/<name key>/<e key>   enterprises by normalised name
//	x/user-enterprise/<user id>/<member key>
//	x/join/<application id>           -> the application (unique)
//	x/join-request/<user id>.<request id> -> the application a request made (unique)
//	x/user-join/<user id>/<application key>
//	x/join-pending/<user id>.<uscc>   -> the person's pending application (unique)
//	x/invite/<invite id>              -> the invite (unique)
//	x/enterprise-sealed/legal-rep/<key> the records holding legal-representative HSM blobs
//	                                    (enterprises and claims), for KEK rotation (rotate.go)
//
// Corporate-transfer verification (对公打款认证) keeps its applications and imported
// bank-statement lines beside these; transfer.go documents its records and states.
//
// The legal representative's ID number and phone number are stored HSM-wrapped with
// associated data "hufu/enterprise/v1 legal-rep-id " ‖ uscc (and "legal-rep-phone ") and
// shown masked.
package enterprises

import (
	"context"
	"errors"
	"time"

	hufuv1 "github.com/hufu-hsm/hufu/api/hufu/v1"
	"github.com/hufu-hsm/hufu/daemon/apierr"
	"github.com/hufu-hsm/hufu/daemon/authn"
	"github.com/hufu-hsm/hufu/daemon/certs"
	"github.com/hufu-hsm/hufu/daemon/identity"
	"github.com/hufu-hsm/hufu/daemon/keys"
	"github.com/hufu-hsm/hufu/store"
	"github.com/hufu-hsm/hufu/store/storepb"
	"github.com/prometheus/client_golang/prometheus"
)

// Keyring is what enterprises needs of the HSM: wrapping personal data, and the HMAC key
// that authenticates invites.
type Keyring interface {
	Wrap(ctx context.Context, plaintext, ad []byte) ([]byte, error)
	EnsureCurrent(ctx context.Context, blob, ad []byte) ([]byte, error)
	PINVerifier(ctx context.Context, salt, keyContext, pin []byte) ([]byte, error)
	VerifyPIN(ctx context.Context, want, salt, keyContext, pin []byte) (bool, error)
}

// Accounts is what enterprises needs of the account domain.
type Accounts interface {
	// VerifiedUser returns a user whose real name is verified (FailedPrecondition otherwise).
	VerifiedUser(ctx context.Context, userID string) (*storepb.User, error)
}

// Certs is what enterprises needs of the certificate domain.
type Certs interface {
	ApplyEnterprise(ctx context.Context, caller authn.Caller, a certs.EnterpriseApplication) (*storepb.Order, error)
	OrderPB(o *storepb.Order) *hufuv1.Order
	CAName(id string) (string, bool)
	// Certificate returns a certificate by serial with its chain.
	Certificate(ctx context.Context, serial string) (*storepb.Certificate, [][]byte, error)
	// KeyCertificates and MoveKeyCertificates re-home a key's certificates to its new
	// holder inside tx (an administrator transfer).
	KeyCertificates(ctx context.Context, keyID string) ([]string, error)
	MoveKeyCertificates(tx *store.Tx, keys []string, keyID, fromUser, toUser string) error
}

// Keys is what enterprises needs of the split keys: the enterprise key and its delegated
// pairs.
type Keys interface {
	OwnedKey(ctx context.Context, caller authn.Caller, keyID string) (*storepb.SplitKey, error)
	// The delegation operations take every enterprise key (signing, then encryption) and
	// commit them in one transaction with the enterprise's records (with).
	GrantDelegations(ctx context.Context, caller authn.Caller, memberUserID, memberDeviceID string, grants []keys.KeyGrant,
		scope []string, with func(tx *store.Tx) error) ([]*storepb.DelegatedShare, error)
	// DelegationOffer returns the caller device's pending pair, the key's public key, P2′
	// and the challenge.
	DelegationOffer(ctx context.Context, caller authn.Caller, keyID string) (*storepb.DelegatedShare, []byte, []byte, []byte, error)
	AcceptDelegations(ctx context.Context, caller authn.Caller, accepts []keys.KeyAcceptance, with func(tx *store.Tx) error) error
	RecallDelegations(ctx context.Context, actor authn.Caller, keyIDs []string, memberUserID, memberDeviceID string, with func(tx *store.Tx) error) error
	PromoteDelegations(ctx context.Context, actor authn.Caller, keyIDs []string, memberUserID, memberDeviceID string, with func(tx *store.Tx) error) error
	ListDelegations(ctx context.Context, keyID string) ([]*storepb.DelegatedShare, error)
}

// Attachments stores application attachments (the business licence) content-addressed.
type Attachments interface {
	// Check checks content as Store would (size, type by magic bytes, name), before an
	// application goes anywhere.
	Check(field string, content []byte, fileName, claimed string) (*storepb.AttachmentRef, error)
	// Store checks and stores content inside tx, links it to application, and returns its
	// id (hex SHA-256). field names the request field in errors.
	Store(tx *store.Tx, application, field string, content []byte, fileName string) (string, error)
}

// Seals is told when a member leaves, so the seals authorised to them are withdrawn.
type Seals interface {
	RevokeMember(tx *store.Tx, uscc, userID string) error
}

// Options are the enterprise policies.
type Options struct {
	InviteTTL        time.Duration // default lifetime of an invite (default 10m)
	MaxInviteTTL     time.Duration // longest allowed (default 24h)
	AdminTransferTTL time.Duration // how long a transfer offer waits (default 24h)
	// JoinMismatchesPerDay bounds join applications naming the wrong administrator, per
	// applicant and enterprise (default 5): the administrator's name and number are not an
	// oracle.
	JoinMismatchesPerDay int
	MaxLicenceBytes      int // default 5 MiB
	// RequiredAttachments lists, per CA, the attachments it requires beyond the letter
	// (shown with the letter template).
	RequiredAttachments map[string][]string
	// Transfer is corporate-transfer verification (对公打款认证, transfer.go).
	Transfer TransferOptions
}

func (o *Options) setDefaults() {
	if o.InviteTTL <= 0 {
		o.InviteTTL = 10 * time.Minute
	}
	if o.MaxInviteTTL <= 0 {
		o.MaxInviteTTL = 24 * time.Hour
	}
	if o.AdminTransferTTL <= 0 {
		o.AdminTransferTTL = 24 * time.Hour
	}
	if o.JoinMismatchesPerDay <= 0 {
		o.JoinMismatchesPerDay = 5
	}
	if o.MaxLicenceBytes <= 0 {
		o.MaxLicenceBytes = 5 << 20
	}
	o.Transfer.setDefaults()
}

// Deps are the collaborators of the service.
type Deps struct {
	Store       *store.Store
	Keyring     Keyring
	Accounts    Accounts
	Certs       Certs
	Keys        Keys
	Attachments Attachments
	// Seals, if set, withdraws seal authorisations of members who leave.
	Seals    Seals
	Clock    interface{ Now() time.Time }
	Registry prometheus.Registerer
}

// Service implements EnterpriseService.
type Service struct {
	opts Options
	deps Deps
	m    *metrics
}

// New returns the service.
func New(opts Options, deps Deps) (*Service, error) {
	if deps.Store == nil || deps.Keyring == nil || deps.Accounts == nil || deps.Certs == nil || deps.Keys == nil ||
		deps.Attachments == nil || deps.Clock == nil {
		return nil, errors.New("enterprises: missing dependency")
	}
	opts.setDefaults()
	return &Service{opts: opts, deps: deps, m: newMetrics(deps.Registry)}, nil
}

var (
	enterprises    = store.NewCollection(store.KindEnterprise, func() *storepb.Enterprise { return new(storepb.Enterprise) })
	members        = store.NewCollection(store.KindEnterprise, func() *storepb.Member { return new(storepb.Member) })
	claims         = store.NewCollection(store.KindEnterprise, func() *storepb.Claim { return new(storepb.Claim) })
	joins          = store.NewCollection(store.KindEnterprise, func() *storepb.JoinApplication { return new(storepb.JoinApplication) })
	invites        = store.NewCollection(store.KindEnterprise, func() *storepb.Invite { return new(storepb.Invite) })
	authRecords    = store.NewCollection(store.KindEnterprise, func() *storepb.AuthorisationRecord { return new(storepb.AuthorisationRecord) })
	adminTransfers = store.NewCollection(store.KindEnterprise, func() *storepb.AdminTransfer { return new(storepb.AdminTransfer) })
	counters       = store.NewCollection(store.KindEnterprise, func() *storepb.RateCounter { return new(storepb.RateCounter) })
)

const (
	indexName           = "enterprise-name"
	indexUserEnterprise = "user-enterprise"
	indexJoin           = "join"
	indexJoinRequest    = "join-request"
	indexUserJoin       = "user-join"
	indexJoinPending    = "join-pending"
	indexInvite         = "invite"

	roleAdmin = int32(hufuv1.MemberRole_MEMBER_ROLE_ADMIN)
	roleStaff = int32(hufuv1.MemberRole_MEMBER_ROLE_STAFF)

	joinPending   = int32(hufuv1.JoinStatus_JOIN_STATUS_PENDING)
	joinApproved  = int32(hufuv1.JoinStatus_JOIN_STATUS_APPROVED)
	joinReturned  = int32(hufuv1.JoinStatus_JOIN_STATUS_RETURNED)
	joinWithdrawn = int32(hufuv1.JoinStatus_JOIN_STATUS_WITHDRAWN)

	stateActive = int32(hufuv1.EnterpriseState_ENTERPRISE_STATE_ACTIVE)
)

func infoID(uscc string) string           { return uscc + "/info" }
func memberID(uscc, user string) string   { return uscc + "/member/" + user }
func claimID(uscc, order string) string   { return uscc + "/claim/" + order }
func joinID(uscc, id string) string       { return uscc + "/join/" + id }
func inviteID(uscc, id string) string     { return uscc + "/invite/" + id }
func adminTransferID(uscc string) string  { return uscc + "/admin-transfer" }
func key(id string) string                { return string(store.KindEnterprise) + "/" + id }
func mismatchID(uscc, user string) string { return uscc + "/join-miss/" + user }

// newID returns 20 random hex digits: ids of applications and invites.

// checkUSCC normalises and checks a USCC given in field.
func checkUSCC(field, code string) (string, error) {
	code = identity.NormaliseUSCC(code)
	if err := identity.CheckUSCC(code); err != nil {
		return "", apierr.Invalid(field, err)
	}
	return code, nil
}

// notFound is the answer for an enterprise the caller may not see.
func notFound(uscc string) error {
	return apierr.New(apierr.NotFound, "no enterprise %s that you belong to", uscc)
}

// membership reads the caller's member record of an enterprise and the enterprise, or
// NotFound for anyone who is not a member.
func (s *Service) membership(ctx context.Context, caller authn.Caller, field, uscc string) (*storepb.Enterprise, *storepb.Member, error) {
	uscc, err := checkUSCC(field, uscc)
	if err != nil {
		return nil, nil, err
	}
	m, err := members.Read(ctx, s.deps.Store, memberID(uscc, caller.UserID))
	if errors.Is(err, store.ErrNotFound) {
		return nil, nil, notFound(uscc)
	}
	if err != nil {
		return nil, nil, err
	}
	e, err := enterprises.Read(ctx, s.deps.Store, infoID(uscc))
	if err != nil {
		return nil, nil, err
	}
	return e, m, nil
}

// asAdmin reads an enterprise for its administrator. claimed demands the administrator hold
// the enterprise certificate (a transfer-verified administrator must claim first, §1.6.4).
func (s *Service) asAdmin(ctx context.Context, caller authn.Caller, uscc string, claimed bool) (*storepb.Enterprise, error) {
	e, m, err := s.membership(ctx, caller, "uscc", uscc)
	if err != nil {
		return nil, err
	}
	if m.Role != roleAdmin || e.AdminUserId != caller.UserID {
		return nil, apierr.New(apierr.PermissionDenied, "only the enterprise's administrator may do this")
	}
	if claimed && !e.AdminClaimed {
		return nil, apierr.New(apierr.FailedPrecondition, "claim the enterprise (buy its certificate) before managing and authorising staff")
	}
	return e, nil
}

// audit writes the audit record of an enterprise change.
func audit(tx *store.Tx, caller authn.Caller, action, uscc string, details map[string]string) error {
	return tx.Audit(store.Event{Actor: caller.Actor(), Action: "enterprise." + action, Subject: key(infoID(uscc)),
		Outcome: store.OutcomeOK, Details: details})
}

// notice writes an enterprise notice (消息-企业通知) to a user's inbox.
func notice(tx *store.Tx, user, title, body string) error {
	return certs.Notify(tx, user, hufuv1.MessageKind_MESSAGE_KIND_ENTERPRISE_NOTICE, title, body)
}

// addMember writes a member record and its index entry.
func addMember(tx *store.Tx, m *storepb.Member) error {
	if err := members.Put(tx, memberID(m.Uscc, m.UserId), m); err != nil {
		return err
	}
	return tx.AddIndex(indexUserEnterprise, m.UserId, key(memberID(m.Uscc, m.UserId)))
}

func removeMember(tx *store.Tx, uscc, user string) error {
	if err := members.Delete(tx, memberID(uscc, user)); err != nil {
		return err
	}
	return tx.RemoveIndex(indexUserEnterprise, user, key(memberID(uscc, user)))
}

// record writes an authorisation record (授权记录).
func record(tx *store.Tx, r *storepb.AuthorisationRecord) error {
	r.Id = store.NewestFirstID(tx.Now())
	r.TimeUnixNano = tx.Now().UnixNano()
	return authRecords.Put(tx, r.Uscc+"/auth/"+r.Id, r)
}
