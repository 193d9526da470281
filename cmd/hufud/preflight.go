package main

import (
	"errors"
	"fmt"

	"github.com/hufu-hsm/hufu/daemon"
	"github.com/hufu-hsm/hufu/daemon/config"
)

// preflight is what serve (and init) require of a configuration before touching the HSM or
// the store, and all that validate checks: valid keys, development material filled in, and
// every file it names readable. validate reports exactly what serve would refuse.
func preflight(cfg config.Config) (config.Config, error) {
	if err := cfg.Validate(); err != nil {
		return cfg, configError{err}
	}
	cfg, err := daemon.Resolve(cfg)
	if err != nil {
		return cfg, configError{err}
	}
	if err := cfg.CheckFiles(); err != nil {
		hint := "a file it names cannot be read"
		if cfg.Development {
			hint += " (in development, run hufud init -development first)"
		}
		var ps config.Problems
		if errors.As(err, &ps) {
			return cfg, configError{fmt.Errorf("%s:\n  %w", hint, err)}
		}
		return cfg, configError{err}
	}
	return cfg, nil
}
