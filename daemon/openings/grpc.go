package openings

import (
	"context"

	"google.golang.org/grpc"
	"google.golang.org/protobuf/types/known/timestamppb"

	hufuv1 "github.com/hufu-hsm/hufu/api/hufu/v1"
	"github.com/hufu-hsm/hufu/daemon/authn"
	"github.com/hufu-hsm/hufu/store/storepb"
)

// Register adds OpeningService (system clients allowed it) to a gRPC server.
func (s *Service) Register(r grpc.ServiceRegistrar) authn.Policy {
	hufuv1.RegisterOpeningServiceServer(r, server{s: s})
	return authn.Policy{}.Add(&hufuv1.OpeningService_ServiceDesc, authn.System)
}

// OpeningPB is an opening on the wire.
func OpeningPB(o *storepb.Opening) *hufuv1.Opening {
	return &hufuv1.Opening{
		Id: o.Id, ProjectCode: o.ProjectCode, ProjectName: o.ProjectName, PlatformId: o.PlatformId,
		WindowStart: hufuv1.Timestamp(o.WindowStartUnixNano), WindowEnd: hufuv1.Timestamp(o.WindowEndUnixNano),
		State: hufuv1.OpeningState(o.State), CreatedAt: hufuv1.Timestamp(o.CreatedUnixNano), SealedAt: hufuv1.Timestamp(o.SealedUnixNano),
		ClosedAt: hufuv1.Timestamp(o.ClosedUnixNano), ManifestSha256: o.ManifestSha256, Envelopes: o.Envelopes, Consented: o.Consented,
		Released: o.Released, EarlyAttempts: o.EarlyAttempts, ResultPublicKey: o.ResultPublicKey,
	}
}

type server struct {
	hufuv1.UnimplementedOpeningServiceServer
	s *Service
}

func (v server) CreateOpening(ctx context.Context, req *hufuv1.CreateOpeningRequest) (*hufuv1.CreateOpeningResponse, error) {
	o, err := v.s.Create(ctx, authn.CallerFrom(ctx), req)
	if err != nil {
		return nil, err
	}
	return &hufuv1.CreateOpeningResponse{Opening: OpeningPB(o)}, nil
}

func (v server) GetOpening(ctx context.Context, req *hufuv1.GetOpeningRequest) (*hufuv1.GetOpeningResponse, error) {
	o, err := v.s.Get(ctx, authn.CallerFrom(ctx), req.GetOpeningId())
	if err != nil {
		return nil, err
	}
	return &hufuv1.GetOpeningResponse{Opening: OpeningPB(o)}, nil
}

func (v server) ListOpenings(ctx context.Context, req *hufuv1.ListOpeningsRequest) (*hufuv1.ListOpeningsResponse, error) {
	os, next, err := v.s.List(ctx, authn.CallerFrom(ctx), int(req.GetPageSize()), req.GetPageToken())
	if err != nil {
		return nil, err
	}
	out := &hufuv1.ListOpeningsResponse{NextPageToken: next}
	for _, o := range os {
		out.Openings = append(out.Openings, OpeningPB(o))
	}
	return out, nil
}

func (v server) RegisterEnvelopes(ctx context.Context, req *hufuv1.RegisterEnvelopesRequest) (*hufuv1.RegisterEnvelopesResponse, error) {
	added, total, err := v.s.RegisterEnvelopes(ctx, authn.CallerFrom(ctx), req.GetOpeningId(), req.GetEnvelopes())
	if err != nil {
		return nil, err
	}
	return &hufuv1.RegisterEnvelopesResponse{Registered: uint32(added), Envelopes: uint32(total)}, nil
}

func (v server) RemoveEnvelope(ctx context.Context, req *hufuv1.RemoveEnvelopeRequest) (*hufuv1.RemoveEnvelopeResponse, error) {
	if err := v.s.Remove(ctx, authn.CallerFrom(ctx), req.GetOpeningId(), req.GetEnvelopeId()); err != nil {
		return nil, err
	}
	return &hufuv1.RemoveEnvelopeResponse{}, nil
}

func (v server) SealOpening(ctx context.Context, req *hufuv1.SealOpeningRequest) (*hufuv1.SealOpeningResponse, error) {
	o, err := v.s.Seal(ctx, authn.CallerFrom(ctx), req.GetOpeningId())
	if err != nil {
		return nil, err
	}
	return &hufuv1.SealOpeningResponse{Opening: OpeningPB(o)}, nil
}

func (v server) ListEnvelopes(ctx context.Context, req *hufuv1.ListEnvelopesRequest) (*hufuv1.ListEnvelopesResponse, error) {
	es, next, err := v.s.ListEnvelopes(ctx, authn.CallerFrom(ctx), req.GetOpeningId(), int(req.GetPageSize()), req.GetPageToken())
	if err != nil {
		return nil, err
	}
	out := &hufuv1.ListEnvelopesResponse{NextPageToken: next}
	for _, e := range es {
		out.Envelopes = append(out.Envelopes, &hufuv1.Envelope{EnvelopeId: e.Id, CertificateSerial: e.CertificateSerial,
			CiphertextSha256: e.CiphertextSha256, RegisteredAt: hufuv1.Timestamp(e.RegisteredUnixNano), Consented: e.ConsentId != "",
			ReleasedAt: hufuv1.Timestamp(e.ReleasedUnixNano), Releases: e.Releases, ReleaseOutcome: e.ReleaseOutcome})
	}
	return out, nil
}

func (v server) Release(req *hufuv1.ReleaseRequest, stream grpc.ServerStreamingServer[hufuv1.ReleaseResponse]) error {
	ctx := stream.Context()
	return v.s.Release(ctx, authn.CallerFrom(ctx), req.GetOpeningId(), req.GetEnvelopeIds(), req.GetIncludeReleased(), func(rs []Released) error {
		out := &hufuv1.ReleaseResponse{Envelopes: make([]*hufuv1.ReleasedEnvelope, len(rs))}
		for i, r := range rs {
			out.Envelopes[i] = &hufuv1.ReleasedEnvelope{EnvelopeId: r.EnvelopeID, Error: r.Err, Key: r.Key, EncryptedKey: r.EncryptedKey,
				ReleasedAt: timestamppb.New(r.At)}
		}
		err := stream.Send(out)
		for _, r := range rs {
			clear(r.Key)
		}
		return err
	})
}

func (v server) CloseOpening(ctx context.Context, req *hufuv1.CloseOpeningRequest) (*hufuv1.CloseOpeningResponse, error) {
	o, sum, err := v.s.Close(ctx, authn.CallerFrom(ctx), req.GetOpeningId())
	if err != nil {
		return nil, err
	}
	return &hufuv1.CloseOpeningResponse{Opening: OpeningPB(o), ReportSha256: sum}, nil
}

// reportChunk is the size of one GetReport message.
const reportChunk = 1 << 20

func (v server) GetReport(req *hufuv1.GetReportRequest, stream grpc.ServerStreamingServer[hufuv1.GetReportResponse]) error {
	ctx := stream.Context()
	r, err := v.s.Report(ctx, authn.CallerFrom(ctx), req.GetOpeningId())
	if err != nil {
		return err
	}
	for len(r) > 0 {
		n := min(len(r), reportChunk)
		if err := stream.Send(&hufuv1.GetReportResponse{Chunk: r[:n]}); err != nil {
			return err
		}
		r = r[n:]
	}
	return nil
}
