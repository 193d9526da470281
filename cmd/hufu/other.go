package main

import (
	"context"
	"fmt"

	urfave "github.com/urfave/cli/v2"

	"github.com/hufu-hsm/hufu/buildinfo"
	"github.com/hufu-hsm/hufu/client"
	"github.com/hufu-hsm/hufu/cmd/internal/completion"
)

const benchDesc = `bench [-op sign|sign-batch|decrypt|decrypt-batch|health] [-batch N] [-c N|N,N,...] [-d DURATION]
      [-rate CALLS/S] [-daemon-pid PID] [-admin-url URL -token-file FILE] [-json FILE]
  loads a development daemon with an ephemeral key; reports items/s, latency percentiles and
  the daemon's CPU per item (user and system) beside the raw server step, measured alone
  and with every core computing it at once (raw·all, the bound under load). A list after -c
  runs a sweep and prints a table. With an admin token (metrics_reader is enough) it also
  reads WAL syncs and allocations per item from /metrics, measures the CPU of one sync, and
  reports the per-call overhead: CPU − raw step − sync CPU × syncs per item
  (scripts/bench.sh runs the standard scenario). -op health measures the floor under that:
  a gRPC health check, the same TLS, HTTP/2 and interceptors with no caller to authenticate,
  no work and no write
bench -op opening -bidders N -envelopes M [-concurrency C] [-pid PID] [-json FILE]
  a whole bid opening: N certified bidders, N×M envelopes, consent through the hall code
  (C at once), one release checked key by key against the raw ServerShare.Release, the
  report verified`

// otherCommands: measuring, the version, shell completion.
func (c *cli) otherCommands() []*urfave.Command {
	return []*urfave.Command{
		c.benchCommand(),
		c.command(verb{name: "version", usage: "the version, VCS revision (and whether modified) and Go version", nargs: noArgs, offline: true,
			run: func(context.Context, *client.Conn, []string) error {
				fmt.Fprintln(c.out, "hufu", buildinfo.Read())
				return nil
			}}),
		c.command(verb{name: "completion", usage: "print a shell completion script: bash or zsh", args: "bash|zsh", nargs: oneArg, offline: true,
			desc: `bash: source <(hufu completion bash), or save it in /etc/bash_completion.d/hufu
zsh:  source <(hufu completion zsh), or save it as _hufu in a directory of $fpath`,
			run: func(_ context.Context, _ *client.Conn, args []string) error {
				script, err := completion.Script(args[0], "hufu")
				if err != nil {
					return &usageError{err}
				}
				_, err = fmt.Fprint(c.out, script)
				return err
			}}),
	}
}
