package enterprises

import (
	"bytes"
	"context"
	"embed"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/protobuf/types/known/timestamppb"

	hufuv1 "github.com/hufu-hsm/hufu/api/hufu/v1"
	"github.com/hufu-hsm/hufu/cosign"
	"github.com/hufu-hsm/hufu/daemon/apierr"
	"github.com/hufu-hsm/hufu/daemon/authn"
	"github.com/hufu-hsm/hufu/daemon/identity"
	"github.com/hufu-hsm/hufu/daemon/keys"
	"github.com/hufu-hsm/hufu/store/storepb"
)

// Register adds EnterpriseService (user sessions) and ReconciliationService (system
// clients: the operators' desk for corporate transfers) to a gRPC server.
func (s *Service) Register(r grpc.ServiceRegistrar) authn.Policy {
	hufuv1.RegisterEnterpriseServiceServer(r, server{s: s})
	hufuv1.RegisterReconciliationServiceServer(r, reconServer{s: s})
	return authn.Policy{}.Add(&hufuv1.EnterpriseService_ServiceDesc, authn.User).Add(&hufuv1.ReconciliationService_ServiceDesc, authn.System)
}

type server struct {
	hufuv1.UnimplementedEnterpriseServiceServer
	s *Service
}

// enterprisePB shows an enterprise to a member.
func (s *Service) enterprisePB(ctx context.Context, e *storepb.Enterprise) *hufuv1.Enterprise {
	out := &hufuv1.Enterprise{
		Uscc: e.Uscc, Name: e.Name, State: hufuv1.EnterpriseState(e.State), LegalRepName: e.GetLegalRep().GetName(),
		LegalRepIdType: hufuv1.IdType(e.GetLegalRep().GetIdType()), LegalRepIdMasked: e.GetLegalRep().GetIdNumberMasked(),
		LegalRepPhoneMasked: e.GetLegalRep().GetPhoneMasked(), LicenceValidUntil: hufuv1.Timestamp(e.LicenceValidUntilUnixNano),
		LicenceSha256: e.LicenceAttachment, Platforms: e.Platforms, AdminClaimed: e.AdminClaimed, KeyId: e.KeyId,
		CertSerial: e.CertSerial, CreatedAt: hufuv1.Timestamp(e.CreatedUnixNano), EncryptionKeyId: e.EncryptionKeyId,
	}
	if u, err := s.deps.Accounts.VerifiedUser(ctx, e.AdminUserId); err == nil {
		out.AdminName = u.Identity.GetName()
	}
	out.PublicKey = e.PublicKey
	return out
}

func joinPB(a *storepb.JoinApplication, name string) *hufuv1.JoinApplication {
	return &hufuv1.JoinApplication{
		Id: a.Id, Uscc: a.Uscc, EnterpriseName: name, Status: hufuv1.JoinStatus(a.Status), ApplicantUserId: a.UserId,
		ApplicantName: a.ApplicantName, ApplicantPhoneMasked: a.ApplicantPhoneMasked, Reason: a.Reason, ViaInvite: a.InviteId != "",
		CreatedAt: hufuv1.Timestamp(a.CreatedUnixNano), UpdatedAt: hufuv1.Timestamp(a.UpdatedUnixNano),
	}
}

func (s *Service) joinPB(ctx context.Context, a *storepb.JoinApplication) *hufuv1.JoinApplication {
	name := ""
	if e, err := enterprises.Read(ctx, s.deps.Store, infoID(a.Uscc)); err == nil {
		name = e.Name
	}
	return joinPB(a, name)
}

func recordPB(r *storepb.AuthorisationRecord) *hufuv1.AuthorisationRecord {
	if r == nil {
		return nil
	}
	return &hufuv1.AuthorisationRecord{Id: r.Id, Action: r.Action, ByUserId: r.ByUserId, MemberUserId: r.MemberUserId,
		MemberDeviceId: r.MemberDeviceId, Scope: r.Scope, KeyId: r.KeyId, EncryptionKeyId: r.EncryptionKeyId, Time: hufuv1.Timestamp(r.TimeUnixNano)}
}

