package main

// The seal commands (seed manual §1.8.4 我的印章, and the handwritten signature of §1.5.1):
// an enterprise's administrator creates, disables, enables and authorises its seals to
// staff; staff list and show the seals authorised to them; a person keeps their own
// personal seal and handwritten signature.

import (
	"context"
	"fmt"
	"os"
	"strings"
	"time"

	hufuv1 "github.com/hufu-hsm/hufu/api/hufu/v1"
	"github.com/hufu-hsm/hufu/client"
	urfave "github.com/urfave/cli/v2"
)

// sealTypes maps the command line's type names to the API's, in the order help lists them.
var sealTypes = []struct {
	name, label string
	t           hufuv1.SealType
}{
	{"official", "公章", hufuv1.SealType_SEAL_TYPE_OFFICIAL},
	{"contract", "合同章", hufuv1.SealType_SEAL_TYPE_CONTRACT},
	{"legal-representative", "法人章", hufuv1.SealType_SEAL_TYPE_LEGAL_REPRESENTATIVE},
	{"finance", "财务章", hufuv1.SealType_SEAL_TYPE_FINANCE},
	{"personal", "个人章", hufuv1.SealType_SEAL_TYPE_PERSONAL},
	{"signature", "手写签名", hufuv1.SealType_SEAL_TYPE_HANDWRITTEN_SIGNATURE},
}

func sealTypeArg(s string) (hufuv1.SealType, error) {
	var names []string
	for _, st := range sealTypes {
		if s == st.name || s == st.label {
			return st.t, nil
		}
		names = append(names, st.name)
	}
	return 0, usagef("-type: one of %s", strings.Join(names, ", "))
}

func sealTypeText(t hufuv1.SealType) string {
	for _, st := range sealTypes {
		if st.t == t {
			return st.label + " " + st.name
		}
	}
	return t.String()
}

func sealStateText(s hufuv1.SealState) string {
	switch s {
	case hufuv1.SealState_SEAL_STATE_ACTIVE:
		return "启用 active"
	case hufuv1.SealState_SEAL_STATE_DISABLED:
		return "停用 disabled"
	}
	return s.String()
}

// sealCommands: seals and handwritten signatures (seed manual §1.8.4, §1.5.1).
func (c *cli) sealCommands() []*urfave.Command {
	return []*urfave.Command{
		group("seal", "seals: an enterprise's (its administrator) and your own, and your handwritten signature", "seed manual §1.8.4, §1.5.1",
			c.sealCreateCommand(), c.sealListCommand(), c.sealShowCommand(),
			c.sealStateCommand("disable", "disable a seal"), c.sealStateCommand("enable", "enable a seal"),
			c.sealAuthoriseCommand("authorise", "authorise a seal to a member of its enterprise"),
			c.sealAuthoriseCommand("unauthorise", "withdraw a member's authorisation of a seal")),
	}
}

// sealService is the SealService client: the stand-in of a test, or the daemon's.
func (c *cli) sealService() (hufuv1.SealServiceClient, func(), error) {
	if c.sealsStandIn != nil {
		return c.sealsStandIn, func() {}, nil
	}
	conn, err := c.connect()
	if err != nil {
		return nil, nil, err
	}
	return hufuv1.NewSealServiceClient(conn.ClientConn()), func() { conn.Close() }, nil
}

func (c *cli) sealListCommand() *urfave.Command {
	fs := newFlags()
	o := outputFlag(fs)
	ent := fs.String("enterprise", "", "the enterprise's 统一社会信用代码 (default: your own seals)")
	return c.command(verb{name: "list", usage: "your seals, or an enterprise's", nargs: noArgs, offline: true, fs: fs, run: func(ctx context.Context, _ *client.Conn, args []string) error {
		seals, done, err := c.sealService()
		if err != nil {
			return err
		}
		defer done()
		resp, err := seals.ListSeals(ctx, &hufuv1.ListSealsRequest{EnterpriseUscc: *ent})
		if err != nil {
			return err
		}
		if o.json() {
			return c.emit(o, resp, nil)
		}
		if len(resp.Seals) == 0 {
			fmt.Fprintln(c.out, "no seals")
		}
		for _, s := range resp.Seals {
			c.printSeal(s)
		}
		return nil
	}})
}

func (c *cli) sealShowCommand() *urfave.Command {
	fs := newFlags()
	out := fs.String("o", "", "write the seal's PNG image to this FILE")
	o := new(outputFormat)
	fs.Var(o, "output", "output format: text or json (the response, protojson; -o here is the image file)")
	return c.command(verb{name: "show", usage: "a seal (-o FILE: its PNG image; -output json: the response)", args: "SEAL", nargs: oneArg, offline: true, fs: fs, run: func(ctx context.Context, _ *client.Conn, pos []string) error {
		seals, done, err := c.sealService()
		if err != nil {
			return err
		}
		defer done()
		resp, err := seals.GetSeal(ctx, &hufuv1.GetSealRequest{SealId: pos[0]})
		if err != nil {
			return err
		}
		if *out != "" {
			if err := os.WriteFile(*out, resp.Seal.GetImage(), 0o600); err != nil {
				return err
			}
		}
		if o.json() {
			return c.emit(o, resp, nil)
		}
		c.printSeal(resp.Seal)
		fmt.Fprintf(c.out, "  image %d×%d, sha256 %s\n", resp.Seal.GetImageWidth(), resp.Seal.GetImageHeight(), resp.Seal.GetImageSha256())
		if *out != "" {
			fmt.Fprintf(c.out, "  wrote %s\n", *out)
		}
		return nil
	}})
}

