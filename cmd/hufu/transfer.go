package main

// Corporate-transfer verification (对公打款认证, seed manual §1.6.4): the applicant's
// `hufu enterprise transfer-apply | transfers [ID]`, and the operators' reconciliation
// desk `hufu reconcile import|list|confirm|reject` (a system client's -tls-cert/-tls-key allowed
// hufu.v1.ReconciliationService).

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

// enterpriseTransferApply applies; it prints where to transfer what.
func (c *cli) enterpriseTransferApplyCommand() *urfave.Command {
	fs := newFlags()
	form := enterpriseFlags(fs, "`hufu enterprise letter -kind corporate-transfer`")
	tail := fs.String("account-tail", "", "the last six digits of the corporate account that will pay")
	return c.command(verb{name: "transfer-apply", usage: "对公打款认证: apply for corporate-transfer verification; prints where to transfer what", nargs: noArgs, fs: fs, run: func(ctx context.Context, conn *client.Conn, pos []string) error {
		d, letter, err := form.read()
		if err != nil {
			return err
		}
		resp, err := conn.Enterprises.ApplyCorporateTransfer(ctx, &hufuv1.ApplyCorporateTransferRequest{RequestId: client.NewKeyID(),
			Enterprise: d, AccountTail: *tail, Letter: letter})
		if err != nil {
			return err
		}
		t := resp.Transfer
		ra := t.ReceivingAccount
		fmt.Fprintf(c.out, "application %s for %s %s\n", t.Id, t.Uscc, t.EnterpriseName)
		fmt.Fprintf(c.out, "transfer from the corporate account ending %s, before %s:\n", t.AccountTail, t.ExpiresAt.AsTime().Local().Format(time.DateTime))
		fmt.Fprintf(c.out, "  to       %s\n  bank     %s\n  account  %s\n  amount   ¥%d.%02d (exactly)\n  remark   %s\n",
			ra.GetAccountName(), ra.GetBank(), ra.GetAccountNumber(), t.AmountFen/100, t.AmountFen%100, t.Reference)
		fmt.Fprintf(c.out, "follow it with: hufu enterprise transfers %s\n", t.Id)
		return nil
	}})
}

func transferStateName(s hufuv1.TransferState) string {
	return strings.ToLower(strings.TrimPrefix(s.String(), "TRANSFER_STATE_"))
}

func (c *cli) printTransfer(t *hufuv1.CorporateTransfer) {
	fmt.Fprintf(c.out, "%s  %-17s %s  %s  ¥%d.%02d  %s  tail %s  until %s", t.Id, transferStateName(t.State), t.Uscc, t.EnterpriseName,
		t.AmountFen/100, t.AmountFen%100, t.Reference, t.AccountTail, t.ExpiresAt.AsTime().Local().Format(time.DateTime))
	if t.State == hufuv1.TransferState_TRANSFER_STATE_VERIFIED {
		fmt.Fprintf(c.out, "  %s via %s, order %s", roleName(t.Role), t.VerifiedVia, t.OrderId)
	}
	if t.Reason != "" {
		fmt.Fprintf(c.out, "  reason: %s", t.Reason)
	}
	fmt.Fprintln(c.out)
}

// enterpriseTransfersCommand lists the caller's applications, or shows one.
func (c *cli) enterpriseTransfersCommand() *urfave.Command {
	fs := newFlags()
	o := outputFlag(fs)
	return c.command(verb{name: "transfers", usage: "your corporate-transfer applications, or one of them", args: "[ID]", fs: fs, nargs: upTo(1),
		run: func(ctx context.Context, conn *client.Conn, args []string) error {
			if len(args) == 1 {
				resp, err := conn.Enterprises.GetCorporateTransfer(ctx, &hufuv1.GetCorporateTransferRequest{TransferId: args[0]})
				if err != nil {
					return err
				}
				return c.emit(o, resp, func() error { c.printTransfer(resp.Transfer); return nil })
			}
			resp, err := conn.Enterprises.ListCorporateTransfers(ctx, &hufuv1.ListCorporateTransfersRequest{})
			if err != nil {
				return err
			}
			return c.emit(o, resp, func() error {
				for _, t := range resp.Transfers {
					c.printTransfer(t)
				}
				return nil
			})
		}})
}

func (c *cli) reconcileDesk(conn *client.Conn) (hufuv1.ReconciliationServiceClient, error) {
	if err := c.needCert("the reconciliation desk", "hufu.v1.ReconciliationService"); err != nil {
		return nil, err
	}
	return hufuv1.NewReconciliationServiceClient(conn.ClientConn()), nil
}

