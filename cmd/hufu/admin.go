package main

// hufu admin: the admin HTTP surface (package admin, endpoints and roles in admin/doc.go)
// through its Go client, admin/adminclient, so that operators, auditors and security
// officers need no curl. Every verb that talks to the appliance takes the connection flags
// of adminFlags; the token is read from a file or the environment, never from a flag value
// (which would land in the shell history and in ps). A backup is restored offline by hufud
// restore, which needs the HSM.

import (
	"bytes"
	"context"
	"crypto/ecdsa"
	"crypto/x509"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"
	urfave "github.com/urfave/cli/v2"
	"google.golang.org/protobuf/encoding/protojson"

	"github.com/hufu-hsm/hufu/admin/adminclient"
	"github.com/hufu-hsm/hufu/backup"
	"github.com/hufu-hsm/hufu/client"
)

// The connection's environment variables and default (config.OtherEnv lists them).
const (
	envAdminURL       = "HUFU_ADMIN_URL"
	envAdminToken     = "HUFU_ADMIN_TOKEN"
	envAdminTokenFile = "HUFU_ADMIN_TOKEN_FILE"
	envAdminCA        = "HUFU_ADMIN_CA"
	defaultAdminURL   = "http://127.0.0.1:7080"
)

const adminDesc = `Every command that calls the appliance takes:
   -admin-url URL    the admin listener (HUFU_ADMIN_URL; default http://127.0.0.1:7080)
   -token-file FILE  the admin token, from a file (HUFU_ADMIN_TOKEN_FILE), or else the token
                     itself in HUFU_ADMIN_TOKEN; never on the command line
   -admin-ca FILE    the CA of an https admin listener (HUFU_ADMIN_CA; default the system roots)
The roles: metrics_reader (metrics), operator (metrics, the audit public key, system-client
list), auditor (audit), security_officer (everything else). ready and crl need no token.
Read commands take -o json.`

// adminFlags are the connection flags of an admin verb.
type adminFlags struct{ url, tokenFile, ca string }

func addAdminFlags(fs *flag.FlagSet) *adminFlags {
	a := new(adminFlags)
	fs.StringVar(&a.url, "admin-url", "", "the admin listener's `URL` [HUFU_ADMIN_URL] (default: "+defaultAdminURL+")")
	fs.StringVar(&a.tokenFile, "token-file", "", "`FILE` holding the admin token [HUFU_ADMIN_TOKEN_FILE; or the token itself in HUFU_ADMIN_TOKEN]")
	fs.StringVar(&a.ca, "admin-ca", "", "CA certificate `FILE` of an https admin listener [HUFU_ADMIN_CA] (default: the system roots)")
	return a
}

// adminClient makes the client of a's flags, their variables and the defaults: flags over
// the environment. needToken refuses to go on without a token.
func (c *cli) adminClient(a *adminFlags, needToken bool) (*adminclient.Client, error) {
	u := firstOf(a.url, os.Getenv(envAdminURL), defaultAdminURL)
	token, err := c.adminToken(a.tokenFile)
	if err != nil {
		return nil, err
	}
	if token == "" && needToken {
		return nil, usagef("this command needs an admin token: -token-file FILE, %s=FILE or %s=TOKEN", envAdminTokenFile, envAdminToken)
	}
	ac, err := adminclient.New(adminclient.Config{URL: u, Token: token, CAFile: firstOf(a.ca, os.Getenv(envAdminCA))})
	if err != nil {
		return nil, usagef("%w (-admin-url, %s)", err, envAdminURL)
	}
	return ac, nil
}

// adminToken reads the token: -token-file, else HUFU_ADMIN_TOKEN_FILE or HUFU_ADMIN_TOKEN
// (not both: which one was meant is anyone's guess).
func (c *cli) adminToken(file string) (string, error) {
	if file == "" {
		file = os.Getenv(envAdminTokenFile)
		if tok := os.Getenv(envAdminToken); tok != "" {
			if file != "" {
				return "", usagef("both %s and %s are set: unset one (or give -token-file)", envAdminTokenFile, envAdminToken)
			}
			return strings.TrimSpace(tok), nil
		}
	}
	if file == "" {
		return "", nil
	}
	b, err := os.ReadFile(file)
	if err != nil {
		return "", fmt.Errorf("admin token: %w", err)
	}
	tok := strings.TrimSpace(string(b))
	if tok == "" || strings.ContainsAny(tok, " \t\r\n") {
		return "", fmt.Errorf("admin token: %s: want the token alone on one line", file)
	}
	if st, err := os.Stat(file); err == nil && st.Mode().Perm()&0o077 != 0 {
		fmt.Fprintf(c.errOut, "hufu: warning: the token file %s can be read by others (mode %04o): chmod 600 it\n", file, st.Mode().Perm())
	}
	return tok, nil
}

func firstOf(s ...string) string {
	for _, x := range s {
		if x != "" {
			return x
		}
	}
	return ""
}

// adminCommand makes an admin verb: its flags plus the connection's, run offline (no gRPC
// connection, no state file) with a client of the admin surface.
func (c *cli) adminCommand(v verb, needToken bool, do func(ctx context.Context, ac *adminclient.Client, pos []string) error) *urfave.Command {
	if v.fs == nil {
		v.fs = newFlags()
	}
	af := addAdminFlags(v.fs)
	v.offline = true
	v.run = func(ctx context.Context, _ *client.Conn, pos []string) error {
		ac, err := c.adminClient(af, needToken)
		if err != nil {
			return err
		}
		return withRequestID(do(ctx, ac, pos))
	}
	return c.command(v)
}

