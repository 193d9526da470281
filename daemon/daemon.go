// Package daemon is the hufu appliance: it resolves the configuration, opens the HSM keyring
// and the store, wires the domain services, and serves them over gRPC with mutual TLS for
// systems, access tokens for people, the standard health service and (grpc.reflection)
// server reflection. Domain
// services live in subpackages and register themselves with their authentication policy;
// this package holds only the wiring and the one gate every call passes (interceptors.go).
package daemon

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"path/filepath"
	"sync"
	"sync/atomic"
	"time"

	"github.com/cockroachdb/pebble/v2/vfs"
	"github.com/hufu-hsm/hufu/daemon/accounts"
	"github.com/hufu-hsm/hufu/daemon/attachments"
	"github.com/hufu-hsm/hufu/daemon/auditsink"
	"github.com/hufu-hsm/hufu/daemon/authn"
	"github.com/hufu-hsm/hufu/daemon/certs"
	"github.com/hufu-hsm/hufu/daemon/commerce/aftersales"
	"github.com/hufu-hsm/hufu/daemon/commerce/cards"
	"github.com/hufu-hsm/hufu/daemon/commerce/invoices"
	"github.com/hufu-hsm/hufu/daemon/commerce/payments"
	"github.com/hufu-hsm/hufu/daemon/commerce/support"
	"github.com/hufu-hsm/hufu/daemon/commerce/wallet"
	"github.com/hufu-hsm/hufu/daemon/config"
	"github.com/hufu-hsm/hufu/daemon/devpki"
	"github.com/hufu-hsm/hufu/daemon/enterprises"
	"github.com/hufu-hsm/hufu/daemon/keys"
	"github.com/hufu-hsm/hufu/daemon/openings"
	"github.com/hufu-hsm/hufu/daemon/scan"
	"github.com/hufu-hsm/hufu/daemon/seals"
	"github.com/hufu-hsm/hufu/hsm"
	"github.com/hufu-hsm/hufu/softhsm"
	"github.com/hufu-hsm/hufu/store"
	"github.com/prometheus/client_golang/prometheus"
	"google.golang.org/grpc"
	"google.golang.org/grpc/health"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
	"google.golang.org/grpc/keepalive"
	"google.golang.org/grpc/reflection"
)

// Options are the process-level collaborators the daemon does not build itself.
type Options struct {
	Log      *slog.Logger
	Registry *prometheus.Registry // private registry; a new one if nil
	Clock    store.Clock          // the wall clock if nil
	// HealthInterval is how often the HSM and the store are probed (and a failed store
	// reopened); default 5s.
	HealthInterval time.Duration
	// StoreFS is the filesystem under the store; tests inject faults through it. Default:
	// the operating system's.
	StoreFS vfs.FS
	// IssuanceFault, for tests only, is called at the fault-injection points of issuance
	// (certs.FaultIssuingReserved, certs.FaultIssuingSigned), so a crash test can stop the
	// process between reserving, signing and recording a certificate. Nil in production.
	IssuanceFault func(point string)
}

// Daemon is a configured, opened appliance ready to serve.
type Daemon struct {
	cfg  config.Config
	opts Options
	// undecodable holds the codec's notes of requests that did not decode (decoding.go).
	undecodable *undecodable
	keyring     *hsm.Keyring
	store       *store.Store
	accounts    *accounts.Service
	keys        *keys.Service
	certs       *certs.Service
	// enterprises and seals are built with the certificates (certificates.go).
	enterprises *enterprises.Service
	seals       *seals.Service
	attachments *attachments.Service
	payments    *payments.Service // daemon/payments.go
	scan        *scan.Service
	openings    *openings.Service
	invoices    *invoices.Service   // invoices.go
	cards       *cards.Service      // cards.go
	support     *support.Service    // support.go
	wallet      *wallet.Service     // wallet.go
	aftersales  *aftersales.Service // aftersales.go
	auditSinks  []*auditsink.Sink   // auditsinks.go
	tls         *tlsMaterial
	server      *grpc.Server
	health      *health.Server

	mu       sync.Mutex
	listener net.Listener
	draining atomic.Bool // set when a stop begins; the health monitor then stands down
	// startRecorded: daemon.start is in the audit log, so close records daemon.stop
	// (lifecycle.go).
	startRecorded bool

	adm       adminSurface // admin HTTP surface and daemon-level metrics (admin.go)
	pki       pkiSurface   // the public PKI listener (pki.go)
	json      jsonSurface  // the JSON/HTTP gateway, if listen.json is set (json.go)
	providers *providers   // SMS, identity, login and payment (providers.go)
	// systemServices are the services with a method for system clients: only those may be
	// granted to one (systems.go).
	systemServices map[string]bool
}

