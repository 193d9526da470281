package accounts

import (
	"context"

	hufuv1 "github.com/hufu-hsm/hufu/api/hufu/v1"
	"github.com/hufu-hsm/hufu/daemon/authn"
	"github.com/hufu-hsm/hufu/daemon/identity"
	"github.com/hufu-hsm/hufu/store/storepb"
	"google.golang.org/grpc"
	"google.golang.org/grpc/metadata"
	"google.golang.org/protobuf/types/known/timestamppb"
)

// The gRPC faces of the service: thin adapters from API messages to Service methods.

// Register adds the account, platform and identity services to a gRPC server and returns
// the authentication policy of their methods.
func (s *Service) Register(r grpc.ServiceRegistrar) authn.Policy {
	hufuv1.RegisterAccountServiceServer(r, accountServer{s: s})
	hufuv1.RegisterPlatformServiceServer(r, platformServer{s: s})
	hufuv1.RegisterIdentityServiceServer(r, identityServer{s: s})
	policy := authn.Policy{}
	for _, m := range []string{"SendSmsCode", "SignInWithSmsCode", "SignInWithPassword", "SignInWithWechat",
		"BindWechatPhone", "SignInWithCarrier", "RefreshSession", "ResetPassword"} {
		policy["/"+hufuv1.AccountService_ServiceDesc.ServiceName+"/"+m] = authn.Public
	}
	for _, desc := range []grpc.ServiceDesc{hufuv1.AccountService_ServiceDesc, hufuv1.PlatformService_ServiceDesc, hufuv1.IdentityService_ServiceDesc} {
		for _, m := range desc.Methods {
			full := "/" + desc.ServiceName + "/" + m.MethodName
			if _, public := policy[full]; !public {
				policy[full] = authn.User
			}
		}
	}
	return policy
}

type accountServer struct {
	hufuv1.UnimplementedAccountServiceServer
	s *Service
}

var purposes = map[hufuv1.SmsPurpose]Purpose{
	hufuv1.SmsPurpose_SMS_PURPOSE_SIGN_IN:               PurposeSignIn,
	hufuv1.SmsPurpose_SMS_PURPOSE_CHANGE_PHONE:          PurposeChangePhone,
	hufuv1.SmsPurpose_SMS_PURPOSE_RESET_PASSWORD:        PurposeResetPassword,
	hufuv1.SmsPurpose_SMS_PURPOSE_BIND_WECHAT:           PurposeBindWeChat,
	hufuv1.SmsPurpose_SMS_PURPOSE_RESET_CERTIFICATE_PIN: PurposeResetCertificate,
	hufuv1.SmsPurpose_SMS_PURPOSE_DELETE_ACCOUNT:        PurposeDeleteAccount,
}

func (a accountServer) SendSmsCode(ctx context.Context, req *hufuv1.SendSmsCodeRequest) (*hufuv1.SendSmsCodeResponse, error) {
	purpose, ok := purposes[req.GetPurpose()]
	if !ok {
		return nil, invalidPurpose()
	}
	expires, retry, err := a.s.SendCode(ctx, req.GetPhone(), purpose, authn.CallerFrom(ctx).Source())
	if err != nil {
		return nil, err
	}
	return &hufuv1.SendSmsCodeResponse{ExpiresAt: timestamppb.New(expires), RetryAfter: timestamppb.New(retry)}, nil
}

func device(d *hufuv1.Device) Device { return Device{ID: d.GetId(), Name: d.GetName()} }

func (a accountServer) SignInWithSmsCode(ctx context.Context, req *hufuv1.SignInWithSmsCodeRequest) (*hufuv1.SignInWithSmsCodeResponse, error) {
	in, err := a.s.SignInWithCode(ctx, req.GetPhone(), req.GetCode(), device(req.GetDevice()))
	if err != nil {
		return nil, err
	}
	return &hufuv1.SignInWithSmsCodeResponse{Session: sessionPB(in.Session), Account: a.s.accountPB(in.User), Registered: in.Registered}, nil
}

func (a accountServer) SignInWithPassword(ctx context.Context, req *hufuv1.SignInWithPasswordRequest) (*hufuv1.SignInWithPasswordResponse, error) {
	in, err := a.s.SignInWithPassword(ctx, req.GetPhone(), req.GetPassword(), device(req.GetDevice()), authn.CallerFrom(ctx).Source())
	if err != nil {
		return nil, err
	}
	return &hufuv1.SignInWithPasswordResponse{Session: sessionPB(in.Session), Account: a.s.accountPB(in.User)}, nil
}

func (a accountServer) SignInWithWechat(ctx context.Context, req *hufuv1.SignInWithWechatRequest) (*hufuv1.SignInWithWechatResponse, error) {
	in, ticket, err := a.s.SignInWithWeChat(ctx, req.GetAuthCode(), device(req.GetDevice()))
	if err != nil {
		return nil, err
	}
	if ticket != "" {
		return &hufuv1.SignInWithWechatResponse{BindingTicket: ticket}, nil
	}
	return &hufuv1.SignInWithWechatResponse{Session: sessionPB(in.Session), Account: a.s.accountPB(in.User)}, nil
}

