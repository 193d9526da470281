package auditsink

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/hex"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/hufu-hsm/hufu/daemon/devpki"
	"github.com/hufu-hsm/hufu/store"
	"github.com/prometheus/client_golang/prometheus"
)

var quiet = slog.New(slog.NewTextHandler(io.Discard, nil))

// fakeClock is the store's and the metrics' clock: time moves only when the test says so.
type fakeClock struct {
	mu  sync.Mutex
	now time.Time
}

func (c *fakeClock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.now
}

func (c *fakeClock) Advance(d time.Duration) {
	c.mu.Lock()
	c.now = c.now.Add(d)
	c.mu.Unlock()
}

// appliance is a real Pebble store in a directory that survives reopening, with one sink
// running on it at a time.
type appliance struct {
	t     *testing.T
	dir   string
	clock *fakeClock
	st    *store.Store
	reg   *prometheus.Registry

	cancel context.CancelFunc
	done   chan struct{}
}

func newAppliance(t *testing.T) *appliance {
	a := &appliance{t: t, dir: t.TempDir(), clock: &fakeClock{now: time.Date(2026, 12, 1, 9, 0, 0, 0, time.UTC)}}
	a.open()
	t.Cleanup(a.close)
	return a
}

func (a *appliance) open() {
	a.t.Helper()
	st, err := store.Open(context.Background(), store.Options{Dir: a.dir, Clock: a.clock, CacheSize: 1 << 20, Logger: quiet})
	if err != nil {
		a.t.Fatal(err)
	}
	a.st, a.reg = st, prometheus.NewRegistry()
}

// close stops the sink cleanly and closes the store: a clean stop of hufud.
func (a *appliance) close() {
	a.stopSink()
	if a.st != nil {
		if err := a.st.Close(context.Background()); err != nil {
			a.t.Error(err)
		}
		a.st = nil
	}
}

func (a *appliance) restart() {
	a.close()
	a.open()
}

func (a *appliance) deps() Deps {
	return Deps{Store: a.st, Clock: a.clock, Log: quiet, Metrics: NewMetrics(a.reg, a.st, a.clock)}
}

func (a *appliance) run(s *Sink) {
	ctx, cancel := context.WithCancel(context.Background())
	a.cancel, a.done = cancel, make(chan struct{})
	go func() { defer close(a.done); s.Run(ctx) }()
}

func (a *appliance) stopSink() {
	if a.cancel != nil {
		a.cancel()
		<-a.done
		a.cancel = nil
	}
}

// appendRecords appends n audit records, with details that need escaping in every format.
func (a *appliance) appendRecords(n int) {
	a.t.Helper()
	for range n {
		head, _ := a.st.Head()
		outcome := store.OutcomeOK
		if head%3 == 2 {
			outcome = store.OutcomeDenied
		}
		err := a.st.Append(context.Background(), store.Event{
			Actor: "user:u" + strconv.FormatUint(head, 10), Action: "sink.test", Subject: fmt.Sprintf("k/%d", head+1),
			Outcome: outcome, Details: map[string]string{"quote": `"]\ 中文`, "phone": "138****0000"},
		})
		if err != nil {
			a.t.Fatal(err)
		}
		a.clock.Advance(time.Second)
	}
}

func (a *appliance) metric(name, sink string) float64 {
	a.t.Helper()
	mfs, err := a.reg.Gather()
	if err != nil {
		a.t.Fatal(err)
	}
	for _, mf := range mfs {
		if mf.GetName() != name {
			continue
		}
		for _, m := range mf.GetMetric() {
			if m.GetLabel()[0].GetValue() != sink {
				continue
			}
			if m.GetCounter() != nil {
				return m.GetCounter().GetValue()
			}
			return m.GetGauge().GetValue()
		}
	}
	a.t.Fatalf("no metric %s{sink=%q}", name, sink)
	return 0
}

