package main

// The enterprise commands (seed manual §1.6, §1.7.4.4): search, claim (认领), join by
// application or invite QR, the administrator's decisions, members, and the enterprise key
// delegated to staff devices (授权 / 收回 / 转移).

import (
	"context"
	"crypto/rand"
	"errors"
	"flag"
	"fmt"
	"mime"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/emmansun/gmsm/smx509"
	"google.golang.org/protobuf/types/known/timestamppb"

	hufuv1 "github.com/hufu-hsm/hufu/api/hufu/v1"
	"github.com/hufu-hsm/hufu/client"
	urfave "github.com/urfave/cli/v2"
)

// enterpriseCommands: enterprises, and the reconciliation desk of corporate transfers.
func (c *cli) enterpriseCommands() []*urfave.Command {
	return []*urfave.Command{
		group("enterprise", "enterprises: claim, join, members, the enterprise key on staff devices", "seed manual §1.6, §1.7.4.4",
			c.entSearchCommand(), c.enterpriseClaimCommand(), c.entListCommand(), c.entShowCommand(), c.entMembersCommand(),
			c.entRemoveCommand(), c.entJoinCommand(), c.entApplicationsCommand(),
			c.entDecideCommand("withdraw", "withdraw your join application"),
			c.entDecideCommand("approve", "approve a join application (the administrator)"),
			c.entReturnCommand(), c.entInviteCommand(), c.entInviteRevokeCommand(), c.entRegisterDeviceCommand(),
			c.enterpriseGrantCommand(), c.entAcceptCommand(), c.entRecallCommand(), c.entRecordsCommand(),
			c.entTransferCommand(), c.entAcceptTransferCommand(), c.entLetterCommand(),
			c.enterpriseTransferApplyCommand(), c.enterpriseTransfersCommand()),
		c.reconcileCommand(),
	}
}

func (c *cli) entSearchCommand() *urfave.Command {
	fs := newFlags()
	o := outputFlag(fs)
	return c.command(verb{name: "search", usage: "by USCC or name: registered? and the next steps", args: "QUERY", nargs: oneArg, fs: fs, run: func(ctx context.Context, conn *client.Conn, args []string) error {
		ent := conn.Enterprises
		q := args[0]
		resp, err := ent.SearchEnterprises(ctx, &hufuv1.SearchEnterprisesRequest{Query: q})
		if err != nil {
			return err
		}
		if o.json() {
			return c.emit(o, resp, nil)
		}
		for _, r := range resp.Results {
			state := "unregistered"
			if r.Registered {
				state = "registered"
			}
			var steps []string
			for _, s := range r.NextSteps {
				steps = append(steps, strings.ReplaceAll(strings.ToLower(strings.TrimPrefix(s.String(), "NEXT_STEP_")), "_", "-"))
			}
			fmt.Fprintf(c.out, "%s  %s  %s  next: %s\n", r.Uscc, orNone(r.Name), state, strings.Join(steps, ", "))
		}
		if len(resp.Results) == 0 {
			fmt.Fprintln(c.out, "no registered enterprise of that name; search by its USCC to claim it")
		}
		return nil
	}})
}

func (c *cli) entListCommand() *urfave.Command {
	fs := newFlags()
	o := outputFlag(fs)
	return c.command(verb{name: "list", usage: "your enterprises and your role in each", nargs: noArgs, fs: fs, run: func(ctx context.Context, conn *client.Conn, args []string) error {
		ent := conn.Enterprises
		resp, err := ent.ListMyEnterprises(ctx, &hufuv1.ListMyEnterprisesRequest{})
		if err != nil {
			return err
		}
		if o.json() {
			return c.emit(o, resp, nil)
		}
		for _, e := range resp.Enterprises {
			fmt.Fprintf(c.out, "%s  %s  %s\n", e.Enterprise.Uscc, e.Enterprise.Name, roleName(e.Role))
		}
		return nil
	}})
}