// withRequestID adds the request id of a refused request to its message: it finds the
// request in the daemon's log.
func withRequestID(err error) error {
	var e *adminclient.Error
	if errors.As(err, &e) && e.RequestID != "" {
		return fmt.Errorf("%w (request id %s)", err, e.RequestID)
	}
	return err
}

// adminExitCode is the exit code of a refusal by the admin surface, by its HTTP status,
// in the classes of the gRPC codes (exitCode).
func adminExitCode(status int) int {
	switch {
	case status == 401 || status == 403:
		return exitAuth
	case status == 404:
		return exitNotFound
	case status == 409 || status == 412:
		return exitConflict
	case status == 400 || status == 413 || status == 422:
		return exitInvalid
	case status == 429 || status >= 500:
		return exitUnavailable
	}
	return exitError
}

// adminOutput declares -o/-output on an admin read verb: "json" prints the client's answer
// as JSON.
func adminOutput(fs *flag.FlagSet) *outputFormat {
	o := new(outputFormat)
	fs.Var(o, "output", "output format: text or json (the answer as JSON)")
	fs.Var(o, "o", "")
	return o
}

// emitJSON prints v as indented JSON when -o json was asked for, else the human text.
func (c *cli) emitJSON(o *outputFormat, v any, human func() error) error {
	if !o.json() {
		return human()
	}
	b, err := json.MarshalIndent(v, "", "  ")
	if err != nil {
		return err
	}
	_, err = fmt.Fprintln(c.out, string(b))
	return err
}

func (c *cli) table(header string, rows func(w io.Writer)) error {
	tw := tabwriter.NewWriter(c.out, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, header)
	rows(tw)
	return tw.Flush()
}

func fmtTime(t *time.Time) string {
	if t == nil || t.IsZero() {
		return "-"
	}
	return t.Local().Format("2006-01-02 15:04 MST")
}

func dash(s string) string {
	if s == "" {
		return "-"
	}
	return s
}

// adminGroup is hufu admin.
func (c *cli) adminGroup() *urfave.Command {
	return group("admin", "the admin surface: readiness, metrics, tokens, approvals, system clients, audit, backups, KEK rotation, CRLs, CA revocation", adminDesc,
		c.adminReadyCommand(),
		c.adminMetricsCommand(),
		group("token", "admin tokens: list, create, revoke (security officer)", "", c.adminTokenListCommand(), c.adminTokenCreateCommand(), c.adminTokenRevokeCommand()),
		group("approval", "requests waiting for a second security officer: list, approve, reject", "",
			c.adminApprovalListCommand(), c.adminApprovalDecideCommand("approve"), c.adminApprovalDecideCommand("reject")),
		group("system-client", "business and bid-opening systems allowed gRPC services: list, register, remove", "",
			c.adminSystemClientListCommand(), c.adminSystemClientRegisterCommand(), c.adminSystemClientRemoveCommand()),
		group("audit", "the audit log: export, checkpoints, public key, verify (auditor)", "",
			c.adminAuditExportCommand(), c.adminAuditCheckpointsCommand(), c.adminAuditPublicKeyCommand(), c.adminAuditVerifyCommand()),
		c.adminBackupCommand(),
		group("kek", "key-encryption keys: status, rotate, finish, erase (security officer)", "",
			c.adminKEKStatusCommand(), c.adminKEKRotateCommand(), c.adminKEKFinishCommand(), c.adminKEKEraseCommand()),
		c.adminCRLCommand(),
		group("ca", "the embedded CAs: revoke an issuing CA (security officer, + a second officer)", "", c.adminCARevokeCommand()),
	)
}

func (c *cli) adminReadyCommand() *urfave.Command {
	fs := newFlags()
	o := adminOutput(fs)
	return c.adminCommand(verb{name: "ready", usage: "readiness, check by check (exit 6 when not ready); errors are shown with a token", fs: fs, nargs: noArgs}, false,
		func(ctx context.Context, ac *adminclient.Client, _ []string) error {
			r, err := ac.Ready(ctx)
			if err != nil {
				return err
			}
			out := struct {
				Ready bool     `json:"ready"`
				Lines []string `json:"lines"`
			}{r.Ready, r.Lines}
			if err := c.emitJSON(o, out, func() error {
				for _, l := range r.Lines {
					fmt.Fprintln(c.out, l)
				}
				return nil
			}); err != nil {
				return err
			}
			if !r.Ready {
				return &adminclient.Error{Status: 503, Message: "the appliance is not ready"}
			}
			return nil
		})
}

func (c *cli) adminMetricsCommand() *urfave.Command {
	fs := newFlags()
	o := adminOutput(fs)
	return c.adminCommand(verb{name: "metrics", usage: "the Prometheus metrics (text exposition; -o json: the metric families as JSON)", fs: fs, nargs: noArgs}, true,
		func(ctx context.Context, ac *adminclient.Client, _ []string) error {
			b, err := ac.Metrics(ctx)
			if err != nil {
				return err
			}
			if !o.json() {
				_, err := c.out.Write(b)
				return err
			}
			p := expfmt.NewTextParser(model.UTF8Validation)
			fams, err := p.TextToMetricFamilies(bytes.NewReader(b))
			if err != nil {
				return fmt.Errorf("metrics: %w", err)
			}
			out := map[string]json.RawMessage{}
			for name, f := range fams {
				j, err := protojson.MarshalOptions{UseProtoNames: true}.Marshal(f)
				if err != nil {
					return err
				}
				out[name] = j
			}
			return c.emitJSON(o, out, nil)
		})
}

// Tokens.

