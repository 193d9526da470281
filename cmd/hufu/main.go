// Command hufu is the hufu command-line client: it plays the phone (sign in, verify identity,
// choose a platform, hold one share of split SM2 keys and sign, decrypt and refresh with
// them) and, with a client certificate, a business system or a bid-opening system, against a
// running hufud. verify and encrypt are standard SM2 and, like audit verify and opening
// verify, need no daemon. Run "hufu help" for the commands.
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
	urfave "github.com/urfave/cli/v2"
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
}

func (c *cli) signedIn(s *hufuv1.Session, a *hufuv1.Account, registered bool) error {
	c.state.AccessToken, c.state.RefreshToken = s.GetAccessToken(), s.GetRefreshToken()
	if err := c.save(); err != nil {
		return err
	}
	verb := "signed in as"
	if registered {
		verb = "registered and signed in as"
	}
	fmt.Fprintf(c.out, "%s %s (account %s)\n", verb, a.GetPhoneMasked(), a.GetId())
	return nil
}

// accountCommands: signing in, the account, platforms, identity, password and phone.
func (c *cli) accountCommands() []*urfave.Command {
	return []*urfave.Command{
		c.loginCommand(),
		c.whoamiCommand(),
		c.command(verb{name: "logout", usage: "end the session", nargs: noArgs,
			run: func(ctx context.Context, conn *client.Conn, _ []string) error { return c.logout(ctx, conn) }}),
		group("platform", "list platforms, show or choose the current one", "",
			c.platformListCommand(), c.platformCurrentCommand(), c.platformUseCommand()),
		group("verify-identity", "verify the account's real-name identity (cfca, face or bank card)", "",
			c.verifyIdentityCommand("cfca", "with the CFCA identity check", false),
			c.verifyIdentityCommand("face", "by a face check in Alipay (development: completes at once)", false),
			c.verifyIdentityCommand("bank-card", "by a bank card and the phone number reserved at the bank", true)),
		group("password", "set or reset the account's password", "",
			c.passwordCommand("set", "set or change the password"),
			c.passwordCommand("reset", "reset a forgotten password by an SMS code to the number; signs out every session")),
		group("phone", "change the account's mobile number", "", c.phoneChangeCommand()),
	}
}

func (c *cli) loginCommand() *urfave.Command {
	fs := newFlags()
	phone := fs.String("phone", "", "mobile number")
	code := fs.String("code", "", "an SMS code already received: no new one is requested (default: request one, then the development outbox, else prompt)")
	passwordStdin := fs.Bool("password-stdin", false, "sign in with the password read from standard input")
	wechat := fs.String("wechat", "", "WeChat authorisation code")
	carrier := fs.String("carrier", "", "carrier one-click login token")
	return c.command(verb{name: "login", usage: "sign in (SMS code by default; the development code is picked up)",
		desc: "login -phone P [-code C | -password-stdin | -wechat CODE | -carrier TOKEN]", fs: fs, nargs: noArgs,
		run: func(ctx context.Context, conn *client.Conn, _ []string) error {
			return c.login(ctx, conn, *phone, *code, *passwordStdin, *wechat, *carrier)
		}})
}

func (c *cli) login(ctx context.Context, conn *client.Conn, phone, code string, passwordStdin bool, wechat, carrier string) error {
	switch {
	case carrier != "":
		r, err := conn.Accounts.SignInWithCarrier(ctx, &hufuv1.SignInWithCarrierRequest{CarrierToken: carrier, Device: c.device()})
		if err != nil {
			return err
		}
		return c.signedIn(r.Session, r.Account, r.Registered)
	case wechat != "":
		r, err := conn.Accounts.SignInWithWechat(ctx, &hufuv1.SignInWithWechatRequest{AuthCode: wechat, Device: c.device()})
		if err != nil {
			return err
		}
		if r.BindingTicket == "" {
			return c.signedIn(r.Session, r.Account, false)
		}
		if phone == "" {
			return usagef("this WeChat account is not bound yet: run again with -phone to bind it")
		}
		sms, err := c.smsCode(ctx, conn, phone, hufuv1.SmsPurpose_SMS_PURPOSE_BIND_WECHAT, code)
		if err != nil {
			return err
		}
		b, err := conn.Accounts.BindWechatPhone(ctx, &hufuv1.BindWechatPhoneRequest{BindingTicket: r.BindingTicket, Phone: phone, Code: sms, Device: c.device()})
		if err != nil {
			return err
		}
		return c.signedIn(b.Session, b.Account, b.Registered)
	}
	if phone == "" {
		return usagef("-phone is required")
	}
	if passwordStdin {
		pw, err := c.prompt("")
		if err != nil {
			return err
		}
		r, err := conn.Accounts.SignInWithPassword(ctx, &hufuv1.SignInWithPasswordRequest{Phone: phone, Password: pw, Device: c.device()})
		if err != nil {
			return err
		}
		return c.signedIn(r.Session, r.Account, false)
	}
	sms, err := c.smsCode(ctx, conn, phone, hufuv1.SmsPurpose_SMS_PURPOSE_SIGN_IN, code)
	if err != nil {
		return err
	}
	r, err := conn.Accounts.SignInWithSmsCode(ctx, &hufuv1.SignInWithSmsCodeRequest{Phone: phone, Code: sms, Device: c.device()})
	if err != nil {
		return err
	}
	return c.signedIn(r.Session, r.Account, r.Registered)
}

