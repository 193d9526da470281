package main

// The command tree on github.com/urfave/cli/v2: the root (global flags, exit codes), command
// groups, and verbs. A verb declares its flags on a standard flag.FlagSet in its constructor
// (urfave parses with the standard flag package, so "-flag" and "--flag" both work) and is
// turned into a *urfave.Command by verb.command: help and completion come from urfave; the
// positional arguments are counted, and flags may also follow them ("key show KEY -pem"), as
// they always could.

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"net"
	"os"
	"path/filepath"
	"strings"
	"time"

	urfave "github.com/urfave/cli/v2"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/encoding/protojson"
	"google.golang.org/protobuf/proto"

	"github.com/hufu-hsm/hufu/admin/adminclient"
	hufuv1 "github.com/hufu-hsm/hufu/api/hufu/v1"
	"github.com/hufu-hsm/hufu/client"
)

// Exit codes, by class of error (exitCode). Listed in "hufu help" and README.md.
const (
	exitOK          = 0 // success
	exitError       = 1 // any other error (local files, a bad signature, internal errors)
	exitUsage       = 2 // usage: unknown command or flag, wrong arguments
	exitAuth        = 3 // unauthenticated or permission denied
	exitNotFound    = 4 // not found
	exitConflict    = 5 // failed precondition, already exists, aborted
	exitUnavailable = 6 // unavailable, deadline exceeded, resource exhausted: try again later
	exitInvalid     = 7 // invalid argument, out of range (refused by the appliance)
)

const exitCodesHelp = `EXIT CODES:
   0  success
   1  any other error (local files, a bad signature, internal errors)
   2  usage: unknown command or flag, unexpected or missing arguments
   3  unauthenticated or permission denied (sign in again; the client certificate)
   4  not found
   5  failed precondition, already exists or aborted (the state does not allow it)
   6  unavailable, deadline exceeded or resource exhausted (try again later)
   7  invalid argument or out of range (the appliance refused a value)`

// usageError is a command line the CLI cannot run: exit code 2.
type usageError struct{ err error }

func (e *usageError) Error() string { return e.err.Error() }
func (e *usageError) Unwrap() error { return e.err }

func usagef(format string, a ...any) error { return &usageError{fmt.Errorf(format, a...)} }

// exitCode is the process's exit code for the error run returned.
func exitCode(err error) int {
	if err == nil {
		return exitOK
	}
	var u *usageError
	if errors.As(err, &u) {
		return exitUsage
	}
	// The framework's own errors with an exit code: help asked about an unknown command
	// ("hufu help bogus").
	var ec urfave.ExitCoder
	if errors.As(err, &ec) {
		return exitUsage
	}
	var grpcErr interface{ GRPCStatus() *status.Status }
	if errors.As(err, &grpcErr) {
		switch grpcErr.GRPCStatus().Code() {
		case codes.Unauthenticated, codes.PermissionDenied:
			return exitAuth
		case codes.NotFound:
			return exitNotFound
		case codes.FailedPrecondition, codes.AlreadyExists, codes.Aborted:
			return exitConflict
		case codes.Unavailable, codes.DeadlineExceeded, codes.ResourceExhausted:
			return exitUnavailable
		case codes.InvalidArgument, codes.OutOfRange:
			return exitInvalid
		}
		return exitError
	}
	// The admin surface's refusals, by HTTP status, and an admin listener out of reach.
	var adminErr *adminclient.Error
	if errors.As(err, &adminErr) {
		return adminExitCode(adminErr.Status)
	}
	var netErr *net.OpError
	if errors.Is(err, context.DeadlineExceeded) || errors.As(err, &netErr) {
		return exitUnavailable
	}
	return exitError
}

// argCount is how many positional arguments a verb takes: min to max; max < 0 is no limit.
type argCount struct{ min, max int }

var (
	noArgs   = argCount{0, 0}
	oneArg   = argCount{1, 1}
	twoArgs  = argCount{2, 2}
	anyArgs  = argCount{0, -1}
	someArgs = argCount{1, -1}
)

