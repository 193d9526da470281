package daemon

import (
	"context"
	"errors"
	"time"

	"github.com/hufu-hsm/hufu/buildinfo"
	"github.com/hufu-hsm/hufu/hsm"
	"github.com/hufu-hsm/hufu/store"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
)

// The daemon's own metrics beyond the gRPC gate's (metrics.go) and the domain services':
// build information, the Go runtime and the process, HSM operations, store commits and
// the audit log's progress. Labels are fixed sets (operation names, outcomes), never user
// data.

// hsmMetrics implements hsm.Metrics.
type hsmMetrics struct {
	ops      *prometheus.CounterVec
	duration *prometheus.HistogramVec
}

var _ hsm.Metrics = (*hsmMetrics)(nil)

func newHSMMetrics(reg prometheus.Registerer) *hsmMetrics {
	m := &hsmMetrics{
		ops: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "hufu_hsm_operations_total",
			Help: "HSM keyring operations by op and outcome (ok, rejected: bad input or blob, error: the HSM or its session pool failed).",
		}, []string{"op", "outcome"}),
		duration: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name:    "hufu_hsm_operation_duration_seconds",
			Help:    "HSM keyring operation latency by op.",
			Buckets: []float64{.00001, .000025, .00005, .0001, .00025, .0005, .001, .0025, .005, .01, .025, .1, .5, 2.5},
		}, []string{"op"}),
	}
	reg.MustRegister(m.ops, m.duration)
	return m
}

// Observe records one operation.
func (m *hsmMetrics) Observe(op hsm.Op, outcome hsm.Outcome, elapsed time.Duration) {
	m.ops.WithLabelValues(string(op), string(outcome)).Inc()
	m.duration.WithLabelValues(string(op)).Observe(elapsed.Seconds())
}

// storeMetrics observes store commits (store.Options.CommitObserver).
type storeMetrics struct {
	duration prometheus.Histogram
	failures prometheus.Counter
}

func newStoreMetrics(reg prometheus.Registerer) *storeMetrics {
	m := &storeMetrics{
		duration: prometheus.NewHistogram(prometheus.HistogramOpts{
			Name:    "hufu_store_commit_duration_seconds",
			Help:    "Latency of store commits (one synced Pebble batch with its audit records).",
			Buckets: []float64{.0001, .00025, .0005, .001, .0025, .005, .01, .025, .05, .1, .25, 1},
		}),
		failures: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "hufu_store_commit_failures_total", Help: "Store commits that failed (the store then refuses writes until restarted).",
		}),
	}
	reg.MustRegister(m.duration, m.failures)
	return m
}

func (m *storeMetrics) observe(elapsed time.Duration, err error) {
	m.duration.Observe(elapsed.Seconds())
	if err != nil {
		m.failures.Inc()
	}
}

// registerProcessMetrics adds hufu_build_info and the Go runtime and process collectors.
// A registry that already has the runtime collectors (a caller's) keeps them. The labels
// are what `hufud version` prints (package buildinfo).
func registerProcessMetrics(reg prometheus.Registerer) {
	bi := buildinfo.Read()
	info := prometheus.NewGauge(prometheus.GaugeOpts{
		Name: "hufu_build_info", Help: "Build of the running hufud; the value is 1.",
		ConstLabels: prometheus.Labels{"version": bi.Version, "revision": bi.Revision, "goversion": bi.GoVersion},
	})
	info.Set(1)
	for _, c := range []prometheus.Collector{info, collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{})} {
		if err := reg.Register(c); err != nil {
			var dup prometheus.AlreadyRegisteredError
			if !errors.As(err, &dup) {
				panic(err)
			}
		}
	}
}

// registerModeMetric adds hufu_development_mode: 1 while the daemon runs with development
// providers (a dev SMS outbox, test identities), so that a dashboard or an alert sees an
// appliance that should not be in production.
func registerModeMetric(reg prometheus.Registerer, development bool) {
	g := prometheus.NewGauge(prometheus.GaugeOpts{
		Name: "hufu_development_mode",
		Help: "1 when hufud runs in development mode (dev SMS outbox, test identities accepted; not for production), 0 otherwise.",
	})
	if development {
		g.Set(1)
	}
	reg.MustRegister(g)
}

// registerAuditMetrics exposes the audit log's head, its last signed checkpoint and the
// records no checkpoint covers yet, read at scrape time. The alerting gauge is
// hufu_audit_oldest_unsigned_record_age_seconds: it is 0 while every record is covered
// (an idle appliance writes no records, so it signs no checkpoints, and nothing is wrong)
// and grows from the first uncovered record's time, so a value past the checkpoint
// interval means checkpoints are failing (the HSM cannot sign). The age of the last
// checkpoint is kept for dashboards; it grows on an idle appliance and is no alert.
func registerAuditMetrics(reg prometheus.Registerer, s *store.Store, clock store.Clock) {
	reg.MustRegister(
		prometheus.NewGaugeFunc(prometheus.GaugeOpts{
			Name: "hufu_audit_sequence", Help: "Sequence number of the last audit record.",
		}, func() float64 { seq, _ := s.Head(); return float64(seq) }),
		prometheus.NewGaugeFunc(prometheus.GaugeOpts{
			Name: "hufu_audit_checkpoint_sequence", Help: "Size of the log at its last signed checkpoint.",
		}, func() float64 {
			if c := s.LastCheckpoint(); c != nil {
				return float64(c.Size)
			}
			return 0
		}),
		prometheus.NewGaugeFunc(prometheus.GaugeOpts{
			Name: "hufu_audit_last_checkpoint_age_seconds",
			Help: "Seconds since the last signed audit checkpoint; -1 if there is none yet. Grows on an idle appliance: alert on hufu_audit_oldest_unsigned_record_age_seconds instead.",
		}, func() float64 {
			c := s.LastCheckpoint()
			if c == nil {
				return -1
			}
			return clock.Now().Sub(time.Unix(0, c.Time)).Seconds()
		}),
		&auditBacklogCollector{store: s, clock: clock},
	)
}

// auditBacklogCollector reports the store's audit backlog: both gauges from one reading.
type auditBacklogCollector struct {
	store *store.Store
	clock store.Clock
}

var (
	auditUnsignedDesc = prometheus.NewDesc("hufu_audit_unsigned_records",
		"Audit records not yet covered by a signed checkpoint.", nil, nil)
	auditUnsignedAgeDesc = prometheus.NewDesc("hufu_audit_oldest_unsigned_record_age_seconds",
		"Age of the oldest audit record not covered by a signed checkpoint; 0 when every record is covered.", nil, nil)
)

func (c *auditBacklogCollector) Describe(ch chan<- *prometheus.Desc) {
	ch <- auditUnsignedDesc
	ch <- auditUnsignedAgeDesc
}

func (c *auditBacklogCollector) Collect(ch chan<- prometheus.Metric) {
	b, err := c.store.AuditBacklog(context.Background())
	if err != nil {
		// A closed or failed store: the scrape says so rather than reporting a clean log.
		ch <- prometheus.NewInvalidMetric(auditUnsignedDesc, err)
		ch <- prometheus.NewInvalidMetric(auditUnsignedAgeDesc, err)
		return
	}
	age := 0.0
	if b.Records > 0 {
		age = max(c.clock.Now().Sub(b.Oldest).Seconds(), 0)
	}
	ch <- prometheus.MustNewConstMetric(auditUnsignedDesc, prometheus.GaugeValue, float64(b.Records))
	ch <- prometheus.MustNewConstMetric(auditUnsignedAgeDesc, prometheus.GaugeValue, age)
}
