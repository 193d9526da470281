// Command hufud is the hufu appliance daemon.
//
//	hufud init     [flags]   prepare the data directory, HSM keys and (development) TLS material
//	hufud validate [flags]   check the configuration and print every problem
//	hufud config show [flags]  print the effective configuration as YAML, secrets redacted
//	hufud serve    [flags]   run the daemon
//	hufud admin-token -role ROLE -name NAME   make an admin bearer token and its config line
//	hufud version            print the version, VCS revision and Go version
//
// Every command takes -config FILE and a flag for each configuration key (hufud serve -h
// lists them); HUFU_* environment variables override flags. A HUFU_* variable that is no
// key (nor one of config.OtherEnv) is warned about, by name only.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/signal"
	"syscall"
	"time"

	"github.com/hufu-hsm/hufu/buildinfo"
	"github.com/hufu-hsm/hufu/daemon"
	"github.com/hufu-hsm/hufu/daemon/config"
	"golang.org/x/sys/unix"
)

func main() {
	if err := run(os.Args[1:], os.Stdout, os.Stderr); err != nil {
		fmt.Fprintln(os.Stderr, "hufud:", err)
		os.Exit(1)
	}
}

const usage = `usage: hufud init|validate|serve [-config FILE] [-KEY VALUE ...]
       hufud config show [-config FILE] [-KEY VALUE ...]
       hufud admin-token -role operator|auditor|security_officer -name NAME
       hufud version
       hufud health [-url URL] [-ca FILE]

  init      prepare the data directory, HSM keys and development TLS material (idempotent)
  validate  check the configuration and print every problem with its key
  config show  print the effective configuration (defaults, file, flags, environment) as
            YAML the strict decoder reads back; secrets (admin token hashes) print as <redacted>
  serve     run the daemon; SIGTERM/SIGINT stop it gracefully, SIGHUP reloads TLS material
  admin-token  print a new admin bearer token and the line (its SHA-256) for admin.tokens
  version   print the version, the VCS revision (and whether it was modified), the Go version
  health    ask a running hufud whether it is ready (GET /readyz on the admin listener);
            exits 0 only if it is: a container HEALTHCHECK, which has no curl

Run "hufud serve -h" for every configuration key.`

func run(args []string, stdout, stderr io.Writer) error {
	if len(args) == 0 {
		fmt.Fprintln(stderr, usage)
		return errors.New("a command is required")
	}
	cmd := args[0]
	switch cmd {
	case "admin-token":
		return adminToken(args[1:], stdout, stderr)
	case "version":
		fmt.Fprintln(stdout, "hufud", buildinfo.Read())
		return nil
	case "health":
		return health(args[1:], stdout, stderr)
	}
	rest := args[1:]
	if cmd == "config" {
		if len(rest) == 0 || rest[0] != "show" {
			fmt.Fprintln(stderr, usage)
			return errors.New(`"hufud config" takes a subcommand: show`)
		}
		cmd, rest = "config show", rest[1:]
	}
	fs := flag.NewFlagSet("hufud "+cmd, flag.ContinueOnError)
	fs.SetOutput(stderr)
	configPath := fs.String("config", "", "YAML configuration file (embedded development defaults if empty)")
	overrides := config.RegisterFlags(fs)
	if err := fs.Parse(rest); err != nil {
		return err
	}
	environ := os.Environ()
	envWarnings := config.UnknownEnv(environ)
	printEnvWarnings := func() {
		for _, w := range envWarnings {
			fmt.Fprintln(stderr, "hufud: warning:", w)
		}
	}
	if cmd != "serve" {
		// serve logs them once its logger exists.
		printEnvWarnings()
	}
	cfg, err := config.Load(*configPath, overrides, environ)
	if err != nil {
		if cmd == "serve" {
			printEnvWarnings()
		}
		return err
	}
	if cmd == "config show" {
		// The configuration as loaded, before development paths are filled in: it is often
		// shown on another machine than the one that will run it.
		if err := cfg.Validate(); err != nil {
			fmt.Fprintln(stderr, "hufud: warning: this configuration is invalid; hufud validate lists the problems")
		}
		return cfg.WriteYAML(stdout)
	}
	if err := cfg.Validate(); err != nil {
		if cmd == "serve" {
			printEnvWarnings()
		}
		if cmd == "validate" {
			fmt.Fprintln(stdout, err)
			return errors.New("configuration is invalid")
		}
		return err
	}
	if cfg, err = daemon.Resolve(cfg); err != nil {
		return err
	}
	switch cmd {
	case "validate":
		if err := cfg.CheckFiles(); err != nil {
			fmt.Fprintln(stdout, err)
			return errors.New("configuration refers to files that cannot be read (in development, run hufud init first)")
		}
		fmt.Fprintln(stdout, "configuration is valid")
		return nil
	case "init":
		done, err := daemon.Init(context.Background(), cfg, time.Now())
		for _, line := range done {
			fmt.Fprintln(stdout, line)
		}
		return err
	case "serve":
		return serve(cfg, envWarnings, stderr)
	}
	fmt.Fprintln(stderr, usage)
	return fmt.Errorf("unknown command %q", cmd)
}

func serve(cfg config.Config, envWarnings []config.EnvWarning, stderr io.Writer) error {
	log := newLogger(cfg, stderr)
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
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM, syscall.SIGINT)
	defer stop()
	d, err := daemon.Open(ctx, cfg, daemon.Options{Log: log})
	if err != nil {
		return err
	}
	hup := make(chan os.Signal, 1)
	signal.Notify(hup, syscall.SIGHUP)
	go func() {
		for range hup {
			if err := d.ReloadTLS(); err != nil {
				log.Error("TLS reload failed; keeping the previous material", "err", err)
			} else {
				log.Info("TLS material reloaded")
			}
		}
	}()
	addr, err := d.Listen()
	if err != nil {
		return err
	}
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