func (c *cli) entShowCommand() *urfave.Command {
	fs := newFlags()
	o := outputFlag(fs)
	return c.command(verb{name: "show", usage: "an enterprise", args: "USCC", nargs: oneArg, fs: fs, run: func(ctx context.Context, conn *client.Conn, args []string) error {
		ent := conn.Enterprises
		uscc := args[0]
		resp, err := ent.GetEnterprise(ctx, &hufuv1.GetEnterpriseRequest{Uscc: uscc})
		if err != nil {
			return err
		}
		if o.json() {
			return c.emit(o, resp, nil)
		}
		e := resp.Enterprise
		fmt.Fprintf(c.out, "%s  %s\n  you: %s\n  legal representative: %s (%s, %s)\n  administrator: %s (claimed: %v)\n  key: %s  certificate: %s\n",
			e.Uscc, e.Name, roleName(resp.Role), e.LegalRepName, e.LegalRepIdMasked, e.LegalRepPhoneMasked, e.AdminName,
			e.AdminClaimed, orNone(e.KeyId), orNone(e.CertSerial))
		if e.EncryptionKeyId != "" {
			fmt.Fprintf(c.out, "  encryption key: %s\n", e.EncryptionKeyId)
		}
		return nil
	}})
}

func (c *cli) entMembersCommand() *urfave.Command {
	fs := newFlags()
	o := outputFlag(fs)
	return c.command(verb{name: "members", usage: "an enterprise's members", args: "USCC", nargs: oneArg, fs: fs, run: func(ctx context.Context, conn *client.Conn, args []string) error {
		ent := conn.Enterprises
		uscc := args[0]
		resp, err := ent.ListMembers(ctx, &hufuv1.ListMembersRequest{Uscc: uscc})
		if err != nil {
			return err
		}
		if o.json() {
			return c.emit(o, resp, nil)
		}
		for _, m := range resp.Members {
			pair := ""
			switch {
			case m.Delegated:
				pair = "  holds a pair"
			case m.DelegationPending:
				pair = "  grant pending"
			}
			fmt.Fprintf(c.out, "%s  %s  %s  %s  device %s%s\n", m.UserId, m.Name, m.PhoneMasked, roleName(m.Role), orNone(m.DeviceId), pair)
		}
		return nil
	}})
}

func (c *cli) entRemoveCommand() *urfave.Command {
	fs := newFlags()
	return c.command(verb{name: "remove", usage: "remove a member", args: "USCC USER", nargs: twoArgs, fs: fs, run: func(ctx context.Context, conn *client.Conn, args []string) error {
		ent := conn.Enterprises
		uscc, user := args[0], args[1]
		_, err := ent.RemoveMember(ctx, &hufuv1.RemoveMemberRequest{Uscc: uscc, UserId: user})
		return err
	}})
}

func (c *cli) entJoinCommand() *urfave.Command {
	fs := newFlags()
	uscc := fs.String("uscc", "", "the enterprise's USCC")
	name := fs.String("admin-name", "", "the administrator's name")
	phone := fs.String("admin-phone", "", "the administrator's phone number")
	invite := fs.String("invite", "", "an invite payload (from the enterprise's QR code)")
	return c.command(verb{name: "join", usage: "apply to join an enterprise, or join by an invite", desc: "join -uscc U -admin-name N -admin-phone P | join -invite PAYLOAD", nargs: noArgs, fs: fs, run: func(ctx context.Context, conn *client.Conn, args []string) error {
		ent := conn.Enterprises
		resp, err := ent.ApplyToJoin(ctx, &hufuv1.ApplyToJoinRequest{RequestId: client.NewKeyID(), Uscc: *uscc, AdminName: *name,
			AdminPhone: *phone, Invite: *invite})
		if err != nil {
			return err
		}
		c.printApplication(resp.Application)
		return nil
	}})
}

