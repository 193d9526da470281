package daemon

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"sync/atomic"
	"time"

	"github.com/emmansun/gmsm/smx509"

	"github.com/hufu-hsm/hufu/buildinfo"
	"github.com/hufu-hsm/hufu/daemon/ca"
	"github.com/hufu-hsm/hufu/hsm"
	"github.com/hufu-hsm/hufu/store"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
)

// The daemon's own metrics beyond the gRPC gate's (metrics.go) and the domain services':
// build information, the Go runtime and the process, HSM operations, store commits and
// the audit log's progress. Labels are fixed sets (operation names, outcomes), never user
// data.

// hsmMetrics implements hsm.Metrics, hsm.SessionMetrics and hsm.RecoveryMetrics:
// operations, the keyring's session pool (the keyring measures it; see hsm's sessionGate),
// and outages with the reopens that end them.
type hsmMetrics struct {
	ops      *prometheus.CounterVec
	duration *prometheus.HistogramVec

	outages prometheus.Counter
	reopens *prometheus.CounterVec
	// available reads whether the open keyring is available; nil until hsm.Open hands it
	// over.
	available atomic.Pointer[func() bool]

	waits    prometheus.Histogram
	timeouts prometheus.Counter
	// sessions reads the open keyring's pool; nil until hsm.Open hands it over (the
	// metrics are registered before the keyring opens).
	sessions atomic.Pointer[func() hsm.SessionStats]
}

var (
	_ hsm.SessionMetrics  = (*hsmMetrics)(nil)
	_ hsm.RecoveryMetrics = (*hsmMetrics)(nil)
)

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
	m.waits = prometheus.NewHistogram(prometheus.HistogramOpts{
		Name: "hufu_hsm_session_wait_duration_seconds",
		Help: "Time HSM keyring operations that found every session taken waited for one (those that timed out included); operations that found one free are not observed.",
		// Up to the default pool wait timeout (2 s) and a little past a raised one.
		Buckets: []float64{.0001, .00025, .0005, .001, .0025, .005, .01, .025, .05, .1, .25, .5, 1, 2, 5},
	})
	m.timeouts = prometheus.NewCounter(prometheus.CounterOpts{
		Name: "hufu_hsm_session_wait_timeouts_total",
		Help: "HSM keyring operations that found no session free within the pool wait timeout and failed (ErrBusy).",
	})
	m.outages = prometheus.NewCounter(prometheus.CounterOpts{
		Name: "hufu_hsm_outages_total",
		Help: "HSM outages: an operation found the token, the module or the session gone, and the keyring became unavailable until a reopen succeeded.",
	})
	m.reopens = prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "hufu_hsm_reopens_total",
		Help: "Attempts to reopen the HSM keyring after an outage (new PKCS#11 context, session pool and login), by outcome (ok, error).",
	}, []string{"outcome"})
	m.reopens.WithLabelValues("ok")
	m.reopens.WithLabelValues("error")
	available := prometheus.NewGaugeFunc(prometheus.GaugeOpts{
		Name: "hufu_hsm_available",
		Help: "1 while the HSM keyring is available, 0 while it reconnects after an outage (requests needing the HSM fail with UNAVAILABLE).",
	}, func() float64 {
		read := m.available.Load()
		if read == nil || !(*read)() {
			return 0
		}
		return 1
	})
	reg.MustRegister(m.ops, m.duration, m.waits, m.timeouts, sessionPoolCollector{m}, m.outages, m.reopens, available)
	return m
}

// WatchAvailability keeps the reader of the keyring that just opened.
func (m *hsmMetrics) WatchAvailability(available func() bool) { m.available.Store(&available) }

// ObserveOutage counts one outage.
func (m *hsmMetrics) ObserveOutage() { m.outages.Inc() }

// ObserveReopen counts one reopen attempt.
func (m *hsmMetrics) ObserveReopen(ok bool) {
	if ok {
		m.reopens.WithLabelValues("ok").Inc()
	} else {
		m.reopens.WithLabelValues("error").Inc()
	}
}

// Observe records one operation.
func (m *hsmMetrics) Observe(op hsm.Op, outcome hsm.Outcome, elapsed time.Duration) {
	m.ops.WithLabelValues(string(op), string(outcome)).Inc()
	m.duration.WithLabelValues(string(op)).Observe(elapsed.Seconds())
}

// WatchSessions keeps the reader of the keyring that just opened.
func (m *hsmMetrics) WatchSessions(read func() hsm.SessionStats) { m.sessions.Store(&read) }

