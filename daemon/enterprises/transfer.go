package enterprises

// Corporate-transfer verification (对公打款认证, seed manual §1.6.4).
//
// A verified person applies with the enterprise's data, the stamped authorisation letter and
// the last six digits of the corporate account that will pay. The appliance answers with its
// receiving account, an amount of 1 fen up to Options.Transfer.MaxAmountFen that no other
// live application has, and a reference ("HF" and six characters without 0/O/1/I/L) for the
// transfer's remark. The application waits Options.Transfer.Validity:
//
//	awaiting transfer --statement line matches amount, tail and reference--> verified
//	awaiting transfer --desk confirms by hand (note)--------------------------> verified
//	awaiting transfer --desk rejects (reason)---------------------------------> rejected
//	awaiting transfer --validity passes---------------------------------------> expired
//
// Expiry is not written: an awaiting application past its expiry is expired wherever it is
// read, and its amount and pending claims lapse with it (they are claimed with the same
// expiry), so a transfer that arrives later never verifies. Verification runs in one
// transaction under the enterprise record's lock, like a claim's payment: the applicant
// becomes the administrator of an enterprise that has none (admin_claimed false, admin_via
// "transfer"; the record is made from the application if the enterprise is new) or staff,
// and an enterprise-verification order awaits 确认支付. A transfer-verified administrator
// claims (buys the enterprise certificate) before managing and authorising staff.
//
// # Records
//
//	e/<uscc>/transfer/<id>            storepb.CorporateTransfer
//	e/statement/<line sha256>         storepb.StatementLine: an imported bank-statement line
//	x/transfer/<id>                   -> the application (unique)
//	x/transfer-request/<user>.<req>   -> the application a request id made (unique)
//	x/transfer-ref/<reference>        -> the application (unique, permanent)
//	x/transfer-amount/<fen>           -> the live application with that amount (unique,
//	                                     expires with it: two live applications never share
//	                                     an amount)
//	x/transfer-pending/<user>.<uscc>  -> the person's live application (unique, expires)
//	x/user-transfer/<user>/<key>      a person's applications
//	x/transfer-state/<state>/<key>    applications by written state, for the desk
//
// Applications hold the legal representative's wrapped blobs and are filed in the sealed
// index (rotate.go) so a KEK rotation rewraps them.
//
// Audit records name applications, references, amounts, orders and statement lines by
// their hashes; never the payer's account number or its tail.

import (
	"context"
	"crypto/rand"
	"errors"
	"fmt"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"time"

	"google.golang.org/protobuf/proto"

	hufuv1 "github.com/hufu-hsm/hufu/api/hufu/v1"
	"github.com/hufu-hsm/hufu/daemon/apierr"
	"github.com/hufu-hsm/hufu/daemon/authn"
	"github.com/hufu-hsm/hufu/daemon/certs"
	"github.com/hufu-hsm/hufu/daemon/text"
	"github.com/hufu-hsm/hufu/store"
	"github.com/hufu-hsm/hufu/store/storepb"
)

// TransferOptions configure corporate-transfer verification.
type TransferOptions struct {
	// The receiving account shown to applicants.
	AccountName, Bank, AccountNumber string
	// Validity is how long an application waits for its transfer (default 7 days).
	Validity time.Duration
	// MaxAmountFen bounds the unique amounts, 1 fen up to it (default 99: 0.01–0.99 yuan).
	MaxAmountFen int64
	// VerificationPriceFen is the price of the enterprise-verification order (0: free).
	VerificationPriceFen int64
}

func (o *TransferOptions) setDefaults() {
	if o.Validity <= 0 {
		o.Validity = 7 * 24 * time.Hour
	}
	if o.MaxAmountFen <= 0 {
		o.MaxAmountFen = 99
	}
}

var (
	transfers      = store.NewCollection(store.KindEnterprise, func() *storepb.CorporateTransfer { return new(storepb.CorporateTransfer) })
	statementLines = store.NewCollection(store.KindEnterprise, func() *storepb.StatementLine { return new(storepb.StatementLine) })
)

