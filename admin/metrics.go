package admin

import (
	"context"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
)

// The admin surface's metrics, computed at each scrape from the same sources as /readyz
// and GET /kek, so Prometheus sees what an operator would:
//
//	hufu_ready                               1 if every readiness check passes, else 0
//	hufu_readiness_check{check}              1 if the check passes, else 0 (hsm, store, grpc)
//	hufu_kek_current_version                 version of the KEK new wraps use
//	hufu_kek_versions                        KEK versions on the token (more than 1: a rotation is unfinished)
//	hufu_kek_rotation_running                1 while a rotation rewraps in the background
//	hufu_kek_rotation_rewrapped_blobs{domain}   blobs moved to the new KEK by the last rotation
//	hufu_kek_rotation_remaining_records{domain} records the last rotation has still to examine
//	hufu_kek_last_erasure_timestamp_seconds  when the last KEK erasure finished (0: never; erasure.go)
//	hufu_kek_erasure_due_timestamp_seconds   when the next scheduled erasure is due (0: no schedule);
//	                                         the alert HufuKEKErasureOverdue fires a day after it
//
// Labels are check and domain names, never ids. The readiness probes run with the
// configured CheckTimeout each, so a scrape of a hung HSM takes that long and reports 0.

var (
	readyDesc      = prometheus.NewDesc("hufu_ready", "1 if every readiness check (/readyz) passes, else 0.", nil, nil)
	readyCheckDesc = prometheus.NewDesc("hufu_readiness_check", "1 if the readiness check passes, else 0.", []string{"check"}, nil)
	kekCurrentDesc = prometheus.NewDesc("hufu_kek_current_version", "Version of the current KEK, which every new wrap uses.", nil, nil)
	kekCountDesc   = prometheus.NewDesc("hufu_kek_versions", "KEK versions on the HSM token; more than 1 while a rotation is not finished.", nil, nil)
	kekRunningDesc = prometheus.NewDesc("hufu_kek_rotation_running", "1 while a KEK rotation rewraps stored blobs in the background.", nil, nil)
	kekRewrapDesc  = prometheus.NewDesc("hufu_kek_rotation_rewrapped_blobs", "Blobs moved to the new KEK by the last rotation since the daemon started, per domain.", []string{"domain"}, nil)
	kekErasedDesc  = prometheus.NewDesc("hufu_kek_last_erasure_timestamp_seconds", "When the last KEK erasure finished (revoked shares unrecoverable from old files and backups up to then), Unix seconds; 0 if none has.", nil, nil)
	kekDueDesc     = prometheus.NewDesc("hufu_kek_erasure_due_timestamp_seconds", "When the next scheduled KEK erasure is due (keys.erasure.interval after the last one, or after the store's creation), Unix seconds; 0 without a schedule.", nil, nil)
	kekRemainDesc  = prometheus.NewDesc("hufu_kek_rotation_remaining_records", "Records the last rotation has still to examine, per domain (0 when it is done).", []string{"domain"}, nil)
)

type adminCollector struct{ s *Server }

func (s *Server) registerMetrics(reg prometheus.Registerer) error {
	return reg.Register(adminCollector{s})
}

func (c adminCollector) Describe(ch chan<- *prometheus.Desc) {
	for _, d := range []*prometheus.Desc{readyDesc, readyCheckDesc, kekCurrentDesc, kekCountDesc, kekRunningDesc, kekRewrapDesc, kekRemainDesc, kekErasedDesc, kekDueDesc} {
		ch <- d
	}
}

func (c adminCollector) Collect(ch chan<- prometheus.Metric) {
	s := c.s
	ready := 1.0
	for _, r := range s.runChecks(context.Background()) {
		v := 1.0
		if r.err != nil {
			v, ready = 0, 0
		}
		ch <- prometheus.MustNewConstMetric(readyCheckDesc, prometheus.GaugeValue, v, r.name)
	}
	ch <- prometheus.MustNewConstMetric(readyDesc, prometheus.GaugeValue, ready)

	st := s.rot.snapshot()
	current := 0
	for _, k := range st.KEKs {
		if k.Current {
			current = k.Version
		}
	}
	ch <- prometheus.MustNewConstMetric(kekCurrentDesc, prometheus.GaugeValue, float64(current))
	ch <- prometheus.MustNewConstMetric(kekCountDesc, prometheus.GaugeValue, float64(len(st.KEKs)))
	running := 0.0
	if st.State == StateRunning {
		running = 1
	}
	ch <- prometheus.MustNewConstMetric(kekRunningDesc, prometheus.GaugeValue, running)
	last, due := s.erasureTimes()
	ch <- prometheus.MustNewConstMetric(kekErasedDesc, prometheus.GaugeValue, unixOrZero(last))
	ch <- prometheus.MustNewConstMetric(kekDueDesc, prometheus.GaugeValue, unixOrZero(due))
	for _, rw := range s.opts.Rewrappers {
		var p Progress
		if q := st.Progress[rw.Name]; q != nil {
			p = *q
		}
		ch <- prometheus.MustNewConstMetric(kekRewrapDesc, prometheus.GaugeValue, float64(p.Rewrapped), rw.Name)
		ch <- prometheus.MustNewConstMetric(kekRemainDesc, prometheus.GaugeValue, float64(max(p.Total-p.Done, 0)), rw.Name)
	}
}

type checkResult struct {
	name string
	err  error
}

// runChecks runs every readiness check at once, each within CheckTimeout, so that /readyz
// and a scrape with a hung HSM take one CheckTimeout, not one per check.
func (s *Server) runChecks(ctx context.Context) []checkResult {
	out := make([]checkResult, len(s.opts.Checks))
	var wg sync.WaitGroup
	for i, c := range s.opts.Checks {
		wg.Go(func() {
			cctx, cancel := context.WithTimeout(ctx, s.opts.CheckTimeout)
			defer cancel()
			out[i] = checkResult{c.Name, c.Probe(cctx)}
		})
	}
	wg.Wait()
	return out
}

func unixOrZero(t time.Time) float64 {
	if t.IsZero() {
		return 0
	}
	return float64(t.Unix())
}