func (c *cli) sealStateCommand(sub, usage string) *urfave.Command {
	fs := newFlags()
	return c.command(verb{name: sub, usage: usage, args: "SEAL", nargs: oneArg, offline: true, fs: fs, run: func(ctx context.Context, _ *client.Conn, args []string) error {
		seals, done, err := c.sealService()
		if err != nil {
			return err
		}
		defer done()
		state := hufuv1.SealState_SEAL_STATE_ACTIVE
		if sub == "disable" {
			state = hufuv1.SealState_SEAL_STATE_DISABLED
		}
		resp, err := seals.SetSealState(ctx, &hufuv1.SetSealStateRequest{SealId: args[0], State: state})
		if err != nil {
			return err
		}
		c.printSeal(resp.Seal)
		return nil
	}})
}

func (c *cli) sealAuthoriseCommand(sub, usage string) *urfave.Command {
	fs := newFlags()
	return c.command(verb{name: sub, usage: usage, args: "SEAL USER", nargs: twoArgs, offline: true, fs: fs, run: func(ctx context.Context, _ *client.Conn, args []string) error {
		seals, done, err := c.sealService()
		if err != nil {
			return err
		}
		defer done()
		var seal *hufuv1.Seal
		if sub == "authorise" {
			resp, err := seals.AuthoriseSeal(ctx, &hufuv1.AuthoriseSealRequest{SealId: args[0], UserId: args[1]})
			if err != nil {
				return err
			}
			seal = resp.Seal
		} else {
			resp, err := seals.UnauthoriseSeal(ctx, &hufuv1.UnauthoriseSealRequest{SealId: args[0], UserId: args[1]})
			if err != nil {
				return err
			}
			seal = resp.Seal
		}
		c.printSeal(seal)
		return nil
	}})
}

func (c *cli) sealCreateCommand() *urfave.Command {
	fs := newFlags()
	name := fs.String("name", "", "the seal's name, 1 to 30 characters")
	typ := fs.String("type", "", "official, contract, legal-representative, finance (an enterprise's); personal, signature (your own)")
	image := fs.String("image", "", "PNG with a transparent background, at most 256 KiB and 1024×1024")
	ent := fs.String("enterprise", "", "the enterprise's 统一社会信用代码 (you are its administrator); default: a seal of your own")
	serial := fs.String("serial", "", "bind the seal to this active certificate of its owner")
	requestID := fs.String("request-id", "", "idempotency key (default: a new one)")
	return c.command(verb{name: "create", usage: "create a seal from a PNG image", desc: "seal create -name N -type official|contract|legal-representative|finance|personal|signature -image PNG [-enterprise USCC] [-serial S]", nargs: noArgs, offline: true, fs: fs, run: func(ctx context.Context, conn *client.Conn, pos []string) error {
		seals, done, err := c.sealService()
		if err != nil {
			return err
		}
		defer done()
		if *name == "" || *typ == "" || *image == "" {
			return usagef("seal create -name N -type T -image FILE.png [-enterprise USCC] [-serial SERIAL]")
		}
		t, err := sealTypeArg(*typ)
		if err != nil {
			return err
		}
		b, err := os.ReadFile(*image)
		if err != nil {
			return err
		}
		if *requestID == "" {
			*requestID = client.NewKeyID()
		}
		resp, err := seals.CreateSeal(ctx, &hufuv1.CreateSealRequest{RequestId: *requestID, EnterpriseUscc: *ent, Name: *name, Type: t,
			Image: b, CertificateSerial: *serial})
		if err != nil {
			return err
		}
		c.printSeal(resp.Seal)
		return nil
	}})
}

func (c *cli) printSeal(s *hufuv1.Seal) {
	if s == nil {
		return
	}
	owner := "own"
	if s.EnterpriseUscc != "" {
		owner = "enterprise " + s.EnterpriseUscc
	}
	fmt.Fprintf(c.out, "%s  %-14s %-12s %s  (%s)\n", s.Id, sealStateText(s.State), sealTypeText(s.Type), s.Name, owner)
	if s.CertificateSerial != "" {
		fmt.Fprintf(c.out, "  certificate %s\n", s.CertificateSerial)
	}
	if len(s.AuthorisedUserIds) > 0 {
		fmt.Fprintf(c.out, "  authorised to %s\n", strings.Join(s.AuthorisedUserIds, ", "))
	}
	if s.CreatedAt != nil {
		fmt.Fprintf(c.out, "  created %s, updated %s\n", s.CreatedAt.AsTime().Local().Format(time.DateTime),
			s.UpdatedAt.AsTime().Local().Format(time.DateTime))
	}
}
