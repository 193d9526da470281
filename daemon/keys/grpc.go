package keys

import (
	"context"
	"errors"
	"time"

	hufuv1 "github.com/hufu-hsm/hufu/api/hufu/v1"
	"github.com/hufu-hsm/hufu/daemon/apierr"
	"github.com/hufu-hsm/hufu/daemon/authn"
	"github.com/hufu-hsm/hufu/store/storepb"
	"google.golang.org/grpc"
	"google.golang.org/protobuf/types/known/timestamppb"
)

// Register adds KeyService and CosignService to a gRPC server; every method needs a user
// session.
func (s *Service) Register(r grpc.ServiceRegistrar) authn.Policy {
	hufuv1.RegisterKeyServiceServer(r, keyServer{s: s})
	hufuv1.RegisterCosignServiceServer(r, cosignServer{s: s})
	return authn.Policy{}.Add(&hufuv1.KeyService_ServiceDesc, authn.User).Add(&hufuv1.CosignService_ServiceDesc, authn.User)
}

func credential(c *hufuv1.Credential) Credential {
	return Credential{Ticket: c.GetTicket(), PIN: c.GetPin()}
}

type keyServer struct {
	hufuv1.UnimplementedKeyServiceServer
	s *Service
}

func (k keyServer) CreateKey(ctx context.Context, req *hufuv1.CreateKeyRequest) (*hufuv1.CreateKeyResponse, error) {
	rec, err := k.s.CreateKey(ctx, authn.CallerFrom(ctx), req.GetKeyId(), req.GetKeygenRequest(), req.GetPin(), req.GetLabel())
	if err != nil {
		return nil, err
	}
	return &hufuv1.CreateKeyResponse{KeygenResponse: rec.KeygenResponse, Key: k.s.keyPB(rec)}, nil
}

func (k keyServer) GetKey(ctx context.Context, req *hufuv1.GetKeyRequest) (*hufuv1.GetKeyResponse, error) {
	rec, err := k.s.GetKey(ctx, authn.CallerFrom(ctx), req.GetKeyId())
	if err != nil {
		return nil, err
	}
	return &hufuv1.GetKeyResponse{Key: k.s.keyPB(rec)}, nil
}

func (k keyServer) ListKeys(ctx context.Context, _ *hufuv1.ListKeysRequest) (*hufuv1.ListKeysResponse, error) {
	recs, err := k.s.ListKeys(ctx, authn.CallerFrom(ctx))
	if err != nil {
		return nil, err
	}
	out := &hufuv1.ListKeysResponse{}
	for _, rec := range recs {
		out.Keys = append(out.Keys, k.s.keyPB(rec))
	}
	return out, nil
}

func (k keyServer) OpenTicket(ctx context.Context, req *hufuv1.OpenTicketRequest) (*hufuv1.OpenTicketResponse, error) {
	ticket, expires, uses, err := k.s.OpenTicket(ctx, authn.CallerFrom(ctx), req.GetKeyId(), req.GetPin())
	if err != nil {
		return nil, err
	}
	return &hufuv1.OpenTicketResponse{Ticket: ticket, ExpiresAt: timestamppb.New(expires), Uses: uint32(uses)}, nil
}

func (k keyServer) ChangePin(ctx context.Context, req *hufuv1.ChangePinRequest) (*hufuv1.ChangePinResponse, error) {
	return &hufuv1.ChangePinResponse{}, k.s.ChangePin(ctx, authn.CallerFrom(ctx), req.GetKeyId(), req.GetCurrentPin(), req.GetNewPin())
}

func (k keyServer) ResetPin(ctx context.Context, req *hufuv1.ResetPinRequest) (*hufuv1.ResetPinResponse, error) {
	return &hufuv1.ResetPinResponse{}, k.s.ResetPin(ctx, authn.CallerFrom(ctx), req.GetKeyId(), req.GetCode(), req.GetNewPin())
}

func (k keyServer) BeginRefresh(ctx context.Context, req *hufuv1.BeginRefreshRequest) (*hufuv1.BeginRefreshResponse, error) {
	offer, err := k.s.BeginRefresh(ctx, authn.CallerFrom(ctx), req.GetKeyId(), credential(req.GetCredential()))
	if err != nil {
		return nil, err
	}
	return &hufuv1.BeginRefreshResponse{Offer: offer}, nil
}

func (k keyServer) CommitRefresh(ctx context.Context, req *hufuv1.CommitRefreshRequest) (*hufuv1.CommitRefreshResponse, error) {
	rec, err := k.s.CommitRefresh(ctx, authn.CallerFrom(ctx), req.GetKeyId(), req.GetConfirmation())
	if err != nil {
		return nil, err
	}
	return &hufuv1.CommitRefreshResponse{Key: k.s.keyPB(rec)}, nil
}

