package store

import (
	"context"
	"fmt"
	"slices"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/cockroachdb/pebble/v2/vfs"

	"github.com/hufu-hsm/hufu/store/storepb"
)

// cpuTime is this process's user+system CPU time: on a shared 2-core machine it is a
// steadier measure of cost than wall time.
func cpuTime() time.Duration {
	u, s := cpuTimes()
	return u + s
}

// cpuTimes splits it into user and system time: a WAL fsync costs kernel time that no
// amount of user-space work can remove.
func cpuTimes() (user, sys time.Duration) {
	var ru syscall.Rusage
	_ = syscall.Getrusage(syscall.RUSAGE_SELF, &ru)
	return time.Duration(ru.Utime.Nano()), time.Duration(ru.Stime.Nano())
}

// typicalChange is a read-modify-write of one record plus its audit record with masked
// details: the shape of most domain operations.
func typicalChange(s *Store, id string) error {
	return s.Update(context.Background(), func(tx *Tx) error {
		ex, err := examples.Get(tx, id)
		if err != nil {
			return err
		}
		ex.Count++
		if err := examples.Put(tx, id, ex); err != nil {
			return err
		}
		return tx.Audit(Event{
			Actor: "user:" + id, Action: "example.increment", Subject: "u/" + id, Outcome: OutcomeOK,
			Details: map[string]string{"phone": "138****0000", "device": "d-42", "ip_hmac": "3f1c9a0b7e2d4c5f"},
		})
	})
}

// BenchmarkCommit measures a typical synced state change plus its audit record with 1, 8
// and 64 concurrent writers on disjoint keys. ops/s should grow with writers: Pebble
// groups the WAL syncs of batches that queue while one sync is in flight.
func BenchmarkCommit(b *testing.B) {
	for _, writers := range []int{1, 8, 64} {
		b.Run(fmt.Sprintf("writers=%d", writers), func(b *testing.B) {
			ts := openTest(b, func(o *Options) { o.CheckpointEvery = 1 << 30; o.CacheSize = 16 << 20 })
			for w := range writers {
				putExample(b, ts.Store, fmt.Sprintf("w%d", w), &storepb.Example{})
			}
			lat := make([][]time.Duration, writers)
			var wg sync.WaitGroup
			b.ResetTimer()
			start := time.Now()
			user0, sys0 := cpuTimes()
			for w := range writers {
				n := b.N / writers
				if w < b.N%writers {
					n++
				}
				wg.Add(1)
				go func() {
					defer wg.Done()
					id := fmt.Sprintf("w%d", w)
					for range n {
						t0 := time.Now()
						if err := typicalChange(ts.Store, id); err != nil {
							b.Error(err)
							return
						}
						lat[w] = append(lat[w], time.Since(t0))
					}
				}()
			}
			wg.Wait()
			elapsed := time.Since(start)
			user1, sys1 := cpuTimes()
			user, sys := user1-user0, sys1-sys0
			b.StopTimer()
			all := slices.Concat(lat...)
			slices.Sort(all)
			if len(all) > 0 {
				b.ReportMetric(float64(len(all))/elapsed.Seconds(), "ops/s")
				b.ReportMetric(float64(all[len(all)/2].Microseconds()), "p50-µs")
				b.ReportMetric(float64(all[len(all)*99/100].Microseconds()), "p99-µs")
				b.ReportMetric(float64(user.Nanoseconds())/float64(len(all)), "user-ns/op")
				b.ReportMetric(float64(sys.Nanoseconds())/float64(len(all)), "sys-ns/op")
			}
		})
	}
}

// BenchmarkAuditAppendCPU is the audit log's own CPU cost per record, excluding Pebble and
// fsync: encoding outside the lock (canonical bytes and stored protobuf) and, under the
// append lock, sequence and time patching, the SM3 chain step and the stored value.
func BenchmarkAuditAppendCPU(b *testing.B) {
	ev := Event{
		Actor: "user:u-123456", Action: "cosign.sign", Subject: "k/key-0001", Outcome: OutcomeOK,
		Details: map[string]string{"phone": "138****0000", "device": "d-42", "e": "9f86d081884c7d659a2feaa0c55ad015"},
	}
	var h [hashSize]byte
	b.ReportAllocs()
	b.ResetTimer()
	cpu0 := cpuTime()
	for i := range b.N {
		p := prepareEvent(&ev)
		seq := uint64(i + 1)
		setCanonicalSeqTime(p.canonical, seq, int64(i))
		h = chainHash(h, p.canonical)
		_ = p.finish(seq, int64(i), &h)
	}
	b.ReportMetric(float64((cpuTime()-cpu0).Nanoseconds())/float64(b.N), "cpu-ns/op")
}

// BenchmarkAppendNoFsync is a whole audited Append through Pebble (WAL write, memtable,
// locks) on an in-memory filesystem, so everything but the fsync is counted.
func BenchmarkAppendNoFsync(b *testing.B) {
	ts := openTest(b, func(o *Options) { o.FS = vfs.NewMem(); o.CheckpointEvery = 1 << 30 })
	ev := Event{Actor: "user:u-1", Action: "cosign.sign", Subject: "k/key-1", Outcome: OutcomeOK,
		Details: map[string]string{"phone": "138****0000"}}
	ctx := context.Background()
	b.ReportAllocs()
	b.ResetTimer()
	cpu0 := cpuTime()
	for range b.N {
		if err := ts.Append(ctx, ev); err != nil {
			b.Fatal(err)
		}
	}
	b.ReportMetric(float64((cpuTime()-cpu0).Nanoseconds())/float64(b.N), "cpu-ns/op")
}
