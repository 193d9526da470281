package scan

import "github.com/prometheus/client_golang/prometheus"

// metrics of scan sessions. Labels are events only, never systems, sessions or people.
type metrics struct {
	events *prometheus.CounterVec
}

func newMetrics(reg prometheus.Registerer) *metrics {
	m := &metrics{events: prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "hufu_scan_events_total",
		Help: "Scan session events: create, scan, choose, complete, consent, decline, refused_digest.",
	}, []string{"event"})}
	if reg != nil {
		reg.MustRegister(m.events)
	}
	return m
}
