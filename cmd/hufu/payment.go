package main

// The payment commands (seed manual §1.8.1.1.2 支付方式): the payment methods of a platform
// and the offline payment of an order (bank transfer or cash), for phones; and the payment
// desk, where an operator confirms or rejects offline payments. The desk's calls need a
// client certificate (-tls-cert, -tls-key) of a system client allowed
// hufu.v1.PaymentDeskService.

import (
	"context"
	"fmt"
	"math"
	"strconv"
	"strings"

	urfave "github.com/urfave/cli/v2"

	hufuv1 "github.com/hufu-hsm/hufu/api/hufu/v1"
	"github.com/hufu-hsm/hufu/client"
)

// paymentCommands: the phone's payment commands and the payment desk.
func (c *cli) paymentCommands() []*urfave.Command {
	return []*urfave.Command{
		group("payment", "payment methods and offline payment (bank transfer, cash) of your orders", "seed manual §1.8.1.1.2",
			c.paymentMethodsCommand(), c.payOfflineCommand()),
		group("payment-desk", "the operators' payment desk (a system client allowed hufu.v1.PaymentDeskService)", "",
			c.deskPendingCommand(), c.deskConfirmCommand(), c.deskRejectCommand(), c.deskRefundsCommand(), c.deskPayoutCommand(),
			c.deskLedgerCheckCommand()),
	}
}

func (c *cli) paymentDesk(conn *client.Conn) (hufuv1.PaymentDeskServiceClient, error) {
	if err := c.needCert("the payment desk", "hufu.v1.PaymentDeskService"); err != nil {
		return nil, err
	}
	return hufuv1.NewPaymentDeskServiceClient(conn.ClientConn()), nil
}

// yuanArg parses an amount in yuan with at most two decimals ("360", "360.00", "0.37") to fen.
func yuanArg(flagName, s string) (int64, error) {
	whole, frac, _ := strings.Cut(strings.TrimPrefix(s, "¥"), ".")
	if whole == "" || len(frac) > 2 {
		return 0, usagef("-%s: an amount in yuan with at most two decimals, e.g. 360.00", flagName)
	}
	w, err := strconv.ParseInt(whole, 10, 64)
	if err != nil || w < 0 || w > math.MaxInt64/100-1 {
		return 0, usagef("-%s: an amount in yuan with at most two decimals, e.g. 360.00", flagName)
	}
	f := int64(0)
	if frac != "" {
		for len(frac) < 2 {
			frac += "0"
		}
		if f, err = strconv.ParseInt(frac, 10, 64); err != nil || f < 0 {
			return 0, usagef("-%s: an amount in yuan with at most two decimals, e.g. 360.00", flagName)
		}
	}
	return w*100 + f, nil
}

// deskEntry checks what an operator gives the desk's confirmations: a reference and an
// amount in yuan, which it returns in fen.
func deskEntry(ref, amount string) (int64, error) {
	if ref == "" || amount == "" {
		return 0, usagef("-reference and -amount are required")
	}
	return yuanArg("amount", amount)
}

func fenText(fen int64) string { return fmt.Sprintf("¥%d.%02d", fen/100, fen%100) }

func offlineStateName(s hufuv1.OfflinePaymentState) string {
	switch s {
	case hufuv1.OfflinePaymentState_OFFLINE_PAYMENT_STATE_PENDING:
		return "待确认 pending"
	case hufuv1.OfflinePaymentState_OFFLINE_PAYMENT_STATE_CONFIRMED:
		return "已确认 confirmed"
	case hufuv1.OfflinePaymentState_OFFLINE_PAYMENT_STATE_REJECTED:
		return "未确认 rejected"
	case hufuv1.OfflinePaymentState_OFFLINE_PAYMENT_STATE_CANCELLED:
		return "已取消 cancelled"
	case hufuv1.OfflinePaymentState_OFFLINE_PAYMENT_STATE_REFUND_DUE:
		return "待退款 refund due"
	case hufuv1.OfflinePaymentState_OFFLINE_PAYMENT_STATE_REFUNDED:
		return "已退款 refunded"
	}
	return s.String()
}

func (c *cli) printOfflinePayment(p *hufuv1.OfflinePayment) {
	fmt.Fprintf(c.out, "order %s  %s  %s  reference %s\n", p.OrderId, offlineStateName(p.State), fenText(p.AmountFen), p.Reference)
	if p.UserId != "" {
		fmt.Fprintf(c.out, "  payer %s\n", p.UserId)
	}
	if p.OperatorReference != "" {
		fmt.Fprintf(c.out, "  received %s, operator reference %s, ledger entry %s\n", fenText(p.ReceivedFen), p.OperatorReference, p.LedgerEntryId)
	}
	if p.Reason != "" {
		fmt.Fprintf(c.out, "  reason: %s\n", p.Reason)
	}
	if p.RefundEntryId != "" {
		fmt.Fprintf(c.out, "  refund of %s owed since %s, ledger entry %s\n", fenText(p.AmountFen), p.RefundDueAt.AsTime().Local().Format("2006-01-02 15:04"), p.RefundEntryId)
	}
	if p.PayoutReference != "" {
		fmt.Fprintf(c.out, "  paid out %s, operator reference %s, ledger entry %s\n", p.RefundedAt.AsTime().Local().Format("2006-01-02 15:04"), p.PayoutReference, p.PayoutEntryId)
	}
}

