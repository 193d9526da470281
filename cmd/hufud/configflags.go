package main

import (
	"fmt"
	"os"

	"github.com/hufu-hsm/hufu/daemon/config"
	"github.com/urfave/cli/v2"
)

// configFlags are -config and one flag per configuration key, for the commands that read
// the configuration.
func configFlags() []cli.Flag {
	flags := []cli.Flag{&cli.StringFlag{Name: "config", Usage: "YAML configuration `FILE` (none: the built-in defaults)"}}
	defaults := config.Default()
	for _, k := range config.Keys() {
		usage := fmt.Sprintf("config key %s (env %s)", k.Path, k.Env)
		if k.Bool {
			flags = append(flags, &cli.BoolFlag{Name: k.Flag, Usage: usage, Category: k.Category})
			continue
		}
		def := defaults.Value(k.Path)
		if def != "" && def != "0" {
			usage += ", default " + def
		}
		flags = append(flags, &cli.StringFlag{Name: k.Flag, Usage: usage, Category: k.Category})
	}
	return flags
}

// configuredCommand completes cmd as a command that reads the configuration: -config and a
// flag per key, no arguments, and an action given what loadConfig read.
func configuredCommand(cmd *cli.Command, action func(c *cli.Context, l loadedConfig) error) *cli.Command {
	cmd.Flags, cmd.Before = configFlags(), noArgs
	cmd.Action = func(c *cli.Context) error {
		l, err := loadConfig(c)
		if err != nil {
			return err
		}
		return action(c, l)
	}
	return cmd
}

// loadedConfig is a configuration as the command line, the environment and the file give
// it, with the warnings about HUFU_* variables nothing reads.
type loadedConfig struct {
	config.Config
	envWarnings []config.EnvWarning
}

// loadConfig reads the configuration of a command with configFlags. A file that cannot be
// read or parsed is a configError.
func loadConfig(c *cli.Context) (loadedConfig, error) {
	overrides := config.Overrides{}
	for _, k := range config.Keys() {
		if c.IsSet(k.Flag) {
			overrides[k.Path] = fmt.Sprint(c.Value(k.Flag))
		}
	}
	environ := os.Environ()
	cfg, err := config.Load(c.String("config"), overrides, environ)
	if err != nil {
		return loadedConfig{}, configError{err}
	}
	return loadedConfig{Config: cfg, envWarnings: config.UnknownEnv(environ)}, nil
}

// printEnvWarnings writes the warnings about unknown HUFU_* variables, by name only (the
// value may be a secret).
func (l loadedConfig) printEnvWarnings(c *cli.Context) {
	for _, w := range l.envWarnings {
		fmt.Fprintln(c.App.ErrWriter, "hufud: warning:", w)
	}
}
