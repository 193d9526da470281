package cards

import (
	"context"

	"google.golang.org/grpc"

	hufuv1 "github.com/hufu-hsm/hufu/api/hufu/v1"
	"github.com/hufu-hsm/hufu/daemon/authn"
	"github.com/hufu-hsm/hufu/store/storepb"
)

// Register adds BankCardService (user sessions) to a gRPC server and returns its policy.
func (s *Service) Register(r grpc.ServiceRegistrar) authn.Policy {
	hufuv1.RegisterBankCardServiceServer(r, cardServer{s: s})
	return authn.Policy{}.Add(&hufuv1.BankCardService_ServiceDesc, authn.User)
}

type cardServer struct {
	hufuv1.UnimplementedBankCardServiceServer
	s *Service
}

// CardPB is the API form of a bound card: masked, never the number.
func CardPB(c *storepb.BankCard) *hufuv1.BankCard {
	if c == nil {
		return nil
	}
	return &hufuv1.BankCard{Id: c.Id, BankName: c.BankName, Last4: c.Last4, NumberMasked: Masked(c.Last4),
		ReservedPhoneMasked: c.ReservedPhoneMasked, BoundAt: hufuv1.Timestamp(c.BoundUnixNano)}
}

func (g cardServer) BindBankCard(ctx context.Context, req *hufuv1.BindBankCardRequest) (*hufuv1.BindBankCardResponse, error) {
	c, err := g.s.Bind(ctx, authn.CallerFrom(ctx), req.GetRequestId(), req.GetCardNumber(), req.GetReservedPhone())
	if err != nil {
		return nil, err
	}
	return &hufuv1.BindBankCardResponse{Card: CardPB(c)}, nil
}

func (g cardServer) ListBankCards(ctx context.Context, _ *hufuv1.ListBankCardsRequest) (*hufuv1.ListBankCardsResponse, error) {
	list, err := g.s.List(ctx, authn.CallerFrom(ctx))
	if err != nil {
		return nil, err
	}
	out := &hufuv1.ListBankCardsResponse{}
	for _, c := range list {
		out.Cards = append(out.Cards, CardPB(c))
	}
	return out, nil
}

func (g cardServer) UnbindBankCard(ctx context.Context, req *hufuv1.UnbindBankCardRequest) (*hufuv1.UnbindBankCardResponse, error) {
	if err := g.s.Unbind(ctx, authn.CallerFrom(ctx), req.GetCardId()); err != nil {
		return nil, err
	}
	return &hufuv1.UnbindBankCardResponse{}, nil
}
