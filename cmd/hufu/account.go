package main

// The account commands: sign in and out, the account, platforms, identity verification,
// password and phone number.

import (
	"context"
	"errors"
	"fmt"
	"io"

	urfave "github.com/urfave/cli/v2"

	hufuv1 "github.com/hufu-hsm/hufu/api/hufu/v1"
	"github.com/hufu-hsm/hufu/client"
)

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
		group("account", "delete the account (账号注销)", "", c.accountDeleteCommand()),
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

func (c *cli) accountDeleteCommand() *urfave.Command {
	fs := newFlags()
	phone := fs.String("phone", "", "the account's mobile number (the confirmation code goes there)")
	code := fs.String("code", "", "SMS code for the deletion (default: development outbox, else prompt)")
	yes := fs.Bool("yes", false, "do not ask for confirmation")
	return c.command(verb{name: "delete", usage: "delete the account for good: lists what must be done first (cards, certificates, enterprises, orders)",
		desc: "delete -phone P [-code C] [-yes]", fs: fs, nargs: noArgs,
		run: func(ctx context.Context, conn *client.Conn, _ []string) error {
			if *phone == "" {
				return usagef("-phone is required: a code to the account's number confirms the deletion")
			}
			preview, err := conn.Accounts.PreviewAccountDeletion(ctx, &hufuv1.PreviewAccountDeletionRequest{})
			if err != nil {
				return err
			}
			if len(preview.Blockers) > 0 {
				fmt.Fprintln(c.errOut, "the account cannot be deleted yet:")
				for _, b := range preview.Blockers {
					fmt.Fprintf(c.errOut, "  %s: %s\n", b.Precondition, b.Message)
				}
				return fmt.Errorf("%d preconditions of deletion not met", len(preview.Blockers))
			}
			fmt.Fprintln(c.errOut, "账号注销后不能恢复。Deleting the account is irreversible: your phone number, name, ID number, password,")
			fmt.Fprintln(c.errOut, "WeChat binding and saved invoice titles are erased and every session is signed out.")
			if !*yes {
				answer, err := c.prompt("type DELETE to confirm: ")
				if err != nil {
					return err
				}
				if answer != "DELETE" {
					return errors.New("not confirmed; nothing deleted")
				}
			}
			sms, err := c.smsCode(ctx, conn, *phone, hufuv1.SmsPurpose_SMS_PURPOSE_DELETE_ACCOUNT, *code)
			if err != nil {
				return err
			}
			if _, err := conn.Accounts.DeleteAccount(ctx, &hufuv1.DeleteAccountRequest{Code: sms, ConfirmIrreversible: true}); err != nil {
				return err
			}
			c.state.AccessToken, c.state.RefreshToken = "", ""
			if err := c.save(); err != nil {
				return err
			}
			fmt.Fprintln(c.out, "account deleted; the number may register again as a new account")
			return nil
		}})
}
