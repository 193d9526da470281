package main

import (
	"errors"
	"fmt"
	"io"

	"github.com/hufu-hsm/hufu/admin"
	"github.com/hufu-hsm/hufu/daemon/config"
	"github.com/urfave/cli/v2"
)

func adminTokenCommand() *cli.Command {
	return &cli.Command{
		Name:  "admin-token",
		Usage: "print a new admin bearer token and the lines (its SHA-256) for admin.tokens",
		Description: "The token goes to its holder, shown only now; the printed configuration lines (the token's\n" +
			"SHA-256, never the token) go under admin.tokens. No daemon is needed.",
		Flags: []cli.Flag{
			&cli.StringFlag{Name: "role", Usage: "operator, auditor, security_officer or metrics_reader (/metrics only, for Prometheus)"},
			&cli.StringFlag{Name: "name", Usage: "who holds the token (the token id in audit records)"},
		},
		Before: noArgs,
		Action: func(c *cli.Context) error {
			if c.String("name") == "" {
				return usageError{errors.New("admin-token: -name is required")}
			}
			return adminToken(c.String("role"), c.String("name"), c.App.Writer)
		},
	}
}

// adminToken makes a new admin bearer token: the token goes to its holder, the printed
// configuration lines (the token's SHA-256, never the token) into admin.tokens.
func adminToken(role, name string, stdout io.Writer) error {
	switch role {
	case config.RoleOperator, config.RoleAuditor, config.RoleSecurityOfficer, config.RoleMetricsReader:
	default:
		return usageError{errors.New("admin-token: -role must be operator, auditor, security_officer or metrics_reader")}
	}
	c := config.Development()
	c.Admin.Tokens = []config.AdminToken{{Name: name, Role: role, SHA256: admin.HashToken("x")}}
	if err := c.Validate(); err != nil {
		return fmt.Errorf("admin-token: -name: %w", err)
	}
	token, hash, err := admin.NewToken()
	if err != nil {
		return err
	}
	fmt.Fprintf(stdout, "token (give it to %s; it is shown only now):\n  %s\n\n", name, token)
	fmt.Fprintf(stdout, "configuration (append under admin.tokens):\n")
	fmt.Fprintf(stdout, "    - name: %s\n      role: %s\n      sha256: %s\n", name, role, hash)
	return nil
}
