package scan

import (
	"context"
	"crypto/ecdsa"

	"github.com/emmansun/gmsm/smx509"
	"google.golang.org/grpc"

	hufuv1 "github.com/hufu-hsm/hufu/api/hufu/v1"
	"github.com/hufu-hsm/hufu/cosign"
	"github.com/hufu-hsm/hufu/daemon/authn"
	"github.com/hufu-hsm/hufu/daemon/keys"
	"github.com/hufu-hsm/hufu/store/storepb"
)

// Register adds ScanService (system clients allowed it) and PhoneScanService (user
// sessions) to a gRPC server.
func (s *Service) Register(r grpc.ServiceRegistrar) authn.Policy {
	hufuv1.RegisterScanServiceServer(r, systemServer{s: s})
	hufuv1.RegisterPhoneScanServiceServer(r, phoneServer{s: s})
	return authn.Policy{}.Add(&hufuv1.ScanService_ServiceDesc, authn.System).Add(&hufuv1.PhoneScanService_ServiceDesc, authn.User)
}

func parsedPublic(c *smx509.Certificate) *ecdsa.PublicKey {
	pub, _ := c.PublicKey.(*ecdsa.PublicKey)
	return pub
}

// asn1Signature turns a stored r ‖ s into the ASN.1 form standard verifiers take.
func asn1Signature(raw []byte) []byte {
	var sig cosign.Signature
	if sig.UnmarshalBinary(raw) != nil {
		return nil
	}
	return sig.ASN1()
}

func bindingPB(b *storepb.ScanBinding) *hufuv1.Binding {
	return &hufuv1.Binding{Id: b.Id, Reference: b.Reference, PlatformId: b.PlatformId, CertificateSerial: b.CertificateSerial,
		Uscc: b.Uscc, CreatedAt: hufuv1.Timestamp(b.CreatedUnixNano)}
}

type systemServer struct {
	hufuv1.UnimplementedScanServiceServer
	s *Service
}

func (v systemServer) CreateSession(ctx context.Context, req *hufuv1.CreateSessionRequest) (*hufuv1.CreateSessionResponse, error) {
	ss, err := v.s.Create(ctx, authn.CallerFrom(ctx), req)
	if err != nil {
		return nil, err
	}
	return &hufuv1.CreateSessionResponse{Session: v.s.sessionPB(ctx, ss)}, nil
}

func (v systemServer) GetSession(ctx context.Context, req *hufuv1.GetSessionRequest) (*hufuv1.GetSessionResponse, error) {
	ss, err := v.s.Get(ctx, authn.CallerFrom(ctx), req.GetSessionId())
	if err != nil {
		return nil, err
	}
	return &hufuv1.GetSessionResponse{Session: v.s.sessionPB(ctx, ss)}, nil
}

func (v systemServer) WatchSession(req *hufuv1.WatchSessionRequest, stream grpc.ServerStreamingServer[hufuv1.WatchSessionResponse]) error {
	ctx := stream.Context()
	return v.s.Watch(ctx, authn.CallerFrom(ctx), req.GetSessionId(), func(ss *storepb.ScanSession) error {
		return stream.Send(&hufuv1.WatchSessionResponse{Session: v.s.sessionPB(ctx, ss)})
	})
}

func (v systemServer) ListBindings(ctx context.Context, req *hufuv1.ListBindingsRequest) (*hufuv1.ListBindingsResponse, error) {
	bs, next, err := v.s.Bindings(ctx, authn.CallerFrom(ctx), req.GetReference(), int(req.GetPageSize()), req.GetPageToken())
	if err != nil {
		return nil, err
	}
	out := &hufuv1.ListBindingsResponse{NextPageToken: next}
	for _, b := range bs {
		out.Bindings = append(out.Bindings, bindingPB(b))
	}
	return out, nil
}

func (v systemServer) RemoveBinding(ctx context.Context, req *hufuv1.RemoveBindingRequest) (*hufuv1.RemoveBindingResponse, error) {
	if err := v.s.RemoveBinding(ctx, authn.CallerFrom(ctx), req.GetBindingId()); err != nil {
		return nil, err
	}
	return &hufuv1.RemoveBindingResponse{}, nil
}

func (v systemServer) ResolveCertificate(ctx context.Context, req *hufuv1.ResolveCertificateRequest) (*hufuv1.ResolveCertificateResponse, error) {
	b, err := v.s.Resolve(ctx, authn.CallerFrom(ctx), req.GetCertificateSerial())
	if err != nil {
		return nil, err
	}
	return &hufuv1.ResolveCertificateResponse{Binding: bindingPB(b)}, nil
}

func (v systemServer) GetScanKey(context.Context, *hufuv1.GetScanKeyRequest) (*hufuv1.GetScanKeyResponse, error) {
	pem, err := v.s.ScanKeyPEM()
	if err != nil {
		return nil, err
	}
	return &hufuv1.GetScanKeyResponse{PublicKeyPem: pem}, nil
}

type phoneServer struct {
	hufuv1.UnimplementedPhoneScanServiceServer
	s *Service
}