const (
	indexTransfer        = "transfer"
	indexTransferRequest = "transfer-request"
	indexTransferRef     = "transfer-ref"
	indexTransferAmount  = "transfer-amount"
	indexTransferPending = "transfer-pending"
	indexUserTransfer    = "user-transfer"
	indexTransferState   = "transfer-state"

	transferAwaiting = int32(hufuv1.TransferState_TRANSFER_STATE_AWAITING_TRANSFER)
	transferVerified = int32(hufuv1.TransferState_TRANSFER_STATE_VERIFIED)
	transferExpired  = int32(hufuv1.TransferState_TRANSFER_STATE_EXPIRED)
	transferRejected = int32(hufuv1.TransferState_TRANSFER_STATE_REJECTED)

	lineMatched   = int32(hufuv1.StatementLineOutcome_STATEMENT_LINE_OUTCOME_MATCHED)
	linePartial   = int32(hufuv1.StatementLineOutcome_STATEMENT_LINE_OUTCOME_PARTIAL)
	lineUnmatched = int32(hufuv1.StatementLineOutcome_STATEMENT_LINE_OUTCOME_UNMATCHED)
	lineDuplicate = int32(hufuv1.StatementLineOutcome_STATEMENT_LINE_OUTCOME_DUPLICATE)
)

func transferID(uscc, id string) string { return uscc + "/transfer/" + id }
func lineID(sha string) string          { return "statement/" + sha }
func stateValue(st int32) string        { return strconv.Itoa(int(st)) }

// chinaTime is the zone of bank statements' dates.
var chinaTime = time.FixedZone("CST", 8*3600)

var accountTailRE = regexp.MustCompile(`^[0-9]{6}$`)

// effectiveTransferState is the state as shown: awaiting past the expiry is expired.
func effectiveTransferState(t *storepb.CorporateTransfer, now time.Time) int32 {
	if t.State == transferAwaiting && now.UnixNano() >= t.ExpiresUnixNano {
		return transferExpired
	}
	return t.State
}

