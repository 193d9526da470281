package keys

import "github.com/prometheus/client_golang/prometheus"

// metrics of the key service. Labels are operation kinds and outcomes only, never key ids.
type metrics struct {
	ops       *prometheus.CounterVec
	duration  *prometheus.HistogramVec
	cacheHits prometheus.Counter
	cacheMiss prometheus.Counter
	lockouts  prometheus.Counter
	// superseded counts answers withheld because the share changed meanwhile (superseded.go).
	superseded prometheus.Counter
	// quotaRefusals counts key creations refused by the per-account key quota.
	quotaRefusals prometheus.Counter
}

func newMetrics(reg prometheus.Registerer) *metrics {
	m := &metrics{
		ops: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "hufu_cosign_operations_total",
			Help: "Two-party operations (items, for batches), by kind and outcome.",
		}, []string{"kind", "outcome"}),
		duration: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name:    "hufu_cosign_operation_duration_seconds",
			Help:    "Latency of two-party operations inside the daemon (a batch counts once), by kind.",
			Buckets: []float64{.00005, .0001, .00025, .0005, .001, .0025, .005, .01, .025, .05, .1, .25, 1},
		}, []string{"kind"}),
		cacheHits: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "hufu_share_cache_hits_total", Help: "Share-cache lookups answered from memory.",
		}),
		cacheMiss: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "hufu_share_cache_misses_total", Help: "Share-cache lookups that loaded and unwrapped a share.",
		}),
		lockouts: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "hufu_pin_lockouts_total", Help: "Keys locked after too many wrong certificate PINs.",
		}),
		superseded: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "hufu_cosign_superseded_answers_total",
			Help: "Operation answers withheld because a share refresh, revocation or recall committed while they ran.",
		}),
		quotaRefusals: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "hufu_keys_quota_refusals_total",
			Help: "Key creations refused because the account holds the configured maximum of keys.",
		}),
	}
	reg.MustRegister(m.ops, m.duration, m.cacheHits, m.cacheMiss, m.lockouts, m.superseded, m.quotaRefusals)
	return m
}

func (m *metrics) hit()  { m.cacheHits.Inc() }
func (m *metrics) miss() { m.cacheMiss.Inc() }