func (c *cli) entApplicationsCommand() *urfave.Command {
	fs := newFlags()
	o := outputFlag(fs)
	st := fs.String("status", "", "pending, approved, returned or withdrawn")
	return c.command(verb{name: "applications", usage: "join applications (yours, or to an enterprise you administer)", args: "[USCC]", nargs: upTo(1), fs: fs, run: func(ctx context.Context, conn *client.Conn, pos []string) error {
		ent := conn.Enterprises
		status := hufuv1.JoinStatus(hufuv1.JoinStatus_value["JOIN_STATUS_"+strings.ToUpper(*st)])
		if *st != "" && status == 0 {
			return usagef("-status %q: want pending, approved, returned or withdrawn", *st)
		}
		req := &hufuv1.ListJoinApplicationsRequest{Status: status}
		if len(pos) == 1 {
			req.Uscc = pos[0]
		}
		resp, err := ent.ListJoinApplications(ctx, req)
		if err != nil {
			return err
		}
		if o.json() {
			return c.emit(o, resp, nil)
		}
		for _, a := range resp.Applications {
			c.printApplication(a)
		}
		return nil
	}})
}

func (c *cli) entDecideCommand(sub, usage string) *urfave.Command {
	fs := newFlags()
	return c.command(verb{name: sub, usage: usage, args: "APPLICATION", nargs: oneArg, fs: fs, run: func(ctx context.Context, conn *client.Conn, args []string) error {
		ent := conn.Enterprises
		id := args[0]
		var a *hufuv1.JoinApplication
		if sub == "withdraw" {
			resp, err := ent.WithdrawJoin(ctx, &hufuv1.WithdrawJoinRequest{ApplicationId: id})
			if err != nil {
				return err
			}
			a = resp.Application
		} else {
			resp, err := ent.ApproveJoin(ctx, &hufuv1.ApproveJoinRequest{ApplicationId: id})
			if err != nil {
				return err
			}
			a = resp.Application
		}
		c.printApplication(a)
		return nil
	}})
}

func (c *cli) entReturnCommand() *urfave.Command {
	fs := newFlags()
	reason := fs.String("reason", "", "why (shown to the applicant)")
	return c.command(verb{name: "return", usage: "return a join application to the applicant", args: "APPLICATION", nargs: oneArg, fs: fs, run: func(ctx context.Context, conn *client.Conn, pos []string) error {
		ent := conn.Enterprises
		resp, err := ent.ReturnJoin(ctx, &hufuv1.ReturnJoinRequest{ApplicationId: pos[0], Reason: *reason})
		if err != nil {
			return err
		}
		c.printApplication(resp.Application)
		return nil
	}})
}

func (c *cli) entInviteCommand() *urfave.Command {
	fs := newFlags()
	ttl := fs.Duration("ttl", 10*time.Minute, "how long the invite lives (1m to 24h)")
	return c.command(verb{name: "invite", usage: "an invite QR code for staff to scan", args: "USCC", nargs: oneArg, fs: fs, run: func(ctx context.Context, conn *client.Conn, pos []string) error {
		ent := conn.Enterprises
		resp, err := ent.CreateInvite(ctx, &hufuv1.CreateInviteRequest{Uscc: pos[0], TtlSeconds: uint32(ttl.Seconds())})
		if err != nil {
			return err
		}
		if err := printQR(c.out, resp.Payload); err != nil {
			return err
		}
		fmt.Fprintf(c.out, "%s\ninvite %s, valid until %s; join with: hufu enterprise join -invite '%s'\n", resp.Payload,
			resp.InviteId, resp.ExpiresAt.AsTime().Local().Format(time.DateTime), resp.Payload)
		return nil
	}})
}

func (c *cli) entInviteRevokeCommand() *urfave.Command {
	fs := newFlags()
	return c.command(verb{name: "invite-revoke", usage: "revoke an invite", args: "USCC INVITE", nargs: twoArgs, fs: fs, run: func(ctx context.Context, conn *client.Conn, args []string) error {
		ent := conn.Enterprises
		uscc, id := args[0], args[1]
		_, err := ent.RevokeInvite(ctx, &hufuv1.RevokeInviteRequest{Uscc: uscc, InviteId: id})
		return err
	}})
}