func (a accountServer) BindWechatPhone(ctx context.Context, req *hufuv1.BindWechatPhoneRequest) (*hufuv1.BindWechatPhoneResponse, error) {
	in, err := a.s.BindWeChatPhone(ctx, req.GetBindingTicket(), req.GetPhone(), req.GetCode(), device(req.GetDevice()))
	if err != nil {
		return nil, err
	}
	return &hufuv1.BindWechatPhoneResponse{Session: sessionPB(in.Session), Account: a.s.accountPB(in.User), Registered: in.Registered}, nil
}

func (a accountServer) SignInWithCarrier(ctx context.Context, req *hufuv1.SignInWithCarrierRequest) (*hufuv1.SignInWithCarrierResponse, error) {
	in, err := a.s.SignInWithCarrier(ctx, req.GetCarrierToken(), device(req.GetDevice()))
	if err != nil {
		return nil, err
	}
	return &hufuv1.SignInWithCarrierResponse{Session: sessionPB(in.Session), Account: a.s.accountPB(in.User), Registered: in.Registered}, nil
}

func (a accountServer) RefreshSession(ctx context.Context, req *hufuv1.RefreshSessionRequest) (*hufuv1.RefreshSessionResponse, error) {
	// The device binding reads the same header every authenticated call carries.
	md, _ := metadata.FromIncomingContext(ctx)
	device := ""
	if v := md.Get("hufu-device-id"); len(v) > 0 {
		device = v[0]
	}
	sess, err := a.s.Refresh(ctx, req.GetRefreshToken(), device)
	if err != nil {
		return nil, err
	}
	return &hufuv1.RefreshSessionResponse{Session: sessionPB(sess)}, nil
}

func (a accountServer) SignOut(ctx context.Context, _ *hufuv1.SignOutRequest) (*hufuv1.SignOutResponse, error) {
	return &hufuv1.SignOutResponse{}, a.s.SignOut(ctx, authn.CallerFrom(ctx))
}

func (a accountServer) GetAccount(ctx context.Context, _ *hufuv1.GetAccountRequest) (*hufuv1.GetAccountResponse, error) {
	u, err := a.s.Account(ctx, authn.CallerFrom(ctx))
	if err != nil {
		return nil, err
	}
	return &hufuv1.GetAccountResponse{Account: a.s.accountPB(u)}, nil
}

func (a accountServer) SetPassword(ctx context.Context, req *hufuv1.SetPasswordRequest) (*hufuv1.SetPasswordResponse, error) {
	return &hufuv1.SetPasswordResponse{}, a.s.SetPassword(ctx, authn.CallerFrom(ctx), req.GetCurrentPassword(), req.GetNewPassword())
}

func (a accountServer) ResetPassword(ctx context.Context, req *hufuv1.ResetPasswordRequest) (*hufuv1.ResetPasswordResponse, error) {
	return &hufuv1.ResetPasswordResponse{}, a.s.ResetPassword(ctx, req.GetPhone(), req.GetCode(), req.GetNewPassword())
}

func (a accountServer) ChangePhone(ctx context.Context, req *hufuv1.ChangePhoneRequest) (*hufuv1.ChangePhoneResponse, error) {
	u, err := a.s.ChangePhone(ctx, authn.CallerFrom(ctx), req.GetNewPhone(), req.GetCode(), req.GetCurrentCode())
	if err != nil {
		return nil, err
	}
	return &hufuv1.ChangePhoneResponse{Account: a.s.accountPB(u)}, nil
}

func (a accountServer) PreviewAccountDeletion(ctx context.Context, _ *hufuv1.PreviewAccountDeletionRequest) (*hufuv1.PreviewAccountDeletionResponse, error) {
	bs, err := a.s.PreviewDeletion(ctx, authn.CallerFrom(ctx))
	if err != nil {
		return nil, err
	}
	out := &hufuv1.PreviewAccountDeletionResponse{}
	for _, b := range bs {
		out.Blockers = append(out.Blockers, &hufuv1.DeletionBlocker{Precondition: b.Precondition, Message: b.Message})
	}
	return out, nil
}

func (a accountServer) DeleteAccount(ctx context.Context, req *hufuv1.DeleteAccountRequest) (*hufuv1.DeleteAccountResponse, error) {
	return &hufuv1.DeleteAccountResponse{}, a.s.DeleteAccount(ctx, authn.CallerFrom(ctx), req.GetCode(), req.GetConfirmIrreversible())
}

type platformServer struct {
	hufuv1.UnimplementedPlatformServiceServer
	s *Service
}

func platformPB(p Platform) *hufuv1.Platform {
	return &hufuv1.Platform{Id: p.ID, Name: p.Name, Region: p.Region}
}

func (p platformServer) ListPlatforms(context.Context, *hufuv1.ListPlatformsRequest) (*hufuv1.ListPlatformsResponse, error) {
	out := &hufuv1.ListPlatformsResponse{}
	for _, pl := range p.s.Platforms() {
		out.Platforms = append(out.Platforms, platformPB(pl))
	}
	return out, nil
}