func (c *cli) adminTokenListCommand() *urfave.Command {
	fs := newFlags()
	o := adminOutput(fs)
	return c.adminCommand(verb{name: "list", usage: "the configured and the online tokens (no secrets)", fs: fs, nargs: noArgs}, true,
		func(ctx context.Context, ac *adminclient.Client, _ []string) error {
			ts, err := ac.Tokens(ctx)
			if err != nil {
				return err
			}
			return c.emitJSON(o, struct {
				Tokens []adminclient.TokenInfo `json:"tokens"`
			}{ts}, func() error {
				return c.table("NAME\tROLE\tSOURCE\tSTATE\tEXPIRES\tCREATED BY", func(w io.Writer) {
					for _, t := range ts {
						fmt.Fprintf(w, "%s\t%s\t%s\t%s\t%s\t%s\n", t.Name, t.Role, t.Source, t.State, fmtTime(t.Expires), dash(t.CreatedBy))
					}
				})
			})
		})
}

func (c *cli) adminTokenCreateCommand() *urfave.Command {
	fs := newFlags()
	name := fs.String("name", "", "the holder's `NAME` (the token id in audit records; required)")
	role := fs.String("role", "", "`ROLE`: metrics_reader, operator, auditor or security_officer (required)")
	expires := fs.Duration("expires-in", 30*24*time.Hour, "validity, 1m to 8760h")
	outFile := fs.String("out", "", "write the token to a new `FILE` (0600) instead of standard output")
	o := adminOutput(fs)
	return c.adminCommand(verb{name: "create", usage: "create an online token; it is shown once", fs: fs, nargs: noArgs,
		desc: "The token is printed once, on standard output (or into -out FILE, 0600). A security_officer\n" +
			"token opens nothing until a second security officer approves its request."}, true,
		func(ctx context.Context, ac *adminclient.Client, _ []string) error {
			if *name == "" || *role == "" {
				return usagef("usage: hufu admin token create -name NAME -role ROLE [-expires-in 720h]")
			}
			if *outFile != "" {
				if _, err := os.Lstat(*outFile); err == nil {
					return fmt.Errorf("%s exists: not overwritten (the token would be shown once)", *outFile)
				}
			}
			ct, err := ac.CreateToken(ctx, *name, *role, *expires)
			if err != nil {
				return err
			}
			if *outFile != "" {
				if err := writeNew(*outFile, []byte(ct.Token+"\n"), 0o600); err != nil {
					// The token exists and is shown once: print it rather than lose it.
					fmt.Fprintf(c.errOut, "hufu: %v: the token follows on standard output\n", err)
					fmt.Fprintln(c.out, ct.Token)
					return err
				}
			}
			pending := ""
			if ct.Approval != nil {
				pending = fmt.Sprintf("; it opens nothing until a second security officer approves request %s (hufu admin approval approve %s)", ct.Approval.ID, ct.Approval.ID)
			}
			if o.json() {
				shown := *ct
				if *outFile != "" {
					shown.Token = ""
				}
				return c.emitJSON(o, shown, nil)
			}
			if *outFile != "" {
				fmt.Fprintf(c.out, "wrote the token of %s (%s, %s, expires %s) to %s%s\n", ct.Info.Name, ct.Info.Role, ct.Info.State, fmtTime(ct.Info.Expires), *outFile, pending)
				return nil
			}
			fmt.Fprintf(c.errOut, "hufu: the token of %s (%s, %s, expires %s) is shown once, below: keep it in a file only its holder can read (0600)%s\n",
				ct.Info.Name, ct.Info.Role, ct.Info.State, fmtTime(ct.Info.Expires), pending)
			fmt.Fprintln(c.out, ct.Token)
			return nil
		})
}

func (c *cli) adminTokenRevokeCommand() *urfave.Command {
	return c.adminCommand(verb{name: "revoke", usage: "revoke an online token: refused from now on", args: "NAME", nargs: oneArg}, true,
		func(ctx context.Context, ac *adminclient.Client, pos []string) error {
			if err := ac.RevokeToken(ctx, pos[0]); err != nil {
				return err
			}
			fmt.Fprintf(c.out, "revoked token %s\n", pos[0])
			return nil
		})
}

// Approvals.

func (c *cli) adminApprovalListCommand() *urfave.Command {
	fs := newFlags()
	state := fs.String("state", "", "only `STATE` requests: pending, approved, rejected or expired (default: all)")
	o := adminOutput(fs)
	return c.adminCommand(verb{name: "list", usage: "approval requests", fs: fs, nargs: noArgs}, true,
		func(ctx context.Context, ac *adminclient.Client, _ []string) error {
			as, err := ac.Approvals(ctx, *state)
			if err != nil {
				return err
			}
			return c.emitJSON(o, struct {
				Approvals []adminclient.Approval `json:"approvals"`
			}{as}, func() error {
				return c.table("ID\tKIND\tSTATE\tREQUESTED BY\tFOR\tEXPIRES", func(w io.Writer) {
					for _, a := range as {
						fmt.Fprintf(w, "%s\t%s\t%s\t%s\t%s\t%s\n", a.ID, a.Kind, a.State, a.RequestedBy, approvalSubject(a), fmtTime(&a.Expires))
					}
				})
			})
		})
}

// approvalSubject is what a request grants, in a few words.
func approvalSubject(a adminclient.Approval) string {
	switch {
	case a.SystemClient != nil:
		return "system client " + a.SystemClient.Name + " (" + strings.Join(a.SystemClient.Services, ",") + ")"
	case a.TokenName != "":
		return "token " + a.TokenName
	case a.IssuingCARevocation != nil:
		return "revoke the issuing CA of " + a.IssuingCARevocation.CA + " (" + a.IssuingCARevocation.Reason + ")"
	}
	return "-"
}