// ApplyCorporateTransfer files an application (§1.6.4). request_id makes it idempotent.
func (s *Service) ApplyCorporateTransfer(ctx context.Context, caller authn.Caller, req *hufuv1.ApplyCorporateTransferRequest) (*storepb.CorporateTransfer, error) {
	if err := apierr.CheckRequestID("request_id", req.GetRequestId()); err != nil {
		return nil, err
	}
	if k, err := s.lookup(ctx, indexTransferRequest, caller.UserID+"."+req.GetRequestId()); err != nil || k != "" {
		if err != nil {
			return nil, err
		}
		return transfers.Read(ctx, s.deps.Store, transfers.ID(k))
	}
	if _, err := s.deps.Accounts.VerifiedUser(ctx, caller.UserID); err != nil {
		return nil, err
	}
	opts := s.opts.Transfer
	if opts.AccountNumber == "" {
		return nil, apierr.New(apierr.FailedPrecondition, "corporate-transfer verification is not configured on this appliance")
	}
	e, err := s.checkDetails(ctx, req.GetEnterprise())
	if err != nil {
		return nil, err
	}
	letter := req.GetLetter()
	if len(letter.GetContent()) == 0 {
		return nil, apierr.Invalidf("letter", "upload the stamped authorisation letter (PNG, JPEG or PDF; template kind corporate-transfer)")
	}
	if !accountTailRE.MatchString(req.GetAccountTail()) {
		return nil, apierr.Invalidf("account_tail", "the last six digits of the corporate account that will pay")
	}
	t := &storepb.CorporateTransfer{Id: store.RandomID(10), Uscc: e.Uscc, UserId: caller.UserID, State: transferAwaiting, Enterprise: e,
		AccountTail: req.GetAccountTail(), RequestId: req.GetRequestId(), ReceivingAccountName: opts.AccountName,
		ReceivingBank: opts.Bank, ReceivingAccountNumber: opts.AccountNumber}
	var out *storepb.CorporateTransfer
	err = s.deps.Store.Update(ctx, func(tx *store.Tx) error {
		out = nil
		if k, err := tx.Lookup(indexTransferRequest, caller.UserID+"."+t.RequestId); err == nil {
			out = new(storepb.CorporateTransfer)
			return tx.Get(k, out)
		} else if !errors.Is(err, store.ErrNotFound) {
			return err
		}
		if _, err := members.Get(tx, memberID(t.Uscc, caller.UserID)); err == nil {
			return apierr.New(apierr.FailedPrecondition, "you already belong to this enterprise")
		} else if !errors.Is(err, store.ErrNotFound) {
			return err
		}
		if k, err := tx.Lookup(indexTransferPending, caller.UserID+"."+t.Uscc); err == nil {
			return apierr.New(apierr.FailedPrecondition, "you already have application %s waiting for its transfer to this enterprise",
				transfers.ID(k)[len(t.Uscc+"/transfer/"):])
		} else if !errors.Is(err, store.ErrNotFound) {
			return err
		}
		now := tx.Now()
		expires := now.Add(opts.Validity)
		t.CreatedUnixNano, t.ExpiresUnixNano = now.UnixNano(), expires.UnixNano()
		exp := store.ExpiresAt(expires)
		k := key(transferID(t.Uscc, t.Id))
		var err error
		if t.AmountFen, err = s.allocateAmount(tx, k, exp); err != nil {
			return err
		}
		if t.Reference, err = allocateReference(tx, k); err != nil {
			return err
		}
		if err := s.ensureCurrent(ctx, t.Enterprise); err != nil {
			return err
		}
		app := "transfer/" + t.Id
		if t.LetterSha256, err = s.deps.Attachments.Store(tx, app, "letter", letter.GetContent(), letter.GetFileName()); err != nil {
			return err
		}
		if t.Enterprise.LicenceAttachment, err = s.deps.Attachments.Store(tx, app, "enterprise.licence", req.GetEnterprise().GetLicence(),
			req.GetEnterprise().GetLicenceFileName()); err != nil {
			return err
		}
		for _, c := range []struct {
			index, value string
			opts         []store.PutOption
		}{
			{indexTransferRequest, caller.UserID + "." + t.RequestId, nil},
			{indexTransfer, t.Id, nil},
			{indexTransferPending, caller.UserID + "." + t.Uscc, []store.PutOption{exp}},
		} {
			if err := tx.Claim(c.index, c.value, k, c.opts...); err != nil {
				return err
			}
		}
		if err := tx.AddIndex(indexUserTransfer, caller.UserID, k); err != nil {
			return err
		}
		if err := tx.AddIndex(indexTransferState, stateValue(transferAwaiting), k); err != nil {
			return err
		}
		if err := transfers.Put(tx, transferID(t.Uscc, t.Id), t); err != nil {
			return err
		}
		if err := fileSealed(tx, transferID(t.Uscc, t.Id)); err != nil { // KEK rotation rewraps its legal-rep blobs
			return err
		}
		if err := notice(tx, caller.UserID, "对公打款认证申请已提交", fmt.Sprintf(
			"请于 %s 前使用尾号 %s 的对公账户向 %s（%s，账号 %s）汇入 %s 元，附言填写 %s。到账核对后即完成企业 %s 的认证。",
			expires.In(chinaTime).Format("2006-01-02 15:04"), t.AccountTail, opts.AccountName, opts.Bank, opts.AccountNumber,
			yuan(t.AmountFen), t.Reference, e.Name)); err != nil {
			return err
		}
		out = t
		return audit(tx, caller, "transfer.apply", t.Uscc, map[string]string{"transfer": t.Id, "reference": t.Reference,
			"amount_fen": strconv.FormatInt(t.AmountFen, 10), "letter_sha256": t.LetterSha256, "licence_sha256": t.Enterprise.LicenceAttachment,
			"expires": expires.UTC().Format(time.RFC3339)})
	})
	if err != nil {
		return nil, err
	}
	if out.Id == t.Id {
		s.m.transfers.WithLabelValues("apply").Inc()
	}
	return out, nil
}

