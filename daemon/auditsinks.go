package daemon

import (
	"context"
	"fmt"
	"sync"

	"github.com/hufu-hsm/hufu/daemon/auditsink"
	"github.com/hufu-hsm/hufu/daemon/config"
)

// buildAuditSinks builds the sinks of audit.sinks (package auditsink): each tails the audit
// log from its cursor in the store once Serve starts them.
func (d *Daemon) buildAuditSinks() error {
	metrics := auditsink.NewMetrics(d.opts.Registry, d.store, d.opts.Clock)
	for _, c := range d.cfg.Audit.Sinks {
		c = c.WithDefaults()
		opts := auditsink.Options{
			Name: c.Name, MaxBuffered: c.MaxBufferedRecords, PollInterval: c.PollInterval.Std(),
			MinBackoff: c.MinBackoff.Std(), MaxBackoff: c.MaxBackoff.Std(),
		}
		deps := auditsink.Deps{Store: d.store, Clock: d.opts.Clock, Log: d.opts.Log, Metrics: metrics}
		var (
			s   *auditsink.Sink
			err error
		)
		switch c.Kind {
		case config.AuditSinkSyslog:
			s, err = auditsink.NewSyslog(opts, auditsink.SyslogOptions{
				Address: c.Address, CAFile: c.CAFile, CertFile: c.CertFile, KeyFile: c.KeyFile,
				ServerName: c.ServerName, Hostname: c.Hostname, Timeout: c.WriteTimeout.Std(), Replay: c.ReplayOnReconnect,
			}, deps)
		case config.AuditSinkFile:
			s, err = auditsink.NewFile(opts, c.Path, deps)
		default:
			err = fmt.Errorf("audit sink %s: unknown kind %q", c.Name, c.Kind)
		}
		if err != nil {
			return err
		}
		d.auditSinks = append(d.auditSinks, s)
	}
	return nil
}

// runAuditSinks starts every sink on background. A sink stops when ctx ends, after the
// batch it is writing, so the store must stay open until background is done.
func (d *Daemon) runAuditSinks(ctx context.Context, background *sync.WaitGroup) {
	for _, s := range d.auditSinks {
		background.Go(func() { s.Run(ctx) })
	}
}
