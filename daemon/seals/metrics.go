package seals

import "github.com/prometheus/client_golang/prometheus"

// metrics of the seal service. Labels are actions only, never owners or seals.
type metrics struct {
	changes *prometheus.CounterVec
}

func newMetrics(reg prometheus.Registerer) *metrics {
	m := &metrics{changes: prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "hufu_seals_changes_total",
		Help: "Seal changes by action: create, disable, enable, authorise, unauthorise.",
	}, []string{"action"})}
	if reg != nil {
		reg.MustRegister(m.changes)
	}
	return m
}
