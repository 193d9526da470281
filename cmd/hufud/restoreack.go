package main

import (
	"context"
	"errors"
	"fmt"

	"github.com/hufu-hsm/hufu/daemon"
	"github.com/urfave/cli/v2"
)

func acknowledgeRestoreCommand() *cli.Command {
	cmd := configuredCommand(&cli.Command{
		Name:  "acknowledge-restore",
		Usage: "accept a store restored from a backup, which serve refuses (exit 65), with an audit record",
		Description: "serve refuses a store whose audit log is behind the HSM's audit anchor (the newest checkpoint\n" +
			"it signed) or differs from it: the store was restored from a backup or rolled back. If that was\n" +
			"intended, run this with hufud stopped: it appends \"restored from backup at record N (HSM anchor\n" +
			"was M)\" to the audit log as store.restore.acknowledge by -operator, signs a checkpoint over it and\n" +
			"moves the anchor there; serve then starts. On a store the anchor agrees with it changes nothing.",
	}, func(c *cli.Context, l loadedConfig) error {
		operator := c.String("operator")
		if operator == "" {
			return usageError{errors.New("acknowledge-restore: -operator NAME (who acknowledges, for the audit record) is required")}
		}
		cfg, err := preflight(l.Config)
		if err != nil {
			l.printEnvWarnings(c)
			return err
		}
		ack, err := daemon.AcknowledgeRestore(context.Background(), cfg, "operator:"+operator)
		if err != nil {
			return err
		}
		if !ack.Needed {
			fmt.Fprintln(c.App.Writer, "the store's audit log agrees with the HSM's audit anchor: nothing to acknowledge, nothing written")
			return nil
		}
		fmt.Fprintf(c.App.Writer, "restored from backup at record %d (HSM anchor was %d): acknowledged by operator:%s in audit record %d; the anchor is now checkpoint %d. hufud serve may start.\n",
			ack.StoreHead, ack.AnchorSize, operator, ack.Record, ack.Anchor)
		return nil
	})
	cmd.Flags = append(cmd.Flags, &cli.StringFlag{Name: "operator", Usage: "who acknowledges the restore (recorded as operator:`NAME`)"})
	return cmd
}
