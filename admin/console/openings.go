package console

import (
	"encoding/json"
	"net/http"

	hufuv1 "github.com/hufu-hsm/hufu/api/hufu/v1"
	"google.golang.org/protobuf/types/known/timestamppb"
)

// Openings: the list of every system's openings, one opening's live progress (the page's
// script polls the progress endpoint) and its signed report once closed.

type openingsData struct {
	Openings []openingView
	Next     string
}

// openingView is an opening as the pages and the progress endpoint show it.
type openingView struct {
	ID            string `json:"id"`
	ProjectCode   string `json:"project_code"`
	ProjectName   string `json:"project_name"`
	Platform      string `json:"platform"`
	State         string `json:"state"`
	WindowStart   string `json:"window_start"`
	WindowEnd     string `json:"window_end"`
	Envelopes     uint32 `json:"envelopes"`
	Consented     uint32 `json:"consented"`
	Released      uint32 `json:"released"`
	EarlyAttempts uint32 `json:"early_attempts"`
	Closed        bool   `json:"closed"`
}

var openingStates = map[hufuv1.OpeningState]string{
	hufuv1.OpeningState_OPENING_STATE_OPEN:   "登记中",
	hufuv1.OpeningState_OPENING_STATE_SEALED: "已封存",
	hufuv1.OpeningState_OPENING_STATE_CLOSED: "已结束",
}

func stamp(t *timestamppb.Timestamp) string {
	if t == nil {
		return "—"
	}
	return t.AsTime().Local().Format("2006-01-02 15:04:05")
}

func viewOf(o *hufuv1.Opening) openingView {
	state, ok := openingStates[o.State]
	if !ok {
		state = o.State.String()
	}
	return openingView{ID: o.Id, ProjectCode: o.ProjectCode, ProjectName: o.ProjectName, Platform: o.PlatformId, State: state,
		WindowStart: stamp(o.WindowStart), WindowEnd: stamp(o.WindowEnd), Envelopes: o.Envelopes, Consented: o.Consented,
		Released: o.Released, EarlyAttempts: o.EarlyAttempts, Closed: o.State == hufuv1.OpeningState_OPENING_STATE_CLOSED}
}

func (c *Console) openingsList(w http.ResponseWriter, r *http.Request, s *session) {
	os, next, err := c.opts.Openings.List(r.Context(), 50, r.URL.Query().Get("page"))
	if err != nil {
		c.failed(w, r, s, "开标", err)
		return
	}
	d := openingsData{Next: next}
	for _, o := range os {
		d.Openings = append(d.Openings, viewOf(o))
	}
	c.render(w, r, http.StatusOK, "openings", s, pageData{Title: "开标", Data: d})
}

func (c *Console) openingPage(w http.ResponseWriter, r *http.Request, s *session) {
	o, err := c.opts.Openings.Get(r.Context(), caller(r, s), r.PathValue("id"))
	if err != nil {
		c.failed(w, r, s, "开标", err)
		return
	}
	c.render(w, r, http.StatusOK, "opening", s, pageData{Title: "开标 " + o.ProjectCode, Data: viewOf(o)})
}

// openingProgress is the JSON the opening page's script polls.
func (c *Console) openingProgress(w http.ResponseWriter, r *http.Request, s *session) {
	o, err := c.opts.Openings.Get(r.Context(), caller(r, s), r.PathValue("id"))
	if err != nil {
		c.failed(w, r, s, "开标", err)
		return
	}
	w.Header().Set("Content-Type", "application/json")
	_ = json.NewEncoder(w).Encode(viewOf(o))
}

func (c *Console) openingReport(w http.ResponseWriter, r *http.Request, s *session) {
	id := r.PathValue("id")
	report, err := c.opts.Openings.Report(r.Context(), caller(r, s), id)
	if err != nil {
		c.failed(w, r, s, "开标报告", err)
		return
	}
	// JSON Lines, signed (package bidopening): verified offline by hufu opening verify-report.
	w.Header().Set("Content-Type", "application/jsonl")
	w.Header().Set("Content-Disposition", `attachment; filename="opening-report.jsonl"`)
	_, _ = w.Write(report)
}