func upTo(n int) argCount { return argCount{0, n} }

// verb is one command: its name, help text, flags and action.
type verb struct {
	name  string
	usage string // one line, in the parent's list
	args  string // the positional arguments' synopsis, e.g. "KEY"
	desc  string // more text for the command's help
	fs    *flag.FlagSet
	nargs argCount
	// offline verbs run with no connection (conn is nil) and no state file.
	offline bool
	// noTimeout: the action's context has no deadline (bench).
	noTimeout bool
	run       func(ctx context.Context, conn *client.Conn, args []string) error
	// sub: subcommands of a verb that is also a group (scan PAYLOAD, scan bindings).
	sub []*urfave.Command
}

// newFlags is a verb's flag set; errors and help are left to the command tree.
func newFlags() *flag.FlagSet {
	fs := flag.NewFlagSet("", flag.ContinueOnError)
	fs.SetOutput(io.Discard)
	fs.Usage = func() {}
	return fs
}

// command makes the verb a urfave command.
func (c *cli) command(v verb) *urfave.Command {
	fs := v.fs
	if fs == nil {
		fs = newFlags()
	}
	return &urfave.Command{
		Name:            v.name,
		Usage:           v.usage,
		ArgsUsage:       v.args,
		Description:     v.desc,
		Flags:           stdFlags(fs),
		HideHelpCommand: len(v.sub) == 0,
		Subcommands:     v.sub,
		OnUsageError:    onUsageError,
		Action: func(cc *urfave.Context) error {
			// urfave parsed the flags before the first positional argument; these are the
			// rest, flags among them.
			pos, err := parseInterspersed(fs, cc.Args().Slice())
			if errors.Is(err, flag.ErrHelp) {
				return showHelp(cc)
			}
			if err != nil {
				return &usageError{fmt.Errorf("%s: %w (%s -h lists the flags)", commandName(cc), err, cc.Command.HelpName)}
			}
			if len(pos) < v.nargs.min || (v.nargs.max >= 0 && len(pos) > v.nargs.max) {
				return argsError(cc, v, pos)
			}
			return c.runVerb(v, pos)
		},
	}
}

func argsError(cc *urfave.Context, v verb, pos []string) error {
	synopsis := "usage: " + cc.Command.HelpName
	if v.args != "" {
		synopsis += " " + v.args
	}
	switch {
	case v.nargs.max == 0:
		return usagef("%s takes no arguments, got %q (%s -h)", commandName(cc), pos, cc.Command.HelpName)
	case len(pos) < v.nargs.min:
		return usagef("%s (%s -h explains)", synopsis, cc.Command.HelpName)
	}
	return usagef("%s: unexpected arguments %q (%s)", commandName(cc), pos[v.nargs.max:], synopsis)
}

// commandName is the command's name in messages, which main prefixes with "hufu: ".
func commandName(cc *urfave.Context) string {
	if cc.Command == nil || cc.Command.HelpName == "" {
		return "hufu"
	}
	return strings.TrimPrefix(cc.Command.HelpName, "hufu ")
}

// runVerb connects, when the verb needs the daemon, and runs it.
func (c *cli) runVerb(v verb, pos []string) error {
	ctx := context.Background()
	if !v.noTimeout {
		// Batches of many files run longer than one call.
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, 5*time.Minute)
		defer cancel()
	}
	if v.offline {
		return v.run(ctx, nil, pos)
	}
	conn, err := c.connect()
	if err != nil {
		return err
	}
	defer conn.Close()
	return v.run(ctx, conn, pos)
}

