package main

// Corporate-transfer verification (对公打款认证, seed manual §1.6.4): the applicant's
// `hufu enterprise transfer-apply | transfers [ID]`, and the operators' reconciliation
// desk `hufu reconcile import|list|confirm|reject` (a system client's -cert/-key allowed
// hufu.v1.ReconciliationService).

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"os"
	"strings"
	"time"

	hufuv1 "github.com/hufu-hsm/hufu/api/hufu/v1"
	"github.com/hufu-hsm/hufu/client"
)

// enterpriseTransferApply applies; it prints where to transfer what.
func (c *cli) enterpriseTransferApply(ctx context.Context, conn *client.Conn, args []string) error {
	fs := flag.NewFlagSet("enterprise transfer-apply", flag.ContinueOnError)
	form := enterpriseFlags(fs, "`hufu enterprise letter -kind corporate-transfer`")
	tail := fs.String("account-tail", "", "the last six digits of the corporate account that will pay")
	if _, err := c.parseArgs(fs, args); err != nil {
		return err
	}
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

// enterpriseTransfers lists the caller's applications, or shows one.
func (c *cli) enterpriseTransfers(ctx context.Context, conn *client.Conn, args []string) error {
	if len(args) == 1 {
		resp, err := conn.Enterprises.GetCorporateTransfer(ctx, &hufuv1.GetCorporateTransferRequest{TransferId: args[0]})
		if err != nil {
			return err
		}
		c.printTransfer(resp.Transfer)
		return nil
	}
	resp, err := conn.Enterprises.ListCorporateTransfers(ctx, &hufuv1.ListCorporateTransfersRequest{})
	if err != nil {
		return err
	}
	for _, t := range resp.Transfers {
		c.printTransfer(t)
	}
	return nil
}

func (c *cli) reconcileCmd(ctx context.Context, conn *client.Conn, args []string) error {
	if len(args) == 0 {
		return errors.New("reconcile import FILE | list [-state awaiting|verified|expired|rejected] | confirm ID -note N | reject ID -reason R")
	}
	if c.cert == "" {
		return errors.New("the reconciliation desk needs a client certificate: -cert FILE -key FILE (HUFU_CERT, HUFU_KEY)")
	}
	desk := hufuv1.NewReconciliationServiceClient(conn.ClientConn())
	switch args[0] {
	case "import":
		if len(args) != 2 {
			return errors.New("reconcile import FILE (CSV: date,amount,payer_account,payer_name,remark)")
		}
		data, err := os.ReadFile(args[1])
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
	case "list":
		fs := flag.NewFlagSet("reconcile list", flag.ContinueOnError)
		st := fs.String("state", "awaiting", "awaiting, verified, expired or rejected")
		if _, err := c.parseArgs(fs, args[1:]); err != nil {
			return err
		}
		name := "TRANSFER_STATE_" + strings.ToUpper(*st)
		if *st == "awaiting" {
			name = "TRANSFER_STATE_AWAITING_TRANSFER"
		}
		state, ok := hufuv1.TransferState_value[name]
		if !ok || state == 0 {
			return fmt.Errorf("-state %q: want awaiting, verified, expired or rejected", *st)
		}
		for token := ""; ; {
			resp, err := desk.ListTransfers(ctx, &hufuv1.ListTransfersRequest{State: hufuv1.TransferState(state), PageSize: 1000, PageToken: token})
			if err != nil {
				return err
			}
			for _, t := range resp.Transfers {
				c.printTransfer(t)
			}
			if token = resp.NextPageToken; token == "" {
				return nil
			}
		}
	case "confirm", "reject":
		fs := flag.NewFlagSet("reconcile "+args[0], flag.ContinueOnError)
		note := fs.String("note", "", "confirm: how the transfer was found (required)")
		reason := fs.String("reason", "", "reject: the reason shown to the applicant (required)")
		pos, err := c.parseArgs(fs, args[1:])
		if err != nil {
			return err
		}
		if len(pos) != 1 {
			return fmt.Errorf("reconcile %s ID -note N | -reason R", args[0])
		}
		var t *hufuv1.CorporateTransfer
		if args[0] == "confirm" {
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
	}
	return fmt.Errorf("unknown reconcile command %q", args[0])
}
