package certs

import (
	"context"
	"time"

	"github.com/prometheus/client_golang/prometheus"
)

// metrics of the certificate service. Labels are events only, never users, orders or
// serials.
type metrics struct {
	orders  *prometheus.CounterVec
	issued  prometheus.Counter
	revoked prometheus.Counter
	// recoveries counts reservations that issuance recovery resolved, by outcome
	// ("completed" or "revoked").
	recoveries *prometheus.CounterVec
}

func newMetrics(reg prometheus.Registerer) *metrics {
	m := &metrics{
		orders: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "hufu_certs_order_events_total",
			Help: "Order events: submitted, approve, reject, cancel, pay (paid, its certificates reserved), issue (completed).",
		}, []string{"event"}),
		issued:  prometheus.NewCounter(prometheus.CounterOpts{Name: "hufu_certs_issued_total", Help: "Certificates issued."}),
		revoked: prometheus.NewCounter(prometheus.CounterOpts{Name: "hufu_certs_revoked_total", Help: "Certificates revoked by their holders."}),
		recoveries: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "hufu_certs_issuance_recoveries_total",
			Help: "Issuance reservations resolved by recovery: completed (certificate recorded) or revoked (serial revoked, payment given back).",
		}, []string{"outcome"}),
	}
	for _, o := range []recoveryOutcome{outcomeCompleted, outcomeRevoked} {
		m.recoveries.WithLabelValues(string(o))
	}
	if reg != nil {
		reg.MustRegister(m.orders, m.issued, m.revoked, m.recoveries)
	}
	return m
}

var (
	issuingPendingDesc = prometheus.NewDesc("hufu_certs_issuance_reservations",
		"Paid orders whose certificates are reserved and not yet recorded or revoked (issuing).", nil, nil)
	issuingOldestDesc = prometheus.NewDesc("hufu_certs_issuance_oldest_reservation_age_seconds",
		"Age of the oldest issuance reservation; 0 when there is none.", nil, nil)
)

// issuingCollector reads the reservations at each scrape, so the gauges are right after a
// restart.
type issuingCollector struct{ s *Service }

func (c issuingCollector) Describe(ch chan<- *prometheus.Desc) {
	ch <- issuingPendingDesc
	ch <- issuingOldestDesc
}

func (c issuingCollector) Collect(ch chan<- prometheus.Metric) {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	n, oldest, err := c.s.PendingIssuance(ctx)
	if err != nil {
		return
	}
	ch <- prometheus.MustNewConstMetric(issuingPendingDesc, prometheus.GaugeValue, float64(n))
	ch <- prometheus.MustNewConstMetric(issuingOldestDesc, prometheus.GaugeValue, oldest.Seconds())
}

// registerIssuing registers the reservation gauges of s.
func (m *metrics) registerIssuing(reg prometheus.Registerer, s *Service) {
	if reg != nil {
		reg.MustRegister(issuingCollector{s: s})
	}
}