// connect loads the state file and dials the daemon (lazily: the first call connects).
func (c *cli) connect() (*client.Conn, error) {
	if err := c.load(); err != nil {
		return nil, err
	}
	conn, err := client.Dial(client.Config{Addr: c.addr, CAFile: c.ca, ClientCertFile: c.cert, ClientKeyFile: c.key, DeviceID: c.state.DeviceID})
	if err != nil {
		return nil, err
	}
	// An expired access token is exchanged for a new pair with the refresh token, once, and
	// the pair is kept for the next run.
	conn.SetSession(c.state.AccessToken, c.state.RefreshToken, func(s *hufuv1.Session) error {
		c.state.AccessToken, c.state.RefreshToken = s.GetAccessToken(), s.GetRefreshToken()
		return c.save()
	})
	return conn, nil
}

// parseInterspersed parses flags that may come before or after the positional arguments
// and returns the positional ones; "--" ends the flags.
func parseInterspersed(fs *flag.FlagSet, args []string) ([]string, error) {
	var pos []string
	for len(args) > 0 {
		before := len(args)
		if err := fs.Parse(args); err != nil {
			return nil, err
		}
		rest := fs.Args()
		if len(rest) > 0 && before > len(rest) && args[before-len(rest)-1] == "--" {
			return append(pos, rest...), nil
		}
		if len(rest) == 0 {
			break
		}
		pos = append(pos, rest[0])
		args = rest[1:]
	}
	return pos, nil
}

// showHelp prints the help of the command cc runs.
func showHelp(cc *urfave.Context) error {
	if lin := cc.Lineage(); len(lin) > 1 && cc.Command != nil {
		return urfave.ShowCommandHelp(lin[1], cc.Command.Name)
	}
	return urfave.ShowAppHelp(cc)
}

func onUsageError(cc *urfave.Context, err error, isSubcommand bool) error {
	if !isSubcommand { // the root: the global flags
		return &usageError{fmt.Errorf("%w (hufu -h lists the global flags; a command's flags follow the command)", err)}
	}
	return &usageError{fmt.Errorf("%s: %w (%s -h lists the flags)", commandName(cc), err, cc.Command.HelpName)}
}

// group is a command group: its verbs, and an action for a bare or unknown verb.
func group(name, usage, desc string, verbs ...*urfave.Command) *urfave.Command {
	return &urfave.Command{
		Name:         name,
		Usage:        usage,
		Description:  desc,
		Subcommands:  verbs,
		OnUsageError: onUsageError,
		Action:       groupAction,
	}
}

// groupAction runs for a group given no known verb: alone, it prints the group's help;
// with an unknown verb, it is a usage error.
func groupAction(cc *urfave.Context) error {
	if cc.NArg() == 0 {
		return urfave.ShowSubcommandHelp(cc)
	}
	var names []string
	for _, s := range cc.Command.VisibleCommands() {
		names = append(names, s.Name)
	}
	return usagef("unknown command %q for %s (one of: %s)", cc.Args().First(), cc.Command.HelpName, strings.Join(names, ", "))
}

// outputFlag declares -o/-output on a read command: "json" prints the response as protojson.
func outputFlag(fs *flag.FlagSet) *outputFormat {
	o := new(outputFormat)
	fs.Var(o, "output", "output format: text or json (the response, protojson with proto field names)")
	fs.Var(o, "o", "")
	return o
}

// outputFormat is the value of -output: "" (text), "text" or "json".
type outputFormat string

func (o *outputFormat) String() string { return string(*o) }
func (o *outputFormat) Set(s string) error {
	switch s {
	case "text", "json":
		*o = outputFormat(s)
		return nil
	}
	return fmt.Errorf("%q: text or json", s)
}

func (o *outputFormat) json() bool { return o != nil && *o == "json" }

// emit prints m as protojson when -o json was asked for, else the human text.
func (c *cli) emit(o *outputFormat, m proto.Message, human func() error) error {
	if !o.json() {
		return human()
	}
	b, err := protojson.MarshalOptions{Multiline: true, Indent: "  ", UseProtoNames: true}.Marshal(m)
	if err != nil {
		return err
	}
	_, err = fmt.Fprintln(c.out, string(b))
	return err
}