func (c *cli) whoamiCommand() *urfave.Command {
	fs := newFlags()
	o := outputFlag(fs)
	return c.command(verb{name: "whoami", usage: "show the signed-in account", fs: fs, nargs: noArgs,
		run: func(ctx context.Context, conn *client.Conn, _ []string) error {
			r, err := conn.Accounts.GetAccount(ctx, &hufuv1.GetAccountRequest{})
			if err != nil {
				return err
			}
			return c.emit(o, r, func() error { return c.whoami(r.Account) })
		}})
}

func (c *cli) whoami(a *hufuv1.Account) error {
	fmt.Fprintf(c.out, "account   %s\nphone     %s\npassword  %v\nwechat    %v\nplatform  %s\n", a.Id, a.PhoneMasked, a.HasPassword, a.WechatBound, orNone(a.CurrentPlatformId))
	if a.Identity.GetVerified() {
		fmt.Fprintf(c.out, "identity  %s %s (%s)\n", a.Identity.NameMasked, a.Identity.IdNumberMasked, methodName(a.Identity.Method))
	} else {
		fmt.Fprintln(c.out, "identity  not verified (hufu verify-identity)")
	}
	return nil
}

func (c *cli) logout(ctx context.Context, conn *client.Conn) error {
	if c.state.AccessToken == "" {
		return errors.New("not signed in")
	}
	_, err := conn.Accounts.SignOut(ctx, &hufuv1.SignOutRequest{})
	c.state.AccessToken, c.state.RefreshToken = "", ""
	if serr := c.save(); serr != nil {
		return serr
	}
	if err != nil {
		return err
	}
	fmt.Fprintln(c.out, "signed out")
	return nil
}

func (c *cli) platformListCommand() *urfave.Command {
	fs := newFlags()
	o := outputFlag(fs)
	return c.command(verb{name: "list", usage: "list the platforms", fs: fs, nargs: noArgs,
		run: func(ctx context.Context, conn *client.Conn, _ []string) error {
			r, err := conn.Platforms.ListPlatforms(ctx, &hufuv1.ListPlatformsRequest{})
			if err != nil {
				return err
			}
			return c.emit(o, r, func() error {
				for _, p := range r.Platforms {
					fmt.Fprintf(c.out, "%-16s %s  %s\n", p.Id, p.Region, p.Name)
				}
				return nil
			})
		}})
}

func (c *cli) platformCurrentCommand() *urfave.Command {
	fs := newFlags()
	o := outputFlag(fs)
	return c.command(verb{name: "current", usage: "show the chosen platform", fs: fs, nargs: noArgs,
		run: func(ctx context.Context, conn *client.Conn, _ []string) error {
			r, err := conn.Platforms.GetCurrentPlatform(ctx, &hufuv1.GetCurrentPlatformRequest{})
			if err != nil {
				return err
			}
			return c.emit(o, r, func() error {
				if r.Platform == nil {
					fmt.Fprintln(c.out, "no platform chosen (hufu platform use ID)")
					return nil
				}
				fmt.Fprintf(c.out, "%s  %s\n", r.Platform.Id, r.Platform.Name)
				return nil
			})
		}})
}

func (c *cli) platformUseCommand() *urfave.Command {
	return c.command(verb{name: "use", usage: "choose a platform", args: "ID", nargs: oneArg,
		run: func(ctx context.Context, conn *client.Conn, args []string) error {
			r, err := conn.Platforms.SelectPlatform(ctx, &hufuv1.SelectPlatformRequest{PlatformId: args[0]})
			if err != nil {
				return err
			}
			fmt.Fprintf(c.out, "now using %s (%s)\n", r.Platform.Id, r.Platform.Name)
			return nil
		}})
}

