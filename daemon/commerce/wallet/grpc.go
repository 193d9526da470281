package wallet

import (
	"context"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/protobuf/types/known/durationpb"

	hufuv1 "github.com/hufu-hsm/hufu/api/hufu/v1"
	"github.com/hufu-hsm/hufu/daemon/authn"
	"github.com/hufu-hsm/hufu/store/storepb"
)

// Register adds WalletService (user sessions) to a gRPC server and returns its policy.
func (s *Service) Register(r grpc.ServiceRegistrar) authn.Policy {
	hufuv1.RegisterWalletServiceServer(r, walletServer{s: s})
	return authn.Policy{}.Add(&hufuv1.WalletService_ServiceDesc, authn.User)
}

type walletServer struct {
	hufuv1.UnimplementedWalletServiceServer
	s *Service
}

// OrderPB is the API form of a wallet order.
func OrderPB(o *storepb.WalletOrder) *hufuv1.WalletOrder {
	return &hufuv1.WalletOrder{Id: o.Id, Kind: hufuv1.WalletOrderKind(o.Kind), State: hufuv1.WalletOrderState(o.State), PlatformId: o.Platform,
		AmountFen: o.AmountFen, PassId: o.PassId, PassDays: o.PassDays, CreatedAt: hufuv1.Timestamp(o.CreatedUnixNano),
		PaidAt: hufuv1.Timestamp(o.PaidUnixNano), Method: o.Method, LedgerEntryId: o.LedgerEntryId,
		PassFrom: hufuv1.Timestamp(o.PassFromUnixNano), PassUntil: hufuv1.Timestamp(o.PassUntilUnixNano)}
}

// PassPB is the API form of a day pass as of now.
func PassPB(p *storepb.DayPass, now time.Time) *hufuv1.DayPass {
	left := max(time.Duration(p.UntilUnixNano-now.UnixNano()), 0)
	return &hufuv1.DayPass{PlatformId: p.Platform, ValidFrom: hufuv1.Timestamp(p.FromUnixNano), ValidUntil: hufuv1.Timestamp(p.UntilUnixNano),
		Remaining: durationpb.New(left), Active: left > 0}
}

func (g walletServer) GetWalletCatalogue(context.Context, *hufuv1.GetWalletCatalogueRequest) (*hufuv1.GetWalletCatalogueResponse, error) {
	out := &hufuv1.GetWalletCatalogueResponse{}
	for _, p := range g.s.Catalogue() {
		pb := &hufuv1.RecognitionPlatform{PlatformId: p.Platform, PlatformName: p.PlatformName, PerUsePriceFen: p.PerUsePriceFen, TopUpAmountsFen: p.TopUpsFen}
		for _, ps := range p.Passes {
			pb.DayPasses = append(pb.DayPasses, &hufuv1.DayPassPlan{Id: ps.ID, Name: ps.Name, Days: uint32(ps.Days), PriceFen: ps.PriceFen})
		}
		out.Platforms = append(out.Platforms, pb)
	}
	return out, nil
}

func (g walletServer) passes(ctx context.Context) ([]*hufuv1.DayPass, error) {
	ps, err := g.s.Passes(ctx, authn.CallerFrom(ctx))
	if err != nil {
		return nil, err
	}
	now := g.s.Now()
	out := make([]*hufuv1.DayPass, len(ps))
	for i, p := range ps {
		out[i] = PassPB(p, now)
	}
	return out, nil
}

func (g walletServer) GetWalletBalance(ctx context.Context, _ *hufuv1.GetWalletBalanceRequest) (*hufuv1.GetWalletBalanceResponse, error) {
	bal, err := g.s.Balance(ctx, authn.CallerFrom(ctx))
	if err != nil {
		return nil, err
	}
	ps, err := g.passes(ctx)
	if err != nil {
		return nil, err
	}
	return &hufuv1.GetWalletBalanceResponse{BalanceFen: bal, Passes: ps}, nil
}

func (g walletServer) CreateTopUp(ctx context.Context, req *hufuv1.CreateTopUpRequest) (*hufuv1.CreateTopUpResponse, error) {
	o, err := g.s.CreateTopUp(ctx, authn.CallerFrom(ctx), req.GetRequestId(), req.GetPlatformId(), req.GetAmountFen())
	if err != nil {
		return nil, err
	}
	return &hufuv1.CreateTopUpResponse{Order: OrderPB(o)}, nil
}

func (g walletServer) BuyDayPass(ctx context.Context, req *hufuv1.BuyDayPassRequest) (*hufuv1.BuyDayPassResponse, error) {
	o, err := g.s.BuyPass(ctx, authn.CallerFrom(ctx), req.GetRequestId(), req.GetPlatformId(), req.GetPassId())
	if err != nil {
		return nil, err
	}
	return &hufuv1.BuyDayPassResponse{Order: OrderPB(o)}, nil
}

func (g walletServer) PayWalletOrder(ctx context.Context, req *hufuv1.PayWalletOrderRequest) (*hufuv1.PayWalletOrderResponse, error) {
	caller := authn.CallerFrom(ctx)
	o, err := g.s.Pay(ctx, caller, req.GetOrderId(), req.GetMethod(), req.GetIdempotencyKey())
	if err != nil {
		return nil, err
	}
	bal, err := g.s.Balance(ctx, caller)
	if err != nil {
		return nil, err
	}
	return &hufuv1.PayWalletOrderResponse{Order: OrderPB(o), BalanceFen: bal}, nil
}

func (g walletServer) ListWalletOrders(ctx context.Context, req *hufuv1.ListWalletOrdersRequest) (*hufuv1.ListWalletOrdersResponse, error) {
	os, next, err := g.s.Orders(ctx, authn.CallerFrom(ctx), int32(req.GetKind()), int(req.GetPageSize()), req.GetPageToken())
	if err != nil {
		return nil, err
	}
	out := &hufuv1.ListWalletOrdersResponse{NextPageToken: next}
	for _, o := range os {
		out.Orders = append(out.Orders, OrderPB(o))
	}
	return out, nil
}

func (g walletServer) ListWalletUses(ctx context.Context, req *hufuv1.ListWalletUsesRequest) (*hufuv1.ListWalletUsesResponse, error) {
	us, next, err := g.s.Uses(ctx, authn.CallerFrom(ctx), int(req.GetPageSize()), req.GetPageToken())
	if err != nil {
		return nil, err
	}
	out := &hufuv1.ListWalletUsesResponse{NextPageToken: next}
	for _, u := range us {
		out.Uses = append(out.Uses, &hufuv1.WalletUse{Id: u.Id, SessionId: u.SessionId, PlatformId: u.Platform, System: u.System,
			CertificateSerial: u.CertificateSerial, AmountFen: u.AmountFen, Time: hufuv1.Timestamp(u.TimeUnixNano), LedgerEntryId: u.LedgerEntryId})
	}
	return out, nil
}

func (g walletServer) ListDayPasses(ctx context.Context, _ *hufuv1.ListDayPassesRequest) (*hufuv1.ListDayPassesResponse, error) {
	ps, err := g.passes(ctx)
	if err != nil {
		return nil, err
	}
	return &hufuv1.ListDayPassesResponse{Passes: ps}, nil
}