func (v server) SearchEnterprises(ctx context.Context, req *hufuv1.SearchEnterprisesRequest) (*hufuv1.SearchEnterprisesResponse, error) {
	found, err := v.s.Search(ctx, req.GetQuery())
	if err != nil {
		return nil, err
	}
	out := &hufuv1.SearchEnterprisesResponse{}
	for _, r := range found {
		out.Results = append(out.Results, &hufuv1.SearchResult{Uscc: r.USCC, Name: r.Name, Registered: r.Registered, NextSteps: r.NextSteps})
	}
	return out, nil
}

func (v server) ClaimEnterprise(ctx context.Context, req *hufuv1.ClaimEnterpriseRequest) (*hufuv1.ClaimEnterpriseResponse, error) {
	o, err := v.s.Claim(ctx, authn.CallerFrom(ctx), req)
	if err != nil {
		return nil, err
	}
	return &hufuv1.ClaimEnterpriseResponse{Order: v.s.deps.Certs.OrderPB(o)}, nil
}

func (v server) GetEnterprise(ctx context.Context, req *hufuv1.GetEnterpriseRequest) (*hufuv1.GetEnterpriseResponse, error) {
	e, m, err := v.s.Get(ctx, authn.CallerFrom(ctx), req.GetUscc())
	if err != nil {
		return nil, err
	}
	return &hufuv1.GetEnterpriseResponse{Enterprise: v.s.enterprisePB(ctx, e), Role: hufuv1.MemberRole(m.Role)}, nil
}

func (v server) GetEnterpriseCertificate(ctx context.Context, req *hufuv1.GetEnterpriseCertificateRequest) (*hufuv1.GetEnterpriseCertificateResponse, error) {
	e, _, err := v.s.Get(ctx, authn.CallerFrom(ctx), req.GetUscc())
	if err != nil {
		return nil, err
	}
	if e.CertSerial == "" {
		return nil, apierr.New(apierr.FailedPrecondition, "the enterprise has no certificate yet (its administrator claims it)")
	}
	c, chain, err := v.s.deps.Certs.Certificate(ctx, e.CertSerial)
	if err != nil {
		return nil, err
	}
	out := &hufuv1.GetEnterpriseCertificateResponse{Serial: c.Serial, Certificate: c.Der, Chain: chain}
	if c.PairSerial != "" {
		enc, _, err := v.s.deps.Certs.Certificate(ctx, c.PairSerial)
		if err != nil {
			return nil, err
		}
		out.EncryptionSerial, out.EncryptionCertificate = enc.Serial, enc.Der
	}
	return out, nil
}

func (v server) ListMyEnterprises(ctx context.Context, _ *hufuv1.ListMyEnterprisesRequest) (*hufuv1.ListMyEnterprisesResponse, error) {
	mine, err := v.s.ListMine(ctx, authn.CallerFrom(ctx))
	if err != nil {
		return nil, err
	}
	out := &hufuv1.ListMyEnterprisesResponse{}
	for _, m := range mine {
		out.Enterprises = append(out.Enterprises, &hufuv1.MyEnterprise{Enterprise: v.s.enterprisePB(ctx, m.Enterprise), Role: hufuv1.MemberRole(m.Member.Role)})
	}
	return out, nil
}