// Resolve fills in the development defaults that depend on the data directory: the
// SoftHSM2 module and PIN file, the TLS material written by Init, the SMS outbox. A
// production configuration names all of them explicitly.
func Resolve(cfg config.Config) (config.Config, error) {
	if !cfg.Development {
		return cfg, nil
	}
	var err error
	if cfg.HSM.Module == "" {
		if cfg.HSM.Module, err = softhsm.FindModule(""); err != nil {
			return cfg, err
		}
		if cfg.HSM.PINFile == "" {
			cfg.HSM.PINFile = filepath.Join(softhsmDir(cfg), cfg.HSM.TokenLabel+".pin")
		}
	}
	tlsFiles := devpki.FilesIn(filepath.Join(cfg.DataDir, "tls"))
	if cfg.TLS.CertFile == "" {
		cfg.TLS.CertFile, cfg.TLS.KeyFile = tlsFiles.ServerCert, tlsFiles.ServerKey
		if cfg.TLS.ClientCAFile == "" {
			cfg.TLS.ClientCAFile = tlsFiles.CACert
		}
	}
	if cfg.Account.DevOutbox == "" {
		cfg.Account.DevOutbox = filepath.Join(cfg.DataDir, "dev-sms.jsonl")
	}
	return cfg, nil
}

// mode is what /readyz?verbose reports the appliance runs as.
func mode(cfg config.Config) string {
	if cfg.Development {
		return "development"
	}
	return "production"
}

func softhsmDir(cfg config.Config) string { return filepath.Join(cfg.DataDir, "softhsm") }

// usesDevSoftHSM reports whether the daemon manages its own SoftHSM2 token in the data
// directory (development without an explicit module).
func usesDevSoftHSM(cfg config.Config) bool {
	return cfg.Development && filepath.Dir(cfg.HSM.PINFile) == softhsmDir(cfg)
}

// checkSystemSoftHSM: when the configured module is SoftHSM2 (a site without a hardware
// HSM), its configuration must be readable and its token directory present and usable, or
// hufud stops with an error naming the file instead of the module's CKR_GENERAL_ERROR.
func checkSystemSoftHSM(cfg config.Config) error {
	if !softhsm.IsModule(cfg.HSM.Module) {
		return nil
	}
	_, err := softhsm.CheckSystemTokenDir()
	return err
}

func hsmConfig(cfg config.Config, metrics hsm.Metrics) hsm.Config {
	return hsm.Config{
		ModulePath: cfg.HSM.Module, TokenLabel: cfg.HSM.TokenLabel, TokenSerial: cfg.HSM.TokenSerial,
		PINFile: cfg.HSM.PINFile, KEKPrefix: cfg.HSM.KEKPrefix, MaxSessions: cfg.HSM.MaxSessions,
		PoolWaitTimeout: cfg.HSM.PoolWaitTimeout.Std(), Metrics: metrics,
		ReopenBackoff: cfg.HSM.ReopenBackoff.Std(), ReopenMaxBackoff: cfg.HSM.ReopenMaxBackoff.Std(),
	}
}

// Init prepares a fresh appliance: the data directory, (in development) a SoftHSM2 token and
// TLS material, and the HSM keys. It is idempotent and never overwrites keys: on a token that
// already has them it reports so and changes nothing. cfg must be resolved.
func Init(ctx context.Context, cfg config.Config, now time.Time) ([]string, error) {
	var done []string
	if err := privateDataDir(cfg.DataDir); err != nil {
		return done, err
	}
	if usesDevSoftHSM(cfg) {
		tok, err := softhsm.Provision(softhsm.Options{Dir: softhsmDir(cfg), Label: cfg.HSM.TokenLabel, ModulePath: cfg.HSM.Module})
		if err != nil {
			return done, err
		}
		if tok.Created {
			done = append(done, "created SoftHSM2 token "+tok.Label+" in "+softhsmDir(cfg))
		}
	} else if err := checkSystemSoftHSM(cfg); err != nil {
		return done, err
	}
	kr, err := hsm.Initialize(ctx, hsmConfig(cfg, nil))
	switch {
	case errors.Is(err, hsm.ErrAlreadyInitialized):
		kr, err = hsm.Open(ctx, hsmConfig(cfg, nil))
		if err != nil {
			return done, fmt.Errorf("the token has some hufu keys but not all: %w", err)
		}
		done = append(done, "HSM keys already present; left unchanged")
	case err != nil:
		return done, err
	default:
		done = append(done, "created HSM keys: "+kr.CurrentKEK()+", PIN verifier key, audit signing key")
	}
	created, err := ensureCAs(ctx, cfg, kr)
	done = append(done, created...)
	kr.Close()
	if err != nil {
		return done, err
	}
	if cfg.Development {
		_, created, err := devpki.Ensure(filepath.Join(cfg.DataDir, "tls"), nil, now)
		if err != nil {
			return done, err
		}
		for _, f := range created {
			done = append(done, "wrote "+f)
		}
	}
	return done, nil
}