func (c *cli) paymentMethodsCommand() *urfave.Command {
	fs := newFlags()
	o := outputFlag(fs)
	platform := fs.String("platform", "", "the platform's id (default: your current platform)")
	return c.command(verb{name: "methods", usage: "the payment methods a platform offers", fs: fs, nargs: noArgs,
		run: func(ctx context.Context, conn *client.Conn, _ []string) error {
			id := *platform
			if id == "" {
				r, err := conn.Platforms.GetCurrentPlatform(ctx, &hufuv1.GetCurrentPlatformRequest{})
				if err != nil {
					return err
				}
				if r.Platform == nil {
					return usagef("no current platform: choose one (hufu platform select ID) or name it with -platform")
				}
				id = r.Platform.Id
			}
			resp, err := hufuv1.NewPaymentServiceClient(conn.ClientConn()).ListPaymentMethods(ctx, &hufuv1.ListPaymentMethodsRequest{Platform: id})
			if err != nil {
				return err
			}
			return c.emit(o, resp, func() error {
				for _, m := range resp.Methods {
					how := "hufu cert pay ORDER -method " + m.Id
					if m.Offline {
						how = "hufu payment pay-offline ORDER"
					}
					fmt.Fprintf(c.out, "%-10s %s  (%s)\n", m.Id, m.Name, how)
				}
				if len(resp.Methods) == 0 {
					fmt.Fprintln(c.out, "no payment methods")
				}
				return nil
			})
		}})
}

func (c *cli) payOfflineCommand() *urfave.Command {
	fs := newFlags()
	o := outputFlag(fs)
	return c.command(verb{name: "pay-offline", usage: "pay an order by bank transfer or cash: the account, the amount and the reference to quote",
		args: "ORDER", fs: fs, nargs: oneArg,
		desc: "The order stays awaiting payment (待支付) until an operator at the payment desk confirms that the money arrived.\n" +
			"Asking again returns the same instructions.",
		run: func(ctx context.Context, conn *client.Conn, pos []string) error {
			resp, err := hufuv1.NewPaymentServiceClient(conn.ClientConn()).PayOffline(ctx, &hufuv1.PayOfflineRequest{OrderId: pos[0]})
			if err != nil {
				return err
			}
			p := resp.Payment
			return c.emit(o, resp, func() error {
				fmt.Fprintf(c.out, "order %s: %s\n", p.OrderId, offlineStateName(p.State))
				fmt.Fprintf(c.out, "  pay          %s (exactly)\n", fenText(p.AmountFen))
				fmt.Fprintf(c.out, "  to           %s, %s, account %s\n", p.Account.GetAccountName(), p.Account.GetBank(), p.Account.GetAccountNumber())
				fmt.Fprintf(c.out, "  reference    %s (quote it in the transfer's remark or at the counter)\n", p.Reference)
				if p.Note != "" {
					fmt.Fprintf(c.out, "  note         %s\n", p.Note)
				}
				return nil
			})
		}})
}

func (c *cli) deskPendingCommand() *urfave.Command {
	return c.offlineListCommand("pending", "offline payments awaiting confirmation", "no pending payments",
		func(ctx context.Context, desk hufuv1.PaymentDeskServiceClient, token string) ([]*hufuv1.OfflinePayment, string, error) {
			r, err := desk.ListPendingPayments(ctx, &hufuv1.ListPendingPaymentsRequest{PageSize: 100, PageToken: token})
			return r.GetPayments(), r.GetNextPageToken(), err
		})
}

func (c *cli) deskRefundsCommand() *urfave.Command {
	return c.offlineListCommand("refunds", "refunds of offline payments owed and not yet paid out (待退款)", "no refunds due",
		func(ctx context.Context, desk hufuv1.PaymentDeskServiceClient, token string) ([]*hufuv1.OfflinePayment, string, error) {
			r, err := desk.ListRefundsDue(ctx, &hufuv1.ListRefundsDueRequest{PageSize: 100, PageToken: token})
			return r.GetPayments(), r.GetNextPageToken(), err
		})
}

// offlineListCommand lists every page of a desk listing of offline payments.
func (c *cli) offlineListCommand(name, usage, none string,
	page func(context.Context, hufuv1.PaymentDeskServiceClient, string) ([]*hufuv1.OfflinePayment, string, error)) *urfave.Command {
	fs := newFlags()
	o := outputFlag(fs)
	return c.command(verb{name: name, usage: usage, fs: fs, nargs: noArgs,
		run: func(ctx context.Context, conn *client.Conn, _ []string) error {
			desk, err := c.paymentDesk(conn)
			if err != nil {
				return err
			}
			all, token := &hufuv1.ListPendingPaymentsResponse{}, ""
			for {
				ps, next, err := page(ctx, desk, token)
				if err != nil {
					return err
				}
				all.Payments = append(all.Payments, ps...)
				if token = next; token == "" {
					break
				}
			}
			return c.emit(o, all, func() error {
				for _, p := range all.Payments {
					c.printOfflinePayment(p)
				}
				if len(all.Payments) == 0 {
					fmt.Fprintln(c.out, none)
				}
				return nil
			})
		}})
}

