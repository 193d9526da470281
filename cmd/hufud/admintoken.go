package main

import (
	"errors"
	"flag"
	"fmt"
	"io"

	"github.com/hufu-hsm/hufu/admin"
	"github.com/hufu-hsm/hufu/daemon/config"
)

// adminToken makes a new admin bearer token: the token goes to its holder, the printed
// configuration lines (the token's SHA-256, never the token) into admin.tokens.
func adminToken(args []string, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("hufud admin-token", flag.ContinueOnError)
	fs.SetOutput(stderr)
	role := fs.String("role", "", "operator, auditor or security_officer")
	name := fs.String("name", "", "who holds the token (the token id in audit records)")
	if err := fs.Parse(args); err != nil {
		return err
	}
	switch *role {
	case config.RoleOperator, config.RoleAuditor, config.RoleSecurityOfficer:
	default:
		return errors.New("admin-token: -role must be operator, auditor or security_officer")
	}
	c := config.Default()
	c.Admin.Tokens = []config.AdminToken{{Name: *name, Role: *role, SHA256: admin.HashToken("x")}}
	if err := c.Validate(); err != nil {
		return fmt.Errorf("admin-token: -name: %w", err)
	}
	token, hash, err := admin.NewToken()
	if err != nil {
		return err
	}
	fmt.Fprintf(stdout, "token (give it to %s; it is shown only now):\n  %s\n\n", *name, token)
	fmt.Fprintf(stdout, "configuration (append under admin.tokens):\n")
	fmt.Fprintf(stdout, "    - name: %s\n      role: %s\n      sha256: %s\n", *name, *role, hash)
	return nil
}
