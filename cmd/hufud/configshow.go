package main

import (
	"fmt"

	"github.com/urfave/cli/v2"
)

func configCommand() *cli.Command {
	return &cli.Command{
		Name:  "config",
		Usage: "work with the configuration",
		Subcommands: []*cli.Command{configuredCommand(&cli.Command{
			Name:  "show",
			Usage: "print the effective configuration as YAML, secrets redacted",
			Description: "The built-in defaults, the file, the environment and the flags combined, as YAML the strict\n" +
				"decoder reads back; secrets (admin token hashes) print as <redacted>. The configuration as\n" +
				"loaded, before development paths are filled in: it is often shown on another machine than\n" +
				"the one that will run it.",
		}, func(c *cli.Context, l loadedConfig) error {
			l.printEnvWarnings(c)
			if err := l.Validate(); err != nil {
				fmt.Fprintln(c.App.ErrWriter, "hufud: warning: this configuration is invalid; hufud validate lists the problems")
			}
			return l.WriteYAML(c.App.Writer)
		})},
		Action: func(c *cli.Context) error {
			if c.NArg() > 0 {
				return usageError{fmt.Errorf("hufud config: unknown subcommand %q: the subcommand is show", c.Args().First())}
			}
			return usageError{fmt.Errorf(`"hufud config" takes a subcommand: show`)}
		},
	}
}
