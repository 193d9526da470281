package main

import (
	"context"
	"fmt"
	"time"

	"github.com/hufu-hsm/hufu/daemon"
	"github.com/urfave/cli/v2"
)

func initCommand() *cli.Command {
	return configuredCommand(&cli.Command{
		Name:  "init",
		Usage: "prepare the data directory, HSM keys and development TLS material (idempotent)",
		Description: "Creates in the HSM the first key-encryption key, the PIN verifier key and the audit signing\n" +
			"key, and the embedded CAs; in development also the SoftHSM2 token and TLS material in the\n" +
			"data directory. Running it again keeps what exists.",
	}, func(c *cli.Context, l loadedConfig) error {
		l.printEnvWarnings(c)
		// init makes the development TLS material that preflight would find missing.
		if err := l.Validate(); err != nil {
			return configError{err}
		}
		cfg, err := daemon.Resolve(l.Config)
		if err != nil {
			return configError{err}
		}
		done, err := daemon.Init(context.Background(), cfg, time.Now())
		for _, line := range done {
			fmt.Fprintln(c.App.Writer, line)
		}
		return err
	})
}
