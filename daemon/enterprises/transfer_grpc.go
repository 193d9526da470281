package enterprises

import (
	"context"

	hufuv1 "github.com/hufu-hsm/hufu/api/hufu/v1"
	"github.com/hufu-hsm/hufu/daemon/authn"
	"github.com/hufu-hsm/hufu/store/storepb"
)

// transferPB shows an application to its applicant or the desk.
func (s *Service) transferPB(t *storepb.CorporateTransfer) *hufuv1.CorporateTransfer {
	if t == nil {
		return nil
	}
	return &hufuv1.CorporateTransfer{
		Id: t.Id, Uscc: t.Uscc, EnterpriseName: t.GetEnterprise().GetName(),
		State:           hufuv1.TransferState(effectiveTransferState(t, s.deps.Clock.Now())),
		ApplicantUserId: t.UserId, AmountFen: t.AmountFen, Reference: t.Reference, AccountTail: t.AccountTail,
		ReceivingAccount: &hufuv1.ReceivingAccount{AccountName: t.ReceivingAccountName, Bank: t.ReceivingBank,
			AccountNumber: t.ReceivingAccountNumber},
		CreatedAt: hufuv1.Timestamp(t.CreatedUnixNano), ExpiresAt: hufuv1.Timestamp(t.ExpiresUnixNano), DecidedAt: hufuv1.Timestamp(t.DecidedUnixNano), Reason: t.Reason,
		Role: hufuv1.MemberRole(t.Role), OrderId: t.OrderId, VerifiedVia: t.VerifiedVia, LetterSha256: t.LetterSha256,
		LicenceSha256: t.GetEnterprise().GetLicenceAttachment(),
	}
}

func (v server) ApplyCorporateTransfer(ctx context.Context, req *hufuv1.ApplyCorporateTransferRequest) (*hufuv1.ApplyCorporateTransferResponse, error) {
	t, err := v.s.ApplyCorporateTransfer(ctx, authn.CallerFrom(ctx), req)
	if err != nil {
		return nil, err
	}
	return &hufuv1.ApplyCorporateTransferResponse{Transfer: v.s.transferPB(t)}, nil
}

func (v server) GetCorporateTransfer(ctx context.Context, req *hufuv1.GetCorporateTransferRequest) (*hufuv1.GetCorporateTransferResponse, error) {
	t, err := v.s.GetCorporateTransfer(ctx, authn.CallerFrom(ctx), req.GetTransferId())
	if err != nil {
		return nil, err
	}
	return &hufuv1.GetCorporateTransferResponse{Transfer: v.s.transferPB(t)}, nil
}

func (v server) ListCorporateTransfers(ctx context.Context, _ *hufuv1.ListCorporateTransfersRequest) (*hufuv1.ListCorporateTransfersResponse, error) {
	ts, err := v.s.ListCorporateTransfers(ctx, authn.CallerFrom(ctx))
	if err != nil {
		return nil, err
	}
	out := &hufuv1.ListCorporateTransfersResponse{}
	for _, t := range ts {
		out.Transfers = append(out.Transfers, v.s.transferPB(t))
	}
	return out, nil
}

// reconServer is ReconciliationService: the operators' desk (system clients only).
type reconServer struct {
	hufuv1.UnimplementedReconciliationServiceServer
	s *Service
}

func (r reconServer) ImportStatement(ctx context.Context, req *hufuv1.ImportStatementRequest) (*hufuv1.ImportStatementResponse, error) {
	results, err := r.s.ImportStatement(ctx, authn.CallerFrom(ctx), req.GetCsv())
	if err != nil {
		return nil, err
	}
	out := &hufuv1.ImportStatementResponse{}
	for _, l := range results {
		out.Lines = append(out.Lines, &hufuv1.StatementLineResult{Line: uint32(l.Line), Outcome: hufuv1.StatementLineOutcome(l.Outcome),
			TransferId: l.TransferID, Mismatches: l.Mismatches, Detail: l.Detail, LineSha256: l.SHA256, AmountFen: l.AmountFen})
		switch l.Outcome {
		case lineMatched:
			out.Matched++
		case linePartial:
			out.Partial++
		case lineUnmatched:
			out.Unmatched++
		case lineDuplicate:
			out.Duplicate++
		}
	}
	return out, nil
}

func (r reconServer) ListTransfers(ctx context.Context, req *hufuv1.ListTransfersRequest) (*hufuv1.ListTransfersResponse, error) {
	ts, next, err := r.s.ListTransfers(ctx, req.GetState(), int(req.GetPageSize()), req.GetPageToken())
	if err != nil {
		return nil, err
	}
	out := &hufuv1.ListTransfersResponse{NextPageToken: next}
	for _, t := range ts {
		out.Transfers = append(out.Transfers, r.s.transferPB(t))
	}
	return out, nil
}

func (r reconServer) ConfirmTransfer(ctx context.Context, req *hufuv1.ConfirmTransferRequest) (*hufuv1.ConfirmTransferResponse, error) {
	t, err := r.s.ConfirmTransfer(ctx, authn.CallerFrom(ctx), req.GetTransferId(), req.GetNote())
	if err != nil {
		return nil, err
	}
	return &hufuv1.ConfirmTransferResponse{Transfer: r.s.transferPB(t)}, nil
}

func (r reconServer) RejectTransfer(ctx context.Context, req *hufuv1.RejectTransferRequest) (*hufuv1.RejectTransferResponse, error) {
	t, err := r.s.RejectTransfer(ctx, authn.CallerFrom(ctx), req.GetTransferId(), req.GetReason())
	if err != nil {
		return nil, err
	}
	return &hufuv1.RejectTransferResponse{Transfer: r.s.transferPB(t)}, nil
}
