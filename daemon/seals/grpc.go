package seals

import (
	"context"

	"google.golang.org/grpc"

	hufuv1 "github.com/hufu-hsm/hufu/api/hufu/v1"
	"github.com/hufu-hsm/hufu/daemon/authn"
	"github.com/hufu-hsm/hufu/store/storepb"
)

// Register adds SealService (user sessions) to a gRPC server and returns its policy.
func (s *Service) Register(r grpc.ServiceRegistrar) authn.Policy {
	hufuv1.RegisterSealServiceServer(r, sealServer{s: s})
	return authn.Policy{}.Add(&hufuv1.SealService_ServiceDesc, authn.User)
}

type sealServer struct {
	hufuv1.UnimplementedSealServiceServer
	s *Service
}

// SealPB is the API form of a stored seal (image, if any, passed apart).
func SealPB(s *storepb.Seal, image []byte) *hufuv1.Seal {
	if s == nil {
		return nil
	}
	return &hufuv1.Seal{
		Id: s.Id, EnterpriseUscc: s.EnterpriseUscc, OwnerUserId: s.OwnerUserId, Name: s.Name, Type: hufuv1.SealType(s.Type),
		State: hufuv1.SealState(s.State), CertificateSerial: s.CertificateSerial, AuthorisedUserIds: s.AuthorisedUserIds,
		Image: image, ImageSha256: s.ImageSha256, ImageWidth: s.ImageWidth, ImageHeight: s.ImageHeight,
		CreatedAt: hufuv1.Timestamp(s.CreatedUnixNano), UpdatedAt: hufuv1.Timestamp(s.UpdatedUnixNano),
	}
}

func (g sealServer) CreateSeal(ctx context.Context, req *hufuv1.CreateSealRequest) (*hufuv1.CreateSealResponse, error) {
	seal, err := g.s.Create(ctx, authn.CallerFrom(ctx), req)
	if err != nil {
		return nil, err
	}
	return &hufuv1.CreateSealResponse{Seal: SealPB(seal, nil)}, nil
}

func (g sealServer) ListSeals(ctx context.Context, req *hufuv1.ListSealsRequest) (*hufuv1.ListSealsResponse, error) {
	list, err := g.s.List(ctx, authn.CallerFrom(ctx), req.GetEnterpriseUscc())
	if err != nil {
		return nil, err
	}
	out := &hufuv1.ListSealsResponse{}
	for _, seal := range list {
		out.Seals = append(out.Seals, SealPB(seal, nil))
	}
	return out, nil
}

func (g sealServer) GetSeal(ctx context.Context, req *hufuv1.GetSealRequest) (*hufuv1.GetSealResponse, error) {
	seal, img, err := g.s.Get(ctx, authn.CallerFrom(ctx), req.GetSealId())
	if err != nil {
		return nil, err
	}
	return &hufuv1.GetSealResponse{Seal: SealPB(seal, img)}, nil
}

func (g sealServer) SetSealState(ctx context.Context, req *hufuv1.SetSealStateRequest) (*hufuv1.SetSealStateResponse, error) {
	seal, err := g.s.SetState(ctx, authn.CallerFrom(ctx), req.GetSealId(), req.GetState())
	if err != nil {
		return nil, err
	}
	return &hufuv1.SetSealStateResponse{Seal: SealPB(seal, nil)}, nil
}

func (g sealServer) AuthoriseSeal(ctx context.Context, req *hufuv1.AuthoriseSealRequest) (*hufuv1.AuthoriseSealResponse, error) {
	seal, err := g.s.Authorise(ctx, authn.CallerFrom(ctx), req.GetSealId(), req.GetUserId())
	if err != nil {
		return nil, err
	}
	return &hufuv1.AuthoriseSealResponse{Seal: SealPB(seal, nil)}, nil
}

func (g sealServer) UnauthoriseSeal(ctx context.Context, req *hufuv1.UnauthoriseSealRequest) (*hufuv1.UnauthoriseSealResponse, error) {
	seal, err := g.s.Unauthorise(ctx, authn.CallerFrom(ctx), req.GetSealId(), req.GetUserId())
	if err != nil {
		return nil, err
	}
	return &hufuv1.UnauthoriseSealResponse{Seal: SealPB(seal, nil)}, nil
}