func (v server) ListMembers(ctx context.Context, req *hufuv1.ListMembersRequest) (*hufuv1.ListMembersResponse, error) {
	caller := authn.CallerFrom(ctx)
	ms, err := v.s.Members(ctx, caller, req.GetUscc())
	if err != nil {
		return nil, err
	}
	e, _, err := v.s.Get(ctx, caller, req.GetUscc())
	if err != nil {
		return nil, err
	}
	var pairs []*storepb.DelegatedShare
	if e.KeyId != "" {
		if pairs, err = v.s.deps.Keys.ListDelegations(ctx, e.KeyId); err != nil {
			return nil, err
		}
	}
	out := &hufuv1.ListMembersResponse{}
	for _, m := range ms {
		pb := &hufuv1.Member{UserId: m.UserId, Role: hufuv1.MemberRole(m.Role), Via: m.Via, JoinedAt: hufuv1.Timestamp(m.JoinedUnixNano),
			DeviceId: m.DeviceId, DevicePublicKey: m.DevicePublicKey}
		if u, err := v.s.deps.Accounts.VerifiedUser(ctx, m.UserId); err == nil {
			pb.Name, pb.PhoneMasked = u.Identity.GetName(), identity.MaskPhone(u.Phone)
		}
		for _, p := range pairs {
			if p.MemberUserId == m.UserId {
				pb.Delegated = pb.Delegated || pairActive(p)
				pb.DelegationPending = pb.DelegationPending || (pairLive(p) && !pairActive(p))
			}
		}
		out.Members = append(out.Members, pb)
	}
	return out, nil
}

func (v server) RemoveMember(ctx context.Context, req *hufuv1.RemoveMemberRequest) (*hufuv1.RemoveMemberResponse, error) {
	if err := v.s.RemoveMember(ctx, authn.CallerFrom(ctx), req.GetUscc(), req.GetUserId()); err != nil {
		return nil, err
	}
	return &hufuv1.RemoveMemberResponse{}, nil
}

func (v server) ApplyToJoin(ctx context.Context, req *hufuv1.ApplyToJoinRequest) (*hufuv1.ApplyToJoinResponse, error) {
	a, err := v.s.ApplyToJoin(ctx, authn.CallerFrom(ctx), req)
	if err != nil {
		return nil, err
	}
	return &hufuv1.ApplyToJoinResponse{Application: v.s.joinPB(ctx, a)}, nil
}

func (v server) WithdrawJoin(ctx context.Context, req *hufuv1.WithdrawJoinRequest) (*hufuv1.WithdrawJoinResponse, error) {
	a, err := v.s.WithdrawJoin(ctx, authn.CallerFrom(ctx), req.GetApplicationId())
	if err != nil {
		return nil, err
	}
	return &hufuv1.WithdrawJoinResponse{Application: v.s.joinPB(ctx, a)}, nil
}

func (v server) ListJoinApplications(ctx context.Context, req *hufuv1.ListJoinApplicationsRequest) (*hufuv1.ListJoinApplicationsResponse, error) {
	as, err := v.s.ListJoinApplications(ctx, authn.CallerFrom(ctx), req.GetUscc(), req.GetStatus())
	if err != nil {
		return nil, err
	}
	out := &hufuv1.ListJoinApplicationsResponse{}
	for _, a := range as {
		out.Applications = append(out.Applications, v.s.joinPB(ctx, a))
	}
	return out, nil
}

func (v server) ApproveJoin(ctx context.Context, req *hufuv1.ApproveJoinRequest) (*hufuv1.ApproveJoinResponse, error) {
	a, err := v.s.ApproveJoin(ctx, authn.CallerFrom(ctx), req.GetApplicationId())
	if err != nil {
		return nil, err
	}
	return &hufuv1.ApproveJoinResponse{Application: v.s.joinPB(ctx, a)}, nil
}

func (v server) ReturnJoin(ctx context.Context, req *hufuv1.ReturnJoinRequest) (*hufuv1.ReturnJoinResponse, error) {
	a, err := v.s.ReturnJoin(ctx, authn.CallerFrom(ctx), req.GetApplicationId(), req.GetReason())
	if err != nil {
		return nil, err
	}
	return &hufuv1.ReturnJoinResponse{Application: v.s.joinPB(ctx, a)}, nil
}

func (v server) CreateInvite(ctx context.Context, req *hufuv1.CreateInviteRequest) (*hufuv1.CreateInviteResponse, error) {
	inv, err := v.s.CreateInvite(ctx, authn.CallerFrom(ctx), req.GetUscc(), time.Duration(req.GetTtlSeconds())*time.Second)
	if err != nil {
		return nil, err
	}
	return &hufuv1.CreateInviteResponse{InviteId: inv.Record.Id, Payload: inv.Payload, ExpiresAt: hufuv1.Timestamp(inv.Record.ExpiresUnixNano)}, nil
}