// waitFor polls cond (a state the sink reaches on its own goroutine) until it holds.
func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(20 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

var fastOptions = Options{Name: "siem", MaxBuffered: 3, PollInterval: 10 * time.Millisecond, MinBackoff: 10 * time.Millisecond, MaxBackoff: 50 * time.Millisecond}

// tlsMaterial is a development PKI: the receiver's certificate and a client certificate.
func tlsMaterial(t *testing.T) (devpki.Files, *tls.Config) {
	t.Helper()
	f, _, err := devpki.Ensure(t.TempDir(), nil, time.Now())
	if err != nil {
		t.Fatal(err)
	}
	pair, err := tls.LoadX509KeyPair(f.ServerCert, f.ServerKey)
	if err != nil {
		t.Fatal(err)
	}
	caPEM, err := os.ReadFile(f.CACert)
	if err != nil {
		t.Fatal(err)
	}
	pool := x509.NewCertPool()
	pool.AppendCertsFromPEM(caPEM)
	return f, &tls.Config{Certificates: []tls.Certificate{pair}, ClientAuth: tls.RequireAndVerifyClientCert, ClientCAs: pool, MinVersion: tls.VersionTLS12}
}

// checkMessages checks that msgs hold records 1..last of st, each exactly as stored, and
// returns how many duplicates there were. Dedupe is by sequence number and hash, as
// docs/operations.md tells receivers to do; order is by first arrival.
func checkMessages(t *testing.T, st *store.Store, msgs []*syslogMessage, last uint64) (dups int) {
	t.Helper()
	seen := map[string]bool{}
	next := uint64(1)
	for _, m := range msgs {
		sd := m.SD[SDID]
		key := sd["seq"] + "/" + sd["hash"]
		if seen[key] {
			dups++
			continue
		}
		seen[key] = true
		seq, err := strconv.ParseUint(sd["seq"], 10, 64)
		if err != nil || seq != next {
			t.Fatalf("after dedupe, record %q arrived where %d was due", sd["seq"], next)
		}
		r, err := st.AuditRecord(context.Background(), seq)
		if err != nil {
			t.Fatal(err)
		}
		want, _ := store.AuditRecordJSON(r)
		if string(m.Msg) != string(want) || sd["hash"] != hex.EncodeToString(r.Hash[:]) {
			t.Fatalf("record %d: message %s, want %s", seq, m.Msg, want)
		}
		if !m.Timestamp.Equal(time.Unix(0, r.Time)) || m.AppName != "hufud" || m.MsgID != "sink.test" || m.Hostname != "hufu-test" {
			t.Fatalf("record %d: header %+v", seq, m)
		}
		wantPRI := 13*8 + 6
		if r.Outcome != store.OutcomeOK {
			wantPRI = 13*8 + 5
		}
		if m.PRI != wantPRI {
			t.Fatalf("record %d (%s): PRI %d, want %d", seq, r.Outcome, m.PRI, wantPRI)
		}
		next++
	}
	if next-1 != last {
		t.Fatalf("got records 1..%d, want 1..%d", next-1, last)
	}
	return dups
}

// TestSyslogSinkDeliversEveryRecordOnceAcrossRestarts is the acceptance test of issue 16: a
// TLS syslog receiver on loopback gets every record exactly once (after dedupe by sequence)
// and in order, across a clean restart of hufu (nothing at all is sent twice), a restart of
// the receiver, and a receiver that hangs up with records unread in its socket buffer.
func TestSyslogSinkDeliversEveryRecordOnceAcrossRestarts(t *testing.T) {
	files, serverTLS := tlsMaterial(t)
	rcv := startReceiver(t, "127.0.0.1:0", serverTLS)
	a := newAppliance(t)
	syslogOpts := func() SyslogOptions {
		return SyslogOptions{Address: rcv.addr, CAFile: files.CACert, CertFile: files.ClientCert, KeyFile: files.ClientKey,
			ServerName: "localhost", Hostname: "hufu-test", Timeout: 5 * time.Second, Replay: 100}
	}
	startSink := func() {
		s, err := NewSyslog(fastOptions, syslogOpts(), a.deps())
		if err != nil {
			t.Fatal(err)
		}
		a.run(s)
	}

	// 1. Records written before the sink starts, and while it runs.
	a.appendRecords(5)
	startSink()
	rcv.waitForSeq(5)
	a.appendRecords(2)
	checkMessages(t, a.st, rcv.waitForSeq(7), 7)
	waitFor(t, "the cursor at 7", func() bool { return a.metric("hufu_auditsink_lag_records", "siem") == 0 })
	if got := a.metric("hufu_auditsink_shipped_records_total", "siem"); got != 7 {
		t.Fatalf("shipped %v records, want 7", got)
	}

	// 2. A clean restart of hufu: the sink resumes at its stored cursor.
	a.restart()
	a.appendRecords(3)
	startSink()
	msgs := rcv.waitForSeq(10)
	if dups := checkMessages(t, a.st, msgs, 10); dups != 0 || len(msgs) != 10 {
		t.Fatalf("after a clean restart of hufu: %d messages with %d duplicates, want 10 and none", len(msgs), dups)
	}

	// 3. The receiver restarts; hufu goes on appending meanwhile and the lag shows it.
	waitFor(t, "the cursor at 10", func() bool { return a.metric("hufu_auditsink_lag_records", "siem") == 0 })
	rcv.stop()
	waitFor(t, "the sink to notice", func() bool { return a.metric("hufu_auditsink_connected", "siem") == 0 })
	a.appendRecords(4)
	a.clock.Advance(30 * time.Second)
	if lag := a.metric("hufu_auditsink_lag_records", "siem"); lag != 4 {
		t.Fatalf("lag %v records while the receiver is down, want 4", lag)
	}
	// Record 11 was appended at t, then three more a second apart, then 30s passed.
	if lag := a.metric("hufu_auditsink_lag_seconds", "siem"); lag != 34 {
		t.Fatalf("lag %v seconds while the receiver is down, want 34", lag)
	}
	// It comes back, but its first connection hangs up after two messages with the rest
	// unread: what the sink wrote after them is lost in transit and must be sent again.
	rcv.closeAfter.Store(2)
	rcv.restart()
	rcv.waitForSeq(14)
	waitFor(t, "the sink to catch up", func() bool { return a.metric("hufu_auditsink_lag_records", "siem") == 0 })
	msgs = rcv.messages()
	dups := checkMessages(t, a.st, msgs, 14)
	if dups == 0 {
		t.Fatalf("no record was sent again after the receiver hung up; the test did not exercise the replay")
	}
	if dups > 100+3 {
		t.Fatalf("%d duplicates: more than the replay window and one batch", dups)
	}
	if errs := a.metric("hufu_auditsink_errors_total", "siem"); errs < 2 {
		t.Fatalf("errors_total %v, want the lost connections counted", errs)
	}
	if got := a.metric("hufu_auditsink_shipped_records_total", "siem"); got != 14-7 {
		t.Fatalf("shipped %v records since the restart, want 7 (replays are counted apart)", got)
	}
	if got := a.metric("hufu_auditsink_replayed_records_total", "siem"); got == 0 {
		t.Fatalf("replayed_records_total is 0")
	}
}

// TestSyslogSinkRefusesAnUntrustedReceiver: the receiver's certificate must chain to ca_file
// and name server_name; nothing is sent to an impostor and the cursor does not move.
func TestSyslogSinkRefusesAnUntrustedReceiver(t *testing.T) {
	files, serverTLS := tlsMaterial(t)
	serverTLS.ClientAuth = tls.NoClientCert
	rcv := startReceiver(t, "127.0.0.1:0", serverTLS)
	other, _ := tlsMaterial(t) // another CA
	a := newAppliance(t)
	a.appendRecords(3)
	for _, tc := range []struct{ name, ca, serverName string }{
		{"another CA", other.CACert, "localhost"},
		{"another name", files.CACert, "siem.example"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			a.reg = prometheus.NewRegistry()
			s, err := NewSyslog(fastOptions, SyslogOptions{Address: rcv.addr, CAFile: tc.ca, ServerName: tc.serverName,
				Timeout: 5 * time.Second}, a.deps())
			if err != nil {
				t.Fatal(err)
			}
			a.run(s)
			waitFor(t, "a refused handshake", func() bool { return a.metric("hufu_auditsink_errors_total", "siem") >= 2 })
			a.stopSink()
			if rcv.handshakeErrs.Load() == 0 {
				t.Fatal("the receiver saw no failed handshake")
			}
			if n := len(rcv.messages()); n != 0 {
				t.Fatalf("an untrusted receiver got %d messages", n)
			}
			if c, _ := a.st.SinkCursor(context.Background(), "siem"); c.Seq != 0 {
				t.Fatalf("cursor moved to %d", c.Seq)
			}
		})
	}
}

