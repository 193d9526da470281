package certs

import (
	"context"

	"google.golang.org/grpc"

	hufuv1 "github.com/hufu-hsm/hufu/api/hufu/v1"
	"github.com/hufu-hsm/hufu/daemon/authn"
	"github.com/hufu-hsm/hufu/store/storepb"
)

// Register adds CertificateService (user sessions) and ReviewService (system clients: the
// operators' desk) to a gRPC server.
func (s *Service) Register(r grpc.ServiceRegistrar) authn.Policy {
	hufuv1.RegisterCertificateServiceServer(r, certServer{s: s})
	hufuv1.RegisterReviewServiceServer(r, reviewServer{s: s})
	return authn.Policy{}.Add(&hufuv1.CertificateService_ServiceDesc, authn.User).Add(&hufuv1.ReviewService_ServiceDesc, authn.System)
}

type certServer struct {
	hufuv1.UnimplementedCertificateServiceServer
	s *Service
}

// OrderPB is an order as the API shows it (the enterprise service answers claims with it).
func (s *Service) OrderPB(o *storepb.Order) *hufuv1.Order {
	if o == nil {
		return nil
	}
	name := o.CaId
	if c, ok := s.cas[o.CaId]; ok {
		name = c.Connector.Name()
	}
	out := &hufuv1.Order{
		Id: o.Id, Kind: hufuv1.OrderKind(o.Kind), Status: apiStatus(o.Status), CaId: o.CaId, CaName: name,
		CertKind: o.CertKind, ValidityYears: o.ValidityYears, Platforms: o.Platforms, Regions: o.Regions, PriceFen: o.PriceFen,
		KeyId: o.KeyId, SubjectName: o.SubjectName, SubjectIdMasked: o.SubjectIdMasked,
		AuthorisationMethod: o.GetAuthorisation().GetMethod(), AuthorisationSha256: o.GetAuthorisation().GetSha256(),
		CancelReason: o.CancelReason, CancelledBy: o.CancelledBy, Serial: o.Serial, ReplacesSerial: o.ReplacesSerial,
		ReorderedFrom: o.ReorderedFrom, EnterpriseUscc: o.EnterpriseUscc, CreatedAt: hufuv1.Timestamp(o.CreatedUnixNano), UpdatedAt: hufuv1.Timestamp(o.UpdatedUnixNano),
		Downloaded: o.DownloadedUnixNano != 0, DownloadedAt: hufuv1.Timestamp(o.DownloadedUnixNano),
		EncryptionKeyId: o.EncryptionKeyId, EncryptionSerial: o.EncryptionSerial,
	}
	for _, st := range o.Steps {
		out.Steps = append(out.Steps, &hufuv1.ReviewStep{Name: st.Name, Time: hufuv1.Timestamp(st.TimeUnixNano), Actor: st.Actor, Note: st.Note})
	}
	return out
}

func (s *Service) certPB(c *storepb.Certificate) *hufuv1.Certificate {
	if c == nil {
		return nil
	}
	return &hufuv1.Certificate{
		Serial: c.Serial, KeyId: c.KeyId, CaId: c.CaId, NotBefore: hufuv1.Timestamp(c.NotBeforeUnixNano), NotAfter: hufuv1.Timestamp(c.NotAfterUnixNano),
		Platforms: c.Platforms, Regions: c.Regions, Label: c.Label, Status: s.effective(c), RevokedAt: hufuv1.Timestamp(c.RevokedUnixNano),
		OrderId: c.OrderId, SupersededBy: c.SupersededBy, Subject: subjectOf(c),
		DisabledReason: c.DisabledReason, DisabledAt: hufuv1.Timestamp(c.DisabledUnixNano),
		Usage: usagePB(c.Usage), PairSerial: c.PairSerial, PairKeyId: c.PairKeyId,
	}
}

func (c certServer) ListCertificateAuthorities(context.Context, *hufuv1.ListCertificateAuthoritiesRequest) (*hufuv1.ListCertificateAuthoritiesResponse, error) {
	out := &hufuv1.ListCertificateAuthoritiesResponse{}
	for _, id := range c.s.order {
		authority := c.s.cas[id]
		pb := &hufuv1.CertificateAuthority{Id: id, Name: authority.Connector.Name()}
		for _, kind := range []string{certKindPersonal, certKindEnterprise} {
			for _, y := range c.s.opts.ValidityYears {
				if p, ok := authority.Prices[kind][y]; ok {
					pb.Prices = append(pb.Prices, &hufuv1.Price{CertKind: kind, ValidityYears: uint32(y), AmountFen: p})
				}
			}
		}
		out.Authorities = append(out.Authorities, pb)
	}
	return out, nil
}