func yuan(fen int64) string { return fmt.Sprintf("%d.%02d", fen/100, fen%100) }

// allocateAmount claims an amount no live application has, starting at a random one.
func (s *Service) allocateAmount(tx *store.Tx, owner string, exp store.PutOption) (int64, error) {
	n := s.opts.Transfer.MaxAmountFen
	start := randomBelow(n)
	for i := range n {
		fen := (start+i)%n + 1
		err := tx.Claim(indexTransferAmount, strconv.FormatInt(fen, 10), owner, exp)
		if err == nil {
			return fen, nil
		}
		if !errors.Is(err, store.ErrTaken) {
			return 0, err
		}
	}
	return 0, apierr.Exhausted(time.Hour, "every transfer amount is taken by an application waiting for its transfer; retry later")
}

// allocateReference claims a fresh reference.
func allocateReference(tx *store.Tx, owner string) (string, error) {
	for range 16 {
		b := []byte(referencePrefix)
		for range referenceLen - len(referencePrefix) {
			b = append(b, referenceAlphabet[randomBelow(int64(len(referenceAlphabet)))])
		}
		err := tx.Claim(indexTransferRef, string(b), owner)
		if err == nil {
			return string(b), nil
		}
		if !errors.Is(err, store.ErrTaken) {
			return "", err
		}
	}
	return "", errors.New("enterprises: no free transfer reference after 16 draws")
}

// randomBelow returns a uniform random number in [0, n), n ≤ 2^16.
func randomBelow(n int64) int64 {
	limit := (1 << 16) / n * n
	for {
		var b [2]byte
		_, _ = rand.Read(b[:])
		if v := int64(b[0])<<8 | int64(b[1]); v < limit {
			return v % n
		}
	}
}

// GetCorporateTransfer returns one of the caller's applications.
func (s *Service) GetCorporateTransfer(ctx context.Context, caller authn.Caller, id string) (*storepb.CorporateTransfer, error) {
	t, err := s.transferByID(ctx, id)
	if err != nil {
		return nil, err
	}
	if t.UserId != caller.UserID {
		return nil, apierr.New(apierr.NotFound, "no corporate-transfer application %q", id)
	}
	return t, nil
}

func (s *Service) transferByID(ctx context.Context, id string) (*storepb.CorporateTransfer, error) {
	notFound := apierr.New(apierr.NotFound, "no corporate-transfer application %q", id)
	if !appIDRE.MatchString(id) {
		return nil, notFound
	}
	k, err := s.lookup(ctx, indexTransfer, id)
	if err != nil {
		return nil, err
	}
	if k == "" {
		return nil, notFound
	}
	return transfers.Read(ctx, s.deps.Store, transfers.ID(k))
}

// ListCorporateTransfers lists the caller's applications, newest first.
func (s *Service) ListCorporateTransfers(ctx context.Context, caller authn.Caller) ([]*storepb.CorporateTransfer, error) {
	return s.transfersIn(ctx, indexUserTransfer, caller.UserID)
}

func (s *Service) transfersIn(ctx context.Context, index, value string) ([]*storepb.CorporateTransfer, error) {
	ks, _, err := s.deps.Store.ListIndex(ctx, index, value, store.ListOptions{Limit: store.MaxListLimit})
	if err != nil {
		return nil, err
	}
	var out []*storepb.CorporateTransfer
	for _, k := range ks {
		t, err := transfers.Read(ctx, s.deps.Store, transfers.ID(k))
		if err != nil {
			return nil, err
		}
		out = append(out, t)
	}
	slices.SortFunc(out, func(a, b *storepb.CorporateTransfer) int { return int(b.CreatedUnixNano - a.CreatedUnixNano) })
	return out, nil
}

