package main

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/signal"
	"runtime/debug"
	"syscall"

	"github.com/hufu-hsm/hufu/daemon"
	"github.com/hufu-hsm/hufu/daemon/config"
	"github.com/urfave/cli/v2"
	"golang.org/x/sys/unix"
)

func serveCommand() *cli.Command {
	var execErr error // why execWithSysmonAwake could not exec, if it tried
	cmd := configuredCommand(&cli.Command{
		Name:  "serve",
		Usage: "run the daemon",
		Description: "Serves gRPC (phones, business and bid-opening systems) and the admin HTTP surface. SIGTERM and\n" +
			"SIGINT stop it gracefully, SIGHUP reloads the TLS material (and audits which configuration keys changed). It refuses a configuration that\n" +
			"hufud validate would reject, with exit code 78. Under systemd it sends READY=1 and STOPPING=1. It first starts\n" +
			"itself again in place with GODEBUG=schedtrace=2147483647 unless GODEBUG sets schedtrace (docs/operations.md).",
	}, func(c *cli.Context, l loadedConfig) error {
		cfg, err := preflight(l.Config)
		if err != nil {
			l.printEnvWarnings(c) // serve logs them once its logger exists
			return err
		}
		// SIGHUP reads the configuration again as it was read now (file, environment,
		// flags), to record which keys changed.
		reread := func() (config.Config, error) {
			l, err := loadConfig(c)
			if err != nil {
				return config.Config{}, err
			}
			return preflight(l.Config)
		}
		return serve(cfg, l.envWarnings, execErr, reread, c.App.ErrWriter)
	})
	// Start again before the configuration is read: a -config that is a pipe can be read
	// only once.
	checkArgs := cmd.Before
	cmd.Before = func(c *cli.Context) error {
		if err := checkArgs(c); err != nil {
			return err
		}
		execErr = execWithSysmonAwake() // on success this process starts again
		return nil
	}
	return cmd
}

// defaultGCPercent is the collector's target when GOGC is not set (see serve).
const defaultGCPercent = 400

// serve runs the daemon; execErr is why execWithSysmonAwake could not exec, if it tried.
func serve(cfg config.Config, envWarnings []config.EnvWarning, execErr error, reread func() (config.Config, error), stderr io.Writer) error {
	log := newLogger(cfg, stderr)
	if execErr != nil {
		log.Warn("could not start again with GODEBUG="+sysmonGODEBUG+"; serving without it", "err", execErr)
	}
	for _, w := range envWarnings {
		// The name only: the value may be a secret.
		attrs := []any{"variable", w.Name}
		if w.Nearest != "" {
			attrs = append(attrs, "did_you_mean", w.Nearest)
		}
		log.Warn("environment variable is not a configuration key and is ignored", attrs...)
	}
	// Unwrapped key shares live in this process's memory: never write it to a core file,
	// and keep other processes of the same user from reading it through ptrace or /proc.
	if err := syscall.Setrlimit(syscall.RLIMIT_CORE, &syscall.Rlimit{}); err != nil {
		return fmt.Errorf("disabling core dumps: %w", err)
	}
	if err := unix.Prctl(unix.PR_SET_DUMPABLE, 0, 0, 0, 0); err != nil {
		return fmt.Errorf("marking the process not dumpable: %w", err)
	}
	if os.Getenv("GOGC") == "" {
		// The appliance trades memory for CPU: at Go's default (100) the collector took 5 %
		// of the daemon's CPU at 16 calls in flight, at 400 under 1 % (pprof, issue 18); the
		// peak RSS at 64 in flight rose from 90 to 156 MiB. GOGC in the environment decides.
		debug.SetGCPercent(defaultGCPercent)
	}
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM, syscall.SIGINT)
	defer stop()
	d, err := daemon.Open(ctx, cfg, daemon.Options{Log: log})
	if err != nil {
		return err
	}
	addr, err := d.Listen()
	if err != nil {
		// A port in use (another hufud?) or an address not on this host: release the store
		// and the HSM before exiting, so nothing is left half open and nothing keeps the
		// process from ending.
		d.Close()
		return fmt.Errorf("cannot listen: %w", err)
	}
	hup := make(chan os.Signal, 1)
	signal.Notify(hup, syscall.SIGHUP)
	defer func() { signal.Stop(hup); close(hup) }()
	go func() {
		for range hup {
			var next *config.Config
			cfg, loadErr := reread()
			if loadErr != nil {
				log.Error("configuration could not be read again; nothing of it changes", "err", loadErr)
			} else {
				next = &cfg
			}
			// Reload records the reload in the audit log (lifecycle.go).
			if err := d.Reload(ctx, next, loadErr); err != nil {
				log.Error("TLS reload failed; keeping the previous material", "err", err)
			} else {
				log.Info("TLS material reloaded; other configuration changes take effect at the next start")
			}
		}
	}()
	go watchdog(ctx, d.Healthy, log)
	go func() {
		<-ctx.Done()
		if err := sdNotify("STOPPING=1"); err != nil {
			log.Warn("systemd notification failed", "err", err)
		}
	}()
	return d.Serve(ctx, func() {
		log.Info("serving", "grpc", addr.String(), "admin", d.AdminAddr().String(), "development", cfg.Development)
		if err := sdNotify("READY=1"); err != nil {
			log.Warn("systemd notification failed", "err", err)
		}
	})
}

func newLogger(cfg config.Config, w io.Writer) *slog.Logger {
	var level slog.Level
	level.UnmarshalText([]byte(cfg.Log.Level))
	opts := &slog.HandlerOptions{Level: level}
	if cfg.Log.Format == "text" {
		return slog.New(slog.NewTextHandler(w, opts))
	}
	return slog.New(slog.NewJSONHandler(w, opts))
}