func (v phoneServer) Scan(ctx context.Context, req *hufuv1.ScanRequest) (*hufuv1.ScanResponse, error) {
	view, err := v.s.Scan(ctx, authn.CallerFrom(ctx), req.GetQrPayload())
	if err != nil {
		return nil, err
	}
	ss := view.Session
	out := &hufuv1.ScanResponse{SessionId: ss.Id, Kind: hufuv1.SessionKind(ss.Kind), SystemName: ss.System, WithSeal: ss.WithSeal, SignMode: hufuv1.SignMode(ss.SignMode),
		ReleasePreview: view.ReleasePreview, ExpiresAt: hufuv1.Timestamp(ss.ExpiresUnixNano),
		Subject: &hufuv1.BindSubject{EnterpriseName: ss.SubjectEnterpriseName, Uscc: ss.SubjectUscc, PersonName: ss.SubjectPersonName}}
	if p, ok := v.s.deps.Accounts.Platform(ss.PlatformId); ok {
		out.PlatformName = p.Name
	}
	for _, d := range ss.Documents {
		out.Documents = append(out.Documents, &hufuv1.Document{Name: d.Name, Sm3: d.Sm3})
	}
	for _, c := range view.Candidates {
		pc := &hufuv1.Candidate{Serial: c.Cert.Serial, KeyId: c.Cert.KeyId, Subject: c.Subject, Uscc: c.Cert.EnterpriseUscc, Refusal: c.Refusal,
			MutualRecognition: c.Recognition}
		for _, e := range c.Envelopes {
			pc.Envelopes = append(pc.Envelopes, &hufuv1.ConsentEnvelope{Id: e.Id, Ciphertext: e.Ciphertext})
		}
		out.Candidates = append(out.Candidates, pc)
	}
	if o := view.Opening; o != nil {
		out.Opening = &hufuv1.OpeningSummary{Id: o.Id, ProjectCode: o.ProjectCode, ProjectName: o.ProjectName,
			WindowStart: hufuv1.Timestamp(o.WindowStartUnixNano), WindowEnd: hufuv1.Timestamp(o.WindowEndUnixNano)}
	}
	return out, nil
}

func (v phoneServer) Choose(ctx context.Context, req *hufuv1.ChooseRequest) (*hufuv1.ChooseResponse, error) {
	c, err := v.s.Choose(ctx, authn.CallerFrom(ctx), req.GetSessionId(), req.GetCertificateSerial(), req.GetSealId(), req.GetConsentPoints())
	if err != nil {
		return nil, err
	}
	return &hufuv1.ChooseResponse{Challenge: c.Challenge, SignedAttributes: c.SignedAttributes, KeyId: c.KeyID}, nil
}

func (v phoneServer) Cosign(ctx context.Context, req *hufuv1.CosignRequest) (*hufuv1.CosignResponse, error) {
	cred := keys.Credential{Ticket: req.GetCredential().GetTicket(), PIN: req.GetCredential().GetPin()}
	results, version, err := v.s.Cosign(ctx, authn.CallerFrom(ctx), req.GetSessionId(), cred, req.GetSignRequests())
	if err != nil {
		return nil, err
	}
	return &hufuv1.CosignResponse{ShareVersion: version, Items: keys.BatchPB(results)}, nil
}

func (v phoneServer) Complete(ctx context.Context, req *hufuv1.CompleteRequest) (*hufuv1.CompleteResponse, error) {
	ss, err := v.s.Complete(ctx, authn.CallerFrom(ctx), req.GetSessionId(), req.GetSignatures())
	if err != nil {
		return nil, err
	}
	return &hufuv1.CompleteResponse{State: hufuv1.SessionState(ss.State)}, nil
}

func (v phoneServer) Consent(ctx context.Context, req *hufuv1.ConsentRequest) (*hufuv1.ConsentResponse, error) {
	ss, err := v.s.Consent(ctx, authn.CallerFrom(ctx), req.GetSessionId())
	if err != nil {
		return nil, err
	}
	return &hufuv1.ConsentResponse{State: hufuv1.SessionState(ss.State)}, nil
}

func (v phoneServer) Decline(ctx context.Context, req *hufuv1.DeclineRequest) (*hufuv1.DeclineResponse, error) {
	if err := v.s.Decline(ctx, authn.CallerFrom(ctx), req.GetSessionId(), req.GetReason()); err != nil {
		return nil, err
	}
	return &hufuv1.DeclineResponse{}, nil
}

func (v phoneServer) ListMyBindings(ctx context.Context, _ *hufuv1.ListMyBindingsRequest) (*hufuv1.ListMyBindingsResponse, error) {
	bs, err := v.s.MyBindings(ctx, authn.CallerFrom(ctx))
	if err != nil {
		return nil, err
	}
	out := &hufuv1.ListMyBindingsResponse{}
	for _, b := range bs {
		pb := bindingPB(b)
		pb.System = b.System
		out.Bindings = append(out.Bindings, pb)
	}
	return out, nil
}

func (v phoneServer) RemoveMyBinding(ctx context.Context, req *hufuv1.RemoveMyBindingRequest) (*hufuv1.RemoveMyBindingResponse, error) {
	if err := v.s.RemoveMyBinding(ctx, authn.CallerFrom(ctx), req.GetSystem(), req.GetBindingId()); err != nil {
		return nil, err
	}
	return &hufuv1.RemoveMyBindingResponse{}, nil
}

func (v phoneServer) GetQrKey(context.Context, *hufuv1.GetQrKeyRequest) (*hufuv1.GetQrKeyResponse, error) {
	pem, err := v.s.ScanKeyPEM()
	if err != nil {
		return nil, err
	}
	return &hufuv1.GetQrKeyResponse{PublicKeyPem: pem}, nil
}