func (k keyServer) ListUsage(ctx context.Context, req *hufuv1.ListUsageRequest) (*hufuv1.ListUsageResponse, error) {
	recs, next, err := k.s.ListUsage(ctx, authn.CallerFrom(ctx), req.GetKeyId(), int(req.GetPageSize()), req.GetPageToken())
	if err != nil {
		return nil, err
	}
	out := &hufuv1.ListUsageResponse{NextPageToken: next}
	for _, r := range recs {
		out.Records = append(out.Records, &hufuv1.UsageRecord{
			Time: timestamppb.New(time.Unix(0, r.TimeUnixNano)), Operation: r.Operation, Digest: r.Digest,
			DeviceId: r.DeviceId, Outcome: r.Outcome, Context: r.Context, Count: r.Count, ItemDigests: r.ItemDigests,
		})
	}
	return out, nil
}

type cosignServer struct {
	hufuv1.UnimplementedCosignServiceServer
	s *Service
}

func (c cosignServer) Sign(ctx context.Context, req *hufuv1.SignRequest) (*hufuv1.SignResponse, error) {
	resp, version, err := c.s.Sign(ctx, authn.CallerFrom(ctx), req.GetKeyId(), credential(req.GetCredential()), req.GetSignRequest())
	if err != nil {
		return nil, err
	}
	raw, _ := resp.MarshalBinary()
	return &hufuv1.SignResponse{SignResponse: raw, ShareVersion: version}, nil
}

func (c cosignServer) SignBatch(ctx context.Context, req *hufuv1.SignBatchRequest) (*hufuv1.SignBatchResponse, error) {
	items, version, err := c.s.SignBatch(ctx, authn.CallerFrom(ctx), req.GetKeyId(), credential(req.GetCredential()), req.GetSignRequests())
	if err != nil {
		return nil, err
	}
	return &hufuv1.SignBatchResponse{Items: BatchPB(items), ShareVersion: version}, nil
}

func (c cosignServer) Decrypt(ctx context.Context, req *hufuv1.DecryptRequest) (*hufuv1.DecryptResponse, error) {
	t2, err := c.s.Decrypt(ctx, authn.CallerFrom(ctx), req.GetKeyId(), credential(req.GetCredential()), req.GetC1())
	if err != nil {
		return nil, err
	}
	return &hufuv1.DecryptResponse{T2: t2[:]}, nil
}

func (c cosignServer) DecryptBatch(ctx context.Context, req *hufuv1.DecryptBatchRequest) (*hufuv1.DecryptBatchResponse, error) {
	items, err := c.s.DecryptBatch(ctx, authn.CallerFrom(ctx), req.GetKeyId(), credential(req.GetCredential()), req.GetC1S())
	if err != nil {
		return nil, err
	}
	return &hufuv1.DecryptBatchResponse{Items: BatchPB(items)}, nil
}

// BatchPB is a batch's answer on the wire: each item's result, or its error code and the
// message the same request alone would have got (internal errors say no more).
func BatchPB(items []BatchResult) []*hufuv1.BatchItem {
	out := make([]*hufuv1.BatchItem, len(items))
	for i, it := range items {
		out[i] = &hufuv1.BatchItem{Result: it.Result}
		if it.Err != nil {
			st, internal := apierr.Status(it.Err)
			msg := st.Message()
			if internal || errors.Is(it.Err, context.Canceled) {
				msg = "internal error"
			}
			out[i].ErrorCode, out[i].ErrorMessage = uint32(st.Code()), msg
		}
	}
	return out
}

func (s *Service) keyPB(rec *storepb.SplitKey) *hufuv1.Key {
	k := &hufuv1.Key{
		Id: rec.Id, Label: rec.Label, PublicKey: rec.PublicKey, Status: hufuv1.KeyStatus(rec.Status),
		ShareVersion: rec.ShareVersion, DeviceId: rec.DeviceId, PinFailures: rec.PinFailures,
		CreatedAt: timestamppb.New(time.Unix(0, rec.CreatedUnixNano)),
	}
	if rec.Pending != nil {
		k.PendingVersion = rec.Pending.Version
	}
	if until := time.Unix(0, rec.LockedUntilUnixNano); s.deps.Clock.Now().Before(until) {
		k.LockedUntil = timestamppb.New(until)
		if k.Status == hufuv1.KeyStatus_KEY_STATUS_ACTIVE {
			k.Status = hufuv1.KeyStatus_KEY_STATUS_LOCKED
		}
	}
	return k
}