func (c *cli) entRegisterDeviceCommand() *urfave.Command {
	fs := newFlags()
	return c.command(verb{name: "register-device", usage: "this device may receive the enterprise key", args: "USCC", nargs: oneArg, fs: fs, run: func(ctx context.Context, conn *client.Conn, args []string) error {
		uscc := args[0]
		ks, err := c.keystore()
		if err != nil {
			return err
		}
		m, err := client.RegisterDelegationDevice(ctx, conn, ks, uscc)
		if err != nil {
			return err
		}
		fp, err := client.ThisDeviceFingerprint(ks)
		if err != nil {
			return err
		}
		fmt.Fprintf(c.out, "device %s registered; its fingerprint, to read out to the administrator:\n  %s\nthe administrator grants with: hufu enterprise grant %s %s -fingerprint %s\n",
			m.DeviceId, fp, uscc, m.UserId, fp)
		return nil
	}})
}

func (c *cli) entAcceptCommand() *urfave.Command {
	fs := newFlags()
	pinFlag := fs.String("pin", "", "your own certificate PIN for the enterprise keys' pairs, one for both (6 digits)")
	return c.command(verb{name: "accept", usage: "accept a grant of the enterprise keys (signing and encryption) on this device, with your own PIN", args: "USCC", nargs: oneArg, fs: fs, run: func(ctx context.Context, conn *client.Conn, pos []string) error {
		pin, err := c.newPIN(*pinFlag)
		if err != nil {
			return err
		}
		ks, err := c.keystore()
		if err != nil {
			return err
		}
		e, err := client.AcceptDelegation(ctx, conn, ks, pos[0], pin)
		if err != nil {
			return err
		}
		fmt.Fprintf(c.out, "accepted: this device holds a pair of the enterprise key %s; sign with: hufu sign -key %s -in FILE\n", e.ID, e.ID)
		if got, err := conn.Enterprises.GetEnterprise(ctx, &hufuv1.GetEnterpriseRequest{Uscc: pos[0]}); err == nil && got.GetEnterprise().GetEncryptionKeyId() != "" {
			fmt.Fprintf(c.out, "and a pair of its encryption key %s, which opens the bids enveloped to the enterprise\n", got.GetEnterprise().GetEncryptionKeyId())
		}
		return nil
	}})
}

func (c *cli) entRecallCommand() *urfave.Command {
	fs := newFlags()
	return c.command(verb{name: "recall", usage: "收回: destroy a member's pairs of the enterprise keys (signing and encryption) at once", args: "USCC USER", nargs: twoArgs, fs: fs, run: func(ctx context.Context, conn *client.Conn, args []string) error {
		ent := conn.Enterprises
		uscc, user := args[0], args[1]
		resp, err := ent.RecallDelegation(ctx, &hufuv1.RecallDelegationRequest{Uscc: uscc, MemberUserId: user})
		if err != nil {
			return err
		}
		c.printRecord(resp.Record)
		return nil
	}})
}

func (c *cli) entRecordsCommand() *urfave.Command {
	fs := newFlags()
	o := outputFlag(fs)
	return c.command(verb{name: "records", usage: "授权记录: the enterprise key's authorisation records", args: "USCC", nargs: oneArg, fs: fs, run: func(ctx context.Context, conn *client.Conn, args []string) error {
		ent := conn.Enterprises
		uscc := args[0]
		resp, err := ent.ListAuthorisationRecords(ctx, &hufuv1.ListAuthorisationRecordsRequest{Uscc: uscc})
		if err != nil {
			return err
		}
		if o.json() {
			return c.emit(o, resp, nil)
		}
		for _, r := range resp.Records {
			c.printRecord(r)
		}
		return nil
	}})
}

func (c *cli) entTransferCommand() *urfave.Command {
	fs := newFlags()
	return c.command(verb{name: "transfer", usage: "转移: offer the administrator role to a member", args: "USCC USER", nargs: twoArgs, fs: fs, run: func(ctx context.Context, conn *client.Conn, args []string) error {
		ent := conn.Enterprises
		uscc, user := args[0], args[1]
		resp, err := ent.TransferAdmin(ctx, &hufuv1.TransferAdminRequest{Uscc: uscc, ToUserId: user})
		if err != nil {
			return err
		}
		fmt.Fprintf(c.out, "offered; %s accepts with `hufu enterprise accept-transfer %s` on the device holding its pair, until %s\n",
			user, uscc, resp.ExpiresAt.AsTime().Local().Format(time.DateTime))
		return nil
	}})
}

