package aftersales

import (
	"context"

	"google.golang.org/grpc"

	hufuv1 "github.com/hufu-hsm/hufu/api/hufu/v1"
	"github.com/hufu-hsm/hufu/daemon/authn"
	"github.com/hufu-hsm/hufu/store/storepb"
)

// Register adds AfterSalesService (user sessions) and AfterSalesDeskService (system clients
// allowed it) to a gRPC server and returns their policy.
func (s *Service) Register(r grpc.ServiceRegistrar) authn.Policy {
	hufuv1.RegisterAfterSalesServiceServer(r, phoneServer{s: s})
	hufuv1.RegisterAfterSalesDeskServiceServer(r, deskServer{s: s})
	return authn.Policy{}.Add(&hufuv1.AfterSalesService_ServiceDesc, authn.User).
		Add(&hufuv1.AfterSalesDeskService_ServiceDesc, authn.System)
}

type phoneServer struct {
	hufuv1.UnimplementedAfterSalesServiceServer
	s *Service
}

type deskServer struct {
	hufuv1.UnimplementedAfterSalesDeskServiceServer
	s *Service
}

// casePB is a case as its applicant sees it, or, with desk, as the desk does (with the
// masked phone).
func (s *Service) casePB(ctx context.Context, c *storepb.AfterSalesCase, desk bool) (*hufuv1.AfterSalesCase, error) {
	refs, err := s.Attachments(ctx, c)
	if err != nil {
		return nil, err
	}
	out := &hufuv1.AfterSalesCase{Id: c.Id, OrderId: c.OrderId, OrderKind: c.OrderKind, AmountFen: c.AmountFen,
		Reason: hufuv1.AfterSalesReason(c.Reason), ReasonLabel: s.Label(hufuv1.AfterSalesReason(c.Reason)), Text: c.Text,
		State: hufuv1.AfterSalesState(c.State), Serials: c.Serials, CreatedAt: hufuv1.Timestamp(c.CreatedUnixNano),
		UpdatedAt: hufuv1.Timestamp(c.UpdatedUnixNano), Outcome: c.Outcome, RefundEntryId: c.RefundEntryId,
		ClosedAt: hufuv1.Timestamp(c.ClosedUnixNano)}
	for _, r := range refs {
		out.Attachments = append(out.Attachments, &hufuv1.AfterSalesAttachment{Id: r.Id, FileName: r.FileName, MediaType: r.MediaType, Size: r.Size})
	}
	if desk {
		out.PhoneMasked = c.PhoneMasked
	}
	return out, nil
}

func (s *Service) casesPB(ctx context.Context, list []*storepb.AfterSalesCase, desk bool) ([]*hufuv1.AfterSalesCase, error) {
	out := make([]*hufuv1.AfterSalesCase, 0, len(list))
	for _, c := range list {
		pb, err := s.casePB(ctx, c, desk)
		if err != nil {
			return nil, err
		}
		out = append(out, pb)
	}
	return out, nil
}

func (g phoneServer) ListAfterSalesReasons(context.Context, *hufuv1.ListAfterSalesReasonsRequest) (*hufuv1.ListAfterSalesReasonsResponse, error) {
	text, files, size := g.s.Limits()
	out := &hufuv1.ListAfterSalesReasonsResponse{MaxTextChars: uint32(text), MaxAttachments: uint32(files), MaxAttachmentBytes: uint32(size)}
	for _, r := range g.s.Reasons() {
		out.Reasons = append(out.Reasons, &hufuv1.AfterSalesReasonInfo{Reason: r.Reason, Label: r.Label, TextRequired: r.TextRequired})
	}
	return out, nil
}

func (g phoneServer) PreviewAfterSales(ctx context.Context, req *hufuv1.PreviewAfterSalesRequest) (*hufuv1.PreviewAfterSalesResponse, error) {
	p, err := g.s.Preview(ctx, authn.CallerFrom(ctx), req.GetOrderId())
	if err != nil {
		return nil, err
	}
	return &hufuv1.PreviewAfterSalesResponse{OrderId: p.OrderID, RefundAmountFen: p.AmountFen, RevokedSerials: p.Serials,
		InvoiceId: p.InvoiceID, Consequences: p.Consequences, Acknowledgement: p.Acknowledgement}, nil
}

