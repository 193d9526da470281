package support

import (
	"context"

	"google.golang.org/grpc"

	hufuv1 "github.com/hufu-hsm/hufu/api/hufu/v1"
	"github.com/hufu-hsm/hufu/daemon/authn"
	"github.com/hufu-hsm/hufu/store/storepb"
)

// Register adds SupportService (user sessions) and SupportDeskService (system clients
// allowed it) to a gRPC server and returns their policy.
func (s *Service) Register(r grpc.ServiceRegistrar) authn.Policy {
	hufuv1.RegisterSupportServiceServer(r, supportServer{s: s})
	hufuv1.RegisterSupportDeskServiceServer(r, deskServer{s: s})
	return authn.Policy{}.Add(&hufuv1.SupportService_ServiceDesc, authn.User).
		Add(&hufuv1.SupportDeskService_ServiceDesc, authn.System)
}

type supportServer struct {
	hufuv1.UnimplementedSupportServiceServer
	s *Service
}

type deskServer struct {
	hufuv1.UnimplementedSupportDeskServiceServer
	s *Service
}

func articlePB(a Article) *hufuv1.HelpArticle {
	return &hufuv1.HelpArticle{Id: a.ID, Title: a.Title, Category: a.Category, Body: a.Body}
}

func faqPB(f FAQ, score int) *hufuv1.FaqEntry {
	return &hufuv1.FaqEntry{Id: f.ID, Question: f.Question, Answer: f.Answer, Keywords: f.Keywords, Score: int32(score)}
}

func attachmentsPB(refs []*storepb.AttachmentRef) []*hufuv1.FeedbackAttachment {
	var out []*hufuv1.FeedbackAttachment
	for _, r := range refs {
		out = append(out, &hufuv1.FeedbackAttachment{Id: r.Id, FileName: r.FileName, MediaType: r.MediaType, Size: r.Size})
	}
	return out
}

func repliesPB(rs []*storepb.FeedbackReply) []*hufuv1.FeedbackReply {
	var out []*hufuv1.FeedbackReply
	for _, r := range rs {
		out = append(out, &hufuv1.FeedbackReply{Text: r.Text, CreatedAt: hufuv1.Timestamp(r.CreatedUnixNano)})
	}
	return out
}

// feedbackPB is feedback as its author sees it.
func (s *Service) feedbackPB(ctx context.Context, fb *storepb.Feedback) (*hufuv1.Feedback, error) {
	refs, err := s.Attachments(ctx, fb)
	if err != nil {
		return nil, err
	}
	return &hufuv1.Feedback{Id: fb.Id, Text: fb.Text, OrderId: fb.OrderId, Attachments: attachmentsPB(refs),
		State: hufuv1.FeedbackState(fb.State), Replies: repliesPB(fb.Replies), CreatedAt: hufuv1.Timestamp(fb.CreatedUnixNano),
		UpdatedAt: hufuv1.Timestamp(fb.UpdatedUnixNano), CloseNote: fb.CloseNote}, nil
}

// deskPB is feedback as the desk sees it: the person only by masked phone.
func (s *Service) deskPB(ctx context.Context, fb *storepb.Feedback) (*hufuv1.DeskFeedback, error) {
	refs, err := s.Attachments(ctx, fb)
	if err != nil {
		return nil, err
	}
	return &hufuv1.DeskFeedback{Id: fb.Id, PhoneMasked: fb.PhoneMasked, Text: fb.Text, OrderId: fb.OrderId,
		Attachments: attachmentsPB(refs), State: hufuv1.FeedbackState(fb.State), Replies: repliesPB(fb.Replies),
		CreatedAt: hufuv1.Timestamp(fb.CreatedUnixNano), UpdatedAt: hufuv1.Timestamp(fb.UpdatedUnixNano)}, nil
}

func (g supportServer) ListHelpArticles(_ context.Context, req *hufuv1.ListHelpArticlesRequest) (*hufuv1.ListHelpArticlesResponse, error) {
	list, cats := g.s.Articles(req.GetCategory())
	out := &hufuv1.ListHelpArticlesResponse{Categories: cats}
	for _, a := range list {
		out.Articles = append(out.Articles, articlePB(a))
	}
	return out, nil
}

func (g supportServer) GetHelpEntry(_ context.Context, req *hufuv1.GetHelpEntryRequest) (*hufuv1.GetHelpEntryResponse, error) {
	a, f, err := g.s.Entry(req.GetId())
	if err != nil {
		return nil, err
	}
	out := &hufuv1.GetHelpEntryResponse{}
	if a != nil {
		out.Article = articlePB(*a)
	} else {
		out.Faq = faqPB(*f, 0)
	}
	return out, nil
}

