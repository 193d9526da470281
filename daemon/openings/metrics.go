package openings

import "github.com/prometheus/client_golang/prometheus"

type metrics struct {
	events    *prometheus.CounterVec
	early     *prometheus.CounterVec
	envelopes prometheus.Counter
	released  *prometheus.CounterVec
	chunk     prometheus.Histogram
}

func newMetrics(reg prometheus.Registerer, guard *envelopeKeys) *metrics {
	m := &metrics{
		events: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "hufu_opening_events_total",
			Help: "Bid opening state changes, by event (create, seal, close)."}, []string{"event"}),
		early: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "hufu_opening_early_attempts_total",
			Help: "Refused attempts to decrypt, consent or release a registered envelope outside its opening's window or with another key, by path (decrypt, consent, release)."}, []string{"via"}),
		envelopes: prometheus.NewCounter(prometheus.CounterOpts{Name: "hufu_opening_envelopes_registered_total",
			Help: "Envelopes registered in bid openings."}),
		released: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "hufu_opening_envelopes_released_total",
			Help: "Envelopes released in bulk, by outcome (ok, c3_mismatch, unavailable)."}, []string{"outcome"}),
		chunk: prometheus.NewHistogram(prometheus.HistogramOpts{Name: "hufu_opening_release_chunk_duration_seconds",
			Help: "Time to compute one release chunk.", Buckets: prometheus.ExponentialBuckets(0.001, 2, 14)}),
	}
	guardKeys := prometheus.NewGaugeFunc(prometheus.GaugeOpts{Name: "hufu_opening_guard_keys",
		Help: "Keys the decryption guard holds in memory as having envelopes; -1 while it looks every key up in the store (before the first Decrypt, after a failed load, or past 2^20 keys)."},
		guard.size)
	if reg != nil {
		reg.MustRegister(m.events, m.early, m.envelopes, m.released, m.chunk, guardKeys)
	}
	return m
}