func (c *cli) adminApprovalDecideCommand(sub string) *urfave.Command {
	fs := newFlags()
	var certOut, keyOut *string
	usage := "reject (or, by the one who asked, withdraw) a request"
	if sub == "approve" {
		usage = "approve a request as a second security officer: the change is made"
		certOut = fs.String("cert-out", "", "development: write a desk client's issued certificate to `FILE` (default: NAME.pem)")
		keyOut = fs.String("key-out", "", "development: write its private key to `FILE`, 0600 (default: NAME-key.pem)")
	}
	o := adminOutput(fs)
	return c.adminCommand(verb{name: sub, usage: usage, args: "ID", fs: fs, nargs: oneArg}, true,
		func(ctx context.Context, ac *adminclient.Client, pos []string) error {
			if certOut != nil {
				if err := refuseExisting(*certOut, *keyOut); err != nil {
					return err
				}
			}
			decide := ac.Reject
			if sub == "approve" {
				decide = ac.Approve
			}
			d, err := decide(ctx, pos[0])
			if err != nil {
				return err
			}
			var saved string
			if d.Certificate != nil && certOut != nil {
				name := "system-client"
				switch {
				case d.Client != nil:
					name = d.Client.Name
				case d.Approval.SystemClient != nil:
					name = d.Approval.SystemClient.Name
				}
				if saved, err = c.saveIssued(d.Certificate, name, *certOut, *keyOut); err != nil {
					return err
				}
				shown := *d.Certificate
				shown.KeyPEM = ""
				d.Certificate = &shown
			}
			return c.emitJSON(o, d, func() error {
				fmt.Fprintf(c.out, "%s %s: %s, %s\n", d.Approval.State, d.Approval.ID, d.Approval.Kind, approvalSubject(d.Approval))
				switch {
				case d.Client != nil:
					fmt.Fprintf(c.out, "system client %s registered for %s\n", d.Client.Name, strings.Join(d.Client.Services, ", "))
				case d.Token != nil:
					fmt.Fprintf(c.out, "token %s: %s\n", d.Token.Name, d.Token.State)
				case d.IssuingCARevoked != nil:
					r := d.IssuingCARevoked
					fmt.Fprintf(c.out, "revoked the issuing CA of %s (serial %s, %s) at %s\n", r.CA, r.IssuingSerial, r.Reason, fmtTime(&r.Revoked))
					if r.RootCRLError != "" {
						fmt.Fprintf(c.out, "the root CRL: %s\n", r.RootCRLError)
					} else {
						fmt.Fprintf(c.out, "published root CRL number %d; every certificate under this issuing CA now fails a relying party's chain check\n", r.RootCRLNumber)
					}
				}
				if saved != "" {
					fmt.Fprintln(c.out, saved)
				}
				return nil
			})
		})
}

// System clients.

func (c *cli) adminSystemClientListCommand() *urfave.Command {
	fs := newFlags()
	o := adminOutput(fs)
	return c.adminCommand(verb{name: "list", usage: "the configured and the registered system clients", fs: fs, nargs: noArgs}, true,
		func(ctx context.Context, ac *adminclient.Client, _ []string) error {
			cs, err := ac.SystemClients(ctx)
			if err != nil {
				return err
			}
			return c.emitJSON(o, struct {
				Clients []adminclient.SystemClient `json:"clients"`
			}{cs}, func() error {
				return c.table("NAME\tSOURCE\tSERVICES\tDESKS\tREGISTERED BY", func(w io.Writer) {
					for _, s := range cs {
						fmt.Fprintf(w, "%s\t%s\t%s\t%s\t%s\n", s.Name, dash(s.Source), strings.Join(s.Services, ","), dash(strings.Join(s.Desks, ",")), dash(s.RegisteredBy))
					}
				})
			})
		})
}

// stringList is a repeatable flag whose values may also be comma-separated.
type stringList []string

func (l *stringList) String() string { return strings.Join(*l, ",") }
func (l *stringList) Set(s string) error {
	for _, v := range strings.Split(s, ",") {
		if v = strings.TrimSpace(v); v != "" {
			*l = append(*l, v)
		}
	}
	return nil
}

func (c *cli) adminSystemClientRegisterCommand() *urfave.Command {
	fs := newFlags()
	var services stringList
	fs.Var(&services, "service", "a gRPC `SERVICE` it may call, e.g. hufu.v1.ScanService or ScanService (repeat, or comma-separate)")
	certOut := fs.String("cert-out", "", "development: write the issued client certificate to `FILE` (default: NAME.pem)")
	keyOut := fs.String("key-out", "", "development: write its private key to `FILE`, 0600 (default: NAME-key.pem)")
	o := adminOutput(fs)
	return c.adminCommand(verb{name: "register", usage: "register a system client (a desk service waits for a second officer's approval)", args: "NAME", fs: fs, nargs: oneArg,
		desc: "NAME is the common name of the client certificate the system presents. In development the\n" +
			"appliance issues that certificate and its key, once: they are written to -cert-out and -key-out."}, true,
		func(ctx context.Context, ac *adminclient.Client, pos []string) error {
			if len(services) == 0 {
				return usagef("usage: hufu admin system-client register NAME -service SERVICE [-service ...]")
			}
			full := make([]string, len(services))
			for i, s := range services {
				if !strings.Contains(s, ".") {
					s = "hufu.v1." + s
				}
				full[i] = s
			}
			if err := refuseExisting(*certOut, *keyOut); err != nil {
				return err
			}
			reg, err := ac.RegisterSystemClient(ctx, pos[0], full)
			if err != nil {
				return err
			}
			var saved string
			if reg.Certificate != nil {
				if saved, err = c.saveIssued(reg.Certificate, pos[0], *certOut, *keyOut); err != nil {
					return err
				}
				shown := *reg.Certificate
				shown.KeyPEM = ""
				reg.Certificate = &shown
			}
			return c.emitJSON(o, reg, func() error {
				if reg.Approval != nil {
					fmt.Fprintf(c.out, "pending: request %s waits for a second security officer (hufu admin approval approve %s), until %s\n",
						reg.Approval.ID, reg.Approval.ID, fmtTime(&reg.Approval.Expires))
				}
				if reg.Client != nil {
					fmt.Fprintf(c.out, "registered system client %s for %s\n", reg.Client.Name, strings.Join(reg.Client.Services, ", "))
				}
				if saved != "" {
					fmt.Fprintln(c.out, saved)
				}
				if reg.Note != "" && reg.Approval == nil {
					fmt.Fprintln(c.out, reg.Note)
				}
				return nil
			})
		})
}

