package invoices

import (
	"context"
	"crypto/sha256"
	"encoding/hex"

	"google.golang.org/grpc"

	hufuv1 "github.com/hufu-hsm/hufu/api/hufu/v1"
	"github.com/hufu-hsm/hufu/daemon/authn"
)

// Register adds InvoiceService (user sessions) and InvoiceDeskService (system clients: the
// invoicing desk) to a gRPC server and returns their policy.
func (s *Service) Register(r grpc.ServiceRegistrar) authn.Policy {
	hufuv1.RegisterInvoiceServiceServer(r, invoiceServer{s: s})
	hufuv1.RegisterInvoiceDeskServiceServer(r, deskServer{s: s})
	return authn.Policy{}.Add(&hufuv1.InvoiceService_ServiceDesc, authn.User).Add(&hufuv1.InvoiceDeskService_ServiceDesc, authn.System)
}

type invoiceServer struct {
	hufuv1.UnimplementedInvoiceServiceServer
	s *Service
}

func (g invoiceServer) GetInvoiceOptions(context.Context, *hufuv1.GetInvoiceOptionsRequest) (*hufuv1.GetInvoiceOptionsResponse, error) {
	return g.s.Options(), nil
}

func (g invoiceServer) GetInvoicingHelp(context.Context, *hufuv1.GetInvoicingHelpRequest) (*hufuv1.GetInvoicingHelpResponse, error) {
	return &hufuv1.GetInvoicingHelpResponse{Text: g.s.HelpText()}, nil
}

func (g invoiceServer) ListInvoiceableOrders(ctx context.Context, req *hufuv1.ListInvoiceableOrdersRequest) (*hufuv1.ListInvoiceableOrdersResponse, error) {
	groups, err := g.s.InvoiceableOrders(ctx, authn.CallerFrom(ctx), req.GetCategory())
	if err != nil {
		return nil, err
	}
	out := &hufuv1.ListInvoiceableOrdersResponse{}
	for _, gr := range groups {
		pb := &hufuv1.InvoiceableGroup{Category: gr.Category, Label: categoryLabel(gr.Category), InvoiceableAmountFen: gr.AmountFen}
		for _, o := range gr.Orders {
			pb.Orders = append(pb.Orders, &hufuv1.InvoiceableOrder{OrderId: o.ID, OrderKind: o.Kind, AmountFen: o.AmountFen,
				PaidAt: hufuv1.Timestamp(o.PaidAt.UnixNano()), Description: o.Description})
		}
		out.Groups = append(out.Groups, pb)
	}
	return out, nil
}

func (g invoiceServer) RequestInvoice(ctx context.Context, req *hufuv1.RequestInvoiceRequest) (*hufuv1.RequestInvoiceResponse, error) {
	inv, err := g.s.Request(ctx, authn.CallerFrom(ctx), req)
	if err != nil {
		return nil, err
	}
	return &hufuv1.RequestInvoiceResponse{Invoice: InvoicePB(inv, false)}, nil
}

func (g invoiceServer) ListInvoices(ctx context.Context, req *hufuv1.ListInvoicesRequest) (*hufuv1.ListInvoicesResponse, error) {
	list, next, err := g.s.List(ctx, authn.CallerFrom(ctx), req.GetState(), req.GetPageSize(), req.GetPageToken())
	if err != nil {
		return nil, err
	}
	out := &hufuv1.ListInvoicesResponse{NextPageToken: next}
	for _, inv := range list {
		out.Invoices = append(out.Invoices, InvoicePB(inv, false))
	}
	return out, nil
}

func (g invoiceServer) GetInvoice(ctx context.Context, req *hufuv1.GetInvoiceRequest) (*hufuv1.GetInvoiceResponse, error) {
	inv, err := g.s.Get(ctx, authn.CallerFrom(ctx), req.GetInvoiceId())
	if err != nil {
		return nil, err
	}
	return &hufuv1.GetInvoiceResponse{Invoice: InvoicePB(inv, false)}, nil
}