// ListTransfers is one page of the desk's list by state (awaiting transfer by default): the
// applications in that state among the next size filed under its index, and the token of the
// page after.
func (s *Service) ListTransfers(ctx context.Context, state hufuv1.TransferState, size int, token string) ([]*storepb.CorporateTransfer, string, error) {
	want := int32(state)
	if want == 0 {
		want = transferAwaiting
	}
	written := want
	if want == transferExpired {
		written = transferAwaiting
	}
	if written != transferAwaiting && written != transferVerified && written != transferRejected {
		return nil, "", apierr.Invalidf("state", "want awaiting, verified, expired or rejected")
	}
	if size < 0 || size > store.MaxListLimit {
		return nil, "", apierr.Invalidf("page_size", "want 0..%d", store.MaxListLimit)
	}
	ks, next, err := s.deps.Store.ListIndex(ctx, indexTransferState, stateValue(written), store.ListOptions{Limit: size, Cursor: token})
	if errors.Is(err, store.ErrBadCursor) {
		return nil, "", apierr.Invalidf("page_token", "not a token from the previous page")
	}
	if err != nil {
		return nil, "", err
	}
	now := s.deps.Clock.Now()
	var out []*storepb.CorporateTransfer
	for _, k := range ks {
		t, err := transfers.Read(ctx, s.deps.Store, transfers.ID(k))
		if err != nil {
			return nil, "", err
		}
		if effectiveTransferState(t, now) == want {
			out = append(out, t)
		}
	}
	slices.SortFunc(out, func(a, b *storepb.CorporateTransfer) int { return int(b.CreatedUnixNano - a.CreatedUnixNano) })
	return out, next, nil
}

// decideTransfer changes a live application found by id in one transaction.
func (s *Service) decideTransfer(ctx context.Context, id string, change func(tx *store.Tx, t *storepb.CorporateTransfer) error) (*storepb.CorporateTransfer, error) {
	if !appIDRE.MatchString(id) {
		return nil, apierr.New(apierr.NotFound, "no corporate-transfer application %q", id)
	}
	var out *storepb.CorporateTransfer
	err := s.deps.Store.Update(ctx, func(tx *store.Tx) error {
		k, err := tx.Lookup(indexTransfer, id)
		if errors.Is(err, store.ErrNotFound) {
			return apierr.New(apierr.NotFound, "no corporate-transfer application %q", id)
		}
		if err != nil {
			return err
		}
		t, err := transfers.Get(tx, transfers.ID(k))
		if err != nil {
			return err
		}
		if err := live(tx, t); err != nil {
			return err
		}
		if err := change(tx, t); err != nil {
			return err
		}
		out = t
		return nil
	})
	return out, err
}

// live refuses an application that is no longer awaiting its transfer.
func live(tx *store.Tx, t *storepb.CorporateTransfer) error {
	switch effectiveTransferState(t, tx.Now()) {
	case transferAwaiting:
		return nil
	case transferExpired:
		return apierr.New(apierr.FailedPrecondition, "application %s expired at %s: a transfer after expiry does not verify; apply again",
			t.Id, time.Unix(0, t.ExpiresUnixNano).In(chinaTime).Format("2006-01-02 15:04"))
	case transferVerified:
		return apierr.New(apierr.FailedPrecondition, "application %s is verified already", t.Id)
	}
	return apierr.New(apierr.FailedPrecondition, "application %s was rejected", t.Id)
}

// close ends a live application: its amount and pending claims are released and its state
// index moves.
func closeTransfer(tx *store.Tx, t *storepb.CorporateTransfer, state int32) error {
	k := key(transferID(t.Uscc, t.Id))
	if err := tx.Unclaim(indexTransferAmount, strconv.FormatInt(t.AmountFen, 10), k); err != nil {
		return err
	}
	if err := tx.Unclaim(indexTransferPending, t.UserId+"."+t.Uscc, k); err != nil {
		return err
	}
	if err := tx.RemoveIndex(indexTransferState, stateValue(t.State), k); err != nil {
		return err
	}
	if err := tx.AddIndex(indexTransferState, stateValue(state), k); err != nil {
		return err
	}
	t.State, t.DecidedUnixNano = state, tx.Now().UnixNano()
	return transfers.Put(tx, transferID(t.Uscc, t.Id), t)
}

