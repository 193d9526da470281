package ca_test

import (
	"context"
	"runtime"
	"testing"
	"time"
)

// BenchmarkCRL100k builds the issuing CRL of a CA with 100,000 revoked certificates from
// the store: "streaming" is the encoder CRLAt uses, "gmsm" reads the same entries into
// memory and calls smx509.CreateRevocationList, for comparison. Reported per CRL: time,
// bytes and allocations (-benchmem), the CRL's size, and the growth of the heap in use
// across one build (peak-heap-bytes, sampled after it, before a GC).
//
//	go test -run '^$' -bench CRL100k -benchmem -benchtime 5x ./daemon/ca/
func BenchmarkCRL100k(b *testing.B) {
	ctx := context.Background()
	st, kr, c := setup(b)
	e := openCA(b, st, kr, c, 24*time.Hour)
	const n = 100_000
	if err := e.RevokeMany(ctx, n, c.Now()); err != nil {
		b.Fatal(err)
	}
	heapGrowth := func(build func() []byte) (int, float64) {
		runtime.GC()
		var before, after runtime.MemStats
		runtime.ReadMemStats(&before)
		der := build()
		runtime.ReadMemStats(&after)
		return len(der), float64(after.HeapAlloc) - float64(before.HeapAlloc)
	}
	run := func(b *testing.B, build func() []byte) {
		size, peak := heapGrowth(build)
		b.ResetTimer()
		for b.Loop() {
			build()
		}
		b.ReportMetric(float64(size), "crl-bytes")
		b.ReportMetric(peak, "peak-heap-bytes")
	}
	b.Run("streaming", func(b *testing.B) {
		run(b, func() []byte {
			der, err := e.BuildIssuingCRL(ctx, n)
			if err != nil || len(der) == 0 {
				b.Fatal(err)
			}
			return der
		})
	})
	b.Run("gmsm", func(b *testing.B) {
		run(b, func() []byte {
			der, err := e.BuildIssuingCRLWithGmsm(ctx)
			if err != nil || len(der) == 0 {
				b.Fatal(err)
			}
			return der
		})
	})
}