// ObserveSessionWait records one operation that had to wait for a session.
func (m *hsmMetrics) ObserveSessionWait(wait time.Duration, timedOut bool) {
	m.waits.Observe(wait.Seconds())
	if timedOut {
		m.timeouts.Inc()
	}
}

// sessionPoolCollector reports the keyring's session pool at scrape time, all three gauges
// from one reading; nothing before the keyring opens.
type sessionPoolCollector struct{ m *hsmMetrics }

var (
	sessionCapacityDesc = prometheus.NewDesc("hufu_hsm_session_pool_capacity",
		"HSM sessions keyring operations can hold at once: hsm.max_sessions, lowered to the token's own limit if it states one, minus the session that holds the login.", nil, nil)
	sessionInUseDesc = prometheus.NewDesc("hufu_hsm_session_pool_in_use",
		"HSM keyring operations holding a session now.", nil, nil)
	sessionWaitingDesc = prometheus.NewDesc("hufu_hsm_session_pool_waiting",
		"HSM keyring operations waiting for a free session now.", nil, nil)
)

func (c sessionPoolCollector) Describe(ch chan<- *prometheus.Desc) {
	ch <- sessionCapacityDesc
	ch <- sessionInUseDesc
	ch <- sessionWaitingDesc
}

func (c sessionPoolCollector) Collect(ch chan<- prometheus.Metric) {
	read := c.m.sessions.Load()
	if read == nil {
		return
	}
	s := (*read)()
	ch <- prometheus.MustNewConstMetric(sessionCapacityDesc, prometheus.GaugeValue, float64(s.Capacity))
	ch <- prometheus.MustNewConstMetric(sessionInUseDesc, prometheus.GaugeValue, float64(s.InUse))
	ch <- prometheus.MustNewConstMetric(sessionWaitingDesc, prometheus.GaugeValue, float64(s.Waiting))
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

// walSyncCollector exposes the store's WAL syncs, read at scrape time (one Pebble metrics
// read for both series): syncs per commit is the share of durability each call pays.
type walSyncCollector struct{ s *store.Store }

var (
	walSyncsDesc = prometheus.NewDesc("hufu_store_wal_syncs_total",
		"Syncs of the store's write-ahead log since the daemon started; each covers every commit written before it.", nil, nil)
	walSyncSecondsDesc = prometheus.NewDesc("hufu_store_wal_sync_seconds_total",
		"Time spent in the store's write-ahead log syncs since the daemon started.", nil, nil)
)

func (c walSyncCollector) Describe(ch chan<- *prometheus.Desc) {
	ch <- walSyncsDesc
	ch <- walSyncSecondsDesc
}

func (c walSyncCollector) Collect(ch chan<- prometheus.Metric) {
	n, d := c.s.WALSyncs()
	ch <- prometheus.MustNewConstMetric(walSyncsDesc, prometheus.CounterValue, float64(n))
	ch <- prometheus.MustNewConstMetric(walSyncSecondsDesc, prometheus.CounterValue, d.Seconds())
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

// Expiry timestamps (unix seconds), so that alerts see a certificate or a CRL run out days
// ahead. Labels are fixed names and configured CA ids, never subjects or serials.
var (
	certExpiryDesc = prometheus.NewDesc("hufu_certificate_expiry_timestamp_seconds",
		"When a certificate hufud depends on expires (its NotAfter, unix seconds). use=\"tls\" with name grpc_server, admin_server (the certificates served now, after any reload) or client_ca (the first of the client CA file's certificates to expire); use=\"ca_root\" or \"ca_issuing\" with name the embedded CA's id.",
		[]string{"use", "name"}, nil)
	crlNextUpdateDesc = prometheus.NewDesc("hufu_ca_crl_next_update_timestamp_seconds",
		"The nextUpdate of the CRL a relying party fetching it now receives (unix seconds), by CA id and level (issuing: the issuing CA's CRL; root: the root's, embedded CAs only). hufud signs a new CRL when half of the current one's validity has passed; if it cannot, this stays at the old CRL's nextUpdate.",
		[]string{"ca", "level"}, nil)
)

// crlScrapeTimeout bounds the CRL a scrape may have to sign (an HSM unwrap and a store
// commit), well inside Prometheus's default 10 s scrape timeout.
const crlScrapeTimeout = 5 * time.Second

// caExpiry is an embedded CA's certificates' NotAfter; they do not change while hufud runs.
type caExpiry struct {
	id            string
	root, issuing time.Time
}

// namedTLS is TLS material reported under name (its client CAs, if any, as client_ca).
type namedTLS struct {
	name string
	m    *tlsMaterial
}

// expiryCollector reports certificate and CRL expiry at scrape time.
type expiryCollector struct {
	cas   []caExpiry
	crlCA []crlLevel
	// crl returns a CA's current CRL as the admin /crl endpoint does: it signs a new one
	// once half of the stored one's validity has passed. A scrape therefore reports what a
	// relying party would get, and an idle appliance whose CRL nobody fetched does not look
	// expired; when signing fails (the HSM cannot unwrap the CA key, the store refuses
	// writes), the last CRL seen is reported and its nextUpdate passes: that is the alert.
	crl func(ctx context.Context, l crlLevel) ([]byte, error)
	tls []namedTLS

	mu      sync.Mutex
	lastCRL map[crlLevel]time.Time
}

// crlLevel names one CRL: a CA and a level (ca.LevelIssuing or ca.LevelRoot).
type crlLevel struct {
	ca    string
	level ca.Level
}

func (c *expiryCollector) Describe(ch chan<- *prometheus.Desc) {
	ch <- certExpiryDesc
	ch <- crlNextUpdateDesc
}

func (c *expiryCollector) Collect(ch chan<- prometheus.Metric) {
	cert := func(use, name string, notAfter time.Time) {
		if !notAfter.IsZero() {
			ch <- prometheus.MustNewConstMetric(certExpiryDesc, prometheus.GaugeValue, float64(notAfter.Unix()), use, name)
		}
	}
	for _, t := range c.tls {
		server, clientCA := t.m.expiry()
		cert("tls", t.name, server)
		cert("tls", "client_ca", clientCA)
	}
	for _, ca := range c.cas {
		cert("ca_root", ca.id, ca.root)
		cert("ca_issuing", ca.id, ca.issuing)
	}
	ctx, cancel := context.WithTimeout(context.Background(), crlScrapeTimeout)
	defer cancel()
	c.mu.Lock()
	defer c.mu.Unlock()
	for _, l := range c.crlCA {
		if next, err := crlNextUpdate(ctx, c.crl, l); err == nil {
			c.lastCRL[l] = next
		}
		// Without any CRL seen yet (the first one could not be signed) the series is
		// absent rather than a made-up time.
		if next, ok := c.lastCRL[l]; ok {
			ch <- prometheus.MustNewConstMetric(crlNextUpdateDesc, prometheus.GaugeValue, float64(next.Unix()), l.ca, string(l.level))
		}
	}
}

func crlNextUpdate(ctx context.Context, crl func(context.Context, crlLevel) ([]byte, error), l crlLevel) (time.Time, error) {
	der, err := crl(ctx, l)
	if err != nil {
		return time.Time{}, err
	}
	list, err := smx509.ParseRevocationList(der)
	if err != nil {
		return time.Time{}, err
	}
	return list.NextUpdate, nil
}

// registerExpiryMetrics registers the expiry collector over the daemon's CAs and TLS
// material; Open calls it once both exist. The collector keeps the pieces themselves, not
// d's fields, which close clears.
func (d *Daemon) registerExpiryMetrics(ctx context.Context) error {
	// The issuing CRL of every CA, as the admin /crl endpoint serves it; the root CRL of
	// the embedded ones.
	certs, embedded := d.certs, d.pki.cas
	c := &expiryCollector{lastCRL: map[crlLevel]time.Time{}, crl: func(ctx context.Context, l crlLevel) ([]byte, error) {
		if l.level == ca.LevelRoot {
			crl, err := embedded[l.ca].CRLAt(ctx, ca.LevelRoot)
			return crl.DER, err
		}
		return certs.CRL(ctx, l.ca)
	}}
	for _, id := range d.certs.CAIDs() {
		c.crlCA = append(c.crlCA, crlLevel{id, ca.LevelIssuing})
		if embedded[id] != nil {
			c.crlCA = append(c.crlCA, crlLevel{id, ca.LevelRoot})
		}
	}
	for _, id := range d.certs.CAIDs() {
		root, issuing, err := ca.Certificates(ctx, d.store, id)
		if errors.Is(err, ca.ErrNoCA) {
			continue // not an embedded CA: its certificates are not ours to watch
		}
		if err != nil {
			return fmt.Errorf("expiry metrics: %w", err)
		}
		c.cas = append(c.cas, caExpiry{id: id, root: root.NotAfter, issuing: issuing.NotAfter})
	}
	c.tls = append(c.tls, namedTLS{"grpc_server", d.tls})
	if d.adm.tls != nil {
		c.tls = append(c.tls, namedTLS{"admin_server", d.adm.tls})
	}
	return d.opts.Registry.Register(c)
}
