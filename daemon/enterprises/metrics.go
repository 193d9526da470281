package enterprises

import "github.com/prometheus/client_golang/prometheus"

// metrics of the enterprise service. Labels are actions only, never enterprises or people.
type metrics struct {
	changes *prometheus.CounterVec
}

func newMetrics(reg prometheus.Registerer) *metrics {
	m := &metrics{
		changes: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "hufu_enterprises_changes_total",
			Help: "Enterprise changes by action: claim.submit, claim, join.apply, join.approve, join.return, join.withdraw, invite.create, member.remove, delegation.grant, delegation.accept, delegation.recall, admin.transfer.",
		}, []string{"action"}),
	}
	if reg != nil {
		reg.MustRegister(m.changes)
	}
	return m
}