func (c *cli) entAcceptTransferCommand() *urfave.Command {
	fs := newFlags()
	pinFlag := fs.String("pin", "", "your PIN of the enterprise keys' pairs (else HUFU_PIN, else asked): the pairs are refreshed")
	return c.command(verb{name: "accept-transfer", usage: "accept the administrator role (refreshes your pairs of both enterprise keys)", args: "USCC", nargs: oneArg, fs: fs, run: func(ctx context.Context, conn *client.Conn, pos []string) error {
		uscc := pos[0]
		pin, err := c.pin(*pinFlag, "your certificate PIN of the enterprise key: ")
		if err != nil {
			return err
		}
		ks, err := c.keystore()
		if err != nil {
			return err
		}
		e, err := client.AcceptAdminTransfer(ctx, conn, ks, uscc, client.PINCredential(pin))
		if err != nil {
			return err
		}
		fmt.Fprintf(c.out, "you are the administrator of %s %s\n", e.Uscc, e.Name)
		return nil
	}})
}

func (c *cli) entLetterCommand() *urfave.Command {
	fs := newFlags()
	kind := fs.String("kind", "enterprise-claim", "enterprise-claim, corporate-transfer or personal")
	caID := fs.String("ca", "hufu-ca", "CA id")
	out := fs.String("o", "", "write to FILE (default: standard output)")
	return c.command(verb{name: "letter", usage: "an authorisation letter template", nargs: noArgs, fs: fs, run: func(ctx context.Context, conn *client.Conn, args []string) error {
		ent := conn.Enterprises
		resp, err := ent.GetLetterTemplate(ctx, &hufuv1.GetLetterTemplateRequest{CaId: *caID, Kind: *kind})
		if err != nil {
			return err
		}
		if *out == "" {
			_, err = c.out.Write(resp.Content)
			return err
		}
		return os.WriteFile(*out, resp.Content, 0o644)
	}})
}

func roleName(r hufuv1.MemberRole) string {
	switch r {
	case hufuv1.MemberRole_MEMBER_ROLE_ADMIN:
		return "administrator 管理员"
	case hufuv1.MemberRole_MEMBER_ROLE_STAFF:
		return "staff 办事人员"
	}
	return "-"
}

func (c *cli) printApplication(a *hufuv1.JoinApplication) {
	fmt.Fprintf(c.out, "%s  %s  %s  %s  %s %s", a.Id, strings.ToLower(strings.TrimPrefix(a.Status.String(), "JOIN_STATUS_")),
		a.Uscc, a.EnterpriseName, a.ApplicantName, a.ApplicantPhoneMasked)
	if a.Reason != "" {
		fmt.Fprintf(c.out, "  reason: %s", a.Reason)
	}
	fmt.Fprintln(c.out)
}

func (c *cli) printRecord(r *hufuv1.AuthorisationRecord) {
	keys := r.KeyId
	if r.EncryptionKeyId != "" {
		keys += "," + r.EncryptionKeyId // the pair: both keys were granted, recalled or moved together
	}
	fmt.Fprintf(c.out, "%s  %-8s by %s  member %s  device %s  scope %s  keys %s\n", r.Time.AsTime().Local().Format(time.DateTime), r.Action,
		r.ByUserId, r.MemberUserId, orNone(r.MemberDeviceId), strings.Join(r.Scope, ","), orNone(keys))
}

var idTypes = map[string]hufuv1.IdType{
	"resident": hufuv1.IdType_ID_TYPE_RESIDENT_ID, "passport": hufuv1.IdType_ID_TYPE_PASSPORT,
	"hk-macao": hufuv1.IdType_ID_TYPE_HK_MACAO_PERMIT, "taiwan": hufuv1.IdType_ID_TYPE_TAIWAN_PERMIT,
}