func (v server) RevokeInvite(ctx context.Context, req *hufuv1.RevokeInviteRequest) (*hufuv1.RevokeInviteResponse, error) {
	if err := v.s.RevokeInvite(ctx, authn.CallerFrom(ctx), req.GetUscc(), req.GetInviteId()); err != nil {
		return nil, err
	}
	return &hufuv1.RevokeInviteResponse{}, nil
}

func (v server) RegisterDevice(ctx context.Context, req *hufuv1.RegisterDeviceRequest) (*hufuv1.RegisterDeviceResponse, error) {
	m, err := v.s.RegisterDevice(ctx, authn.CallerFrom(ctx), req.GetUscc(), req.GetDevicePublicKey())
	if err != nil {
		return nil, err
	}
	return &hufuv1.RegisterDeviceResponse{Member: &hufuv1.Member{UserId: m.UserId, Role: hufuv1.MemberRole(m.Role), Via: m.Via,
		JoinedAt: hufuv1.Timestamp(m.JoinedUnixNano), DeviceId: m.DeviceId, DevicePublicKey: m.DevicePublicKey}}, nil
}

func (v server) GrantDelegation(ctx context.Context, req *hufuv1.GrantDelegationRequest) (*hufuv1.GrantDelegationResponse, error) {
	sign := keys.KeyGrant{Cred: credential(req.GetCredential()), Grant: req.GetGrant(), Envelope: req.GetEnvelope()}
	var encryption *keys.KeyGrant
	if enc := req.GetEncryption(); enc != nil {
		encryption = &keys.KeyGrant{Cred: credential(enc.GetCredential()), Grant: enc.GetGrant(), Envelope: enc.GetEnvelope()}
	}
	r, err := v.s.Grant(ctx, authn.CallerFrom(ctx), req.GetUscc(), req.GetMemberUserId(), sign, encryption, req.GetScope())
	if err != nil {
		return nil, err
	}
	return &hufuv1.GrantDelegationResponse{Record: recordPB(r)}, nil
}

func credential(c *hufuv1.Credential) keys.Credential {
	return keys.Credential{Ticket: c.GetTicket(), PIN: c.GetPin()}
}

func (v server) GetDelegationOffer(ctx context.Context, req *hufuv1.GetDelegationOfferRequest) (*hufuv1.GetDelegationOfferResponse, error) {
	caller := authn.CallerFrom(ctx)
	o, err := v.s.Offer(ctx, caller, req.GetUscc())
	if err != nil {
		return nil, err
	}
	out := &hufuv1.GetDelegationOfferResponse{KeyId: o.KeyID, PublicKey: o.PublicKey, P2: o.P2, Challenge: o.Challenge,
		Envelope: o.Pair.GetEnvelope(), Context: cosign.DelegationContext(o.KeyID, caller.UserID, caller.DeviceID),
		ShareVersion: o.Pair.GetShareVersion()}
	if enc := o.Encryption; enc != nil {
		out.Encryption = &hufuv1.DelegationKeyOffer{KeyId: enc.KeyID, PublicKey: enc.PublicKey, P2: enc.P2, Challenge: enc.Challenge,
			Envelope: enc.Pair.GetEnvelope(), Context: cosign.DelegationContext(enc.KeyID, caller.UserID, caller.DeviceID),
			ShareVersion: enc.Pair.GetShareVersion()}
	}
	return out, nil
}

func (v server) AcceptDelegation(ctx context.Context, req *hufuv1.AcceptDelegationRequest) (*hufuv1.AcceptDelegationResponse, error) {
	r, err := v.s.Accept(ctx, authn.CallerFrom(ctx), req.GetUscc(), req.GetPin(), req.GetConfirmation(), req.GetEncryptionPin(), req.GetEncryptionConfirmation())
	if err != nil {
		return nil, err
	}
	return &hufuv1.AcceptDelegationResponse{Record: recordPB(r)}, nil
}

