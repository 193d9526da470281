package auditsink

import (
	"context"
	"sync"
	"time"

	"github.com/hufu-hsm/hufu/store"
	"github.com/prometheus/client_golang/prometheus"
)

// Metrics are the sinks' metrics, labelled by sink name only.
type Metrics struct {
	shipped   *prometheus.CounterVec
	replayed  *prometheus.CounterVec
	errors    *prometheus.CounterVec
	connected *prometheus.GaugeVec
	lag       *lagCollector
}

// NewMetrics registers the sinks' metrics in reg.
func NewMetrics(reg prometheus.Registerer, st Store, clock store.Clock) *Metrics {
	if clock == nil {
		clock = store.SystemClock{}
	}
	m := &Metrics{
		shipped: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "hufu_auditsink_shipped_records_total",
			Help: "Audit records delivered to the sink for the first time (not counting records sent again).",
		}, []string{"sink"}),
		replayed: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "hufu_auditsink_replayed_records_total",
			Help: "Audit records sent again after a broken connection (receivers drop them by sequence number).",
		}, []string{"sink"}),
		errors: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "hufu_auditsink_errors_total",
			Help: "Failures of the sink: connecting, delivering, reading the log or storing the cursor.",
		}, []string{"sink"}),
		connected: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name: "hufu_auditsink_connected",
			Help: "1 while the sink's destination is connected (syslog) or open (file), else 0.",
		}, []string{"sink"}),
		lag: &lagCollector{store: st, clock: clock},
	}
	reg.MustRegister(m.shipped, m.replayed, m.errors, m.connected, m.lag)
	return m
}

func (m *Metrics) add(s *Sink) {
	m.lag.add(s)
	for _, v := range []*prometheus.CounterVec{m.shipped, m.replayed, m.errors} {
		v.WithLabelValues(s.opts.Name)
	}
	m.connected.WithLabelValues(s.opts.Name).Set(0)
}

// lagCollector reports how far each sink is behind the head of the log, read at scrape
// time so that a sink stuck in backoff still shows its lag growing.
type lagCollector struct {
	store Store
	clock store.Clock

	mu    sync.Mutex
	sinks []*Sink
}

var (
	lagRecordsDesc = prometheus.NewDesc("hufu_auditsink_lag_records",
		"Audit records appended and not yet delivered by the sink.", []string{"sink"}, nil)
	lagSecondsDesc = prometheus.NewDesc("hufu_auditsink_lag_seconds",
		"Age of the oldest audit record not yet delivered by the sink; 0 when it is caught up.", []string{"sink"}, nil)
)

func (c *lagCollector) add(s *Sink) {
	c.mu.Lock()
	c.sinks = append(c.sinks, s)
	c.mu.Unlock()
}

func (c *lagCollector) Describe(ch chan<- *prometheus.Desc) {
	ch <- lagRecordsDesc
	ch <- lagSecondsDesc
}

func (c *lagCollector) Collect(ch chan<- prometheus.Metric) {
	c.mu.Lock()
	sinks := append([]*Sink(nil), c.sinks...)
	c.mu.Unlock()
	head, _ := c.store.Head()
	for _, s := range sinks {
		delivered := s.cursor.Load()
		behind, age := uint64(0), 0.0
		if head > delivered {
			behind = head - delivered
			ctx, cancel := context.WithTimeout(context.Background(), time.Second)
			// A store that cannot answer (closed, failed) leaves the age out rather than
			// report a wrong one; /readyz says why.
			r, err := c.store.AuditRecord(ctx, delivered+1)
			cancel()
			if err != nil {
				ch <- prometheus.MustNewConstMetric(lagRecordsDesc, prometheus.GaugeValue, float64(behind), s.opts.Name)
				continue
			}
			age = max(0, c.clock.Now().Sub(time.Unix(0, r.Time)).Seconds())
		}
		ch <- prometheus.MustNewConstMetric(lagRecordsDesc, prometheus.GaugeValue, float64(behind), s.opts.Name)
		ch <- prometheus.MustNewConstMetric(lagSecondsDesc, prometheus.GaugeValue, age, s.opts.Name)
	}
}