// Open opens the HSM keyring and the store and builds the services. cfg must be resolved
// and valid.
func Open(ctx context.Context, cfg config.Config, opts Options) (_ *Daemon, err error) {
	if opts.Log == nil {
		opts.Log = slog.Default()
	}
	if opts.Registry == nil {
		opts.Registry = prometheus.NewRegistry()
	}
	if opts.Clock == nil {
		opts.Clock = store.SystemClock{}
	}
	if opts.HealthInterval == 0 {
		opts.HealthInterval = 5 * time.Second
	}
	d := &Daemon{cfg: cfg, opts: opts}
	if cfg.Development {
		opts.Log.Warn("DEVELOPMENT MODE: dev SMS outbox, test identities and logins accepted; not for production",
			"sms_outbox", cfg.Account.DevOutbox)
	}
	defer func() {
		if err != nil {
			d.close(context.Background())
		}
	}()
	if err := privateDataDir(cfg.DataDir); err != nil {
		return nil, err
	}
	if usesDevSoftHSM(cfg) {
		// Points SOFTHSM2_CONF at the data directory's token before the module loads. The
		// token must be there already: a lost token directory is an error naming it, not
		// a fresh empty token (hufud init makes it).
		if _, err := softhsm.Provision(softhsm.Options{Dir: softhsmDir(cfg), Label: cfg.HSM.TokenLabel, ModulePath: cfg.HSM.Module, Existing: true}); err != nil {
			return nil, err
		}
	} else if err := checkSystemSoftHSM(cfg); err != nil {
		return nil, err
	}
	d.adm.newMetrics(opts.Registry)
	registerModeMetric(opts.Registry, cfg.Development)
	if d.keyring, err = hsm.Open(ctx, hsmConfig(cfg, d.adm.hsmMetrics)); err != nil {
		return nil, fmt.Errorf("%w (has `hufud init` been run?)", err)
	}
	d.store, err = store.Open(ctx, store.Options{
		Dir: filepath.Join(cfg.DataDir, "store"), Clock: opts.Clock, Signer: d.keyring.AuditSigner(),
		CheckpointEvery: cfg.Audit.CheckpointEvery, CheckpointInterval: cfg.Audit.CheckpointInterval.Std(),
		Logger: opts.Log, CommitObserver: d.adm.storeMetrics.observe, Anchor: d.keyring,
		MinFreeBytes: uint64(cfg.Store.MinFreeMiB) << 20, FS: opts.StoreFS,
		// Not on the path of the signature whose record made it due (issue 18).
		CheckpointInBackground: true,
	})
	if err != nil {
		return nil, err
	}
	anchor, err := d.checkAuditAnchor(ctx)
	if err != nil {
		return nil, err
	}
	if err := d.buildServices(); err != nil {
		return nil, err
	}
	if err := d.buildAdmin(); err != nil {
		return nil, err
	}
	if err := d.buildPKI(); err != nil {
		return nil, err
	}
	if err := d.buildAuditSinks(); err != nil {
		return nil, err
	}
	d.adm.server.SetMode(mode(cfg))
	if d.tls, err = newTLSMaterial(cfg.TLS.CertFile, cfg.TLS.KeyFile, cfg.TLS.ClientCAFile, cfg.TLS.MinVersion); err != nil {
		return nil, err
	}
	if err := d.registerExpiryMetrics(ctx); err != nil {
		return nil, err
	}
	if err := d.buildJSON(); err != nil {
		return nil, err
	}
	if err := d.buildServer(); err != nil {
		return nil, err
	}
	if err := d.recordStart(ctx, anchor); err != nil {
		return nil, err
	}
	if err := d.migrateStore(ctx); err != nil {
		return nil, err
	}
	d.recoverIssuance(ctx)
	return d, nil
}