func (c *cli) verifyIdentityCommand(method, usage string, bankCard bool) *urfave.Command {
	fs := newFlags()
	name := fs.String("name", "", "legal name")
	id := fs.String("id", "", "18-character resident ID number")
	var card, reserved *string
	if bankCard {
		card = fs.String("card", "", "bank card number")
		reserved = fs.String("reserved-phone", "", "phone number reserved at the bank")
	}
	return c.command(verb{name: method, usage: usage, fs: fs, nargs: noArgs,
		run: func(ctx context.Context, conn *client.Conn, _ []string) error {
			var status *hufuv1.IdentityStatus
			switch method {
			case "cfca":
				r, err := conn.Identity.VerifyWithCfca(ctx, &hufuv1.VerifyWithCfcaRequest{Name: *name, IdNumber: *id})
				if err != nil {
					return err
				}
				status = r.Identity
			case "face":
				s, err := conn.Identity.StartFaceVerification(ctx, &hufuv1.StartFaceVerificationRequest{Name: *name, IdNumber: *id})
				if err != nil {
					return err
				}
				fmt.Fprintf(c.out, "open in Alipay: %s\n", s.Url)
				if _, err := c.prompt("press Enter when the face check is done: "); err != nil && !errors.Is(err, io.EOF) {
					return err
				}
				r, err := conn.Identity.CompleteFaceVerification(ctx, &hufuv1.CompleteFaceVerificationRequest{CertifyId: s.CertifyId})
				if err != nil {
					return err
				}
				status = r.Identity
			case "bank-card":
				r, err := conn.Identity.VerifyWithBankCard(ctx, &hufuv1.VerifyWithBankCardRequest{Name: *name, IdNumber: *id, CardNumber: *card, ReservedPhone: *reserved})
				if err != nil {
					return err
				}
				status = r.Identity
			}
			fmt.Fprintf(c.out, "verified: %s %s (%s)\n", status.NameMasked, status.IdNumberMasked, methodName(status.Method))
			return nil
		}})
}

func (c *cli) passwordCommand(sub, usage string) *urfave.Command {
	fs := newFlags()
	next := fs.String("new", "", "new password: 8-64 characters with a letter and a digit")
	var current, phone, code *string
	if sub == "set" {
		current = fs.String("current", "", "current password (when one is set)")
	} else {
		phone = fs.String("phone", "", "the account's number")
		code = fs.String("code", "", "SMS code (default: request one, then the development outbox, else prompt)")
	}
	return c.command(verb{name: sub, usage: usage, fs: fs, nargs: noArgs,
		run: func(ctx context.Context, conn *client.Conn, _ []string) error {
			if sub == "set" {
				if _, err := conn.Accounts.SetPassword(ctx, &hufuv1.SetPasswordRequest{CurrentPassword: *current, NewPassword: *next}); err != nil {
					return err
				}
				fmt.Fprintln(c.out, "password set")
				return nil
			}
			sms, err := c.smsCode(ctx, conn, *phone, hufuv1.SmsPurpose_SMS_PURPOSE_RESET_PASSWORD, *code)
			if err != nil {
				return err
			}
			if _, err := conn.Accounts.ResetPassword(ctx, &hufuv1.ResetPasswordRequest{Phone: *phone, Code: sms, NewPassword: *next}); err != nil {
				return err
			}
			fmt.Fprintln(c.out, "password reset; every session of the account was signed out")
			return nil
		}})
}

func (c *cli) phoneChangeCommand() *urfave.Command {
	fs := newFlags()
	currentPhone := fs.String("current-phone", "", "the account's current mobile number (a code goes there too)")
	newPhone := fs.String("new-phone", "", "the new mobile number")
	currentCode := fs.String("current-code", "", "SMS code sent to the current number (default: development outbox, else prompt)")
	code := fs.String("code", "", "SMS code sent to the new number (default: development outbox, else prompt)")
	return c.command(verb{name: "change", usage: "move the account to another number (SMS codes to both numbers)", fs: fs, nargs: noArgs,
		run: func(ctx context.Context, conn *client.Conn, _ []string) error {
			if *currentPhone == "" {
				return usagef("-current-phone is required: moving an account needs a code to its current number")
			}
			current, err := c.smsCode(ctx, conn, *currentPhone, hufuv1.SmsPurpose_SMS_PURPOSE_CHANGE_PHONE, *currentCode)
			if err != nil {
				return err
			}
			sms, err := c.smsCode(ctx, conn, *newPhone, hufuv1.SmsPurpose_SMS_PURPOSE_CHANGE_PHONE, *code)
			if err != nil {
				return err
			}
			r, err := conn.Accounts.ChangePhone(ctx, &hufuv1.ChangePhoneRequest{NewPhone: *newPhone, Code: sms, CurrentCode: current})
			if err != nil {
				return err
			}
			fmt.Fprintf(c.out, "phone changed to %s; other sessions of the account were signed out\n", r.Account.PhoneMasked)
			return nil
		}})
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
