package invoices

import "github.com/prometheus/client_golang/prometheus"

// metrics of the invoice service. Labels are actions only, never users, orders or invoices.
type metrics struct {
	changes   *prometheus.CounterVec
	issuedFen prometheus.Counter
}

func newMetrics(reg prometheus.Registerer) *metrics {
	m := &metrics{
		changes: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "hufu_invoices_changes_total",
			Help: "Invoice changes by action: request, issue, reject, title_add, title_edit, title_delete.",
		}, []string{"action"}),
		issuedFen: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "hufu_invoices_issued_fen_total",
			Help: "The amount of issued invoices, in fen (0.01 CNY).",
		}),
	}
	if reg != nil {
		reg.MustRegister(m.changes, m.issuedFen)
	}
	return m
}
