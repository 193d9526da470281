package enterprises

import "github.com/prometheus/client_golang/prometheus"

// metrics of the enterprise service. Labels are actions only, never enterprises or people.
type metrics struct {
	changes   *prometheus.CounterVec
	transfers *prometheus.CounterVec
}

func newMetrics(reg prometheus.Registerer) *metrics {
	m := &metrics{
		changes: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "hufu_enterprises_changes_total",
			Help: "Enterprise changes by action: claim.submit, claim, join.apply, join.approve, join.return, join.withdraw, invite.create, member.remove, delegation.grant, delegation.accept, delegation.recall, admin.transfer.",
		}, []string{"action"}),
		transfers: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "hufu_enterprises_transfers_total",
			Help: "Corporate-transfer verification events: apply, verify.statement, verify.desk, reject, line.matched, line.partial, line.unmatched, line.duplicate.",
		}, []string{"event"}),
	}
	if reg != nil {
		reg.MustRegister(m.changes, m.transfers)
	}
	return m
}