func (g invoiceServer) DownloadInvoice(ctx context.Context, req *hufuv1.DownloadInvoiceRequest) (*hufuv1.DownloadInvoiceResponse, error) {
	inv, doc, err := g.s.Download(ctx, authn.CallerFrom(ctx), req.GetInvoiceId())
	if err != nil {
		return nil, err
	}
	ext := ".pdf"
	if doc.MediaType == MediaOFD {
		ext = ".ofd"
	}
	sum := sha256.Sum256(doc.Content)
	return &hufuv1.DownloadInvoiceResponse{MediaType: doc.MediaType, FileName: "发票-" + inv.Number + ext, Content: doc.Content,
		Sha256: hex.EncodeToString(sum[:])}, nil
}

func (g invoiceServer) ListInvoiceTitles(ctx context.Context, _ *hufuv1.ListInvoiceTitlesRequest) (*hufuv1.ListInvoiceTitlesResponse, error) {
	list, err := g.s.ListTitles(ctx, authn.CallerFrom(ctx))
	if err != nil {
		return nil, err
	}
	out := &hufuv1.ListInvoiceTitlesResponse{}
	for _, t := range list {
		out.Titles = append(out.Titles, TitlePB(t))
	}
	return out, nil
}

func (g invoiceServer) AddInvoiceTitle(ctx context.Context, req *hufuv1.AddInvoiceTitleRequest) (*hufuv1.AddInvoiceTitleResponse, error) {
	t, err := g.s.AddTitle(ctx, authn.CallerFrom(ctx), req.GetRequestId(), req.GetTitle())
	if err != nil {
		return nil, err
	}
	return &hufuv1.AddInvoiceTitleResponse{Title: TitlePB(t)}, nil
}

func (g invoiceServer) EditInvoiceTitle(ctx context.Context, req *hufuv1.EditInvoiceTitleRequest) (*hufuv1.EditInvoiceTitleResponse, error) {
	t, err := g.s.EditTitle(ctx, authn.CallerFrom(ctx), req.GetTitleId(), req.GetTitle())
	if err != nil {
		return nil, err
	}
	return &hufuv1.EditInvoiceTitleResponse{Title: TitlePB(t)}, nil
}

func (g invoiceServer) DeleteInvoiceTitle(ctx context.Context, req *hufuv1.DeleteInvoiceTitleRequest) (*hufuv1.DeleteInvoiceTitleResponse, error) {
	if err := g.s.DeleteTitle(ctx, authn.CallerFrom(ctx), req.GetTitleId()); err != nil {
		return nil, err
	}
	return &hufuv1.DeleteInvoiceTitleResponse{}, nil
}

type deskServer struct {
	hufuv1.UnimplementedInvoiceDeskServiceServer
	s *Service
}

func (g deskServer) ListSubmittedInvoices(ctx context.Context, req *hufuv1.ListSubmittedInvoicesRequest) (*hufuv1.ListSubmittedInvoicesResponse, error) {
	list, next, err := g.s.Submitted(ctx, req.GetPageSize(), req.GetPageToken())
	if err != nil {
		return nil, err
	}
	out := &hufuv1.ListSubmittedInvoicesResponse{NextPageToken: next}
	for _, inv := range list {
		out.Invoices = append(out.Invoices, InvoicePB(inv, true))
	}
	return out, nil
}

func (g deskServer) IssueInvoice(ctx context.Context, req *hufuv1.IssueInvoiceRequest) (*hufuv1.IssueInvoiceResponse, error) {
	inv, err := g.s.Issue(ctx, authn.CallerFrom(ctx), req.GetInvoiceId(), req.GetNumber(), req.GetDocument(), req.GetMediaType())
	if err != nil {
		return nil, err
	}
	return &hufuv1.IssueInvoiceResponse{Invoice: InvoicePB(inv, true)}, nil
}

func (g deskServer) RejectInvoice(ctx context.Context, req *hufuv1.RejectInvoiceRequest) (*hufuv1.RejectInvoiceResponse, error) {
	inv, err := g.s.Reject(ctx, authn.CallerFrom(ctx), req.GetInvoiceId(), req.GetReason())
	if err != nil {
		return nil, err
	}
	return &hufuv1.RejectInvoiceResponse{Invoice: InvoicePB(inv, true)}, nil
}
