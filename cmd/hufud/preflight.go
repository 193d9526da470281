package main

import (
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
		if cfg.Development {
			err = fmt.Errorf("%w\n(in development, hufud init -development makes the missing material)", err)
		}
		return cfg, configError{err}
	}
	return cfg, nil
}