// batchRecorder wraps the real file transport and remembers each batch's size: how the
// test sees that a sink never holds more than MaxBuffered records.
type batchRecorder struct {
	transport
	mu    sync.Mutex
	sizes []int
}

func (b *batchRecorder) write(recs []*store.Record) error {
	b.mu.Lock()
	b.sizes = append(b.sizes, len(recs))
	b.mu.Unlock()
	return b.transport.write(recs)
}

func readLines(t *testing.T, path string) []string {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	if len(b) == 0 {
		return nil
	}
	if b[len(b)-1] != '\n' {
		t.Fatalf("%s ends in half a line", path)
	}
	return strings.Split(strings.TrimSuffix(string(b), "\n"), "\n")
}

func wantLines(t *testing.T, st *store.Store, lines []string, from uint64) {
	t.Helper()
	for i, line := range lines {
		r, err := st.AuditRecord(context.Background(), from+uint64(i))
		if err != nil {
			t.Fatal(err)
		}
		want, _ := store.AuditRecordJSON(r)
		if line != string(want) {
			t.Fatalf("line %d: %s\nwant %s", i+1, line, want)
		}
	}
}

// TestFileSinkAppendsBoundedBatchesFollowsRotationAndResumes: one record per line exactly as
// exported, batches of at most MaxBuffered records, a rotated file is reopened, and a clean
// restart appends nothing twice.
func TestFileSinkAppendsBoundedBatchesFollowsRotationAndResumes(t *testing.T) {
	a := newAppliance(t)
	path := filepath.Join(t.TempDir(), "audit.jsonl")
	opts := fastOptions
	opts.Name = "archive"
	start := func() *batchRecorder {
		s, err := NewFile(opts, path, a.deps())
		if err != nil {
			t.Fatal(err)
		}
		rec := &batchRecorder{transport: s.t}
		s.t = rec
		a.run(s)
		return rec
	}
	lag := func() float64 { return a.metric("hufu_auditsink_lag_records", "archive") }

	a.appendRecords(10)
	rec := start()
	waitFor(t, "10 records in the file", func() bool { return lag() == 0 })
	lines := readLines(t, path)
	if len(lines) != 10 {
		t.Fatalf("%d lines, want 10", len(lines))
	}
	wantLines(t, a.st, lines, 1)
	rec.mu.Lock()
	for _, n := range rec.sizes {
		if n > opts.MaxBuffered {
			t.Errorf("a batch of %d records; MaxBuffered is %d", n, opts.MaxBuffered)
		}
	}
	rec.mu.Unlock()
	if a.metric("hufu_auditsink_connected", "archive") != 1 {
		t.Fatal("connected is not 1 for an open file")
	}

	// logrotate moves the file away; the next batch goes to a new file at the path.
	if err := os.Rename(path, path+".1"); err != nil {
		t.Fatal(err)
	}
	a.appendRecords(2)
	waitFor(t, "2 records in the new file", func() bool { return lag() == 0 })
	wantLines(t, a.st, readLines(t, path), 11)
	if n := len(readLines(t, path+".1")); n != 10 {
		t.Fatalf("the rotated file has %d lines, want its 10", n)
	}

	a.restart()
	a.appendRecords(3)
	start()
	waitFor(t, "3 more records", func() bool { return lag() == 0 })
	lines = readLines(t, path)
	if len(lines) != 5 {
		t.Fatalf("%d lines after a clean restart, want 5 (2 before, 3 after, none twice)", len(lines))
	}
	wantLines(t, a.st, lines, 11)
}