func (g supportServer) SearchFaq(_ context.Context, req *hufuv1.SearchFaqRequest) (*hufuv1.SearchFaqResponse, error) {
	hits, err := g.s.Search(req.GetQuery(), int(req.GetLimit()))
	if err != nil {
		return nil, err
	}
	out := &hufuv1.SearchFaqResponse{}
	for _, h := range hits {
		out.Entries = append(out.Entries, faqPB(h.FAQ, h.Score))
	}
	return out, nil
}

func (g supportServer) GetContact(context.Context, *hufuv1.GetContactRequest) (*hufuv1.GetContactResponse, error) {
	phone, hours, err := g.s.Contact()
	if err != nil {
		return nil, err
	}
	return &hufuv1.GetContactResponse{Phone: phone, Hours: hours}, nil
}

func (g supportServer) SubmitFeedback(ctx context.Context, req *hufuv1.SubmitFeedbackRequest) (*hufuv1.SubmitFeedbackResponse, error) {
	files := make([]NewAttachment, len(req.GetAttachments()))
	for i, a := range req.GetAttachments() {
		files[i] = NewAttachment{FileName: a.GetFileName(), MediaType: a.GetMediaType(), Content: a.GetContent()}
	}
	fb, err := g.s.Submit(ctx, authn.CallerFrom(ctx), req.GetRequestId(), req.GetText(), req.GetOrderId(), files)
	if err != nil {
		return nil, err
	}
	pb, err := g.s.feedbackPB(ctx, fb)
	if err != nil {
		return nil, err
	}
	return &hufuv1.SubmitFeedbackResponse{Feedback: pb}, nil
}

func (g supportServer) ListFeedback(ctx context.Context, req *hufuv1.ListFeedbackRequest) (*hufuv1.ListFeedbackResponse, error) {
	list, next, err := g.s.List(ctx, authn.CallerFrom(ctx), int(req.GetPageSize()), req.GetPageToken())
	if err != nil {
		return nil, err
	}
	out := &hufuv1.ListFeedbackResponse{NextPageToken: next}
	for _, fb := range list {
		pb, err := g.s.feedbackPB(ctx, fb)
		if err != nil {
			return nil, err
		}
		out.Feedback = append(out.Feedback, pb)
	}
	return out, nil
}

func (g supportServer) GetFeedback(ctx context.Context, req *hufuv1.GetFeedbackRequest) (*hufuv1.GetFeedbackResponse, error) {
	fb, err := g.s.Get(ctx, authn.CallerFrom(ctx), req.GetFeedbackId())
	if err != nil {
		return nil, err
	}
	pb, err := g.s.feedbackPB(ctx, fb)
	if err != nil {
		return nil, err
	}
	return &hufuv1.GetFeedbackResponse{Feedback: pb}, nil
}

func (g deskServer) ListOpenFeedback(ctx context.Context, req *hufuv1.ListOpenFeedbackRequest) (*hufuv1.ListOpenFeedbackResponse, error) {
	list, next, err := g.s.ListOpen(ctx, int(req.GetPageSize()), req.GetPageToken(), req.GetUnrepliedOnly())
	if err != nil {
		return nil, err
	}
	out := &hufuv1.ListOpenFeedbackResponse{NextPageToken: next}
	for _, fb := range list {
		pb, err := g.s.deskPB(ctx, fb)
		if err != nil {
			return nil, err
		}
		out.Feedback = append(out.Feedback, pb)
	}
	return out, nil
}

func (g deskServer) ReplyFeedback(ctx context.Context, req *hufuv1.ReplyFeedbackRequest) (*hufuv1.ReplyFeedbackResponse, error) {
	fb, err := g.s.Reply(ctx, authn.CallerFrom(ctx), req.GetFeedbackId(), req.GetText())
	if err != nil {
		return nil, err
	}
	pb, err := g.s.deskPB(ctx, fb)
	if err != nil {
		return nil, err
	}
	return &hufuv1.ReplyFeedbackResponse{Feedback: pb}, nil
}

func (g deskServer) CloseFeedback(ctx context.Context, req *hufuv1.CloseFeedbackRequest) (*hufuv1.CloseFeedbackResponse, error) {
	fb, err := g.s.Close(ctx, authn.CallerFrom(ctx), req.GetFeedbackId(), req.GetNote())
	if err != nil {
		return nil, err
	}
	pb, err := g.s.deskPB(ctx, fb)
	if err != nil {
		return nil, err
	}
	return &hufuv1.CloseFeedbackResponse{Feedback: pb}, nil
}

func (g deskServer) GetFeedbackAttachment(ctx context.Context, req *hufuv1.GetFeedbackAttachmentRequest) (*hufuv1.GetFeedbackAttachmentResponse, error) {
	ref, content, err := g.s.DeskAttachment(ctx, req.GetFeedbackId(), req.GetAttachmentId())
	if err != nil {
		return nil, err
	}
	return &hufuv1.GetFeedbackAttachmentResponse{Attachment: attachmentsPB([]*storepb.AttachmentRef{ref})[0], Content: content}, nil
}
