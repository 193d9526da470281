package main

import (
	"fmt"

	"github.com/hufu-hsm/hufu/buildinfo"
	"github.com/urfave/cli/v2"
)

func versionCommand() *cli.Command {
	return &cli.Command{
		Name:   "version",
		Usage:  "print the version, the VCS revision (and whether it was modified) and the Go version",
		Before: noArgs,
		Action: func(c *cli.Context) error {
			fmt.Fprintln(c.App.Writer, "hufud", buildinfo.Read())
			return nil
		},
	}
}