func (c *cli) adminSystemClientRemoveCommand() *urfave.Command {
	return c.adminCommand(verb{name: "remove", usage: "remove a registered system client's permissions (revoke its certificate at the CA too)", args: "NAME", nargs: oneArg}, true,
		func(ctx context.Context, ac *adminclient.Client, pos []string) error {
			if err := ac.RemoveSystemClient(ctx, pos[0]); err != nil {
				return err
			}
			fmt.Fprintf(c.out, "removed system client %s\n", pos[0])
			return nil
		})
}

// refuseExisting refuses files given to write a certificate and key to that exist: they are
// checked before the appliance issues the key, which it shows once.
func refuseExisting(files ...string) error {
	for _, f := range files {
		if f == "" {
			continue
		}
		if _, err := os.Lstat(f); err == nil {
			return fmt.Errorf("%s exists: not overwritten", f)
		}
	}
	return nil
}

// saveIssued writes an issued development certificate and its key (0600) to new files:
// certOut and keyOut, or NAME.pem and NAME-key.pem (another name if those exist: the key
// is shown once). It returns the line that says where.
func (c *cli) saveIssued(ic *adminclient.IssuedCertificate, name, certOut, keyOut string) (string, error) {
	save := func(given, pattern, data string, perm os.FileMode) (string, error) {
		if given != "" {
			return given, writeNew(given, []byte(data), perm)
		}
		p := strings.Replace(pattern, "*", "", 1)
		err := writeNew(p, []byte(data), perm)
		if errors.Is(err, fs.ErrExist) {
			f, err := os.CreateTemp(".", pattern)
			if err != nil {
				return "", err
			}
			defer f.Close()
			if err := f.Chmod(perm); err != nil {
				return "", err
			}
			if _, err := f.WriteString(data); err != nil {
				return "", err
			}
			return f.Name(), f.Close()
		}
		return p, err
	}
	base := filepath.Base(name)
	cf, err := save(certOut, base+"*.pem", ic.CertificatePEM, 0o644)
	if err != nil {
		return "", fmt.Errorf("writing the issued certificate: %w", err)
	}
	kf, err := save(keyOut, base+"-key*.pem", ic.KeyPEM, 0o600)
	if err != nil {
		return "", fmt.Errorf("writing the issued private key (shown once: register again after removing the client): %w", err)
	}
	return fmt.Sprintf("wrote the development certificate %s (serial %s) to %s and its private key to %s (0600)", name, ic.Serial, cf, kf), nil
}

// writeNew writes data to a file that must not exist yet, synced.
func writeNew(name string, data []byte, perm os.FileMode) error {
	f, err := os.OpenFile(name, os.O_WRONLY|os.O_CREATE|os.O_EXCL, perm)
	if err != nil {
		return err
	}
	if _, err := f.Write(data); err != nil {
		f.Close()
		return err
	}
	if err := f.Sync(); err != nil {
		f.Close()
		return err
	}
	return f.Close()
}

// streamToNew streams into a new file (never an existing one), or to standard output for
// "-"; on failure the partial file is removed. It returns the bytes written.
func (c *cli) streamToNew(name string, perm os.FileMode, stream func(io.Writer) error) (int64, error) {
	if name == "-" {
		cw := &countWriter{w: c.out}
		err := stream(cw)
		return cw.n, err
	}
	f, err := os.OpenFile(name, os.O_WRONLY|os.O_CREATE|os.O_EXCL, perm)
	if errors.Is(err, fs.ErrExist) {
		return 0, fmt.Errorf("%s exists: not overwritten", name)
	}
	if err != nil {
		return 0, err
	}
	cw := &countWriter{w: f}
	err = stream(cw)
	if err == nil {
		err = f.Sync()
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		os.Remove(name)
		return 0, err
	}
	return cw.n, nil
}

type countWriter struct {
	w io.Writer
	n int64
}

func (w *countWriter) Write(p []byte) (int, error) {
	n, err := w.w.Write(p)
	w.n += int64(n)
	return n, err
}

// Audit.

func (c *cli) adminAuditExportCommand() *urfave.Command {
	fs := newFlags()
	out := fs.String("o", "", "write the export (JSON lines) to a new `FILE`; - for standard output (required)")
	from := fs.Uint64("from", 0, "the first record (default: the first)")
	to := fs.Uint64("to", 0, "the last record (default: the head, after a fresh signed checkpoint)")
	return c.adminCommand(verb{name: "export", usage: "export the audit log (verify it with hufu audit verify)", fs: fs, nargs: noArgs, noTimeout: true}, true,
		func(ctx context.Context, ac *adminclient.Client, _ []string) error {
			if *out == "" {
				return usagef("usage: hufu admin audit export -o FILE [-from N] [-to M]")
			}
			n, err := c.streamToNew(*out, 0o600, func(w io.Writer) error { return ac.AuditExport(ctx, w, *from, *to) })
			if err != nil {
				return err
			}
			if *out != "-" {
				fmt.Fprintf(c.out, "wrote %s (%d bytes)\n", *out, n)
			}
			return nil
		})
}

