package daemon_test

import (
	"crypto/rand"
	"testing"

	hufuv1 "github.com/hufu-hsm/hufu/api/hufu/v1"
	"github.com/hufu-hsm/hufu/daemon/config"
)

// BenchmarkSignOverGRPC is one Sign call through TLS, the gate, the key service and the
// store commit of its records, client and daemon in one process. For the daemon's CPU alone
// use `hufu bench` (scripts/bench.sh); this one is for profiling:
//
//	go test -run '^$' -bench SignOverGRPC -cpuprofile cpu.out ./daemon/
func BenchmarkSignOverGRPC(b *testing.B) {
	for _, size := range []int{1, 32} {
		b.Run(map[int]string{1: "single", 32: "batch-32"}[size], func(b *testing.B) {
			a := startAppliance(b, func(c *config.Config) { c.Keys.TicketUses = 1 << 30 })
			conn, userID := a.verifiedUser(phone, "device-0001")
			pk := createKey(b, conn, userID, "key-bench-01", "123456")
			e := [32]byte{1}
			_, req, _ := pk.share.StartSign(rand.Reader, &pk.public, &e)
			raw, _ := req.MarshalBinary()
			reqs := make([][]byte, size)
			for i := range reqs {
				reqs[i] = raw
			}
			b.ResetTimer()
			b.RunParallel(func(pb *testing.PB) {
				for pb.Next() {
					var err error
					if size == 1 {
						_, err = pk.cosign.Sign(bg, &hufuv1.SignRequest{KeyId: pk.id, Credential: pk.cred, SignRequest: raw})
					} else {
						_, err = pk.cosign.SignBatch(bg, &hufuv1.SignBatchRequest{KeyId: pk.id, Credential: pk.cred, SignRequests: reqs})
					}
					if err != nil {
						b.Error(err)
						return
					}
				}
			})
			b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N*size)/1000, "µs/item")
		})
	}
}
