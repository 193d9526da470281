package store

import (
	"time"

	dto "github.com/prometheus/client_model/go"
)

// WALSyncs reports how many times the write-ahead log was synced since the store opened and
// the time those syncs took. Every commit waits for a sync, but one sync covers every commit
// written before it, so syncs per commit is the share of durability each commit pays — the
// figure `hufu bench` subtracts to find the per-call overhead. Zero on a closed store.
func (s *Store) WALSyncs() (count uint64, total time.Duration) {
	s.ops.RLock()
	defer s.ops.RUnlock()
	if s.closed {
		return 0, 0
	}
	h := s.db.Metrics().LogWriter.FsyncLatency
	if h == nil {
		return 0, 0
	}
	var m dto.Metric
	if err := h.Write(&m); err != nil || m.Histogram == nil {
		return 0, 0
	}
	// Pebble observes each sync's latency in nanoseconds.
	return m.Histogram.GetSampleCount(), time.Duration(m.Histogram.GetSampleSum())
}
