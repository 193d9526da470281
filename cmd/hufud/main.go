// Command hufud is the hufu appliance daemon.
//
//	hufud init        prepare the data directory, HSM keys and (development) TLS material
//	hufud validate    check the configuration and list what it lacks or gets wrong
//	hufud config show print the effective configuration as YAML, secrets redacted
//	hufud serve       run the daemon
//	hufud restore     restore a backup into the data directory (offline, through the HSM)
//	hufud admin-token make an admin bearer token and its configuration lines
//	hufud acknowledge-restore
//	                  accept a store restored from a backup (audited), which serve refuses
//	hufud health      ask a running hufud whether it is ready (a container HEALTHCHECK)
//	hufud version     print the version, VCS revision and Go version
//	hufud completion  print a bash or zsh completion script
//
// init, validate, config show and serve take -config FILE and a flag for each configuration
// key (hufud serve -h lists them); flags override HUFU_* environment variables, which
// override the file. A HUFU_* variable that is no key (nor one of config.OtherEnv) is warned
// about, by name only.
//
// Exit codes: 0 success, 1 failure, 2 usage error (unknown command, flag or argument), 65
// a store restored from a backup or rolled back, which serve refuses until hufud
// acknowledge-restore (EX_DATAERR), 78 invalid configuration (EX_CONFIG). The systemd unit
// restarts on neither 65 nor 78: a restart cannot fix them.
package main

import (
	"errors"
	"fmt"
	"io"
	"os"
	"syscall"

	"github.com/hufu-hsm/hufu/daemon"
	"github.com/urfave/cli/v2"
)

// Exit codes by class of failure, documented in the package comment and the README.
const (
	exitFailure  = 1
	exitUsage    = 2
	exitRestored = 65 // sysexits.h EX_DATAERR: daemon.ErrRestoredStore
	exitConfig   = 78 // sysexits.h EX_CONFIG
)

func main() {
	// Everything hufud writes (the store, backups, the development token and TLS material,
	// the development SMS outbox, whatever a PKCS#11 module writes in process) is for the
	// hufu user alone; the store and the data directory also set their modes themselves.
	syscall.Umask(0o077)
	if err := run(os.Args[1:], os.Stdout, os.Stderr); err != nil {
		fmt.Fprintln(os.Stderr, "hufud:", err)
		os.Exit(exitCode(err))
	}
}

// run runs one command line.
func run(args []string, stdout, stderr io.Writer) error {
	return newApp(stdout, stderr).Run(append([]string{"hufud"}, args...))
}

// exitCode is the process's exit code for an error of run.
func exitCode(err error) int {
	var usage usageError
	var cfg configError
	switch {
	case errors.As(err, &usage):
		return exitUsage
	case errors.As(err, &cfg):
		return exitConfig
	case errors.Is(err, daemon.ErrRestoredStore):
		return exitRestored
	}
	return exitFailure
}

// usageError is a command line that names no command, an unknown one, an unknown flag or
// an argument a command does not take.
type usageError struct{ err error }

func (e usageError) Error() string { return e.err.Error() }
func (e usageError) Unwrap() error { return e.err }

// configError is a configuration that cannot be read or is invalid.
type configError struct{ err error }

func (e configError) Error() string { return e.err.Error() }
func (e configError) Unwrap() error { return e.err }

func newApp(stdout, stderr io.Writer) *cli.App {
	app := &cli.App{
		Name:  "hufud",
		Usage: "the hufu appliance daemon",
		Description: "Every command takes -h. Configuration keys are flags of init, validate, config show and serve\n" +
			"(hufud serve -h lists them); flags override HUFU_* environment variables, which override\n" +
			"the -config file, which overrides the built-in defaults. The built-in defaults are a production\n" +
			"appliance: development is asked for with -development (make run does).\n\n" +
			"Exit codes: 0 success, 1 failure, 2 usage error, 65 restored store refused (hufud acknowledge-restore),\n" +
			"78 invalid configuration.",
		Writer: stdout, ErrWriter: stderr,
		HideVersion:          true,
		EnableBashCompletion: true,
		Commands: []*cli.Command{
			initCommand(), validateCommand(), configCommand(), serveCommand(),
			restoreCommand(), adminTokenCommand(), acknowledgeRestoreCommand(), healthCommand(), versionCommand(), completionCommand(),
		},
		Action: func(c *cli.Context) error {
			if c.NArg() > 0 {
				return usageError{fmt.Errorf("unknown command %q (hufud -h lists them)", c.Args().First())}
			}
			_ = cli.ShowAppHelp(c)
			return usageError{errors.New("a command is required")}
		},
		OnUsageError: onUsageError,
	}
	for _, cmd := range app.Commands {
		setUsageErrors(cmd)
	}
	return app
}

// setUsageErrors makes every command report a flag error as a usageError (exit 2) with a
// pointer to its help, rather than urfave/cli's default of the whole help on stdout.
func setUsageErrors(cmd *cli.Command) {
	cmd.OnUsageError = onUsageError
	for _, sub := range cmd.Subcommands {
		setUsageErrors(sub)
	}
}

func onUsageError(c *cli.Context, err error, _ bool) error {
	return usageError{fmt.Errorf("%s: %w (%s -h shows its usage)", c.Command.FullName(), err, c.Command.HelpName)}
}

// noArgs is the Before of commands that take no arguments.
func noArgs(c *cli.Context) error {
	if c.NArg() > 0 {
		return usageError{fmt.Errorf("%s takes no arguments, not %q", c.Command.HelpName, c.Args().First())}
	}
	return nil
}