func (g phoneServer) ApplyAfterSales(ctx context.Context, req *hufuv1.ApplyAfterSalesRequest) (*hufuv1.ApplyAfterSalesResponse, error) {
	a := Application{RequestID: req.GetRequestId(), OrderID: req.GetOrderId(), Reason: req.GetReason(), Text: req.GetText(),
		Acknowledgement: req.GetAcknowledgement()}
	for _, f := range req.GetAttachments() {
		a.Files = append(a.Files, NewAttachment{FileName: f.GetFileName(), MediaType: f.GetMediaType(), Content: f.GetContent()})
	}
	c, err := g.s.Apply(ctx, authn.CallerFrom(ctx), a)
	if err != nil {
		return nil, err
	}
	pb, err := g.s.casePB(ctx, c, false)
	if err != nil {
		return nil, err
	}
	return &hufuv1.ApplyAfterSalesResponse{Case: pb}, nil
}

func (g phoneServer) ListAfterSales(ctx context.Context, req *hufuv1.ListAfterSalesRequest) (*hufuv1.ListAfterSalesResponse, error) {
	list, next, err := g.s.List(ctx, authn.CallerFrom(ctx), req.GetState(), req.GetKeyword(), int(req.GetPageSize()), req.GetPageToken())
	if err != nil {
		return nil, err
	}
	pbs, err := g.s.casesPB(ctx, list, false)
	if err != nil {
		return nil, err
	}
	return &hufuv1.ListAfterSalesResponse{Cases: pbs, NextPageToken: next}, nil
}

func (g phoneServer) GetAfterSales(ctx context.Context, req *hufuv1.GetAfterSalesRequest) (*hufuv1.GetAfterSalesResponse, error) {
	c, err := g.s.Get(ctx, authn.CallerFrom(ctx), req.GetCaseId())
	if err != nil {
		return nil, err
	}
	pb, err := g.s.casePB(ctx, c, false)
	if err != nil {
		return nil, err
	}
	return &hufuv1.GetAfterSalesResponse{Case: pb}, nil
}

func (g phoneServer) WithdrawAfterSales(ctx context.Context, req *hufuv1.WithdrawAfterSalesRequest) (*hufuv1.WithdrawAfterSalesResponse, error) {
	c, err := g.s.Withdraw(ctx, authn.CallerFrom(ctx), req.GetCaseId())
	if err != nil {
		return nil, err
	}
	pb, err := g.s.casePB(ctx, c, false)
	if err != nil {
		return nil, err
	}
	return &hufuv1.WithdrawAfterSalesResponse{Case: pb}, nil
}

func (g deskServer) ListOpenAfterSales(ctx context.Context, req *hufuv1.ListOpenAfterSalesRequest) (*hufuv1.ListOpenAfterSalesResponse, error) {
	if err := isDesk(authn.CallerFrom(ctx)); err != nil {
		return nil, err
	}
	list, next, err := g.s.ListOpen(ctx, int(req.GetPageSize()), req.GetPageToken())
	if err != nil {
		return nil, err
	}
	pbs, err := g.s.casesPB(ctx, list, true)
	if err != nil {
		return nil, err
	}
	return &hufuv1.ListOpenAfterSalesResponse{Cases: pbs, NextPageToken: next}, nil
}

func (g deskServer) RefundAfterSales(ctx context.Context, req *hufuv1.RefundAfterSalesRequest) (*hufuv1.RefundAfterSalesResponse, error) {
	c, err := g.s.Refund(ctx, authn.CallerFrom(ctx), req.GetCaseId())
	if err != nil {
		return nil, err
	}
	pb, err := g.s.casePB(ctx, c, true)
	if err != nil {
		return nil, err
	}
	return &hufuv1.RefundAfterSalesResponse{Case: pb}, nil
}

func (g deskServer) SettleAfterSales(ctx context.Context, req *hufuv1.SettleAfterSalesRequest) (*hufuv1.SettleAfterSalesResponse, error) {
	c, err := g.s.Settle(ctx, authn.CallerFrom(ctx), req.GetCaseId(), req.GetOutcome())
	if err != nil {
		return nil, err
	}
	pb, err := g.s.casePB(ctx, c, true)
	if err != nil {
		return nil, err
	}
	return &hufuv1.SettleAfterSalesResponse{Case: pb}, nil
}

func (g deskServer) GetAfterSalesAttachment(ctx context.Context, req *hufuv1.GetAfterSalesAttachmentRequest) (*hufuv1.GetAfterSalesAttachmentResponse, error) {
	if err := isDesk(authn.CallerFrom(ctx)); err != nil {
		return nil, err
	}
	ref, content, err := g.s.DeskAttachment(ctx, req.GetCaseId(), req.GetAttachmentId())
	if err != nil {
		return nil, err
	}
	return &hufuv1.GetAfterSalesAttachmentResponse{Attachment: &hufuv1.AfterSalesAttachment{Id: ref.Id, FileName: ref.FileName,
		MediaType: ref.MediaType, Size: ref.Size}, Content: content}, nil
}
