// Command hufu is the hufu command-line client: it plays the phone (sign in, verify identity,
// choose a platform, hold one share of split SM2 keys and sign, decrypt and refresh with
// them) and, with a client certificate, a business system or a bid-opening system, against a
// running hufud. verify and encrypt are standard SM2 and, like audit verify and opening
// verify, need no daemon. Run "hufu help" for the commands.
//
// The command tree is github.com/urfave/cli/v2 (app.go): one constructor per command, with
// its flags, help text and action, in a file per command group (account.go, keys.go,
// cert.go and review.go, enterprise.go and transfer.go, seal.go, scan.go and rp.go,
// opening.go, audit.go, bench.go, other.go). The exit code tells the class of an error
// (exitCode: 2 usage, 3 unauthenticated, 4 not found...).
package main

import (
	"bufio"
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"unicode"

	hufuv1 "github.com/hufu-hsm/hufu/api/hufu/v1"
	"github.com/hufu-hsm/hufu/client"
	"github.com/hufu-hsm/hufu/daemon/accounts"
	"google.golang.org/grpc/status"
)

func main() {
	if err := run(os.Args[1:], os.Stdin, os.Stdout, os.Stderr); err != nil {
		fmt.Fprintln(os.Stderr, "hufu:", describe(err))
		os.Exit(exitCode(err))
	}
}

// describe turns an error into the one line the user sees. A gRPC status error wrapped with
// context ("client: open key K: ...") keeps the context and loses the "rpc error" noise.
func describe(err error) string {
	var grpcErr interface{ GRPCStatus() *status.Status }
	if !errors.As(err, &grpcErr) {
		return err.Error()
	}
	st := grpcErr.GRPCStatus()
	prefix := strings.TrimSuffix(err.Error(), grpcErr.(error).Error())
	// "ResourceExhausted" -> "resource exhausted"
	var words strings.Builder
	for i, r := range st.Code().String() {
		if i > 0 && unicode.IsUpper(r) {
			words.WriteByte(' ')
		}
		words.WriteRune(unicode.ToLower(r))
	}
	return words.String() + ": " + prefix + st.Message()
}

type cli struct {
	addr, daemonDir, ca, cert, key, home string
	stdin                                io.Reader
	in                                   *bufio.Reader
	out, errOut                          io.Writer
	state                                state
	sealsStandIn                         hufuv1.SealServiceClient // tests: in place of the daemon's
}

// state is what the CLI remembers between runs, in HOME/state.json (0600).
type state struct {
	DeviceID     string `json:"device_id"`
	AccessToken  string `json:"access_token,omitempty"`
	RefreshToken string `json:"refresh_token,omitempty"`
}

// run runs the command line args (without the program name).
func run(args []string, stdin io.Reader, stdout, stderr io.Writer) error {
	c := &cli{stdin: stdin, in: bufio.NewReader(stdin), out: stdout, errOut: stderr}
	return c.app(stdout, stderr).Run(append([]string{"hufu"}, args...))
}

func (c *cli) statePath() string { return filepath.Join(c.home, "state.json") }

func (c *cli) load() error {
	b, err := os.ReadFile(c.statePath())
	switch {
	case errors.Is(err, os.ErrNotExist):
	case err != nil:
		return err
	default:
		if err := json.Unmarshal(b, &c.state); err != nil {
			return fmt.Errorf("%s: %w", c.statePath(), err)
		}
	}
	if c.state.DeviceID == "" {
		var b [8]byte
		rand.Read(b[:])
		c.state.DeviceID = "cli-" + hex.EncodeToString(b[:])
		return c.save()
	}
	return nil
}

func (c *cli) save() error {
	if err := os.MkdirAll(c.home, 0o700); err != nil {
		return err
	}
	b, _ := json.MarshalIndent(c.state, "", "  ")
	tmp := c.statePath() + ".tmp"
	if err := os.WriteFile(tmp, b, 0o600); err != nil {
		return err
	}
	return os.Rename(tmp, c.statePath())
}

func (c *cli) device() *hufuv1.Device {
	host, _ := os.Hostname()
	return &hufuv1.Device{Id: c.state.DeviceID, Name: "hufu CLI on " + host}
}

func (c *cli) prompt(question string) (string, error) {
	fmt.Fprint(c.out, question)
	line, err := c.in.ReadString('\n')
	if err != nil && line == "" {
		return "", fmt.Errorf("reading %s: %w", strings.TrimSuffix(question, ": "), err)
	}
	return strings.TrimSpace(line), nil
}

// smsCode obtains a code: the given one as is — asking for another would replace it, or be
// refused by the send limit — or else it asks the daemon to send one and takes it from the
// development outbox (the daemon writes codes there in development) or from the user.
func (c *cli) smsCode(ctx context.Context, conn *client.Conn, phone string, purpose hufuv1.SmsPurpose, given string) (string, error) {
	if given != "" {
		return given, nil
	}
	if _, err := conn.Accounts.SendSmsCode(ctx, &hufuv1.SendSmsCodeRequest{Phone: phone, Purpose: purpose}); err != nil {
		return "", err
	}
	outbox := filepath.Join(c.daemonDir, "dev-sms.jsonl")
	if code, err := accounts.LatestDevCode(outbox, phone, devPurposes[purpose]); err == nil {
		fmt.Fprintf(c.out, "development code %s taken from %s\n", code, outbox)
		return code, nil
	}
	return c.prompt("SMS code: ")
}

var devPurposes = map[hufuv1.SmsPurpose]accounts.Purpose{
	hufuv1.SmsPurpose_SMS_PURPOSE_SIGN_IN:               accounts.PurposeSignIn,
	hufuv1.SmsPurpose_SMS_PURPOSE_CHANGE_PHONE:          accounts.PurposeChangePhone,
	hufuv1.SmsPurpose_SMS_PURPOSE_RESET_PASSWORD:        accounts.PurposeResetPassword,
	hufuv1.SmsPurpose_SMS_PURPOSE_RESET_CERTIFICATE_PIN: accounts.PurposeResetCertificate,
	hufuv1.SmsPurpose_SMS_PURPOSE_DELETE_ACCOUNT:        accounts.PurposeDeleteAccount,
}

func methodName(m hufuv1.IdentityMethod) string {
	return strings.ToLower(strings.TrimPrefix(m.String(), "IDENTITY_METHOD_"))
}

func orNone(s string) string {
	if s == "" {
		return "(none)"
	}
	return s
}