func (d *Daemon) buildServices() error {
	var err error
	if d.providers, err = d.buildProviders(); err != nil {
		return err
	}
	a := d.cfg.Account
	platforms := make([]accounts.Platform, len(d.cfg.Platforms))
	for i, p := range d.cfg.Platforms {
		platforms[i] = accounts.Platform{ID: p.ID, Name: p.Name, Region: p.Region}
	}
	d.accounts, err = accounts.New(accounts.Options{
		SMSCodeTTL: a.SMSCodeTTL.Std(), SMSResendInterval: a.SMSResendInterval.Std(),
		SMSMaxPerPhoneHour: a.SMSMaxPerPhoneHour, SMSMaxPerSourceHour: a.SMSMaxPerSourceHour,
		CodeMaxAttempts: a.CodeMaxAttempts, CodeFailureWindow: a.CodeFailureWindow.Std(), CodeLockout: a.CodeLockout.Std(),
		PasswordMaxAttempts: a.PasswordMaxAttempts, AccessTokenTTL: a.AccessTokenTTL.Std(),
		RefreshTokenTTL: a.RefreshTokenTTL.Std(), Platforms: platforms, DefaultPlatform: a.DefaultPlatform,
	}, accounts.Deps{
		Store: d.store, Keyring: d.keyring, SMS: d.providers.sms, WeChat: d.providers.wechat, Carrier: d.providers.carrier,
		Verifier: d.providers.verifier, Clock: d.opts.Clock, Log: d.opts.Log, Registry: d.opts.Registry,
	})
	if err != nil {
		return err
	}
	k := d.cfg.Keys
	d.keys, err = keys.New(keys.Options{
		PINMaxAttempts: k.PINMaxAttempts, PINLockout: k.PINLockout.Std(), TicketTTL: k.TicketTTL.Std(),
		TicketUses: k.TicketUses, MaxBatch: k.MaxBatch, DecryptPerMinute: k.DecryptPerMinute,
		CacheSize: k.CacheSize, CacheTTL: k.CacheTTL.Std(), MaxKeysPerAccount: k.MaxKeysPerAccount,
	}, keys.Deps{
		Store: d.store, Keyring: d.keyring, Accounts: d.accounts, Clock: d.opts.Clock,
		Registry: d.opts.Registry, Log: d.opts.Log,
	})
	if err != nil {
		return err
	}
	if err := d.buildPayments(); err != nil {
		return err
	}
	if err := d.buildCertificates(context.Background()); err != nil {
		return err
	}
	if err := d.buildOpenings(); err != nil {
		return err
	}
	if err := d.buildInvoices(); err != nil {
		return err
	}
	if err := d.buildCards(); err != nil {
		return err
	}
	if err := d.buildSupport(); err != nil {
		return err
	}
	if err := d.buildAfterSales(); err != nil {
		return err
	}
	d.wireDeletion()
	if err := d.buildScan(); err != nil {
		return err
	}
	return d.buildWallet()
}

// streamWorkers is the number of goroutines that run gRPC handlers. With one per core, at
// 16 calls in flight most calls ran on a fresh goroutine, and growing its stack was 5.4 % of
// the daemon's CPU; with 128 it is 1.1 % (pprof, hufu bench -op sign -c 16, issue 18). An
// idle worker costs its stack, a few KiB.
const streamWorkers = 128

