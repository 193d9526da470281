package daemon

import (
	"fmt"
	"os"
)

// privateDataDir creates the data directory 0700, or makes an existing one 0700: systemd's
// StateDirectory= and a hand-made directory default to 0755, and the data directory holds
// the store, backups' scratch space, development keys and the SMS outbox. (The store makes
// its own directory and files private too; hufud runs with umask 077.)
func privateDataDir(dir string) error {
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return fmt.Errorf("data directory: %w", err)
	}
	if err := os.Chmod(dir, 0o700); err != nil {
		return fmt.Errorf("data directory: making %s 0700: %w", dir, err)
	}
	return nil
}
