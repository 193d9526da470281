// Package auditsink ships the audit log, as it grows, to a SIEM (RFC 5424 syslog over TLS,
// RFC 5425, syslog.go) or to a file of JSON lines (file.go). The store stays the source of
// truth and the only buffer: a sink tails the log from a delivery cursor kept in the store
// (store.SinkCursor), reads at most MaxBuffered records at a time, and moves the cursor only
// after the destination has them (written and flushed to the TLS connection; written and
// fsynced to the file). A sink that is down falls behind and catches up from the store; it
// never drops a record and never holds more than one batch in memory. It reads only up to
// store.DurableHead: a record a crash could still take back never leaves the process.
//
// # Delivery: at least once, exactly once after deduplication
//
// Every record is delivered at least once. A clean stop of the daemon finishes the batch in
// flight and stores the cursor, so a restart sends nothing twice. A crash between a write and
// the cursor's sync sends that batch again. Syslog has no acknowledgements: bytes that TCP
// accepted may still be lost when the connection breaks, so after a broken connection a
// syslog sink sends again the last ReplayOnReconnect records written on it. Receivers
// deduplicate by the sequence number (and chain hash) that each message carries in its
// structured data; the sequence numbers of one log are 1, 2, 3, ... without gaps, so a
// receiver also sees at once when something is missing.
//
// What is shipped is exactly the stored record (the export's JSON line, store.AuditRecordJSON):
// personal data in it is already masked or HMAC'd by the code that appended it.
package auditsink

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sync/atomic"
	"time"

	"github.com/hufu-hsm/hufu/store"
)

// Store is what a sink needs of the store.
type Store interface {
	Head() (uint64, [32]byte)
	DurableHead() uint64
	AuditRecord(ctx context.Context, seq uint64) (*store.Record, error)
	AuditRecords(ctx context.Context, from uint64, limit int) ([]*store.Record, error)
	SinkCursor(ctx context.Context, name string) (store.SinkCursor, error)
	SetSinkCursor(ctx context.Context, name string, c store.SinkCursor) error
}

var _ Store = (*store.Store)(nil)

// transport is one destination.
type transport interface {
	// open connects or opens; it is called before the first write and after a failure.
	open(ctx context.Context) error
	// write delivers recs, in order, and returns once the destination has them as far as
	// the transport can know (flushed to the connection, fsynced to the file).
	write(recs []*store.Record) error
	// lost is closed when the destination is found gone between writes (a receiver that
	// closed the connection); nil if the transport cannot tell.
	lost() <-chan struct{}
	// replay is how many records written before a failure to send again after it.
	replay() int
	close() error
}

// Options configure one sink (the daemon fills them from config.AuditSink).
type Options struct {
	// Name labels the sink's metrics and keys its cursor in the store.
	Name string
	// MaxBuffered bounds the records read and not yet delivered: the largest batch.
	MaxBuffered  int
	PollInterval time.Duration
	MinBackoff   time.Duration
	MaxBackoff   time.Duration
}

// Deps are a sink's collaborators.
type Deps struct {
	Store   Store
	Clock   store.Clock
	Log     *slog.Logger
	Metrics *Metrics
}

// Sink ships the audit log to one destination. Run does the work.
type Sink struct {
	opts Options
	t    transport
	deps Deps

	cursor atomic.Uint64 // the stored cursor's sequence, for the lag metrics
}

// NewSyslog builds a sink that sends RFC 5424 messages over TLS.
func NewSyslog(opts Options, so SyslogOptions, deps Deps) (*Sink, error) {
	t, err := newSyslogTransport(so)
	if err != nil {
		return nil, fmt.Errorf("audit sink %s: %w", opts.Name, err)
	}
	return newSink(opts, t, deps)
}

// NewFile builds a sink that appends JSON lines to the file at path.
func NewFile(opts Options, path string, deps Deps) (*Sink, error) {
	return newSink(opts, &fileTransport{path: path}, deps)
}