func (d *Daemon) buildServer() error {
	systems := map[string]map[string]bool{}
	for _, sc := range d.cfg.SystemClients {
		systems[sc.Name] = map[string]bool{}
		for _, s := range sc.Services {
			systems[sc.Name][s] = true
		}
	}
	g := &gate{
		policy: authn.Policy{}, sessions: d.accounts, systems: systems, registered: d.adm.systems.allowed,
		maxDeadline: d.cfg.GRPC.MaxDeadline.Std(), metrics: newRPCMetrics(d.opts.Registry), log: d.opts.Log,
	}
	failures := new(undecodable)
	d.undecodable = failures
	d.server = grpc.NewServer(
		grpc.Creds(d.serverCredentials()), // TLS, and the JSON gateway's connections (json.go)
		grpc.ChainUnaryInterceptor(g.unary),
		grpc.ChainStreamInterceptor(g.stream),
		grpc.MaxRecvMsgSize(d.cfg.GRPC.MaxRecvBytes),
		// Undecodable requests are InvalidArgument naming the field (decoding.go).
		grpc.ForceServerCodecV2(newRequestCodec(failures)),
		// A fixed pool of stream workers keeps warm goroutine stacks: a fresh goroutine per
		// call grows its stack through the curve arithmetic on every signature. grpc-go
		// starts a fresh one whenever every worker is busy, so the pool is sized for calls
		// in flight, not for cores (streamWorkers).
		grpc.NumStreamWorkers(streamWorkers),
		// A forced stop after the grace period still waits for handlers to return, so none
		// outlives the store and the keyring that closeAll closes next.
		grpc.WaitForHandlers(true),
		// Fixed flow-control windows turn off grpc-go's bandwidth-delay estimation, which
		// pings the peer after every data frame that finds no ping outstanding: at one call
		// in flight that was a ping and its ack, a write and a read, on every call (issue
		// 18). Two-party calls are a few hundred bytes; a 1 MiB window still moves the
		// largest request (an enterprise claim's attachments) at LAN speed.
		grpc.InitialWindowSize(1<<20), grpc.InitialConnWindowSize(1<<20),
		grpc.KeepaliveEnforcementPolicy(keepalive.EnforcementPolicy{MinTime: 10 * time.Second, PermitWithoutStream: true}),
	)
	reg := newDecodingRegistrar(d.server, failures)
	for _, policy := range []authn.Policy{d.accounts.Register(reg), d.keys.Register(reg), d.certs.Register(reg),
		d.enterprises.Register(reg), d.seals.Register(reg), d.scan.Register(reg), d.openings.Register(reg),
		d.invoices.Register(reg),
		d.cards.Register(reg), d.support.Register(reg), d.payments.Register(reg),
		d.wallet.Register(reg), d.aftersales.Register(reg)} {
		for m, r := range policy {
			g.policy[m] = r
		}
	}
	d.systemServices = systemServicesOf(g.policy)
	d.health = health.NewServer()
	healthpb.RegisterHealthServer(reg, d.health)
	for _, m := range []string{"Check", "Watch", "List"} {
		g.policy["/grpc.health.v1.Health/"+m] = authn.Public
	}
	if d.cfg.GRPC.Reflection {
		reflection.Register(reg)
		for _, svc := range []string{"grpc.reflection.v1.ServerReflection", "grpc.reflection.v1alpha.ServerReflection"} {
			g.policy["/"+svc+"/ServerReflectionInfo"] = authn.Public
		}
	}
	d.setServing(false)
	return reg.checkAll()
}

// setServing sets the health of the whole server and of each service.
func (d *Daemon) setServing(ok bool) {
	st := healthpb.HealthCheckResponse_NOT_SERVING
	if ok {
		st = healthpb.HealthCheckResponse_SERVING
	}
	d.health.SetServingStatus("", st)
	for name := range d.server.GetServiceInfo() {
		d.health.SetServingStatus(name, st)
	}
}

// Check probes the HSM and the store: the readiness of the appliance.
func (d *Daemon) Check(ctx context.Context) error {
	if err := d.keyring.Health(ctx); err != nil {
		return fmt.Errorf("hsm: %w", err)
	}
	if err := d.store.Health(); err != nil {
		return fmt.Errorf("store: %w", err)
	}
	return nil
}

// Listen binds the gRPC address (so a caller can learn it before serving).
func (d *Daemon) Listen() (net.Addr, error) {
	l, err := net.Listen("tcp", d.cfg.Listen.GRPC)
	if err != nil {
		return nil, fmt.Errorf("gRPC listener (listen.grpc %s): %w", d.cfg.Listen.GRPC, err)
	}
	if err := d.listenAdmin(); err != nil {
		l.Close()
		return nil, err
	}
	if err := d.listenPKI(); err != nil {
		l.Close()
		d.closeAdmin(context.Background())
		return nil, err
	}
	d.mu.Lock()
	defer d.mu.Unlock()
	if err := d.listenJSON(); err != nil {
		l.Close()
		d.closeAdmin(context.Background())
		return nil, err
	}
	d.listener = l
	return l.Addr(), nil
}