func (c *cli) adminAuditCheckpointsCommand() *urfave.Command {
	fs := newFlags()
	after := fs.Uint64("after", 0, "checkpoints after this log size")
	limit := fs.Int("limit", 0, "at most this many, 1 to 1000 (default: the appliance's page)")
	o := adminOutput(fs)
	return c.adminCommand(verb{name: "checkpoints", usage: "signed audit checkpoints (a page; the next page's -after is printed)", fs: fs, nargs: noArgs}, true,
		func(ctx context.Context, ac *adminclient.Client, _ []string) error {
			cks, next, err := ac.Checkpoints(ctx, *after, *limit)
			if err != nil {
				return err
			}
			return c.emitJSON(o, struct {
				Checkpoints []adminclient.Checkpoint `json:"checkpoints"`
				Next        uint64                   `json:"next,omitempty"`
			}{cks, next}, func() error {
				err := c.table("SIZE\tTIME\tKEY\tHEAD", func(w io.Writer) {
					for _, ck := range cks {
						fmt.Fprintf(w, "%d\t%s\t%s\t%s\n", ck.Size, ck.Time, ck.KeyID, ck.Head)
					}
				})
				if next != 0 {
					fmt.Fprintf(c.errOut, "hufu: more: -after %d\n", next)
				}
				return err
			})
		})
}

func (c *cli) adminAuditPublicKeyCommand() *urfave.Command {
	fs := newFlags()
	out := fs.String("o", "", "write the PEM to a new `FILE` (default: standard output)")
	return c.adminCommand(verb{name: "public-key", usage: "the audit public key (PEM) that verifies checkpoints", fs: fs, nargs: noArgs,
		desc: "Keep the key of the day of installation: a key fetched later proves nothing if the appliance\n" +
			"was compromised in between. An existing file is not overwritten."}, true,
		func(ctx context.Context, ac *adminclient.Client, _ []string) error {
			pem, err := ac.AuditPublicKey(ctx)
			if err != nil {
				return err
			}
			if *out == "" || *out == "-" {
				_, err := c.out.Write(pem)
				return err
			}
			if err := writeNew(*out, pem, 0o644); err != nil {
				return err
			}
			fmt.Fprintf(c.out, "wrote %s\n", *out)
			return nil
		})
}

func (c *cli) adminAuditVerifyCommand() *urfave.Command {
	fs := newFlags()
	keyPath := fs.String("key", "", "the audit public key `PEM` kept from installation (default: fetched from the appliance, which proves less)")
	from := fs.Uint64("from", 0, "verify from this record (a range export)")
	to := fs.Uint64("to", 0, "verify up to this record (default: the head)")
	atLeast := fs.Uint64("at-least", 0, "the log must be signed through at least this record (from a checkpoint kept earlier)")
	keep := fs.String("export", "", "also keep the export in a new `FILE`")
	var heads pinnedHeads
	fs.Var(&heads, "head", "a head `N:HASH` printed by an earlier verify: the log must hold record N with exactly that hash (repeatable)")
	return c.adminCommand(verb{name: "verify", usage: "export the audit log and verify it here, as hufu audit verify does", fs: fs, nargs: noArgs, noTimeout: true}, true,
		func(ctx context.Context, ac *adminclient.Client, _ []string) (err error) {
			var pub *ecdsa.PublicKey
			if *keyPath != "" {
				if pub, err = readAuditKey(*keyPath); err != nil {
					return err
				}
			} else {
				b, err := ac.AuditPublicKey(ctx)
				if err != nil {
					return err
				}
				if pub, err = parseAuditKey(b, "the appliance's audit public key"); err != nil {
					return err
				}
				fmt.Fprintln(c.errOut, "hufu: note: verifying against the key the appliance serves now; -key with the key kept from installation proves more")
			}
			if *keep != "" {
				if _, err := os.Lstat(*keep); err == nil {
					return fmt.Errorf("%s exists: not overwritten", *keep)
				}
			}
			// Stream the export into the verifier; the export's error, if any, comes first.
			pr, pw := io.Pipe()
			exported := make(chan error, 1)
			go func() {
				var w io.Writer = pw
				var err error
				var f *os.File
				if *keep != "" {
					if f, err = os.OpenFile(*keep, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o600); err != nil {
						pw.CloseWithError(err)
						exported <- err
						return
					}
					w = io.MultiWriter(pw, f)
				}
				err = ac.AuditExport(ctx, w, *from, *to)
				if f != nil {
					if cerr := f.Close(); err == nil {
						err = cerr
					}
				}
				pw.CloseWithError(err) // nil: EOF
				exported <- err
			}()
			verr := c.verifyAuditExport(pr, pub, *from > 1, *atLeast, heads)
			pr.CloseWithError(errors.New("verification ended"))
			if err := <-exported; err != nil {
				return err
			}
			return verr
		})
}

// Backups.

func (c *cli) adminBackupCommand() *urfave.Command {
	fs := newFlags()
	out := fs.String("o", "", "write the archive to a new `FILE` (0600; never overwritten); - for standard output (required)")
	return c.adminCommand(verb{name: "backup", usage: "take an encrypted backup of the store (security officer)", fs: fs, nargs: noArgs, noTimeout: true,
		desc: "The archive is encrypted under a data key that the appliance's HSM wraps under its current\n" +
			"KEK: it opens only with that HSM token while that KEK is on it (take a new backup after\n" +
			"hufu admin kek finish). The file is checked to be complete (not cut short). Restore it\n" +
			"with hufud restore, on the appliance, with hufud stopped."}, true,
		func(ctx context.Context, ac *adminclient.Client, _ []string) error {
			if *out == "" {
				return usagef("usage: hufu admin backup -o FILE")
			}
			var name string
			n, err := c.streamToNew(*out, 0o600, func(w io.Writer) error {
				var err error
				name, err = ac.Backup(ctx, w)
				return err
			})
			if err != nil {
				return err
			}
			if *out == "-" {
				return nil
			}
			// A stream cut after the answer began can end cleanly: check the archive's end.
			h, err := checkBackup(*out)
			if err != nil {
				os.Remove(*out)
				return fmt.Errorf("the backup %s is not a complete archive, removed: %w", name, err)
			}
			fmt.Fprintf(c.out, "wrote %s: backup %s, %d bytes, encrypted under a data key wrapped by %s; restore it with hufud restore while %s is on the HSM\n",
				*out, name, n, h.KEK, h.KEK)
			return nil
		})
}