func (p platformServer) GetCurrentPlatform(ctx context.Context, _ *hufuv1.GetCurrentPlatformRequest) (*hufuv1.GetCurrentPlatformResponse, error) {
	u, err := p.s.Account(ctx, authn.CallerFrom(ctx))
	if err != nil {
		return nil, err
	}
	out := &hufuv1.GetCurrentPlatformResponse{}
	if pl, ok := p.s.Platform(u.CurrentPlatformId); ok {
		out.Platform = platformPB(pl)
	}
	return out, nil
}

func (p platformServer) SelectPlatform(ctx context.Context, req *hufuv1.SelectPlatformRequest) (*hufuv1.SelectPlatformResponse, error) {
	pl, err := p.s.SelectPlatform(ctx, authn.CallerFrom(ctx), req.GetPlatformId())
	if err != nil {
		return nil, err
	}
	return &hufuv1.SelectPlatformResponse{Platform: platformPB(pl)}, nil
}

type identityServer struct {
	hufuv1.UnimplementedIdentityServiceServer
	s *Service
}

func (i identityServer) VerifyWithCfca(ctx context.Context, req *hufuv1.VerifyWithCfcaRequest) (*hufuv1.VerifyWithCfcaResponse, error) {
	v, err := i.s.VerifyNameID(ctx, authn.CallerFrom(ctx), identity.Person{Name: req.GetName(), IDNumber: req.GetIdNumber()})
	if err != nil {
		return nil, err
	}
	return &hufuv1.VerifyWithCfcaResponse{Identity: identityPB(v)}, nil
}

func (i identityServer) StartFaceVerification(ctx context.Context, req *hufuv1.StartFaceVerificationRequest) (*hufuv1.StartFaceVerificationResponse, error) {
	id, url, err := i.s.StartFace(ctx, authn.CallerFrom(ctx), identity.Person{Name: req.GetName(), IDNumber: req.GetIdNumber()})
	if err != nil {
		return nil, err
	}
	return &hufuv1.StartFaceVerificationResponse{CertifyId: id, Url: url}, nil
}

func (i identityServer) CompleteFaceVerification(ctx context.Context, req *hufuv1.CompleteFaceVerificationRequest) (*hufuv1.CompleteFaceVerificationResponse, error) {
	v, err := i.s.CompleteFace(ctx, authn.CallerFrom(ctx), req.GetCertifyId())
	if err != nil {
		return nil, err
	}
	return &hufuv1.CompleteFaceVerificationResponse{Identity: identityPB(v)}, nil
}

func (i identityServer) VerifyWithBankCard(ctx context.Context, req *hufuv1.VerifyWithBankCardRequest) (*hufuv1.VerifyWithBankCardResponse, error) {
	v, err := i.s.VerifyBankCard(ctx, authn.CallerFrom(ctx), identity.BankCard{
		Person:     identity.Person{Name: req.GetName(), IDNumber: req.GetIdNumber()},
		CardNumber: req.GetCardNumber(), ReservedPhone: req.GetReservedPhone(),
	})
	if err != nil {
		return nil, err
	}
	return &hufuv1.VerifyWithBankCardResponse{Identity: identityPB(v)}, nil
}

func (i identityServer) GetIdentity(ctx context.Context, _ *hufuv1.GetIdentityRequest) (*hufuv1.GetIdentityResponse, error) {
	u, err := i.s.Account(ctx, authn.CallerFrom(ctx))
	if err != nil {
		return nil, err
	}
	return &hufuv1.GetIdentityResponse{Identity: identityPB(u.Identity)}, nil
}

func sessionPB(s Session) *hufuv1.Session {
	return &hufuv1.Session{
		AccessToken: s.AccessToken, AccessExpiresAt: timestamppb.New(s.AccessExpires),
		RefreshToken: s.RefreshToken, RefreshExpiresAt: timestamppb.New(s.RefreshExpires),
	}
}

func (s *Service) accountPB(u *storepb.User) *hufuv1.Account {
	return &hufuv1.Account{
		Id: u.Id, PhoneMasked: identity.MaskPhone(u.Phone), HasPassword: u.PasswordHash != "",
		WechatBound: u.WechatOpenId != "", CurrentPlatformId: u.CurrentPlatformId,
		Identity: identityPB(u.Identity), CreatedAt: timestamppb.New(fromNanos(u.CreatedUnixNano)),
	}
}

func identityPB(v *storepb.VerifiedIdentity) *hufuv1.IdentityStatus {
	if v == nil {
		return &hufuv1.IdentityStatus{}
	}
	return &hufuv1.IdentityStatus{
		Verified: true, Method: hufuv1.IdentityMethod(v.Method), NameMasked: identity.MaskName(v.Name),
		IdNumberMasked: v.IdNumberMasked, VerifiedAt: timestamppb.New(fromNanos(v.VerifiedUnixNano)),
	}
}