// Serve serves until ctx ends, then stops gracefully: health turns NOT_SERVING, calls in
// flight get the configured grace period, and the store and keyring are closed. ready, if
// not nil, is called once the daemon accepts calls.
func (d *Daemon) Serve(ctx context.Context, ready func()) error {
	d.mu.Lock()
	l := d.listener
	d.mu.Unlock()
	if l == nil {
		if _, err := d.Listen(); err != nil {
			return err
		}
		l = d.listener
	}
	if err := d.serveAdmin(); err != nil {
		return err
	}
	if err := d.servePKI(); err != nil {
		d.closeAdmin(context.Background())
		return err
	}
	if err := d.serveJSON(); err != nil {
		d.closePKI(context.Background())
		d.closeAdmin(context.Background())
		return err
	}
	done := make(chan error, 1)
	go func() { done <- d.server.Serve(l) }()
	// Background work uses the store and the keyring; it must end before they close, and not
	// before the calls being drained have finished (they wait on the recorder's commits), so
	// it does not end with ctx but when closeAll says so.
	bgCtx, stopBackground := context.WithCancel(context.WithoutCancel(ctx))
	var background sync.WaitGroup
	background.Go(func() { d.monitor(bgCtx) })
	background.Go(func() { d.store.RunSweeper(bgCtx, time.Minute) })
	background.Go(func() { d.store.RunCheckpointer(bgCtx, d.cfg.Audit.CheckpointInterval.Std()) })
	background.Go(func() { d.keys.Run(bgCtx) })
	background.Go(func() { d.certs.RunRecovery(bgCtx, issuanceRecoveryInterval, issuanceRecoveryGrace) })
	d.runAuditSinks(bgCtx, &background)
	closeAll := func() {
		d.stopJSON(0)
		d.closePKI(context.Background())
		d.closeAdmin(context.Background())
		stopBackground()
		background.Wait()
		d.close(context.Background())
	}
	if ready != nil {
		ready()
	}
	select {
	case err := <-done:
		closeAll()
		return err
	case <-ctx.Done():
	}
	d.opts.Log.Info("stopping: draining calls", "grace", d.cfg.GRPC.ShutdownGrace.Std())
	d.draining.Store(true)
	d.setServing(false)
	stopped := make(chan struct{})
	jsonStopped := make(chan struct{})
	go func() { d.stopJSON(d.cfg.GRPC.ShutdownGrace.Std()); close(jsonStopped) }()
	go func() { d.server.GracefulStop(); close(stopped) }()
	select {
	case <-stopped:
	case <-time.After(d.cfg.GRPC.ShutdownGrace.Std()):
		d.server.Stop()
	}
	<-done
	<-jsonStopped
	closeAll()
	return nil
}

// monitor keeps the health service in step with the HSM and the store.
func (d *Daemon) monitor(ctx context.Context) {
	serving := false
	for {
		d.recoverStore(ctx) // not bounded by the probe's timeout: reopening Pebble takes longer
		probeCtx, cancel := context.WithTimeout(ctx, d.opts.HealthInterval)
		err := d.Check(probeCtx)
		cancel()
		if ctx.Err() != nil {
			return
		}
		if d.draining.Load() {
			return // stopping: health stays NOT_SERVING whatever the probes say
		}
		if ok := err == nil; ok != serving {
			serving = ok
			d.setServing(ok)
			if ok {
				d.opts.Log.Info("ready")
			} else {
				d.opts.Log.Error("not ready", "err", err)
			}
		}
		select {
		case <-ctx.Done():
			return
		case <-time.After(d.opts.HealthInterval):
		}
	}
}

// recoverStore reopens a store that failed (a WAL write met ENOSPC, say); while the cause
// lasts it is retried every HealthInterval, and the failure is logged once, by monitor.
func (d *Daemon) recoverStore(ctx context.Context) {
	if d.store.Failed() == nil {
		return
	}
	if err := d.store.Recover(ctx); err != nil {
		d.opts.Log.Debug("store not recovered yet", "err", err)
	}
}

// ReloadTLS re-reads the certificate, key and client CA (SIGHUP).
func (d *Daemon) ReloadTLS() error { return errors.Join(d.tls.reload(), d.reloadAdminTLS()) }

// Close releases what Open acquired (the admin server, the store, the HSM keyring, the
// providers) for a daemon that will not serve, such as one whose Listen failed. Serve
// releases them itself when it returns: call one or the other.
func (d *Daemon) Close() {
	d.closePKI(context.Background())
	d.closeAdmin(context.Background())
	d.close(context.Background())
}

func (d *Daemon) close(ctx context.Context) {
	if d.store != nil {
		d.recordStop(ctx)
		if err := d.store.Close(ctx); err != nil {
			d.opts.Log.Error("closing store", "err", err)
		}
		d.store = nil
	}
	if d.keyring != nil {
		d.keyring.Close()
		d.keyring = nil
	}
	if d.providers != nil {
		d.providers.close()
		d.providers = nil
	}
}