// stdFlag is a flag of a verb's standard flag.FlagSet as a urfave flag; flags sharing one
// value are one flag with several names (-o and -output).
type stdFlag struct {
	names []string
	f     *flag.Flag // the one with the usage text
}

var (
	_ urfave.Flag        = (*stdFlag)(nil)
	_ urfave.VisibleFlag = (*stdFlag)(nil)
)

func stdFlags(fs *flag.FlagSet) []urfave.Flag {
	var out []urfave.Flag
	byValue := map[flag.Value]*stdFlag{}
	fs.VisitAll(func(f *flag.Flag) {
		if s, ok := byValue[f.Value]; ok {
			if s.f.Usage == "" && f.Usage != "" {
				s.names = append([]string{f.Name}, s.names...)
				s.f = f
			} else {
				s.names = append(s.names, f.Name)
			}
			return
		}
		s := &stdFlag{names: []string{f.Name}, f: f}
		byValue[f.Value] = s
		out = append(out, s)
	})
	return out
}

func (s *stdFlag) Apply(set *flag.FlagSet) error {
	for _, n := range s.names {
		set.Var(s.f.Value, n, s.f.Usage)
	}
	return nil
}

func (s *stdFlag) Names() []string  { return s.names }
func (s *stdFlag) IsSet() bool      { return s.f.Value.String() != s.f.DefValue }
func (s *stdFlag) IsVisible() bool  { return true }
func (s *stdFlag) TakesValue() bool { return !isBool(s.f) }

func isBool(f *flag.Flag) bool {
	b, ok := f.Value.(interface{ IsBoolFlag() bool })
	return ok && b.IsBoolFlag()
}

// String is the flag's line in help: "-name VALUE\tusage (default: D)".
func (s *stdFlag) String() string {
	valueName, usage := flag.UnquoteUsage(s.f)
	var names []string
	for _, n := range s.names {
		names = append(names, "-"+n)
	}
	head := strings.Join(names, ", ")
	if !isBool(s.f) {
		if valueName == "" {
			valueName = "value"
		}
		head += " " + valueName
	}
	if d := s.f.DefValue; d != "" && d != "false" && d != "0" && d != "0s" && d != "[]" {
		usage += fmt.Sprintf(" (default: %s)", d)
	}
	return head + "\t" + usage
}