func (c certServer) ApplyCertificate(ctx context.Context, req *hufuv1.ApplyCertificateRequest) (*hufuv1.ApplyCertificateResponse, error) {
	o, err := c.s.Apply(ctx, authn.CallerFrom(ctx), req)
	if err != nil {
		return nil, err
	}
	return &hufuv1.ApplyCertificateResponse{Order: c.s.OrderPB(o)}, nil
}

func (c certServer) ListOrders(ctx context.Context, req *hufuv1.ListOrdersRequest) (*hufuv1.ListOrdersResponse, error) {
	os, next, err := c.s.ListOrders(ctx, authn.CallerFrom(ctx), req.GetStatus(), req.GetKeyword(), int(req.GetPageSize()), req.GetPageToken())
	if err != nil {
		return nil, err
	}
	out := &hufuv1.ListOrdersResponse{NextPageToken: next}
	for _, o := range os {
		out.Orders = append(out.Orders, c.s.OrderPB(o))
	}
	return out, nil
}

func (c certServer) GetOrder(ctx context.Context, req *hufuv1.GetOrderRequest) (*hufuv1.GetOrderResponse, error) {
	o, err := c.s.GetOrder(ctx, authn.CallerFrom(ctx), req.GetOrderId())
	if err != nil {
		return nil, err
	}
	return &hufuv1.GetOrderResponse{Order: c.s.OrderPB(o)}, nil
}

func (c certServer) PayOrder(ctx context.Context, req *hufuv1.PayOrderRequest) (*hufuv1.PayOrderResponse, error) {
	o, cert, err := c.s.Pay(ctx, authn.CallerFrom(ctx), req.GetOrderId(), req.GetMethod(), req.GetIdempotencyKey())
	if err != nil {
		return nil, err
	}
	return &hufuv1.PayOrderResponse{Order: c.s.OrderPB(o), Certificate: c.s.certPB(cert)}, nil
}

func (c certServer) CancelOrder(ctx context.Context, req *hufuv1.CancelOrderRequest) (*hufuv1.CancelOrderResponse, error) {
	o, err := c.s.Cancel(ctx, authn.CallerFrom(ctx), req.GetOrderId(), req.GetReason())
	if err != nil {
		return nil, err
	}
	return &hufuv1.CancelOrderResponse{Order: c.s.OrderPB(o)}, nil
}

func (c certServer) ReorderDraft(ctx context.Context, req *hufuv1.ReorderDraftRequest) (*hufuv1.ReorderDraftResponse, error) {
	d, err := c.s.ReorderDraft(ctx, authn.CallerFrom(ctx), req.GetOrderId())
	if err != nil {
		return nil, err
	}
	return &hufuv1.ReorderDraftResponse{Draft: d}, nil
}

func (c certServer) ListCertificates(ctx context.Context, req *hufuv1.ListCertificatesRequest) (*hufuv1.ListCertificatesResponse, error) {
	cs, err := c.s.ListCertificates(ctx, authn.CallerFrom(ctx), req.GetView())
	if err != nil {
		return nil, err
	}
	placed, err := c.s.KeyPlacements(ctx, authn.CallerFrom(ctx), cs)
	if err != nil {
		return nil, err
	}
	out := &hufuv1.ListCertificatesResponse{}
	for _, cert := range listedAsOne(cs) {
		pb := c.s.certPB(cert)
		pb.KeyPlacement = placed[cert.KeyId]
		out.Certificates = append(out.Certificates, pb)
	}
	return out, nil
}

