package daemon

import (
	"errors"
	"runtime/debug"
	"time"

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
// A registry that already has the runtime collectors (a caller's) keeps them.
func registerProcessMetrics(reg prometheus.Registerer) {
	version, revision := "(devel)", "unknown"
	if bi, ok := debug.ReadBuildInfo(); ok {
		version = bi.Main.Version
		for _, s := range bi.Settings {
			if s.Key == "vcs.revision" {
				revision = s.Value
			}
		}
	}
	info := prometheus.NewGauge(prometheus.GaugeOpts{
		Name: "hufu_build_info", Help: "Build of the running hufud; the value is 1.",
		ConstLabels: prometheus.Labels{"version": version, "revision": revision, "goversion": goVersion()},
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

func goVersion() string {
	if bi, ok := debug.ReadBuildInfo(); ok {
		return bi.GoVersion
	}
	return "unknown"
}

// registerAuditMetrics exposes the audit log's head and the age of its last signed
// checkpoint, read at scrape time. An auditor's alert: the age growing past the
// configured interval means checkpoints are failing (the HSM cannot sign).
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
			Help: "Seconds since the last signed audit checkpoint; -1 if there is none yet.",
		}, func() float64 {
			c := s.LastCheckpoint()
			if c == nil {
				return -1
			}
			return clock.Now().Sub(time.Unix(0, c.Time)).Seconds()
		}),
	)
}