// app is the command tree.
func (c *cli) app(stdout, stderr io.Writer) *urfave.App {
	var legacyCert, legacyKey string
	return &urfave.App{
		Name:  "hufu",
		Usage: "the hufu client: the phone, business systems and bid-opening systems against hufud",
		Description: `hufu plays the phone (sign in, verify identity, choose a platform, hold one share of split
SM2 keys and sign, decrypt and refresh with them) and, with a system client's TLS certificate
(-tls-cert/-tls-key), a business system, a review or reconciliation desk or a bid-opening
system. verify, encrypt, audit verify, opening verify and key show -pem need no daemon.
Every command takes -h. Read commands take -o json: the response as protojson.

The certificate PIN comes from -pin, else HUFU_PIN, else a prompt. Shares are kept in
HOME/keys, sealed under HOME/device.key (0600; keep it out of backups of HOME/keys).

` + exitCodesHelp,
		Flags: []urfave.Flag{
			&urfave.StringFlag{Name: "addr", Usage: "daemon address `HOST:PORT`", EnvVars: []string{"HUFU_ADDR"}, Value: "127.0.0.1:7443", Destination: &c.addr},
			&urfave.StringFlag{Name: "daemon-dir", Usage: "a local daemon's data `DIR`, for its CA and development SMS outbox", EnvVars: []string{"HUFU_DAEMON_DIR"}, Value: ".hufu", Destination: &c.daemonDir},
			&urfave.StringFlag{Name: "ca", Usage: "CA certificate `FILE` of the daemon (default: DIR/tls/ca.pem)", EnvVars: []string{"HUFU_CA"}, Destination: &c.ca},
			&urfave.StringFlag{Name: "tls-cert", Usage: "client certificate `FILE` of a system client, for system calls", EnvVars: []string{"HUFU_TLS_CERT"}, Destination: &c.cert},
			&urfave.StringFlag{Name: "tls-key", Usage: "the client certificate's private key `FILE`", EnvVars: []string{"HUFU_TLS_KEY"}, Destination: &c.key},
			&urfave.StringFlag{Name: "home", Usage: "`DIR` where the CLI keeps its session, device id and key shares (default: ~/.config/hufu)", EnvVars: []string{"HUFU_HOME"}, Destination: &c.home},
			// The names before -tls-cert/-tls-key: refused with the new ones named.
			&urfave.StringFlag{Name: "cert", Hidden: true, Destination: &legacyCert},
			&urfave.StringFlag{Name: "key", Hidden: true, Destination: &legacyKey},
		},
		Commands:             c.commands(),
		EnableBashCompletion: true,
		HideVersion:          true,
		Writer:               stdout,
		ErrWriter:            stderr,
		OnUsageError:         onUsageError,
		ExitErrHandler:       func(*urfave.Context, error) {}, // main exits, by exitCode
		Before: func(cc *urfave.Context) error {
			if legacyCert != "" || legacyKey != "" {
				return usagef("the global -cert and -key flags are now -tls-cert and -tls-key (HUFU_TLS_CERT, HUFU_TLS_KEY): -cert names a certificate serial and -key a key id wherever a command takes them")
			}
			for _, e := range []struct {
				old, new string
				dst      *string
			}{{"HUFU_CERT", "HUFU_TLS_CERT", &c.cert}, {"HUFU_KEY", "HUFU_TLS_KEY", &c.key}} {
				v := os.Getenv(e.old)
				if v == "" {
					continue
				}
				if os.Getenv(e.new) != "" || *e.dst != "" {
					fmt.Fprintf(stderr, "hufu: warning: %s is ignored: %s (or its flag) is set\n", e.old, e.new)
					continue
				}
				fmt.Fprintf(stderr, "hufu: warning: %s is deprecated: rename it %s\n", e.old, e.new)
				*e.dst = v
			}
			if c.home == "" {
				dir, _ := os.UserConfigDir()
				c.home = filepath.Join(dir, "hufu")
			}
			if c.ca == "" {
				c.ca = filepath.Join(c.daemonDir, "tls", "ca.pem")
			}
			return nil
		},
		Action: func(cc *urfave.Context) error {
			if cc.NArg() == 0 {
				return urfave.ShowAppHelp(cc)
			}
			return usagef("unknown command %q (hufu help lists them)", cc.Args().First())
		},
	}
}

// commands is the root's command list, by group. The admin group (hufu admin, on the admin
// client library) goes in adminCommands.
func (c *cli) commands() []*urfave.Command {
	var all []*urfave.Command
	for _, g := range []struct {
		category string
		cmds     []*urfave.Command
	}{
		{"Account", c.accountCommands()},
		{"Split keys", c.keyCommands()},
		{"Certificates", c.certCommands()},
		{"Enterprises", c.enterpriseCommands()},
		{"Seals", c.sealCommands()},
		{"Invoices", c.invoiceCommands()},
		{"Bank cards", c.cardCommands()},
		{"Help and feedback", c.supportCommands()},
		{"Payments", c.paymentCommands()},
		{"Mutual recognition", c.walletCommands()},
		{"After-sales", c.afterSalesCommands()},
		{"Scan sessions", c.scanCommands()},
		{"Bid openings", c.openingCommands()},
		{"Auditing", c.auditCommands()},
		{"Administration", c.adminCommands()},
		{"Other", c.otherCommands()},
	} {
		for _, cmd := range g.cmds {
			cmd.Category = g.category
		}
		all = append(all, g.cmds...)
	}
	return all
}

// adminCommands: hufu admin (admin.go), the admin surface on its client library.
func (c *cli) adminCommands() []*urfave.Command { return []*urfave.Command{c.adminGroup()} }
