package console

import (
	"net/http"
	"strconv"

	dto "github.com/prometheus/client_model/go"
)

type homeData struct {
	Ready   bool
	Checks  []checkRow
	Metrics []metricRow
}

type checkRow struct {
	Name  string
	OK    bool
	Error string
}

type metricRow struct{ Label, Value string }

// keyMetrics are the home screen's few numbers: metric family, label, and how to sum it.
var keyMetrics = []struct{ name, label string }{
	{"hufu_hsm_available", "HSM 可用（1 为可用）"},
	{"hufu_audit_sequence", "审计日志记录数"},
	{"hufu_audit_last_checkpoint_age_seconds", "距上次签名检查点（秒）"},
	{"hufu_grpc_requests_total", "gRPC 请求总数"},
	{"hufu_admin_auth_failures_total", "管理接口认证失败次数"},
	{"hufu_development_mode", "开发模式（1 为开发）"},
}

func (c *Console) home(w http.ResponseWriter, r *http.Request, s *session) {
	d := homeData{Ready: true}
	for _, res := range c.opts.Host.Readiness(r.Context()) {
		row := checkRow{Name: res.Name, OK: res.Err == nil}
		if res.Err != nil {
			d.Ready = false
			row.Error = res.Err.Error()
		}
		d.Checks = append(d.Checks, row)
	}
	fams, err := c.opts.Gatherer.Gather()
	if err != nil {
		c.opts.Log.Warn("console: gathering metrics", "err", err)
	}
	byName := map[string]*dto.MetricFamily{}
	for _, f := range fams {
		byName[f.GetName()] = f
	}
	if f := byName["hufu_build_info"]; f != nil && len(f.Metric) > 0 {
		for _, l := range f.Metric[0].Label {
			if l.GetName() == "version" {
				d.Metrics = append(d.Metrics, metricRow{"版本", l.GetValue()})
			}
		}
	}
	for _, k := range keyMetrics {
		f := byName[k.name]
		if f == nil {
			continue
		}
		var sum float64
		for _, m := range f.Metric {
			switch {
			case m.Counter != nil:
				sum += m.Counter.GetValue()
			case m.Gauge != nil:
				sum += m.Gauge.GetValue()
			}
		}
		d.Metrics = append(d.Metrics, metricRow{k.label, strconv.FormatFloat(sum, 'f', 0, 64)})
	}
	c.render(w, r, http.StatusOK, "home", s, pageData{Title: "首页", Data: d})
}
