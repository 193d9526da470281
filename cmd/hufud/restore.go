package main

import (
	"context"
	"fmt"
	"os"
	"path/filepath"

	"github.com/hufu-hsm/hufu/daemon"
	"github.com/urfave/cli/v2"
)

func restoreCommand() *cli.Command {
	cmd := configuredCommand(&cli.Command{
		Name:  "restore",
		Usage: "restore a backup into the data directory, whose store must be absent or empty (hufud stopped)",
		Description: "Reads a backup taken with hufu admin backup (POST /backup), decrypts it through the HSM of\n" +
			"the configuration (the KEK that was current when it was taken must still be on the token),\n" +
			"and extracts it into <data_dir>/store: checked whole first (every chunk authenticated,\n" +
			"only directories and regular files under store/, a Pebble manifest), extracted beside the\n" +
			"store and renamed into place, so a truncated, altered or refused backup leaves nothing.\n" +
			"The restore is recorded in the restored store's audit log (store.restore, by -operator).\n" +
			"Run it as the daemon's user with hufud stopped. hufud then refuses the store (exit 65) if\n" +
			"the HSM's audit anchor is past the backup: run hufud acknowledge-restore, start hufud, and\n" +
			"check hufu admin ready and hufu admin audit verify.",
	}, func(c *cli.Context, l loadedConfig) error {
		l.printEnvWarnings(c)
		in := c.String("in")
		if in == "" || c.String("operator") == "" {
			return usageError{fmt.Errorf("usage: hufud restore -config FILE -in BACKUP -operator NAME")}
		}
		if err := l.Validate(); err != nil {
			return configError{err}
		}
		cfg, err := daemon.Resolve(l.Config)
		if err != nil {
			return configError{err}
		}
		f, err := os.Open(in)
		if err != nil {
			return err
		}
		defer f.Close()
		st, err := daemon.Restore(context.Background(), cfg, f, "operator:"+c.String("operator"))
		if err != nil {
			return fmt.Errorf("%s: %w", in, err)
		}
		fmt.Fprintf(c.App.Writer, "restored backup %s (data key under %s): %d files, %d bytes into %s; start hufud, then: hufu admin ready; hufu admin audit verify -key AUDIT.pem\n",
			st.Name, st.KEK, st.Files, st.Bytes, filepath.Join(cfg.DataDir, "store"))
		return nil
	})
	cmd.Flags = append(cmd.Flags, &cli.StringFlag{Name: "in", Usage: "the backup `FILE` (hufu admin backup)"},
		&cli.StringFlag{Name: "operator", Usage: "who restores, for the audit record (`NAME`, required)"})
	return cmd
}
