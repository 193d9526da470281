package main

// The review desk for operators: list applications in review and approve or reject them.
// The calls need a client certificate (-tls-cert, -tls-key) of a system client allowed
// hufu.v1.ReviewService.

import (
	"context"
	"fmt"
	"os"
	"path/filepath"

	urfave "github.com/urfave/cli/v2"

	hufuv1 "github.com/hufu-hsm/hufu/api/hufu/v1"
	"github.com/hufu-hsm/hufu/client"
)

// needCert refuses a system call without a client certificate, naming what is needed.
func (c *cli) needCert(who, service string) error {
	if c.cert != "" {
		return nil
	}
	return usagef("%s needs a client certificate: hufu -tls-cert FILE -tls-key FILE ... (HUFU_TLS_CERT, HUFU_TLS_KEY) "+
		"of a system client allowed %s; a development daemon's is %s", who, service, filepath.Join(c.daemonDir, "tls", "cli.pem"))
}

func (c *cli) reviewDesk(conn *client.Conn) (hufuv1.ReviewServiceClient, error) {
	if err := c.needCert("the review desk", "hufu.v1.ReviewService"); err != nil {
		return nil, err
	}
	return hufuv1.NewReviewServiceClient(conn.ClientConn()), nil
}

func (c *cli) reviewCommand() *urfave.Command {
	return group("review", "the operators' review desk (a system client allowed hufu.v1.ReviewService)", "",
		c.reviewListCommand(), c.reviewLetterCommand(),
		c.reviewDecideCommand("approve", "approve an application (-reason: a note)"),
		c.reviewDecideCommand("reject", "reject an application (-reason: shown to the applicant, required)"),
		c.reviewDisableCommand("disable", "disable a certificate (已禁用): it cannot sign or decrypt until enabled; -reason is sent to its holder"),
		c.reviewDisableCommand("enable", "re-enable a disabled certificate; -reason is sent to its holder"))
}

func (c *cli) reviewDisableCommand(sub, usage string) *urfave.Command {
	fs := newFlags()
	reason := fs.String("reason", "", "why (required): recorded and sent to the certificate's holder")
	return c.command(verb{name: sub, usage: usage, args: "SERIAL", fs: fs, nargs: oneArg,
		run: func(ctx context.Context, conn *client.Conn, pos []string) error {
			desk, err := c.reviewDesk(conn)
			if err != nil {
				return err
			}
			var ct *hufuv1.Certificate
			if sub == "disable" {
				resp, err := desk.DisableCertificate(ctx, &hufuv1.DisableCertificateRequest{Serial: pos[0], Reason: *reason})
				if err != nil {
					return err
				}
				ct = resp.Certificate
			} else {
				resp, err := desk.EnableCertificate(ctx, &hufuv1.EnableCertificateRequest{Serial: pos[0], Reason: *reason})
				if err != nil {
					return err
				}
				ct = resp.Certificate
			}
			c.printCert(ct)
			return nil
		}})
}

func (c *cli) reviewListCommand() *urfave.Command {
	fs := newFlags()
	st := fs.String("status", "review", "review, payment, completed, cancelled or all")
	o := outputFlag(fs)
	return c.command(verb{name: "list", usage: "applications by status (default: in review)", fs: fs, nargs: noArgs,
		run: func(ctx context.Context, conn *client.Conn, _ []string) error {
			desk, err := c.reviewDesk(conn)
			if err != nil {
				return err
			}
			status, err := statusArg(*st)
			if err != nil {
				return err
			}
			all, token := &hufuv1.ListReviewsResponse{}, ""
			for {
				resp, err := desk.ListReviews(ctx, &hufuv1.ListReviewsRequest{Status: status, PageSize: 100, PageToken: token})
				if err != nil {
					return err
				}
				all.Orders = append(all.Orders, resp.Orders...)
				if token = resp.NextPageToken; token == "" {
					break
				}
			}
			return c.emit(o, all, func() error {
				for _, o := range all.Orders {
					c.printOrder(o, true)
				}
				return nil
			})
		}})
}

func (c *cli) reviewDecideCommand(sub, usage string) *urfave.Command {
	fs := newFlags()
	reason := fs.String("reason", "", "reject: the reason shown to the applicant (required); approve: a note")
	return c.command(verb{name: sub, usage: usage, args: "ORDER", fs: fs, nargs: oneArg,
		run: func(ctx context.Context, conn *client.Conn, pos []string) error {
			desk, err := c.reviewDesk(conn)
			if err != nil {
				return err
			}
			var o *hufuv1.Order
			if sub == "approve" {
				resp, err := desk.ApproveOrder(ctx, &hufuv1.ApproveOrderRequest{OrderId: pos[0], Note: *reason})
				if err != nil {
					return err
				}
				o = resp.Order
			} else {
				resp, err := desk.RejectOrder(ctx, &hufuv1.RejectOrderRequest{OrderId: pos[0], Reason: *reason})
				if err != nil {
					return err
				}
				o = resp.Order
			}
			c.printOrder(o, false)
			return nil
		}})
}

func (c *cli) reviewLetterCommand() *urfave.Command {
	fs := newFlags()
	out := fs.String("o", "", "write the letter here (default: its file name, or ORDER-letter.txt)")
	return c.command(verb{name: "letter", usage: "save an application's authorisation letter", args: "ORDER", fs: fs, nargs: oneArg,
		run: func(ctx context.Context, conn *client.Conn, pos []string) error {
			desk, err := c.reviewDesk(conn)
			if err != nil {
				return err
			}
			resp, err := desk.GetAuthorisationLetter(ctx, &hufuv1.GetAuthorisationLetterRequest{OrderId: pos[0]})
			if err != nil {
				return err
			}
			name := *out
			if name == "" {
				name = filepath.Base(resp.FileName)
				if resp.FileName == "" || name == "." || name == "/" {
					name = pos[0] + "-letter.txt"
				}
			}
			if err := os.WriteFile(name, resp.Content, 0o600); err != nil {
				return err
			}
			how := "uploaded scan (" + resp.MediaType + ")"
			if resp.Method == "online" {
				how = "signed online with the applicant's key (signature checked at submission)"
			}
			fmt.Fprintf(c.out, "wrote %s: %s, sha256 %s\n", name, how, resp.Sha256)
			return nil
		}})
}