// ConfirmTransfer is the desk's verification by hand, with the operator's note.
func (s *Service) ConfirmTransfer(ctx context.Context, caller authn.Caller, id, note string) (*storepb.CorporateTransfer, error) {
	note, err := text.Lines("note", note, 200, true)
	if err != nil {
		return nil, err
	}
	t, err := s.decideTransfer(ctx, id, func(tx *store.Tx, t *storepb.CorporateTransfer) error {
		t.Note = note
		return s.verify(ctx, tx, t, "desk", caller.Actor(), "")
	})
	if err == nil {
		s.m.transfers.WithLabelValues("verify.desk").Inc()
	}
	return t, err
}

// RejectTransfer is the desk's rejection with a reason shown to the applicant.
func (s *Service) RejectTransfer(ctx context.Context, caller authn.Caller, id, reason string) (*storepb.CorporateTransfer, error) {
	reason, err := text.Lines("reason", reason, 200, true)
	if err != nil {
		return nil, err
	}
	t, err := s.decideTransfer(ctx, id, func(tx *store.Tx, t *storepb.CorporateTransfer) error {
		t.Reason, t.DecidedBy = reason, caller.Actor()
		if err := closeTransfer(tx, t, transferRejected); err != nil {
			return err
		}
		if err := notice(tx, t.UserId, "对公打款认证未通过", fmt.Sprintf("您认证企业 %s 的对公打款申请 %s 未通过：%s",
			t.Enterprise.GetName(), t.Id, reason)); err != nil {
			return err
		}
		return tx.Audit(store.Event{Actor: caller.Actor(), Action: "enterprise.transfer.reject", Subject: key(infoID(t.Uscc)),
			Outcome: store.OutcomeOK, Details: map[string]string{"transfer": t.Id, "applicant": t.UserId}})
	})
	if err == nil {
		s.m.transfers.WithLabelValues("reject").Inc()
	}
	return t, err
}

// verify completes a live application inside tx, under the enterprise record's lock: the
// applicant becomes the administrator of an enterprise without one, or staff, and an
// enterprise-verification order awaits payment.
func (s *Service) verify(ctx context.Context, tx *store.Tx, t *storepb.CorporateTransfer, via, actor, lineSHA string) error {
	now := tx.Now().UnixNano()
	e, err := enterprises.Get(tx, infoID(t.Uscc))
	exists := err == nil
	if err != nil && !errors.Is(err, store.ErrNotFound) {
		return err
	}
	m, err := members.Get(tx, memberID(t.Uscc, t.UserId))
	isMember := err == nil
	if err != nil && !errors.Is(err, store.ErrNotFound) {
		return err
	}
	role := roleStaff
	switch {
	case isMember:
		role = m.Role // joined meanwhile: the verification changes nothing of the role
	case !exists:
		e = proto.Clone(t.Enterprise).(*storepb.Enterprise)
		if err := s.ensureCurrent(ctx, e); err != nil {
			return err
		}
		e.AdminUserId, e.AdminClaimed, e.AdminVia, e.CreatedUnixNano, e.UpdatedUnixNano = t.UserId, false, "transfer", now, now
		if err := tx.AddIndex(indexName, e.NameKey, key(infoID(e.Uscc))); err != nil {
			return err
		}
		if err := fileSealed(tx, infoID(e.Uscc)); err != nil {
			return err
		}
		role = roleAdmin
	case e.AdminUserId == "":
		e.AdminUserId, e.AdminClaimed, e.AdminVia, e.UpdatedUnixNano = t.UserId, false, "transfer", now
		role = roleAdmin
	}
	if role == roleAdmin && !isMember {
		if err := enterprises.Put(tx, infoID(e.Uscc), e); err != nil {
			return err
		}
	}
	if !isMember {
		if err := addMember(tx, &storepb.Member{Uscc: t.Uscc, UserId: t.UserId, Role: role, Via: "transfer", JoinedUnixNano: now}); err != nil {
			return err
		}
	}
	o, err := certs.CreateVerificationOrder(tx, certs.VerificationOrder{UserID: t.UserId, USCC: e.Uscc, Name: e.Name,
		RequestKey: "transfer-" + t.Id, PriceFen: s.opts.Transfer.VerificationPriceFen, Actor: actor})
	if err != nil {
		return err
	}
	t.Role, t.OrderId, t.VerifiedVia, t.DecidedBy, t.LineSha256 = role, o.Id, via, actor, lineSHA
	if err := closeTransfer(tx, t, transferVerified); err != nil {
		return err
	}
	body := fmt.Sprintf("您已成为企业 %s 的办事人员。订单管理里有一笔企业认证订单 %s，请确认支付。", e.Name, o.Id)
	if role == roleAdmin {
		body = fmt.Sprintf("您已成为企业 %s 的管理员。订单管理里有一笔企业认证订单 %s，请确认支付；购买企业证书（认领企业）后即可对办事人员进行管理和授权。", e.Name, o.Id)
	}
	if err := notice(tx, t.UserId, "对公打款认证审核通过", body); err != nil {
		return err
	}
	if role == roleStaff && !isMember && e.AdminUserId != "" {
		if err := notice(tx, e.AdminUserId, "新办事人员", fmt.Sprintf("一位用户已通过对公打款认证加入企业 %s，成为办事人员", e.Name)); err != nil {
			return err
		}
	}
	return tx.Audit(store.Event{Actor: actor, Action: "enterprise.transfer.verify", Subject: key(infoID(t.Uscc)), Outcome: store.OutcomeOK,
		Details: map[string]string{"transfer": t.Id, "applicant": t.UserId, "via": via, "role": hufuv1.MemberRole(role).String(),
			"order": o.Id, "line_sha256": lineSHA}})
}

