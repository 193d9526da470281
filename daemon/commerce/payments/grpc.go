package payments

import (
	"context"

	"google.golang.org/grpc"

	hufuv1 "github.com/hufu-hsm/hufu/api/hufu/v1"
	"github.com/hufu-hsm/hufu/daemon/authn"
	"github.com/hufu-hsm/hufu/store/storepb"
)

// Register adds PaymentService (user sessions) and PaymentDeskService (system clients
// granted it) to a gRPC server and returns their policy.
func (s *Service) Register(r grpc.ServiceRegistrar) authn.Policy {
	hufuv1.RegisterPaymentServiceServer(r, paymentServer{s: s})
	hufuv1.RegisterPaymentDeskServiceServer(r, deskServer{s: s})
	return authn.Policy{}.Add(&hufuv1.PaymentService_ServiceDesc, authn.User).Add(&hufuv1.PaymentDeskService_ServiceDesc, authn.System)
}

type paymentServer struct {
	hufuv1.UnimplementedPaymentServiceServer
	s *Service
}

type deskServer struct {
	hufuv1.UnimplementedPaymentDeskServiceServer
	s *Service
}

// offlinePB is the API form of an offline payment; the payer's id only for the desk.
func (s *Service) offlinePB(p *storepb.OfflinePayment, desk bool) *hufuv1.OfflinePayment {
	a := s.opts.Account
	out := &hufuv1.OfflinePayment{OrderId: p.OrderId, AmountFen: p.AmountFen, Reference: p.Reference,
		Account: &hufuv1.ReceivingAccount{AccountName: a.AccountName, Bank: a.Bank, AccountNumber: a.AccountNumber}, Note: a.Note,
		State: hufuv1.OfflinePaymentState(p.State), CreatedAt: hufuv1.Timestamp(p.CreatedUnixNano), UpdatedAt: hufuv1.Timestamp(p.UpdatedUnixNano),
		OperatorReference: p.OperatorReference, ReceivedFen: p.ReceivedFen, Reason: p.Reason, LedgerEntryId: p.LedgerEntryId,
		RefundEntryId: p.RefundEntryId, PayoutReference: p.PayoutReference, PayoutEntryId: p.PayoutEntryId}
	if p.RefundDueUnixNano != 0 {
		out.RefundDueAt = hufuv1.Timestamp(p.RefundDueUnixNano)
	}
	if p.RefundedUnixNano != 0 {
		out.RefundedAt = hufuv1.Timestamp(p.RefundedUnixNano)
	}
	if desk {
		out.UserId = p.UserId
	}
	return out
}

func (g paymentServer) ListPaymentMethods(_ context.Context, req *hufuv1.ListPaymentMethodsRequest) (*hufuv1.ListPaymentMethodsResponse, error) {
	ms, err := g.s.Methods(req.GetPlatform())
	if err != nil {
		return nil, err
	}
	out := &hufuv1.ListPaymentMethodsResponse{}
	for _, m := range ms {
		out.Methods = append(out.Methods, &hufuv1.PaymentMethod{Id: m.ID, Name: m.Name, Offline: m.Offline})
	}
	return out, nil
}

func (g paymentServer) PayOffline(ctx context.Context, req *hufuv1.PayOfflineRequest) (*hufuv1.PayOfflineResponse, error) {
	p, err := g.s.PayOffline(ctx, authn.CallerFrom(ctx), req.GetOrderId())
	if err != nil {
		return nil, err
	}
	return &hufuv1.PayOfflineResponse{Payment: g.s.offlinePB(p, false)}, nil
}

func (g deskServer) ListPendingPayments(ctx context.Context, req *hufuv1.ListPendingPaymentsRequest) (*hufuv1.ListPendingPaymentsResponse, error) {
	ps, next, err := g.s.ListPending(ctx, int(req.GetPageSize()), req.GetPageToken())
	if err != nil {
		return nil, err
	}
	out := &hufuv1.ListPendingPaymentsResponse{NextPageToken: next}
	for _, p := range ps {
		out.Payments = append(out.Payments, g.s.offlinePB(p, true))
	}
	return out, nil
}

func (g deskServer) ConfirmOfflinePayment(ctx context.Context, req *hufuv1.ConfirmOfflinePaymentRequest) (*hufuv1.ConfirmOfflinePaymentResponse, error) {
	p, serial, err := g.s.Confirm(ctx, authn.CallerFrom(ctx), req.GetOrderId(), req.GetOperatorReference(), req.GetAmountFen())
	if err != nil {
		return nil, err
	}
	return &hufuv1.ConfirmOfflinePaymentResponse{Payment: g.s.offlinePB(p, true), Serial: serial}, nil
}

func (g deskServer) RejectOfflinePayment(ctx context.Context, req *hufuv1.RejectOfflinePaymentRequest) (*hufuv1.RejectOfflinePaymentResponse, error) {
	p, err := g.s.Reject(ctx, authn.CallerFrom(ctx), req.GetOrderId(), req.GetReason())
	if err != nil {
		return nil, err
	}
	return &hufuv1.RejectOfflinePaymentResponse{Payment: g.s.offlinePB(p, true)}, nil
}

func (g deskServer) ListRefundsDue(ctx context.Context, req *hufuv1.ListRefundsDueRequest) (*hufuv1.ListRefundsDueResponse, error) {
	ps, next, err := g.s.ListRefundsDue(ctx, int(req.GetPageSize()), req.GetPageToken())
	if err != nil {
		return nil, err
	}
	out := &hufuv1.ListRefundsDueResponse{NextPageToken: next}
	for _, p := range ps {
		out.Payments = append(out.Payments, g.s.offlinePB(p, true))
	}
	return out, nil
}

func (g deskServer) ConfirmRefundPayout(ctx context.Context, req *hufuv1.ConfirmRefundPayoutRequest) (*hufuv1.ConfirmRefundPayoutResponse, error) {
	p, err := g.s.ConfirmPayout(ctx, authn.CallerFrom(ctx), req.GetOrderId(), req.GetOperatorReference(), req.GetAmountFen())
	if err != nil {
		return nil, err
	}
	return &hufuv1.ConfirmRefundPayoutResponse{Payment: g.s.offlinePB(p, true)}, nil
}

func (g deskServer) CheckLedger(ctx context.Context, _ *hufuv1.CheckLedgerRequest) (*hufuv1.CheckLedgerResponse, error) {
	r, err := g.s.CheckLedger(ctx, authn.CallerFrom(ctx))
	if err != nil {
		return nil, err
	}
	return &hufuv1.CheckLedgerResponse{Balanced: r.OK(), Entries: r.Entries, Accounts: uint32(r.Accounts), DebitsFen: r.DebitsFen,
		CreditsFen: r.CreditsFen, Problems: r.Problems}, nil
}
