package aftersales

import (
	"context"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/hufu-hsm/hufu/store"
)

// metrics of after-sales. Labels are actions only, never users, orders or cases.
type metrics struct {
	changes     *prometheus.CounterVec
	refundedFen prometheus.Counter
}

func newMetrics(reg prometheus.Registerer) *metrics {
	m := &metrics{
		changes: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "hufu_aftersales_changes_total",
			Help: "After-sales changes by action: apply, withdraw, refund_start, refund_refused, revoke, refund, settle.",
		}, []string{"action"}),
		refundedFen: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "hufu_aftersales_refunded_fen_total",
			Help: "The amount refunded by the after-sales desk, in fen (0.01 CNY).",
		}),
	}
	if reg != nil {
		reg.MustRegister(m.changes, m.refundedFen)
	}
	return m
}

// collector exports the open cases by state, read from the desk's queue at each scrape: a
// case refunding for long is a refund that stopped part-way and waits for the desk's retry.
type collector struct{ s *store.Store }

var openDesc = prometheus.NewDesc("hufu_aftersales_open", "Open after-sales cases by state (in_review, refunding).", []string{"state"}, nil)

func (c *collector) Describe(ch chan<- *prometheus.Desc) { ch <- openDesc }

func (c *collector) Collect(ch chan<- prometheus.Metric) {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	var review, refunding int
	cursor := ""
	for range 100 {
		page, err := queue.List(ctx, c.s, "open/", store.ListOptions{Cursor: cursor, Limit: store.MaxListLimit}, nil)
		if err != nil {
			return
		}
		for _, it := range page.Items {
			if it.Value.State == stateRefunding {
				refunding++
			} else {
				review++
			}
		}
		if cursor = page.Next; cursor == "" {
			break
		}
	}
	ch <- prometheus.MustNewConstMetric(openDesc, prometheus.GaugeValue, float64(review), "in_review")
	ch <- prometheus.MustNewConstMetric(openDesc, prometheus.GaugeValue, float64(refunding), "refunding")
}
