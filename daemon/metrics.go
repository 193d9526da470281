package daemon

import (
	"github.com/prometheus/client_golang/prometheus"
)

// rpcMetrics are the per-method gRPC metrics. Labels are method names and status codes only:
// never user ids, phone numbers or serials.
type rpcMetrics struct {
	requests *prometheus.CounterVec
	duration *prometheus.HistogramVec
}

func newRPCMetrics(reg prometheus.Registerer) *rpcMetrics {
	m := &rpcMetrics{
		requests: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "hufu_grpc_requests_total",
			Help: "gRPC requests handled, by full method name and status code.",
		}, []string{"method", "code"}),
		duration: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name:    "hufu_grpc_request_duration_seconds",
			Help:    "gRPC request latency, by full method name.",
			Buckets: []float64{.0001, .00025, .0005, .001, .0025, .005, .01, .025, .05, .1, .25, .5, 1, 2.5},
		}, []string{"method"}),
	}
	reg.MustRegister(m.requests, m.duration)
	return m
}