// reconcileCommand is the reconciliation desk (a system client allowed
// hufu.v1.ReconciliationService).
func (c *cli) reconcileCommand() *urfave.Command {
	return group("reconcile", "the reconciliation desk of corporate transfers (a system client allowed hufu.v1.ReconciliationService)", "",
		c.reconcileImportCommand(), c.reconcileListCommand(),
		c.reconcileDecideCommand("confirm", "confirm a transfer was received (-note: how it was found, required)"),
		c.reconcileDecideCommand("reject", "reject an application (-reason: shown to the applicant, required)"))
}

func (c *cli) reconcileImportCommand() *urfave.Command {
	return c.command(verb{name: "import", usage: "import a bank statement (CSV: date,amount,payer_account,payer_name,remark)", args: "FILE", nargs: oneArg,
		run: func(ctx context.Context, conn *client.Conn, args []string) error {
			desk, err := c.reconcileDesk(conn)
			if err != nil {
				return err
			}
			data, err := os.ReadFile(args[0])
			if err != nil {
				return err
			}
			resp, err := desk.ImportStatement(ctx, &hufuv1.ImportStatementRequest{Csv: data})
			if err != nil {
				return err
			}
			for _, l := range resp.Lines {
				outcome := strings.ToLower(strings.TrimPrefix(l.Outcome.String(), "STATEMENT_LINE_OUTCOME_"))
				fmt.Fprintf(c.out, "line %-5d %-9s ¥%d.%02d  %s\n", l.Line, outcome, l.AmountFen/100, l.AmountFen%100, l.Detail)
			}
			fmt.Fprintf(c.out, "%d matched, %d partial, %d unmatched, %d duplicate\n", resp.Matched, resp.Partial, resp.Unmatched, resp.Duplicate)
			return nil
		}})
}

func (c *cli) reconcileListCommand() *urfave.Command {
	fs := newFlags()
	st := fs.String("state", "awaiting", "awaiting, verified, expired or rejected")
	o := outputFlag(fs)
	return c.command(verb{name: "list", usage: "corporate transfers by state", fs: fs, nargs: noArgs,
		run: func(ctx context.Context, conn *client.Conn, _ []string) error {
			desk, err := c.reconcileDesk(conn)
			if err != nil {
				return err
			}
			name := "TRANSFER_STATE_" + strings.ToUpper(*st)
			if *st == "awaiting" {
				name = "TRANSFER_STATE_AWAITING_TRANSFER"
			}
			state, ok := hufuv1.TransferState_value[name]
			if !ok || state == 0 {
				return usagef("-state %q: want awaiting, verified, expired or rejected", *st)
			}
			all := &hufuv1.ListTransfersResponse{}
			for token := ""; ; {
				resp, err := desk.ListTransfers(ctx, &hufuv1.ListTransfersRequest{State: hufuv1.TransferState(state), PageSize: 1000, PageToken: token})
				if err != nil {
					return err
				}
				all.Transfers = append(all.Transfers, resp.Transfers...)
				if token = resp.NextPageToken; token == "" {
					break
				}
			}
			return c.emit(o, all, func() error {
				for _, t := range all.Transfers {
					c.printTransfer(t)
				}
				return nil
			})
		}})
}

func (c *cli) reconcileDecideCommand(sub, usage string) *urfave.Command {
	fs := newFlags()
	var note, reason *string
	if sub == "confirm" {
		note = fs.String("note", "", "how the transfer was found (required)")
	} else {
		reason = fs.String("reason", "", "the reason shown to the applicant (required)")
	}
	return c.command(verb{name: sub, usage: usage, args: "ID", fs: fs, nargs: oneArg,
		run: func(ctx context.Context, conn *client.Conn, pos []string) error {
			desk, err := c.reconcileDesk(conn)
			if err != nil {
				return err
			}
			var t *hufuv1.CorporateTransfer
			if sub == "confirm" {
				resp, err := desk.ConfirmTransfer(ctx, &hufuv1.ConfirmTransferRequest{TransferId: pos[0], Note: *note})
				if err != nil {
					return err
				}
				t = resp.Transfer
			} else {
				resp, err := desk.RejectTransfer(ctx, &hufuv1.RejectTransferRequest{TransferId: pos[0], Reason: *reason})
				if err != nil {
					return err
				}
				t = resp.Transfer
			}
			c.printTransfer(t)
			return nil
		}})
}
