package daemon

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"slices"
	"sync"

	"github.com/hufu-hsm/hufu/admin"
	"github.com/hufu-hsm/hufu/daemon/ca"
	"github.com/hufu-hsm/hufu/daemon/config"
	"github.com/hufu-hsm/hufu/store"
	"github.com/prometheus/client_golang/prometheus"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
)

// The daemon's side of the admin HTTP surface (package admin): building it from the
// configuration and the opened keyring and store, its listener, and its lifetime inside
// Serve. Kept apart from daemon.go, which calls into it at four points.

type adminSurface struct {
	hsmMetrics   *hsmMetrics
	storeMetrics *storeMetrics

	server   *admin.Server
	systems  *systemClients
	healthy  []admin.Check // the HSM and store probes
	tls      *tlsMaterial  // nil: plain HTTP on loopback
	mu       sync.Mutex
	listener net.Listener
	done     chan error
}

// newMetrics registers the daemon-level metrics; it runs before the keyring and the store
// open, so that they report into the registry from their first operation.
func (a *adminSurface) newMetrics(reg *prometheus.Registry) {
	registerProcessMetrics(reg)
	a.hsmMetrics = newHSMMetrics(reg)
	a.storeMetrics = newStoreMetrics(reg)
}

// adminTokens converts the configured token lines.
func adminTokens(cfg config.Admin) ([]admin.Token, error) {
	out := make([]admin.Token, 0, len(cfg.Tokens))
	for _, t := range cfg.Tokens {
		h, err := admin.ParseTokenHash(t.SHA256)
		if err != nil {
			return nil, fmt.Errorf("admin token %q: %w", t.Name, err)
		}
		out = append(out, admin.Token{Name: t.Name, Role: admin.Role(t.Role), SHA256: h})
	}
	return out, nil
}

func (d *Daemon) buildAdmin() error {
	a := &d.adm
	tokens, err := adminTokens(d.cfg.Admin)
	if err != nil {
		return err
	}
	registerAuditMetrics(d.opts.Registry, d.store, d.opts.Clock)
	if err := d.opts.Registry.Register(walSyncCollector{d.store}); err != nil {
		return err
	}
	if err := d.opts.Registry.Register(issuingCAs{d}); err != nil {
		return err
	}
	a.systems = &systemClients{d: d}
	if err := a.systems.load(context.Background()); err != nil {
		return err
	}
	// A backup cut short by a crash leaves its scratch copy; nothing else uses the directory.
	if err := os.RemoveAll(filepath.Join(d.cfg.DataDir, "backup-scratch")); err != nil {
		return fmt.Errorf("admin: clearing the backup scratch directory: %w", err)
	}
	st, kr := d.store, d.keyring
	// The probes hold the keyring and the store themselves (not d's fields, which close
	// clears), so a probe racing a stop gets a "closed" error rather than a nil pointer.
	a.healthy = []admin.Check{
		{Name: "hsm", Probe: kr.Health},
		// Failed, or short of its free-space margin (and so refusing writes).
		{Name: "store", Probe: func(context.Context) error { return st.Health() }},
	}
	a.server, err = admin.New(admin.Options{
		Tokens: tokens, Store: st, Registerer: d.opts.Registry, AuditKeyPEM: kr.AuditSigner().PublicKeyPEM, Gatherer: d.opts.Registry,
		Checks: append(slices.Clone(a.healthy),
			// The gRPC health service's overall status: it also turns NOT_SERVING while a
			// stopping daemon drains its calls, when the HSM and the store are still fine.
			admin.Check{Name: "grpc", Probe: func(ctx context.Context) error {
				resp, err := d.health.Check(ctx, &healthpb.HealthCheckRequest{})
				if err != nil {
					return err
				}
				if resp.Status != healthpb.HealthCheckResponse_SERVING {
					return fmt.Errorf("gRPC health is %v", resp.Status)
				}
				return nil
			}},
		),
		KEKs: kr, SystemClients: a.systems, IssuingCAs: issuingCAs{d},
		Rewrappers: []admin.Rewrapper{
			{Name: "keys", RewrapAll: d.keys.RewrapAll, CountStale: d.keys.CountStaleBlobs},
			{Name: "accounts", RewrapAll: d.accounts.RewrapAll, CountStale: d.accounts.CountStaleBlobs},
			{Name: "cards", RewrapAll: d.cards.RewrapAll, CountStale: d.cards.CountStaleBlobs},
			{Name: "enterprises", RewrapAll: d.enterprises.RewrapAll, CountStale: d.enterprises.CountStaleBlobs},
			{Name: "scan", RewrapAll: d.scan.RewrapAll, CountStale: d.scan.CountStaleBlobs},
			{Name: "ca", RewrapAll: func(ctx context.Context, actor string, stale func([]byte) bool, rewrap func(context.Context, []byte, []byte) ([]byte, error), progress func(int, int)) (int, error) {
				return ca.RewrapAll(ctx, st, actor, stale, rewrap, progress)
			}, CountStale: func(ctx context.Context, stale func([]byte) bool) (int, error) {
				return ca.CountStaleBlobs(ctx, st, stale)
			}},
		},
		ErasureInterval: d.cfg.Keys.Erasure.Interval.Std(),
		CRL: func(ctx context.Context, caID string) ([]byte, error) {
			if !slices.Contains(d.CAIDs(), caID) {
				return nil, admin.ErrNoSuchCA
			}
			return d.CRL(ctx, caID)
		},
		Callbacks: d.providerCallbacks(),
		Console:   d.consoleBuilder(), // console.go
		BackupKey: d.keyring,
		BackupDir: filepath.Join(d.cfg.DataDir, "backup-scratch"),
		Clock:     d.opts.Clock, Log: d.opts.Log.With("surface", "admin"),
	})
	if err != nil {
		return err
	}
	if d.cfg.Admin.CertFile != "" {
		if a.tls, err = newTLSMaterial(d.cfg.Admin.CertFile, d.cfg.Admin.KeyFile, "", d.cfg.TLS.MinVersion); err != nil {
			return fmt.Errorf("admin: %w", err)
		}
	}
	return nil
}