// LineResult is what importing one statement line did.
type LineResult struct {
	Line       int
	SHA256     string
	AmountFen  int64
	Outcome    int32
	TransferID string
	Mismatches []string
	Detail     string
}

// ImportStatement imports a bank statement (the desk): every line is parsed first (a bad
// line refuses the whole statement), then each line is matched in its own transaction.
func (s *Service) ImportStatement(ctx context.Context, caller authn.Caller, csv []byte) ([]LineResult, error) {
	lines, err := ParseStatement(csv)
	if err != nil {
		return nil, statementError(err)
	}
	out := make([]LineResult, 0, len(lines))
	seen := map[string]int{}
	for _, l := range lines {
		id := l.ID()
		if first, ok := seen[id]; ok {
			out = append(out, LineResult{Line: l.Line, SHA256: id, AmountFen: l.AmountFen, Outcome: lineDuplicate,
				Detail: fmt.Sprintf("the same credit as line %d", first)})
			s.m.transfers.WithLabelValues("line.duplicate").Inc()
			continue
		}
		seen[id] = l.Line
		r, err := s.importLine(ctx, caller, l)
		if err != nil {
			return out, fmt.Errorf("line %d: %w", l.Line, err)
		}
		out = append(out, r)
		s.m.transfers.WithLabelValues("line." + strings.ToLower(strings.TrimPrefix(hufuv1.StatementLineOutcome(r.Outcome).String(), "STATEMENT_LINE_OUTCOME_"))).Inc()
		if r.Outcome == lineMatched {
			s.m.transfers.WithLabelValues("verify.statement").Inc()
		}
	}
	return out, nil
}

