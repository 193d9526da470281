package certs

import "github.com/prometheus/client_golang/prometheus"

// metrics of the certificate service. Labels are events only, never users, orders or
// serials.
type metrics struct {
	orders  *prometheus.CounterVec
	issued  prometheus.Counter
	revoked prometheus.Counter
}

func newMetrics(reg prometheus.Registerer) *metrics {
	m := &metrics{
		orders: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "hufu_certs_order_events_total",
			Help: "Order events: submitted, approve, reject, cancel, pay (completed).",
		}, []string{"event"}),
		issued:  prometheus.NewCounter(prometheus.CounterOpts{Name: "hufu_certs_issued_total", Help: "Certificates issued."}),
		revoked: prometheus.NewCounter(prometheus.CounterOpts{Name: "hufu_certs_revoked_total", Help: "Certificates revoked by their holders."}),
	}
	if reg != nil {
		reg.MustRegister(m.orders, m.issued, m.revoked)
	}
	return m
}
