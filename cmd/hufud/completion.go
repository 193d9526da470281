package main

import (
	"fmt"

	"github.com/hufu-hsm/hufu/cmd/internal/completion"
	"github.com/urfave/cli/v2"
)

func completionCommand() *cli.Command {
	return &cli.Command{
		Name:      "completion",
		Usage:     "print a shell completion script: bash or zsh",
		ArgsUsage: "bash|zsh",
		Description: "bash: source <(hufud completion bash), or save it in /etc/bash_completion.d/hufud\n" +
			"zsh:  source <(hufud completion zsh), or save it as _hufud in a directory of $fpath",
		Action: func(c *cli.Context) error {
			if c.NArg() != 1 {
				return usageError{fmt.Errorf("completion takes one argument, bash or zsh")}
			}
			script, err := completion.Script(c.Args().First(), "hufud")
			if err != nil {
				return usageError{err}
			}
			_, err = fmt.Fprint(c.App.Writer, script)
			return err
		},
	}
}
