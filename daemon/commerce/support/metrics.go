package support

import "github.com/prometheus/client_golang/prometheus"

// metrics of the support service. Labels are events only, never users or queries.
type metrics struct {
	events *prometheus.CounterVec
}

var events = []string{"faq_list", "faq_search", "faq_search_no_hit", "feedback_submit", "feedback_reply", "feedback_close", "desk_list"}

func newMetrics(reg prometheus.Registerer) *metrics {
	m := &metrics{events: prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "hufu_support_events_total",
		Help: "Help and feedback events: faq_list, faq_search, faq_search_no_hit, feedback_submit, feedback_reply, feedback_close, desk_list.",
	}, []string{"event"})}
	for _, e := range events {
		m.events.WithLabelValues(e)
	}
	if reg != nil {
		reg.MustRegister(m.events)
	}
	return m
}