func (v server) RecallDelegation(ctx context.Context, req *hufuv1.RecallDelegationRequest) (*hufuv1.RecallDelegationResponse, error) {
	r, err := v.s.Recall(ctx, authn.CallerFrom(ctx), req.GetUscc(), req.GetMemberUserId())
	if err != nil {
		return nil, err
	}
	return &hufuv1.RecallDelegationResponse{Record: recordPB(r)}, nil
}

func (v server) ListAuthorisationRecords(ctx context.Context, req *hufuv1.ListAuthorisationRecordsRequest) (*hufuv1.ListAuthorisationRecordsResponse, error) {
	rs, err := v.s.Records(ctx, authn.CallerFrom(ctx), req.GetUscc())
	if err != nil {
		return nil, err
	}
	out := &hufuv1.ListAuthorisationRecordsResponse{}
	for _, r := range rs {
		out.Records = append(out.Records, recordPB(r))
	}
	return out, nil
}

func (v server) TransferAdmin(ctx context.Context, req *hufuv1.TransferAdminRequest) (*hufuv1.TransferAdminResponse, error) {
	exp, err := v.s.TransferAdmin(ctx, authn.CallerFrom(ctx), req.GetUscc(), req.GetToUserId())
	if err != nil {
		return nil, err
	}
	return &hufuv1.TransferAdminResponse{ExpiresAt: timestamppb.New(exp)}, nil
}

func (v server) AcceptAdminTransfer(ctx context.Context, req *hufuv1.AcceptAdminTransferRequest) (*hufuv1.AcceptAdminTransferResponse, error) {
	caller := authn.CallerFrom(ctx)
	e, err := v.s.AcceptAdminTransfer(ctx, caller, req.GetUscc())
	if err != nil {
		return nil, err
	}
	key, err := v.s.deps.Keys.OwnedKey(ctx, caller, e.KeyId)
	if err != nil {
		return nil, err
	}
	out := &hufuv1.AcceptAdminTransferResponse{Enterprise: v.s.enterprisePB(ctx, e), ShareVersion: key.ShareVersion}
	if e.EncryptionKeyId != "" {
		enc, err := v.s.deps.Keys.OwnedKey(ctx, caller, e.EncryptionKeyId)
		if err != nil {
			return nil, err
		}
		out.EncryptionShareVersion = enc.ShareVersion
	}
	return out, nil
}

//go:embed templates
var templates embed.FS

// letterKinds are the applications that need an authorisation letter, with the template
// file of each.
var letterKinds = map[string]string{
	"enterprise-claim":   "templates/enterprise-claim.txt",
	"corporate-transfer": "templates/corporate-transfer.txt",
	"personal":           "templates/personal.txt",
}

func (v server) GetLetterTemplate(_ context.Context, req *hufuv1.GetLetterTemplateRequest) (*hufuv1.GetLetterTemplateResponse, error) {
	caName, ok := v.s.deps.Certs.CAName(req.GetCaId())
	if !ok {
		return nil, apierr.Invalidf("ca_id", "no CA %q", req.GetCaId())
	}
	file, ok := letterKinds[req.GetKind()]
	if !ok {
		return nil, apierr.Invalidf("kind", "want enterprise-claim, corporate-transfer or personal")
	}
	content, err := templates.ReadFile(file)
	if err != nil {
		return nil, err
	}
	// The template is addressed to the CA the application goes to.
	content = bytes.ReplaceAll(content, []byte("{{CA}}"), []byte(caName))
	return &hufuv1.GetLetterTemplateResponse{FileName: req.GetKind() + "-authorisation.txt", MediaType: "text/plain; charset=utf-8",
		Content: content, RequiredAttachments: v.s.opts.RequiredAttachments[req.GetCaId()]}, nil
}