func (s *Service) importLine(ctx context.Context, caller authn.Caller, l StatementLine) (LineResult, error) {
	id := l.ID()
	var r LineResult
	err := s.deps.Store.Update(ctx, func(tx *store.Tx) error {
		r = LineResult{Line: l.Line, SHA256: id, AmountFen: l.AmountFen}
		rec, err := statementLines.Get(tx, lineID(id))
		switch {
		case err == nil && rec.Outcome == lineMatched:
			r.Outcome, r.TransferID = lineDuplicate, rec.TransferId
			r.Detail = fmt.Sprintf("imported before: it verified application %s", rec.TransferId)
			return nil // nothing written
		case errors.Is(err, store.ErrNotFound):
			rec = &storepb.StatementLine{Sha256: id, Date: l.Date.Format(time.DateOnly), AmountFen: l.AmountFen, PayerTail: l.Tail(),
				ImportedUnixNano: tx.Now().UnixNano()}
		case err != nil:
			return err
		}
		t, mismatches, err := matchLine(tx, l)
		if err != nil {
			return err
		}
		switch {
		case t == nil:
			r.Outcome, r.Detail = lineUnmatched, "no application has this reference or amount"
		case len(mismatches) > 0:
			r.Outcome, r.TransferID, r.Mismatches = linePartial, t.Id, mismatches
			r.Detail = fmt.Sprintf("application %s: %s do not match; nothing applied (confirm or reject it by hand)", t.Id, strings.Join(mismatches, ", "))
		default:
			if err := s.verify(ctx, tx, t, "statement", caller.Actor(), id); err != nil {
				return err
			}
			r.Outcome, r.TransferID, r.Detail = lineMatched, t.Id, "verified application "+t.Id
			rec.MatchedUnixNano = tx.Now().UnixNano()
		}
		rec.Outcome, rec.TransferId = r.Outcome, r.TransferID
		if err := statementLines.Put(tx, lineID(id), rec); err != nil {
			return err
		}
		return tx.Audit(store.Event{Actor: caller.Actor(), Action: "enterprise.statement.line", Subject: key(lineID(id)), Outcome: store.OutcomeOK,
			Details: map[string]string{"outcome": hufuv1.StatementLineOutcome(r.Outcome).String(), "transfer": r.TransferID,
				"amount_fen": strconv.FormatInt(l.AmountFen, 10), "mismatches": strings.Join(r.Mismatches, ",")}})
	})
	return r, err
}

// matchLine finds the application a line is for: the one its remark's reference names, or
// else the live one with its amount. mismatches lists what does not agree.
func matchLine(tx *store.Tx, l StatementLine) (*storepb.CorporateTransfer, []string, error) {
	find := func(index, value string) (*storepb.CorporateTransfer, error) {
		k, err := tx.Lookup(index, value)
		if errors.Is(err, store.ErrNotFound) {
			return nil, nil
		}
		if err != nil {
			return nil, err
		}
		return transfers.Get(tx, transfers.ID(k))
	}
	var t *storepb.CorporateTransfer
	refOK := false
	for _, ref := range References(l.Remark) {
		found, err := find(indexTransferRef, ref)
		if err != nil {
			return nil, nil, err
		}
		if found != nil {
			t, refOK = found, true
			break
		}
	}
	if t == nil {
		found, err := find(indexTransferAmount, strconv.FormatInt(l.AmountFen, 10))
		if err != nil || found == nil {
			return nil, nil, err
		}
		t = found
	}
	var mismatches []string
	if t.AmountFen != l.AmountFen {
		mismatches = append(mismatches, "amount")
	}
	if t.AccountTail != l.Tail() {
		mismatches = append(mismatches, "account_tail")
	}
	if NameKey(l.PayerName) != NameKey(t.GetEnterprise().GetName()) {
		// The account tail is the applicant's word; the bank's payer name is not.
		mismatches = append(mismatches, "payer_name")
	}
	if !refOK {
		mismatches = append(mismatches, "reference")
	}
	switch st := effectiveTransferState(t, tx.Now()); {
	case st == transferExpired:
		mismatches = append(mismatches, "expired")
	case st != transferAwaiting:
		mismatches = append(mismatches, "state")
	default:
		// The credit's date must lie within the validity (dates in China time).
		day := l.Date.Format(time.DateOnly)
		from := time.Unix(0, t.CreatedUnixNano).In(chinaTime).Format(time.DateOnly)
		until := time.Unix(0, t.ExpiresUnixNano).In(chinaTime).Format(time.DateOnly)
		if day < from || day > until {
			mismatches = append(mismatches, "expired")
		}
	}
	return t, mismatches, nil
}