// enterpriseForm is the enterprise's data and its stamped letter, as a claim and a
// corporate-transfer application both take them.
type enterpriseForm struct {
	d                              *hufuv1.EnterpriseDetails
	idType, licence, until, letter *string
}

func enterpriseFlags(fs *flag.FlagSet, letterHelp string) *enterpriseForm {
	f := &enterpriseForm{d: &hufuv1.EnterpriseDetails{}}
	fs.StringVar(&f.d.Uscc, "uscc", "", "统一社会信用代码 (18 characters)")
	fs.StringVar(&f.d.Name, "name", "", "the enterprise's registered name")
	fs.StringVar(&f.d.LegalRepName, "legal-rep-name", "", "legal representative's name")
	f.idType = fs.String("legal-rep-id-type", "resident", "resident, passport, hk-macao or taiwan")
	fs.StringVar(&f.d.LegalRepIdNumber, "legal-rep-id", "", "legal representative's ID number")
	fs.StringVar(&f.d.LegalRepPhone, "legal-rep-phone", "", "legal representative's mobile number")
	f.licence = fs.String("licence", "", "business licence image (png, jpg or pdf)")
	f.until = fs.String("licence-until", "", "last day of the licence, YYYY-MM-DD (default: 长期)")
	f.letter = fs.String("letter", "", "stamped authorisation letter (png, jpg or pdf; "+letterHelp+")")
	return f
}

// read checks the flags and reads the files.
func (f *enterpriseForm) read() (*hufuv1.EnterpriseDetails, *hufuv1.ScannedLetter, error) {
	var ok bool
	if f.d.LegalRepIdType, ok = idTypes[*f.idType]; !ok {
		return nil, nil, usagef("-legal-rep-id-type %q: want resident, passport, hk-macao or taiwan", *f.idType)
	}
	if *f.until != "" {
		t, err := time.ParseInLocation(time.DateOnly, *f.until, time.Local)
		if err != nil {
			return nil, nil, fmt.Errorf("-licence-until: %w", err)
		}
		f.d.LicenceValidUntil = timestamppb.New(t.Add(24*time.Hour - time.Second))
	}
	var err error
	if f.d.Licence, err = os.ReadFile(*f.licence); err != nil {
		return nil, nil, fmt.Errorf("-licence: %w", err)
	}
	f.d.LicenceFileName = filepath.Base(*f.licence)
	scan, err := os.ReadFile(*f.letter)
	if err != nil {
		return nil, nil, fmt.Errorf("-letter: %w", err)
	}
	media, _, _ := strings.Cut(mime.TypeByExtension(strings.ToLower(filepath.Ext(*f.letter))), ";")
	return f.d, &hufuv1.ScannedLetter{FileName: filepath.Base(*f.letter), MediaType: media, Content: scan}, nil
}