func newSink(opts Options, t transport, deps Deps) (*Sink, error) {
	if err := store.ValidPart(opts.Name); err != nil {
		return nil, fmt.Errorf("audit sink name: %w", err)
	}
	if opts.MaxBuffered < 1 || opts.MaxBuffered > store.MaxAuditRange {
		return nil, fmt.Errorf("audit sink %s: MaxBuffered %d outside 1..%d", opts.Name, opts.MaxBuffered, store.MaxAuditRange)
	}
	if opts.PollInterval <= 0 || opts.MinBackoff <= 0 || opts.MaxBackoff < opts.MinBackoff {
		return nil, fmt.Errorf("audit sink %s: PollInterval and MinBackoff must be positive, MaxBackoff at least MinBackoff", opts.Name)
	}
	if deps.Store == nil || deps.Metrics == nil {
		return nil, errors.New("audit sink: Store and Metrics are required")
	}
	if deps.Clock == nil {
		deps.Clock = store.SystemClock{}
	}
	if deps.Log == nil {
		deps.Log = slog.Default()
	}
	deps.Log = deps.Log.With("audit_sink", opts.Name)
	s := &Sink{opts: opts, t: t, deps: deps}
	deps.Metrics.add(s)
	return s, nil
}

// Name is the sink's name.
func (s *Sink) Name() string { return s.opts.Name }

// Run ships records until ctx ends. A batch being written when ctx ends is finished and its
// cursor stored, so that a clean restart sends nothing twice. Errors are logged and counted;
// Run retries with backoff and returns only when ctx ends.
func (s *Sink) Run(ctx context.Context) {
	m := s.deps.Metrics
	defer m.connected.WithLabelValues(s.opts.Name).Set(0)
	cursor, next, ok := s.start(ctx)
	if !ok {
		return
	}
	var (
		failures  int
		open      bool
		connFirst uint64 // first record written on the current connection, 0 for none yet
		replayAt  uint64 // after a failure: where the next connection starts sending again
	)
	fail := func(what string, err error) bool {
		m.errors.WithLabelValues(s.opts.Name).Inc()
		s.deps.Log.Warn("audit sink: "+what, "err", err, "next_seq", next)
		if open {
			_ = s.t.close()
			open = false
			m.connected.WithLabelValues(s.opts.Name).Set(0)
		}
		failures++
		return s.wait(ctx, backoff(s.opts.MinBackoff, s.opts.MaxBackoff, failures), nil)
	}
	defer func() {
		if open {
			_ = s.t.close()
		}
	}()
	for ctx.Err() == nil {
		if !open {
			if err := s.t.open(ctx); err != nil {
				if !fail("cannot open destination", err) {
					return
				}
				continue
			}
			open = true
			m.connected.WithLabelValues(s.opts.Name).Set(1)
			if replayAt != 0 && replayAt < next {
				m.replayed.WithLabelValues(s.opts.Name).Add(float64(next - replayAt))
				next = replayAt
			}
			replayAt, connFirst = 0, 0
		}
		// Only durable records leave the process: a crash could still take back the others
		// and give their sequence numbers to different records.
		head := s.deps.Store.DurableHead()
		if next > head {
			select {
			case <-s.t.lost():
				replayAt = earliest(replayAt, s.replayFrom(connFirst, next))
				if !fail("destination closed the connection", errors.New("connection lost")) {
					return
				}
			default:
				if !s.wait(ctx, s.opts.PollInterval, s.t.lost()) {
					return
				}
			}
			continue
		}
		recs, err := s.deps.Store.AuditRecords(ctx, next, s.opts.MaxBuffered)
		if err != nil || len(recs) == 0 {
			if ctx.Err() != nil {
				return
			}
			if err == nil {
				err = fmt.Errorf("audit record %d is below the head %d but cannot be read", next, head)
			}
			if !fail("reading the audit log", err) {
				return
			}
			continue
		}
		if err := s.t.write(recs); err != nil {
			replayAt = earliest(replayAt, s.replayFrom(connFirst, next))
			if !fail("delivery failed", err) {
				return
			}
			continue
		}
		failures = 0
		if connFirst == 0 {
			connFirst = recs[0].Seq
		}
		last := recs[len(recs)-1]
		next = last.Seq + 1
		if last.Seq <= cursor.Seq {
			continue // a replay: the cursor is already past it
		}
		fresh := last.Seq - max(cursor.Seq, recs[0].Seq-1)
		cursor = store.SinkCursor{Seq: last.Seq, Hash: last.Hash, Time: s.deps.Clock.Now().UnixNano()}
		// The cursor write is not cancelled with ctx: the batch is delivered, and a stop
		// that forgot so would send it again.
		if err := s.deps.Store.SetSinkCursor(context.WithoutCancel(ctx), s.opts.Name, cursor); err != nil {
			m.errors.WithLabelValues(s.opts.Name).Inc()
			s.deps.Log.Error("audit sink: storing the cursor failed; these records will be sent again after a restart",
				"err", err, "seq", cursor.Seq)
		}
		s.cursor.Store(cursor.Seq)
		m.shipped.WithLabelValues(s.opts.Name).Add(float64(fresh))
	}
}