// TestSinkCursorThatDoesNotMatchTheLog: after a restore from an older backup the cursor is
// beyond the head, and after the log is replaced the record at the cursor has another hash.
func TestSinkCursorThatDoesNotMatchTheLog(t *testing.T) {
	ctx := context.Background()
	for _, tc := range []struct {
		name      string
		cursor    func(head uint64, r *store.Record) store.SinkCursor
		firstLine uint64
	}{
		{"beyond the head", func(head uint64, _ *store.Record) store.SinkCursor { return store.SinkCursor{Seq: head + 50} }, 5},
		{"another hash", func(_ uint64, r *store.Record) store.SinkCursor {
			c := store.SinkCursor{Seq: r.Seq, Hash: r.Hash}
			c.Hash[0] ^= 1
			return c
		}, 1},
	} {
		t.Run(tc.name, func(t *testing.T) {
			a := newAppliance(t)
			a.appendRecords(4)
			head, _ := a.st.Head()
			r, err := a.st.AuditRecord(ctx, 2)
			if err != nil {
				t.Fatal(err)
			}
			if err := a.st.SetSinkCursor(ctx, "archive", tc.cursor(head, r)); err != nil {
				t.Fatal(err)
			}
			path := filepath.Join(t.TempDir(), "audit.jsonl")
			opts := fastOptions
			opts.Name = "archive"
			s, err := NewFile(opts, path, a.deps())
			if err != nil {
				t.Fatal(err)
			}
			a.run(s)
			// The sink checks its cursor before it opens the file; then hufu appends.
			waitFor(t, "the file open", func() bool { return a.metric("hufu_auditsink_connected", "archive") == 1 })
			a.appendRecords(2)
			waitFor(t, "the sink to catch up", func() bool { return a.metric("hufu_auditsink_lag_records", "archive") == 0 })
			lines := readLines(t, path)
			wantLines(t, a.st, lines, tc.firstLine)
			if last := tc.firstLine + uint64(len(lines)) - 1; last != 6 {
				t.Fatalf("shipped %d..%d, want %d..6", tc.firstLine, last, tc.firstLine)
			}
			if a.metric("hufu_auditsink_errors_total", "archive") != 1 {
				t.Fatal("the mismatch was not counted as an error")
			}
		})
	}
}

func TestBackoffDoublesUpToTheBound(t *testing.T) {
	for _, tc := range []struct {
		failures int
		want     time.Duration
	}{{1, time.Second}, {2, 2 * time.Second}, {4, 8 * time.Second}, {7, time.Minute}, {1000, time.Minute}} {
		if got := backoff(time.Second, time.Minute, tc.failures); got != tc.want {
			t.Errorf("backoff after %d failures = %s, want %s", tc.failures, got, tc.want)
		}
	}
}
