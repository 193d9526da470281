package main

import (
	"errors"
	"fmt"

	"github.com/urfave/cli/v2"
)

func validateCommand() *cli.Command {
	return configuredCommand(&cli.Command{
		Name:  "validate",
		Usage: "check the configuration and list every problem with its key path",
		Description: "Reports what serve would refuse, each problem with its key: keys that are invalid, and what a\n" +
			"production start needs and the configuration lacks (TLS material, the HSM module and PIN file,\n" +
			"providers, platforms, the scan address), and files it names that cannot be read.\n" +
			"Exits 0 when serve would start, 78 when it would refuse the configuration.",
	}, func(c *cli.Context, l loadedConfig) error {
		l.printEnvWarnings(c)
		if _, err := preflight(l.Config); err != nil {
			fmt.Fprintln(c.App.Writer, err)
			return configError{errors.New("configuration is invalid")}
		}
		fmt.Fprintf(c.App.Writer, "configuration is valid (%s)\n", mode(l.Development))
		return nil
	})
}

func mode(development bool) string {
	if development {
		return "development"
	}
	return "production"
}