func (c certServer) DownloadCertificate(ctx context.Context, req *hufuv1.DownloadCertificateRequest) (*hufuv1.DownloadCertificateResponse, error) {
	cert, data, chain, err := c.s.Download(ctx, authn.CallerFrom(ctx), req.GetSerial(), req.GetFormat())
	if err != nil {
		return nil, err
	}
	out := &hufuv1.DownloadCertificateResponse{Certificate: c.s.certPB(cert), CertificateData: data, Chain: chain}
	if cert.PairSerial != "" {
		pair, pairData, err := c.s.DownloadPair(ctx, authn.CallerFrom(ctx), cert, req.GetFormat())
		if err != nil {
			return nil, err
		}
		out.PairCertificate, out.PairCertificateData = c.s.certPB(pair), pairData
	}
	return out, nil
}

func (c certServer) RenewCertificate(ctx context.Context, req *hufuv1.RenewCertificateRequest) (*hufuv1.RenewCertificateResponse, error) {
	o, err := c.s.Renew(ctx, authn.CallerFrom(ctx), req.GetRequestId(), req.GetSerial(), int(req.GetValidityYears()))
	if err != nil {
		return nil, err
	}
	return &hufuv1.RenewCertificateResponse{Order: c.s.OrderPB(o)}, nil
}

func (c certServer) UpgradeCertificate(ctx context.Context, req *hufuv1.UpgradeCertificateRequest) (*hufuv1.UpgradeCertificateResponse, error) {
	o, err := c.s.Upgrade(ctx, authn.CallerFrom(ctx), req.GetRequestId(), req.GetSerial(), req.GetPlatforms())
	if err != nil {
		return nil, err
	}
	return &hufuv1.UpgradeCertificateResponse{Order: c.s.OrderPB(o)}, nil
}

func (c certServer) SetCertificateLabel(ctx context.Context, req *hufuv1.SetCertificateLabelRequest) (*hufuv1.SetCertificateLabelResponse, error) {
	cert, err := c.s.SetLabel(ctx, authn.CallerFrom(ctx), req.GetSerial(), req.GetLabel())
	if err != nil {
		return nil, err
	}
	return &hufuv1.SetCertificateLabelResponse{Certificate: c.s.certPB(cert)}, nil
}

func (c certServer) CheckCertificate(ctx context.Context, req *hufuv1.CheckCertificateRequest) (*hufuv1.CheckCertificateResponse, error) {
	r, err := c.s.Check(ctx, authn.CallerFrom(ctx), req.GetSerial(), req.GetPin())
	if err != nil {
		return nil, err
	}
	out := &hufuv1.CheckCertificateResponse{TestMessage: r.Message, TestCiphertext: r.Ciphertext, TestPlaintextSm3: r.Digest, Ticket: r.Ticket,
		SignKeyId: r.SignKeyID, DecryptKeyId: r.DecryptKeyID, DecryptTicket: r.DecryptTicket}
	for _, st := range r.Steps {
		out.Steps = append(out.Steps, &hufuv1.CheckStep{Name: st.Name, Ok: st.OK, Detail: st.Detail})
	}
	return out, nil
}

func (c certServer) RevokeCertificate(ctx context.Context, req *hufuv1.RevokeCertificateRequest) (*hufuv1.RevokeCertificateResponse, error) {
	if req.GetConfirmIrreversible() {
		if err := c.s.CheckRevocationAcknowledged(ctx, authn.CallerFrom(ctx), req.GetSerial(), req.GetAcknowledgedSerials()); err != nil {
			return nil, err
		}
	}
	cert, err := c.s.Revoke(ctx, authn.CallerFrom(ctx), req.GetSerial(), req.GetPin(), req.GetReason(), req.GetConfirmIrreversible())
	if err != nil {
		return nil, err
	}
	return &hufuv1.RevokeCertificateResponse{Certificate: c.s.certPB(cert)}, nil
}

func (c certServer) ListMessages(ctx context.Context, req *hufuv1.ListMessagesRequest) (*hufuv1.ListMessagesResponse, error) {
	ms, next, err := c.s.ListMessages(ctx, authn.CallerFrom(ctx), int(req.GetPageSize()), req.GetPageToken())
	if err != nil {
		return nil, err
	}
	out := &hufuv1.ListMessagesResponse{NextPageToken: next}
	for _, m := range ms {
		out.Messages = append(out.Messages, &hufuv1.Message{Id: m.Id, Kind: hufuv1.MessageKind(m.Kind), Title: m.Title, Body: m.Body,
			OrderId: m.OrderId, Serial: m.Serial, Time: hufuv1.Timestamp(m.TimeUnixNano)})
	}
	return out, nil
}

