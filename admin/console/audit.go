package console

import (
	"crypto/ecdsa"
	"crypto/x509"
	"encoding/hex"
	"encoding/pem"
	"errors"
	"fmt"
	"net/http"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/hufu-hsm/hufu/store"
)

// The audit log: browse (newest first, filtered by actor, action and time), export (the
// same JSON-lines export as GET /audit/export, which verifies offline) and verification
// of the stored log against the HSM's audit key.

const (
	// auditPage is how many matching records one page shows; auditScan bounds how many
	// records one page reads looking for them, so a filter that matches nothing costs a
	// bounded read, and the page says where it stopped.
	auditPage  = 100
	auditScan  = 20000
	auditChunk = 1000
	// timeLayout is the browser's datetime-local value.
	timeLayout = "2006-01-02T15:04"
)

type auditFilter struct {
	Actor, Action, From, To string
	Before                  uint64 // browse records before this sequence number (0: from the head)
}

type auditData struct {
	Filter   auditFilter
	Records  []auditRow
	Head     uint64
	More     uint64 // > 0: the next page starts before this sequence number
	Scanned  int
	Stopped  bool // the scan bound was reached before a page was full
	Verified *verifyView
}

type auditRow struct {
	Seq                             uint64
	Time                            string
	Actor, Action, Subject, Outcome string
	Details                         string
}

type verifyView struct {
	OK                   bool
	Error                string
	Records, Checkpoints int
	VerifiedThrough      uint64
	SignedHeadSeq        uint64
	SignedHeadHash       string
}

func (c *Console) auditBrowse(w http.ResponseWriter, r *http.Request, s *session) {
	q := r.URL.Query()
	f := auditFilter{Actor: strings.TrimSpace(q.Get("actor")), Action: strings.TrimSpace(q.Get("action")), From: q.Get("from"), To: q.Get("to")}
	var from, to time.Time
	var err error
	if f.From != "" {
		if from, err = time.ParseInLocation(timeLayout, f.From, time.Local); err != nil {
			c.render(w, r, http.StatusBadRequest, "error", s, pageData{Title: "审计日志", Message: "起始时间格式应为 2006-01-02T15:04。"})
			return
		}
	}
	if f.To != "" {
		if to, err = time.ParseInLocation(timeLayout, f.To, time.Local); err != nil {
			c.render(w, r, http.StatusBadRequest, "error", s, pageData{Title: "审计日志", Message: "结束时间格式应为 2006-01-02T15:04。"})
			return
		}
	}
	if v := q.Get("before"); v != "" {
		if f.Before, err = strconv.ParseUint(v, 10, 64); err != nil {
			c.render(w, r, http.StatusBadRequest, "error", s, pageData{Title: "审计日志", Message: "before 应为记录序号。"})
			return
		}
	}
	// Reading the log is itself recorded, before it is served: no record, no answer.
	if err := c.opts.Host.Audit(r, s.who, "admin.audit.browse", store.OutcomeOK, map[string]string{"via": "console",
		"actor_filter": clip(f.Actor), "action_filter": clip(f.Action), "from": f.From, "to": f.To}); err != nil {
		c.render(w, r, http.StatusServiceUnavailable, "error", s, pageData{Title: "审计日志", Message: "审计日志无法写入，拒绝服务。"})
		return
	}
	d := auditData{Filter: f, Head: c.opts.Store.DurableHead()}
	end := d.Head
	if f.Before != 0 && f.Before-1 < end {
		end = f.Before - 1
	}
	for end >= 1 && len(d.Records) < auditPage && d.Scanned < auditScan {
		start := uint64(1)
		if end > auditChunk {
			start = end - auditChunk + 1
		}
		recs, err := c.opts.Store.AuditRecords(r.Context(), start, int(end-start+1))
		if err != nil {
			c.opts.Log.Error("console: reading the audit log", "err", err)
			c.render(w, r, http.StatusInternalServerError, "error", s, pageData{Title: "审计日志", Message: "读取审计日志失败，详见守护进程日志。"})
			return
		}
		slices.Reverse(recs)
		reachedFrom := false
		for _, rec := range recs {
			d.Scanned++
			end = rec.Seq - 1
			t := time.Unix(0, rec.Time)
			if !from.IsZero() && t.Before(from) {
				reachedFrom = true
				break
			}
			if matches(rec, f, to) {
				d.Records = append(d.Records, row(rec))
				if len(d.Records) == auditPage {
					break
				}
			}
		}
		if reachedFrom || len(recs) == 0 {
			end = 0
			break
		}
	}
	if end >= 1 {
		d.More = end + 1
		d.Stopped = len(d.Records) < auditPage
	}
	c.render(w, r, http.StatusOK, "audit", s, pageData{Title: "审计日志", Data: d})
}

