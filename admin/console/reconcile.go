package console

import (
	"fmt"
	"io"
	"net/http"
	"net/url"

	"github.com/hufu-hsm/hufu/admin"
	hufuv1 "github.com/hufu-hsm/hufu/api/hufu/v1"
)

// Corporate-transfer reconciliation (对公打款认证): the applications awaiting their transfer,
// the bank statement's import (matched lines verify by themselves, partial ones are shown
// for the desk to judge), and confirmation or rejection by hand. Every call is a
// ReconciliationServiceServer call as the signed-in operator.

// maxStatement bounds an uploaded statement; the desk's own limit applies after.
const maxStatement = 4 << 20

type reconcileData struct {
	Transfers []transferView
	Next      string
	Import    *hufuv1.ImportStatementResponse
}

type transferView struct {
	ID, Enterprise, USCC, Reference, AccountTail, Amount, Created, Expires string
}

var lineOutcomes = map[hufuv1.StatementLineOutcome]string{
	hufuv1.StatementLineOutcome_STATEMENT_LINE_OUTCOME_MATCHED:   "匹配，已认证",
	hufuv1.StatementLineOutcome_STATEMENT_LINE_OUTCOME_PARTIAL:   "部分匹配，待人工判断",
	hufuv1.StatementLineOutcome_STATEMENT_LINE_OUTCOME_UNMATCHED: "未匹配",
	hufuv1.StatementLineOutcome_STATEMENT_LINE_OUTCOME_DUPLICATE: "重复",
}

func yuan(fen int64) string { return fmt.Sprintf("%d.%02d", fen/100, fen%100) }

func (c *Console) reconcilePage(w http.ResponseWriter, r *http.Request, s *session, imported *hufuv1.ImportStatementResponse) {
	r = c.deskContext(r, s)
	resp, err := c.opts.Reconciliation.ListTransfers(r.Context(), &hufuv1.ListTransfersRequest{
		State: hufuv1.TransferState_TRANSFER_STATE_AWAITING_TRANSFER, PageSize: 50, PageToken: r.URL.Query().Get("page")})
	if err != nil {
		c.failed(w, r, s, "对公打款对账", err)
		return
	}
	d := reconcileData{Next: resp.NextPageToken, Import: imported}
	for _, t := range resp.Transfers {
		d.Transfers = append(d.Transfers, transferView{ID: t.Id, Enterprise: t.EnterpriseName, USCC: t.Uscc, Reference: t.Reference,
			AccountTail: t.AccountTail, Amount: yuan(t.AmountFen), Created: stamp(t.CreatedAt), Expires: stamp(t.ExpiresAt)})
	}
	notice := ""
	if id := r.URL.Query().Get("id"); admin.ValidRequestID(id) {
		switch r.URL.Query().Get("done") {
		case "confirmed":
			notice = "已确认对公打款 " + id
		case "rejected":
			notice = "已驳回对公打款 " + id
		}
	}
	c.render(w, r, http.StatusOK, "reconcile", s, pageData{Title: "对公打款对账", Notice: notice, Data: d})
}

func (c *Console) reconcile(w http.ResponseWriter, r *http.Request, s *session) {
	c.reconcilePage(w, r, s, nil)
}

// reconcileImport imports a statement: the uploaded CSV file, or the pasted text.
func (c *Console) reconcileImport(w http.ResponseWriter, r *http.Request, s *session) {
	csv := []byte(r.PostFormValue("csv"))
	if f, _, err := r.FormFile("file"); err == nil {
		csv, err = io.ReadAll(io.LimitReader(f, maxStatement+1))
		f.Close()
		if err != nil || len(csv) > maxStatement {
			c.render(w, r, http.StatusBadRequest, "error", s, pageData{Title: "导入银行流水", Message: "流水文件过大或无法读取。"})
			return
		}
	}
	r = c.deskContext(r, s)
	resp, err := c.opts.Reconciliation.ImportStatement(r.Context(), &hufuv1.ImportStatementRequest{Csv: csv})
	if err != nil {
		c.failed(w, r, s, "导入银行流水", err)
		return
	}
	c.reconcilePage(w, r, s, resp)
}

func (c *Console) reconcileConfirm(w http.ResponseWriter, r *http.Request, s *session) {
	r = c.deskContext(r, s)
	id := r.PathValue("id")
	if _, err := c.opts.Reconciliation.ConfirmTransfer(r.Context(), &hufuv1.ConfirmTransferRequest{TransferId: id, Note: r.PostFormValue("note")}); err != nil {
		c.failed(w, r, s, "确认对公打款", err)
		return
	}
	http.Redirect(w, r, base+"reconcile?done=confirmed&id="+url.QueryEscape(id), http.StatusSeeOther)
}

func (c *Console) reconcileReject(w http.ResponseWriter, r *http.Request, s *session) {
	r = c.deskContext(r, s)
	id := r.PathValue("id")
	if _, err := c.opts.Reconciliation.RejectTransfer(r.Context(), &hufuv1.RejectTransferRequest{TransferId: id, Reason: r.PostFormValue("reason")}); err != nil {
		c.failed(w, r, s, "驳回对公打款", err)
		return
	}
	http.Redirect(w, r, base+"reconcile?done=rejected&id="+url.QueryEscape(id), http.StatusSeeOther)
}