// enterpriseClaim submits a claim for an enterprise certificate pair: the signing key is this
// device's (made now unless -key names one), the encryption key a second one made here under
// the same PIN (unless -encryption-key names one) as `hufu cert apply` makes it
// (cli.encryptionKey), and each CSR is signed with its own key.
func (c *cli) enterpriseClaimCommand() *urfave.Command {
	fs := newFlags()
	form := enterpriseFlags(fs, "`hufu enterprise letter` gives the template")
	keyID := fs.String("key", "", "the enterprise signing key on this device (default: make one)")
	encKeyID := fs.String("encryption-key", "", "the split key of the enterprise encryption certificate (default: a new key made now under the same PIN)")
	pinFlag := fs.String("pin", "", "the enterprise keys' certificate PIN (else HUFU_PIN, else asked)")
	years := fs.Uint("years", 1, "validity in years, 1 to 3")
	platforms := fs.String("platforms", "", "comma-separated platform ids (default: the current platform)")
	regions := fs.String("regions", "", "roaming regions (漫游区域): comma-separated 6-digit codes")
	caID := fs.String("ca", "hufu-ca", "CA id")
	join := fs.Bool("join", false, "buy a certificate of a registered enterprise to join it as staff (购买证书加入企业)")
	return c.command(verb{name: "claim", usage: "claim (认领) an enterprise: an order for its signing and encryption certificates; -join buys them to join a registered enterprise", nargs: noArgs, fs: fs, run: func(ctx context.Context, conn *client.Conn, pos []string) error {
		d, letter, err := form.read()
		if err != nil {
			return err
		}
		req := &hufuv1.ClaimEnterpriseRequest{RequestId: client.NewKeyID(), Enterprise: d, CaId: *caID, ValidityYears: uint32(*years), Join: *join,
			Authorisation: &hufuv1.Authorisation{Kind: &hufuv1.Authorisation_Scan{Scan: letter}}}
		if *platforms != "" {
			req.Platforms = strings.Split(*platforms, ",")
		} else {
			cur, err := conn.Platforms.GetCurrentPlatform(ctx, &hufuv1.GetCurrentPlatformRequest{})
			if err != nil || cur.GetPlatform() == nil {
				return usagef("choose -platforms, or a current platform with `hufu platform use`")
			}
			req.Platforms = []string{cur.GetPlatform().GetId()}
		}
		if *regions != "" {
			req.RoamingRegions = strings.Split(*regions, ",")
		}
		pin, err := c.pin(*pinFlag, "the enterprise key's certificate PIN: ")
		if err != nil {
			return err
		}
		ks, err := c.keystore()
		if err != nil {
			return err
		}
		if *keyID == "" {
			e, err := client.CreateKey(ctx, conn, ks, pin, d.Name)
			if err != nil {
				return err
			}
			*keyID = e.ID
			fmt.Fprintf(c.out, "enterprise key %s made on this device\n", e.ID)
		}
		key, err := c.openKey(ctx, conn, *keyID, pin)
		if err != nil {
			return err
		}
		req.KeyId = *keyID
		if req.Csr, err = smx509.CreateCertificateRequest(rand.Reader, &smx509.CertificateRequest{}, key); err != nil {
			return fmt.Errorf("signing the certificate request with the enterprise key: %w", err)
		}
		if req.EncryptionKeyId, req.EncryptionCsr, err = c.encryptionKey(ctx, conn, ks, pin, *keyID, *encKeyID); err != nil {
			return err
		}
		resp, err := conn.Enterprises.ClaimEnterprise(ctx, req)
		if err != nil {
			return err
		}
		c.printOrder(resp.Order, false)
		fmt.Fprintf(c.out, "signing key %s, encryption key %s\n", req.KeyId, req.EncryptionKeyId)
		fmt.Fprintln(c.out, "submitted for CA review; once approved, `hufu cert pay ORDER` issues the enterprise certificate pair and makes you its administrator")
		return nil
	}})
}

// enterpriseGrant is the administrator's device granting a member's registered device a
// pair of each enterprise key held here (signing and, of a certificate pair, encryption).
func (c *cli) enterpriseGrantCommand() *urfave.Command {
	fs := newFlags()
	pinFlag := fs.String("pin", "", "the enterprise keys' certificate PIN, used for both keys (else HUFU_PIN, else asked)")
	fingerprint := fs.String("fingerprint", "", "the member device's fingerprint `FP`, as hufu enterprise register-device showed it on the member's phone")
	return c.command(verb{name: "grant", usage: "授权: pairs of the enterprise keys (signing and encryption) for a member's registered device", args: "USCC USER", nargs: twoArgs, fs: fs, run: func(ctx context.Context, conn *client.Conn, pos []string) error {
		if *fingerprint == "" {
			return usagef("%s", errors.New("enterprise grant USCC USER -fingerprint FP [-pin P] (FP: read it from the member's phone)").Error())
		}
		pin, err := c.pin(*pinFlag, "the enterprise keys' certificate PIN: ")
		if err != nil {
			return err
		}
		ks, err := c.keystore()
		if err != nil {
			return err
		}
		r, err := client.GrantDelegation(ctx, conn, ks, pos[0], pos[1], *fingerprint, client.PINCredential(pin))
		if err != nil {
			return err
		}
		c.printRecord(r)
		fmt.Fprintf(c.out, "granted; the member accepts on that device with `hufu enterprise accept %s`\n", pos[0])
		return nil
	}})
}