// replayFrom is where sending starts again after the current connection broke: the last
// transport.replay() records written on it (connFirst..next-1), or 0 for none. The batch
// whose write failed is sent again anyway, next has not moved past it.
func (s *Sink) replayFrom(connFirst, next uint64) uint64 {
	n := uint64(s.t.replay())
	if connFirst == 0 || n == 0 {
		return 0
	}
	from := connFirst
	if next > n && next-n > from {
		from = next - n
	}
	return from
}

// start reads the cursor (retrying until the store answers or ctx ends) and checks it
// against the log: a cursor beyond the head or on a record with another hash means the log
// is not the one that was shipped (restored from a backup, or replaced). It returns the
// cursor to continue from and the next sequence number to send.
func (s *Sink) start(ctx context.Context) (store.SinkCursor, uint64, bool) {
	for failures := 1; ; failures++ {
		c, err := s.deps.Store.SinkCursor(ctx, s.opts.Name)
		if err == nil {
			if c, err = s.reconcile(ctx, c); err == nil {
				s.cursor.Store(c.Seq)
				return c, c.Seq + 1, true
			}
		}
		s.deps.Metrics.errors.WithLabelValues(s.opts.Name).Inc()
		s.deps.Log.Error("audit sink: reading the cursor failed", "err", err)
		if !s.wait(ctx, backoff(s.opts.MinBackoff, s.opts.MaxBackoff, failures), nil) {
			return c, 0, false
		}
	}
}

func (s *Sink) reconcile(ctx context.Context, c store.SinkCursor) (store.SinkCursor, error) {
	if c.Seq == 0 {
		return c, nil
	}
	head, headHash := s.deps.Store.Head()
	if c.Seq > head {
		// A restored backup: its records are a prefix of what was shipped, and what comes
		// next reuses sequence numbers the receiver has seen with other hashes.
		s.deps.Log.Error("audit sink: the log is shorter than what was shipped (restored from a backup?); new records reuse shipped sequence numbers, receivers must deduplicate by sequence and hash",
			"cursor_seq", c.Seq, "head", head)
		s.deps.Metrics.errors.WithLabelValues(s.opts.Name).Inc()
		return store.SinkCursor{Seq: head, Hash: headHash, Time: c.Time}, nil
	}
	r, err := s.deps.Store.AuditRecord(ctx, c.Seq)
	if err != nil {
		return c, err
	}
	if r.Hash != c.Hash {
		s.deps.Log.Error("audit sink: the record at the cursor is not the one shipped (the log was replaced); shipping it all again",
			"cursor_seq", c.Seq)
		s.deps.Metrics.errors.WithLabelValues(s.opts.Name).Inc()
		return store.SinkCursor{}, nil
	}
	return c, nil
}

// earliest is the smaller of two replay starts, 0 meaning none.
func earliest(a, b uint64) uint64 {
	if a == 0 || (b != 0 && b < a) {
		return b
	}
	return a
}

// wait sleeps for d or until ctx ends (false) or lost is closed (true).
func (s *Sink) wait(ctx context.Context, d time.Duration, lost <-chan struct{}) bool {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return false
	case <-t.C:
		return true
	case <-lost:
		return true
	}
}

// backoff doubles from lo for each consecutive failure, up to hi.
func backoff(lo, hi time.Duration, failures int) time.Duration {
	d := lo
	for i := 1; i < failures && d < hi; i++ {
		d *= 2
	}
	return min(d, hi)
}
