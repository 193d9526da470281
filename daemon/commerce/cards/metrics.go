package cards

import "github.com/prometheus/client_golang/prometheus"

// metrics of the bank-card service. Labels are events only, never users or cards.
type metrics struct {
	events *prometheus.CounterVec
}

func newMetrics(reg prometheus.Registerer) *metrics {
	m := &metrics{events: prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "hufu_bankcards_events_total",
		Help: "Bank card events: bind, unbind, refused_mismatch, refused_duplicate, refused_limit, refused_rate, refused_unverified, provider_unavailable.",
	}, []string{"event"})}
	for _, e := range []string{"bind", "unbind", "refused_mismatch", "refused_duplicate", "refused_limit", "refused_rate", "refused_unverified", "provider_unavailable"} {
		m.events.WithLabelValues(e)
	}
	if reg != nil {
		reg.MustRegister(m.events)
	}
	return m
}