// Healthy probes the HSM and the store, like readiness, and is safe to call while the
// daemon stops (hufud's systemd watchdog uses it, so an error here gets the process
// restarted). A store short of disk space is not reported: the process recovers from that
// by itself once space is freed (the monitor reopens a failed store), while a restart
// would fail on the full disk and take /metrics and the admin surface away meanwhile.
func (d *Daemon) Healthy(ctx context.Context) error {
	for _, c := range d.adm.healthy {
		if err := c.Probe(ctx); err != nil {
			if errors.Is(err, store.ErrNoSpace) {
				continue
			}
			return fmt.Errorf("%s: %w", c.Name, err)
		}
	}
	return nil
}

// serverOnlyConfig is a TLS configuration without client certificates (admin callers
// authenticate with bearer tokens), taking the current certificate at each handshake.
func (m *tlsMaterial) serverOnlyConfig() *tls.Config {
	return &tls.Config{
		MinVersion: m.minVersion,
		NextProtos: []string{"h2", "http/1.1"},
		GetCertificate: func(*tls.ClientHelloInfo) (*tls.Certificate, error) {
			m.mu.RLock()
			defer m.mu.RUnlock()
			return m.cert, nil
		},
	}
}

func (d *Daemon) listenAdmin() error {
	l, err := net.Listen("tcp", d.cfg.Admin.Listen)
	if err != nil {
		return fmt.Errorf("admin listener (admin.listen %s): %w", d.cfg.Admin.Listen, err)
	}
	if d.adm.tls != nil {
		l = tls.NewListener(l, d.adm.tls.serverOnlyConfig())
	}
	d.adm.mu.Lock()
	d.adm.listener = l
	d.adm.mu.Unlock()
	return nil
}

// AdminAddr is the admin listener's address (after Listen), or nil.
func (d *Daemon) AdminAddr() net.Addr {
	d.adm.mu.Lock()
	defer d.adm.mu.Unlock()
	if d.adm.listener == nil {
		return nil
	}
	return d.adm.listener.Addr()
}

// serveAdmin starts the admin server on its listener (binding it if Listen was not
// called). A failing admin listener does not stop the appliance: it is logged.
func (d *Daemon) serveAdmin() error {
	d.adm.mu.Lock()
	l := d.adm.listener
	d.adm.mu.Unlock()
	if l == nil {
		if err := d.listenAdmin(); err != nil {
			return err
		}
		l = d.adm.listener
	}
	d.adm.done = make(chan error, 1)
	// The erasure schedule (keys.erasure.interval) is the admin surface's background work:
	// Close stops it with the rotation job, before the store and the keyring close.
	d.adm.server.StartErasureSchedule()
	go func() {
		err := d.adm.server.Serve(l)
		if err != nil {
			d.opts.Log.Error("admin server stopped", "err", err)
		}
		d.adm.done <- err
	}()
	d.opts.Log.Info("admin surface", "addr", l.Addr().String(), "tls", d.adm.tls != nil, "tokens", len(d.cfg.Admin.Tokens))
	return nil
}

// closeAdmin stops the admin server and its background work (a KEK rotation job), which
// must end before the store and keyring close.
func (d *Daemon) closeAdmin(ctx context.Context) {
	if d.adm.server == nil {
		return
	}
	// A long export, backup or profile gets the same grace as gRPC calls, then is cut.
	ctx, cancel := context.WithTimeout(ctx, d.cfg.GRPC.ShutdownGrace.Std())
	defer cancel()
	if err := d.adm.server.Close(ctx); err != nil && !errors.Is(err, context.Canceled) {
		d.opts.Log.Error("closing the admin server", "err", err)
	}
	if d.adm.done != nil {
		<-d.adm.done
		d.adm.done = nil
	}
	d.adm.mu.Lock()
	if d.adm.listener != nil {
		_ = d.adm.listener.Close()
		d.adm.listener = nil
	}
	d.adm.mu.Unlock()
}

func (d *Daemon) reloadAdminTLS() error {
	if d.adm.tls == nil {
		return nil
	}
	return d.adm.tls.reload()
}