type reviewServer struct {
	hufuv1.UnimplementedReviewServiceServer
	s *Service
}

func (r reviewServer) ListReviews(ctx context.Context, req *hufuv1.ListReviewsRequest) (*hufuv1.ListReviewsResponse, error) {
	os, next, err := r.s.ListReviews(ctx, req.GetStatus(), int(req.GetPageSize()), req.GetPageToken())
	if err != nil {
		return nil, err
	}
	out := &hufuv1.ListReviewsResponse{NextPageToken: next}
	for _, o := range os {
		out.Orders = append(out.Orders, r.s.OrderPB(o))
	}
	return out, nil
}

func (r reviewServer) ApproveOrder(ctx context.Context, req *hufuv1.ApproveOrderRequest) (*hufuv1.ApproveOrderResponse, error) {
	o, err := r.s.Approve(ctx, authn.CallerFrom(ctx), req.GetOrderId(), req.GetNote())
	if err != nil {
		return nil, err
	}
	return &hufuv1.ApproveOrderResponse{Order: r.s.OrderPB(o)}, nil
}

func (r reviewServer) RejectOrder(ctx context.Context, req *hufuv1.RejectOrderRequest) (*hufuv1.RejectOrderResponse, error) {
	o, err := r.s.Reject(ctx, authn.CallerFrom(ctx), req.GetOrderId(), req.GetReason())
	if err != nil {
		return nil, err
	}
	return &hufuv1.RejectOrderResponse{Order: r.s.OrderPB(o)}, nil
}

func (r reviewServer) ListOrderAttachments(ctx context.Context, req *hufuv1.ListOrderAttachmentsRequest) (*hufuv1.ListOrderAttachmentsResponse, error) {
	files, err := r.s.OrderAttachments(ctx, authn.CallerFrom(ctx), req.GetOrderId())
	if err != nil {
		return nil, err
	}
	out := &hufuv1.ListOrderAttachmentsResponse{}
	for _, f := range files {
		out.Attachments = append(out.Attachments, &hufuv1.OrderAttachment{Field: f.Ref.Field, FileName: f.Ref.FileName,
			MediaType: f.Blob.MediaType, Sha256: f.Blob.Sha256, Content: f.Blob.Content})
	}
	return out, nil
}

func (r reviewServer) GetAuthorisationLetter(ctx context.Context, req *hufuv1.GetAuthorisationLetterRequest) (*hufuv1.GetAuthorisationLetterResponse, error) {
	a, err := r.s.Letter(ctx, req.GetOrderId())
	if err != nil {
		return nil, err
	}
	return &hufuv1.GetAuthorisationLetterResponse{Method: a.Method, FileName: a.FileName, MediaType: a.MediaType,
		Content: a.Content, Signature: a.Signature, Sha256: a.Sha256, Sm3: a.Sm3, SealName: a.SealName, SealImage: a.SealImage}, nil
}

func (r reviewServer) DisableCertificate(ctx context.Context, req *hufuv1.DisableCertificateRequest) (*hufuv1.DisableCertificateResponse, error) {
	c, err := r.s.Disable(ctx, authn.CallerFrom(ctx), req.GetSerial(), req.GetReason())
	if err != nil {
		return nil, err
	}
	return &hufuv1.DisableCertificateResponse{Certificate: r.s.certPB(c)}, nil
}

func (r reviewServer) EnableCertificate(ctx context.Context, req *hufuv1.EnableCertificateRequest) (*hufuv1.EnableCertificateResponse, error) {
	c, err := r.s.Enable(ctx, authn.CallerFrom(ctx), req.GetSerial(), req.GetReason())
	if err != nil {
		return nil, err
	}
	return &hufuv1.EnableCertificateResponse{Certificate: r.s.certPB(c)}, nil
}

func (c certServer) PreviewRevocation(ctx context.Context, req *hufuv1.PreviewRevocationRequest) (*hufuv1.PreviewRevocationResponse, error) {
	all, ack, err := c.s.RevocationPreview(ctx, authn.CallerFrom(ctx), req.GetSerial())
	if err != nil {
		return nil, err
	}
	out := &hufuv1.PreviewRevocationResponse{Acknowledge: ack}
	for _, cert := range all {
		out.Certificates = append(out.Certificates, c.s.certPB(cert))
	}
	return out, nil
}