// checkBackup checks, without the HSM, that the file is a complete backup archive: its
// header, and chunks that end with the archive's short last chunk.
func checkBackup(name string) (*backup.Header, error) {
	f, err := os.Open(name)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	h, _, err := backup.CheckFraming(f)
	return h, err
}

// KEK rotation.

func (c *cli) printKEK(st *adminclient.KEKStatus) {
	fmt.Fprintf(c.out, "state    %s\ncurrent  %s\n", st.State, st.Current)
	for _, k := range st.KEKs {
		cur := ""
		if k.Current {
			cur = " (current)"
		}
		fmt.Fprintf(c.out, "kek      %s v%d%s\n", k.Label, k.Version, cur)
	}
	if st.From != "" {
		fmt.Fprintf(c.out, "rotation %s -> %s by %s, started %s, ended %s\n", st.From, st.To, dash(st.Actor), fmtTime(st.Started), fmtTime(st.Ended))
	}
	domains := make([]string, 0, len(st.Progress))
	for d := range st.Progress {
		domains = append(domains, d)
	}
	slices.Sort(domains)
	for _, d := range domains {
		p := st.Progress[d]
		fmt.Fprintf(c.out, "  %-12s %d/%d examined, %d rewrapped\n", d, p.Done, p.Total, p.Rewrapped)
	}
	if st.Error != "" {
		fmt.Fprintf(c.out, "error    %s\n", st.Error)
	}
	fmt.Fprintf(c.out, "erasure  last %s, next due %s\n", fmtTime(st.LastErasure), fmtTime(st.ErasureDue))
}

func (c *cli) adminKEKStatusCommand() *urfave.Command {
	fs := newFlags()
	o := adminOutput(fs)
	return c.adminCommand(verb{name: "status", usage: "the KEK versions and the rotation's state and progress", fs: fs, nargs: noArgs}, true,
		func(ctx context.Context, ac *adminclient.Client, _ []string) error {
			st, err := ac.KEKStatus(ctx)
			if err != nil {
				return err
			}
			return c.emitJSON(o, st, func() error { c.printKEK(st); return nil })
		})
}

// kekPoll is how often kek rotate -wait asks for the progress.
var kekPoll = time.Second

func (c *cli) adminKEKRotateCommand() *urfave.Command {
	fs := newFlags()
	wait := fs.Bool("wait", false, "wait until the rewrap is done (or failed)")
	o := adminOutput(fs)
	return c.adminCommand(verb{name: "rotate", usage: "create the next KEK (current at once) and rewrap every stored blob in the background", fs: fs, nargs: noArgs, noTimeout: true}, true,
		func(ctx context.Context, ac *adminclient.Client, _ []string) error {
			st, err := ac.RotateKEK(ctx)
			if err != nil {
				return err
			}
			for *wait && st.State == "running" {
				select {
				case <-ctx.Done():
					return ctx.Err()
				case <-time.After(kekPoll):
				}
				if st, err = ac.KEKStatus(ctx); err != nil {
					return err
				}
			}
			if err := c.emitJSON(o, st, func() error { c.printKEK(st); return nil }); err != nil {
				return err
			}
			if st.State == "failed" {
				return fmt.Errorf("the rewrap failed: %s (everything stays readable; fix the cause and rotate again, or finish)", st.Error)
			}
			if !o.json() {
				fmt.Fprintln(c.errOut, "hufu: when the state is rewrapped: hufu admin kek finish (destroys the old KEKs), then back up the HSM token and take a new backup")
			}
			return nil
		})
}

func (c *cli) adminKEKFinishCommand() *urfave.Command {
	fs := newFlags()
	yes := fs.Bool("yes", false, "do not ask for confirmation")
	o := adminOutput(fs)
	return c.adminCommand(verb{name: "finish", usage: "sweep again and DESTROY the old KEK versions (asks first unless -yes)", fs: fs, nargs: noArgs,
		desc: "Backups taken before the finish can no longer be opened: take a new backup right after it."}, true,
		func(ctx context.Context, ac *adminclient.Client, _ []string) error {
			if !*yes {
				st, err := ac.KEKStatus(ctx)
				if err != nil {
					return err
				}
				var old []string
				for _, k := range st.KEKs {
					if !k.Current {
						old = append(old, k.Label)
					}
				}
				fmt.Fprintf(c.errOut, "This destroys the old KEK versions in the HSM (%s); store backups taken before can no longer be opened.\nType yes to go on: ",
					dash(strings.Join(old, ", ")))
				line, err := c.in.ReadString('\n')
				if strings.TrimSpace(line) != "yes" {
					if err != nil && line == "" {
						return usagef("not confirmed (no answer on standard input): nothing destroyed; pass -yes to finish without asking")
					}
					return errors.New("not confirmed: nothing destroyed")
				}
			}
			fin, err := ac.FinishKEK(ctx)
			if err != nil {
				return err
			}
			return c.emitJSON(o, fin, func() error {
				fmt.Fprintf(c.out, "destroyed %s; current %s\n", dash(strings.Join(fin.Destroyed, ", ")), fin.Current)
				fmt.Fprintln(c.errOut, "hufu: back up the HSM token and take a new backup now: older backups can no longer be opened")
				return nil
			})
		})
}