func (c *cli) deskConfirmCommand() *urfave.Command {
	fs := newFlags()
	ref := fs.String("reference", "", "the bank transaction number or the receipt number (required)")
	amount := fs.String("amount", "", "the amount received, in yuan (required; must equal the order's price)")
	return c.command(verb{name: "confirm", usage: "confirm that an offline payment arrived: the order is paid", args: "ORDER", fs: fs, nargs: oneArg,
		desc: "Confirming again with the same reference answers as the first time and books nothing more.",
		run: func(ctx context.Context, conn *client.Conn, pos []string) error {
			fen, err := deskEntry(*ref, *amount)
			if err != nil {
				return err
			}
			desk, err := c.paymentDesk(conn)
			if err != nil {
				return err
			}
			resp, err := desk.ConfirmOfflinePayment(ctx, &hufuv1.ConfirmOfflinePaymentRequest{OrderId: pos[0], OperatorReference: *ref, AmountFen: fen})
			if err != nil {
				return err
			}
			c.printOfflinePayment(resp.Payment)
			if resp.Serial != "" {
				fmt.Fprintf(c.out, "  certificate %s issued\n", resp.Serial)
			}
			return nil
		}})
}

func (c *cli) deskRejectCommand() *urfave.Command {
	fs := newFlags()
	reason := fs.String("reason", "", "the reason, shown to the payer (required)")
	return c.command(verb{name: "reject", usage: "reject an offline payment that will not be confirmed", args: "ORDER", fs: fs, nargs: oneArg,
		run: func(ctx context.Context, conn *client.Conn, pos []string) error {
			if strings.TrimSpace(*reason) == "" {
				return usagef("-reason is required")
			}
			desk, err := c.paymentDesk(conn)
			if err != nil {
				return err
			}
			resp, err := desk.RejectOfflinePayment(ctx, &hufuv1.RejectOfflinePaymentRequest{OrderId: pos[0], Reason: *reason})
			if err != nil {
				return err
			}
			c.printOfflinePayment(resp.Payment)
			return nil
		}})
}

func (c *cli) deskPayoutCommand() *urfave.Command {
	fs := newFlags()
	ref := fs.String("reference", "", "the outgoing bank transaction number or the cash receipt number (required)")
	amount := fs.String("amount", "", "the amount paid back, in yuan (required; must equal the refund)")
	return c.command(verb{name: "payout", usage: "confirm that an owed refund of an offline payment was paid out", args: "ORDER", fs: fs, nargs: oneArg,
		desc: "Pay the refund back by bank transfer or cash first (hufu payment-desk refunds lists what is owed), then confirm it\n" +
			"with the transfer's or the receipt's number: the ledger moves the money out of the offline clearing account and\n" +
			"the payer is told. Confirming again with the same reference answers as the first time and books nothing more.",
		run: func(ctx context.Context, conn *client.Conn, pos []string) error {
			fen, err := deskEntry(*ref, *amount)
			if err != nil {
				return err
			}
			desk, err := c.paymentDesk(conn)
			if err != nil {
				return err
			}
			resp, err := desk.ConfirmRefundPayout(ctx, &hufuv1.ConfirmRefundPayoutRequest{OrderId: pos[0], OperatorReference: *ref, AmountFen: fen})
			if err != nil {
				return err
			}
			c.printOfflinePayment(resp.Payment)
			return nil
		}})
}

func (c *cli) deskLedgerCheckCommand() *urfave.Command {
	fs := newFlags()
	o := outputFlag(fs)
	return c.command(verb{name: "ledger-check", usage: "prove that the ledger balances (exit 1 if it does not)", fs: fs, nargs: noArgs,
		run: func(ctx context.Context, conn *client.Conn, _ []string) error {
			desk, err := c.paymentDesk(conn)
			if err != nil {
				return err
			}
			r, err := desk.CheckLedger(ctx, &hufuv1.CheckLedgerRequest{})
			if err != nil {
				return err
			}
			if err := c.emit(o, r, func() error {
				fmt.Fprintf(c.out, "%d entries, %d accounts, debits %s, credits %s\n", r.Entries, r.Accounts, fenText(r.DebitsFen), fenText(r.CreditsFen))
				for _, p := range r.Problems {
					fmt.Fprintln(c.out, "  "+p)
				}
				return nil
			}); err != nil {
				return err
			}
			if !r.Balanced {
				return fmt.Errorf("the ledger does not balance (%d problems)", len(r.Problems))
			}
			fmt.Fprintln(c.errOut, "the ledger balances")
			return nil
		}})
}