func clip(s string) string {
	if len(s) > 64 {
		return s[:64]
	}
	return s
}

func matches(rec *store.Record, f auditFilter, to time.Time) bool {
	if f.Actor != "" && !strings.Contains(rec.Actor, f.Actor) {
		return false
	}
	if f.Action != "" && !strings.HasPrefix(rec.Action, f.Action) {
		return false
	}
	if !to.IsZero() && !time.Unix(0, rec.Time).Before(to) {
		return false
	}
	return true
}

func row(rec *store.Record) auditRow {
	keys := make([]string, 0, len(rec.Details))
	for k := range rec.Details {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	var b strings.Builder
	for _, k := range keys {
		if b.Len() > 0 {
			b.WriteString(" ")
		}
		fmt.Fprintf(&b, "%s=%s", k, rec.Details[k])
	}
	return auditRow{Seq: rec.Seq, Time: time.Unix(0, rec.Time).Local().Format("2006-01-02 15:04:05"), Actor: rec.Actor,
		Action: rec.Action, Subject: rec.Subject, Outcome: rec.Outcome, Details: b.String()}
}

// auditExport streams the whole log, as GET /audit/export without a range does: it starts
// with a fresh signed checkpoint, so the file verifies offline (hufu audit verify).
func (c *Console) auditExport(w http.ResponseWriter, r *http.Request, s *session) {
	if err := c.opts.Host.Audit(r, s.who, "admin.audit.export", store.OutcomeOK, map[string]string{"via": "console"}); err != nil {
		c.render(w, r, http.StatusServiceUnavailable, "error", s, pageData{Title: "导出审计日志", Message: "审计日志无法写入，拒绝导出。"})
		return
	}
	w.Header().Set("Content-Type", "application/jsonl")
	w.Header().Set("Content-Disposition", `attachment; filename="hufu-audit.jsonl"`)
	if err := c.opts.Store.ExportAudit(r.Context(), w, 0, 0); err != nil {
		// After the first byte an error can only cut the file short, which verification
		// reports as truncated.
		c.opts.Log.Error("console: audit export", "err", err)
	}
}

// auditVerify verifies the stored log as an auditor verifies a full export, and shows the
// result with the first page of the log.
func (c *Console) auditVerify(w http.ResponseWriter, r *http.Request, s *session) {
	pub, err := c.auditKey()
	if err != nil {
		c.opts.Log.Error("console: audit key", "err", err)
		c.render(w, r, http.StatusInternalServerError, "error", s, pageData{Title: "校验审计日志", Message: "无法读取审计公钥，详见守护进程日志。"})
		return
	}
	res, verr := c.opts.Store.VerifyAudit(r.Context(), pub)
	v := &verifyView{OK: verr == nil, Records: res.Records, Checkpoints: res.Checkpoints, VerifiedThrough: res.VerifiedThrough,
		SignedHeadSeq: res.SignedHead.Seq, SignedHeadHash: hex.EncodeToString(res.SignedHead.Hash[:])}
	outcome := store.OutcomeOK
	details := map[string]string{"via": "console", "records": strconv.Itoa(res.Records), "verified_through": strconv.FormatUint(res.VerifiedThrough, 10)}
	if verr != nil {
		var ve *store.VerifyError
		if !errors.As(verr, &ve) {
			c.opts.Log.Error("console: audit verification", "err", verr)
			c.render(w, r, http.StatusInternalServerError, "error", s, pageData{Title: "校验审计日志", Message: "校验未能完成，详见守护进程日志。"})
			return
		}
		v.Error = verr.Error()
		outcome = store.OutcomeFailed
		details["error"] = clip(verr.Error())
	}
	if err := c.opts.Host.Audit(r, s.who, "admin.audit.verify", outcome, details); err != nil {
		c.render(w, r, http.StatusServiceUnavailable, "error", s, pageData{Title: "校验审计日志", Message: "审计日志无法写入。"})
		return
	}
	c.render(w, r, http.StatusOK, "verify", s, pageData{Title: "校验审计日志", Data: v})
}

func (c *Console) auditKey() (*ecdsa.PublicKey, error) {
	b, err := c.opts.Host.AuditKeyPEM()
	if err != nil {
		return nil, err
	}
	block, _ := pem.Decode(b)
	if block == nil {
		return nil, errors.New("the audit key is not PEM")
	}
	k, err := x509.ParsePKIXPublicKey(block.Bytes)
	if err != nil {
		return nil, err
	}
	pub, ok := k.(*ecdsa.PublicKey)
	if !ok {
		return nil, fmt.Errorf("the audit key is a %T, not ECDSA", k)
	}
	return pub, nil
}