func (c *cli) adminKEKEraseCommand() *urfave.Command {
	fs := newFlags()
	yes := fs.Bool("yes", false, "do not ask for confirmation")
	o := adminOutput(fs)
	return c.adminCommand(verb{name: "erase", usage: "make revocations final now: a new KEK, every live share rewrapped, the store compacted, the old KEKs DESTROYED (asks first unless -yes)", fs: fs, nargs: noArgs, noTimeout: true,
		desc: "Revoking deletes a key's server share from the live store at once; its old wrapped copy stays in the store's old files and in backups until an erasure destroys the KEK that wraps it. Backups taken before the erasure can no longer be restored: take a new backup right after it."}, true,
		func(ctx context.Context, ac *adminclient.Client, _ []string) error {
			if !*yes {
				st, err := ac.KEKStatus(ctx)
				if err != nil {
					return err
				}
				var kept []string
				for _, k := range st.KEKs {
					kept = append(kept, k.Label)
				}
				fmt.Fprintf(c.errOut, "This rewraps every live share under a new KEK and destroys %s in the HSM; store backups taken before can no longer be restored.\nType yes to go on: ",
					dash(strings.Join(kept, ", ")))
				line, err := c.in.ReadString('\n')
				if strings.TrimSpace(line) != "yes" {
					if err != nil && line == "" {
						return usagef("not confirmed (no answer on standard input): nothing done; pass -yes to erase without asking")
					}
					return errors.New("not confirmed: nothing done")
				}
			}
			e, err := ac.EraseKEK(ctx)
			if err != nil {
				return err
			}
			return c.emitJSON(o, e, func() error {
				resumed := ""
				if e.Resumed {
					resumed = " (took over an unfinished rotation)"
				}
				fmt.Fprintf(c.out, "erased: %d blobs rewrapped under %s%s, store compacted, destroyed %s\n",
					e.Rewrapped, e.Current, resumed, dash(strings.Join(e.Destroyed, ", ")))
				fmt.Fprintln(c.out, "revoked shares are now unrecoverable from the store's old files and from backups")
				fmt.Fprintf(c.errOut, "hufu: %s; back up the HSM token too\n", e.Backups)
				return nil
			})
		})
}

// CA revocation.

func (c *cli) adminCARevokeCommand() *urfave.Command {
	fs := newFlags()
	caID := fs.String("ca", "", "the embedded CA `ID` whose issuing CA to revoke (required)")
	reason := fs.String("reason", "", "the RFC 5280 `REASON`: keyCompromise, cACompromise, affiliationChanged, superseded or cessationOfOperation (required)")
	o := adminOutput(fs)
	return c.adminCommand(verb{name: "revoke", usage: "ask to revoke an embedded CA's issuing CA; a second security officer approves", fs: fs, nargs: noArgs,
		desc: "This puts the issuing CA certificate on its root's CRL once a second security officer\n" +
			"approves (hufu admin approval approve ID). It cannot be undone: every certificate the\n" +
			"issuing CA signed then fails a relying party's chain check at depth 1, and the appliance\n" +
			"issues nothing more under it. See docs/operations.md (Revoking an issuing CA) first."}, true,
		func(ctx context.Context, ac *adminclient.Client, _ []string) error {
			if *caID == "" || *reason == "" {
				return usagef("usage: hufu admin ca revoke -ca ID -reason REASON")
			}
			req, err := ac.RevokeIssuingCA(ctx, *caID, *reason)
			if err != nil {
				return err
			}
			return c.emitJSON(o, req, func() error {
				fmt.Fprintf(c.out, "pending: request %s to revoke the issuing CA of %s (%s) waits for a second security officer (hufu admin approval approve %s), until %s\n",
					req.Approval.ID, *caID, *reason, req.Approval.ID, fmtTime(&req.Approval.Expires))
				return nil
			})
		})
}

// CRLs.

func (c *cli) adminCRLCommand() *urfave.Command {
	fs := newFlags()
	out := fs.String("o", "", "write the DER CRL to `FILE` (replaced atomically, for mirrors); - for standard output (required)")
	return c.adminCommand(verb{name: "crl", usage: "fetch an embedded CA's current CRL (no token needed)", args: "CA", fs: fs, nargs: oneArg}, false,
		func(ctx context.Context, ac *adminclient.Client, pos []string) error {
			if *out == "" {
				return usagef("usage: hufu admin crl CA -o FILE")
			}
			der, err := ac.CRL(ctx, pos[0])
			if err != nil {
				return err
			}
			if *out == "-" {
				_, err := c.out.Write(der)
				return err
			}
			tmp, err := os.CreateTemp(filepath.Dir(*out), ".crl-*")
			if err != nil {
				return err
			}
			defer os.Remove(tmp.Name())
			if _, err := tmp.Write(der); err != nil {
				tmp.Close()
				return err
			}
			if err := tmp.Chmod(0o644); err != nil {
				tmp.Close()
				return err
			}
			if err := tmp.Close(); err != nil {
				return err
			}
			if err := os.Rename(tmp.Name(), *out); err != nil {
				return err
			}
			summary := ""
			if crl, err := x509.ParseRevocationList(der); err == nil {
				summary = fmt.Sprintf(": %d revoked, this update %s, next update %s", len(crl.RevokedCertificateEntries), fmtTime(&crl.ThisUpdate), fmtTime(&crl.NextUpdate))
			}
			fmt.Fprintf(c.out, "wrote %s (CRL of %s, %d bytes)%s\n", *out, pos[0], len(der), summary)
			return nil
		})
}
