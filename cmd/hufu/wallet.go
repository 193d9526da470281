package main

// The wallet commands (seed manual §1.8.2 互认账户): the mutual-recognition catalogue, the
// per-use wallet's balance and top-ups (按次账户), day passes (按日账户, 畅行包) and the
// records (充值记录, 购买记录, 消费记录). A certificate of the national mutual-recognition
// system (全国CA互认) answers a scan session of another platform only with one of them open.

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"time"

	urfave "github.com/urfave/cli/v2"
	"google.golang.org/genproto/googleapis/rpc/errdetails"
	"google.golang.org/grpc/status"

	hufuv1 "github.com/hufu-hsm/hufu/api/hufu/v1"
	"github.com/hufu-hsm/hufu/client"
)

// walletCommands: hufu wallet.
func (c *cli) walletCommands() []*urfave.Command {
	return []*urfave.Command{
		group("wallet", "mutual-recognition account (互认账户): plans, balance, top-ups, day passes, records", "seed manual §1.8.2",
			c.walletPlansCommand(), c.walletBalanceCommand(), c.walletTopUpCommand(), c.walletBuyPassCommand(),
			c.walletRecordsCommand(), c.walletPassesCommand()),
	}
}

func walletSvc(conn *client.Conn) hufuv1.WalletServiceClient {
	return hufuv1.NewWalletServiceClient(conn.ClientConn())
}

func (c *cli) walletPlansCommand() *urfave.Command {
	fs := newFlags()
	o := outputFlag(fs)
	return c.command(verb{name: "plans", usage: "the mutual-recognition platforms and their plans: per use (按次) and day passes (畅行包)", fs: fs, nargs: noArgs,
		run: func(ctx context.Context, conn *client.Conn, _ []string) error {
			resp, err := walletSvc(conn).GetWalletCatalogue(ctx, &hufuv1.GetWalletCatalogueRequest{})
			if err != nil {
				return err
			}
			return c.emit(o, resp, func() error {
				if len(resp.Platforms) == 0 {
					fmt.Fprintln(c.out, "no platform admits certificates of other platforms here")
				}
				for _, p := range resp.Platforms {
					fmt.Fprintf(c.out, "%s  %s\n", p.PlatformId, p.PlatformName)
					if p.PerUsePriceFen > 0 {
						amounts := make([]string, len(p.TopUpAmountsFen))
						for i, a := range p.TopUpAmountsFen {
							amounts[i] = fmt.Sprint(a)
						}
						fmt.Fprintf(c.out, "  按次 per use: %s a session; top-ups (fen): %s\n", fenText(p.PerUsePriceFen), strings.Join(amounts, ", "))
					}
					for _, ps := range p.DayPasses {
						fmt.Fprintf(c.out, "  畅行包 day pass %-8s %-12s %3d days  %s\n", ps.Id, ps.Name, ps.Days, fenText(ps.PriceFen))
					}
				}
				return nil
			})
		}})
}

func (c *cli) printPasses(passes []*hufuv1.DayPass) {
	for _, p := range passes {
		state := "lapsed"
		if p.Active {
			state = "active, " + p.Remaining.AsDuration().Round(time.Minute).String() + " left"
		}
		fmt.Fprintf(c.out, "day pass %-12s until %s  (%s)\n", p.PlatformId, p.ValidUntil.AsTime().Local().Format(time.DateTime), state)
	}
}

func (c *cli) walletBalanceCommand() *urfave.Command {
	fs := newFlags()
	o := outputFlag(fs)
	return c.command(verb{name: "balance", usage: "the per-use wallet's balance and your day passes", fs: fs, nargs: noArgs,
		run: func(ctx context.Context, conn *client.Conn, _ []string) error {
			resp, err := walletSvc(conn).GetWalletBalance(ctx, &hufuv1.GetWalletBalanceRequest{})
			if err != nil {
				return err
			}
			return c.emit(o, resp, func() error {
				fmt.Fprintf(c.out, "balance %s\n", fenText(resp.BalanceFen))
				c.printPasses(resp.Passes)
				return nil
			})
		}})
}

func (c *cli) printWalletOrder(w *hufuv1.WalletOrder) {
	what := "top-up 充值"
	if w.Kind == hufuv1.WalletOrderKind_WALLET_ORDER_KIND_DAY_PASS {
		what = fmt.Sprintf("day pass 畅行包 %s (%d days)", w.PassId, w.PassDays)
	}
	state := "awaiting payment"
	if w.State == hufuv1.WalletOrderState_WALLET_ORDER_STATE_COMPLETED {
		state = "completed " + w.PaidAt.AsTime().Local().Format(time.DateTime)
	}
	fmt.Fprintf(c.out, "%s  %-10s %s  %s  %s\n", w.Id, w.PlatformId, what, fenText(w.AmountFen), state)
	if w.PassUntil != nil {
		fmt.Fprintf(c.out, "  valid %s – %s\n", w.PassFrom.AsTime().Local().Format(time.DateTime), w.PassUntil.AsTime().Local().Format(time.DateTime))
	}
}

// payWalletOrder pays a new order and prints the result.
func (c *cli) payWalletOrder(ctx context.Context, conn *client.Conn, o *outputFormat, order *hufuv1.WalletOrder, method, idem string) error {
	if idem == "" {
		idem = "pay-" + order.Id
	}
	resp, err := walletSvc(conn).PayWalletOrder(ctx, &hufuv1.PayWalletOrderRequest{OrderId: order.Id, Method: method, IdempotencyKey: idem})
	if err != nil {
		return fmt.Errorf("order %s created, not paid: %w", order.Id, err)
	}
	return c.emit(o, resp, func() error {
		c.printWalletOrder(resp.Order)
		fmt.Fprintf(c.out, "balance %s\n", fenText(resp.BalanceFen))
		return nil
	})
}

func (c *cli) walletTopUpCommand() *urfave.Command {
	fs := newFlags()
	platform := fs.String("platform", "", "the mutual-recognition platform (hufu wallet plans)")
	amount := fs.String("amount", "", "one of the platform's top-up amounts, in yuan (e.g. 50.00)")
	method := fs.String("method", "dev", "payment method (hufu payment methods)")
	requestID := fs.String("request-id", "", "idempotency key of the order, 8 to 64 of [A-Za-z0-9._-] (default: a new one)")
	o := outputFlag(fs)
	return c.command(verb{name: "top-up", usage: "top up the per-use wallet (去充值, 按次)", fs: fs, nargs: noArgs,
		run: func(ctx context.Context, conn *client.Conn, _ []string) error {
			if *platform == "" || *amount == "" {
				return usagef("top-up -platform P -amount YUAN [-method M]")
			}
			fen, err := yuanArg("amount", *amount)
			if err != nil {
				return err
			}
			if *requestID == "" {
				*requestID = client.NewKeyID()
			}
			resp, err := walletSvc(conn).CreateTopUp(ctx, &hufuv1.CreateTopUpRequest{RequestId: *requestID, PlatformId: *platform, AmountFen: fen})
			if err != nil {
				return err
			}
			return c.payWalletOrder(ctx, conn, o, resp.Order, *method, "")
		}})
}

func (c *cli) walletBuyPassCommand() *urfave.Command {
	fs := newFlags()
	platform := fs.String("platform", "", "the mutual-recognition platform (hufu wallet plans)")
	pass := fs.String("pass", "", "the day-pass package id (hufu wallet plans)")
	method := fs.String("method", "dev", "payment method (hufu payment methods)")
	requestID := fs.String("request-id", "", "idempotency key of the order, 8 to 64 of [A-Za-z0-9._-] (default: a new one)")
	o := outputFlag(fs)
	return c.command(verb{name: "buy-pass", usage: "buy a day pass for a platform (畅行包, 按日)", fs: fs, nargs: noArgs,
		desc: "A pass bought while one is active extends it from its end.",
		run: func(ctx context.Context, conn *client.Conn, _ []string) error {
			if *platform == "" || *pass == "" {
				return usagef("buy-pass -platform P -pass ID [-method M]")
			}
			if *requestID == "" {
				*requestID = client.NewKeyID()
			}
			resp, err := walletSvc(conn).BuyDayPass(ctx, &hufuv1.BuyDayPassRequest{RequestId: *requestID, PlatformId: *platform, PassId: *pass})
			if err != nil {
				return err
			}
			return c.payWalletOrder(ctx, conn, o, resp.Order, *method, "")
		}})
}

func (c *cli) walletRecordsCommand() *urfave.Command {
	fs := newFlags()
	kind := fs.String("kind", "top-up", "top-up (充值记录), pass (购买记录) or use (消费记录)")
	o := outputFlag(fs)
	return c.command(verb{name: "records", usage: "top-up, day-pass purchase or consumption records, newest first", fs: fs, nargs: noArgs,
		run: func(ctx context.Context, conn *client.Conn, _ []string) error {
			svc := walletSvc(conn)
			if *kind == "use" {
				all := &hufuv1.ListWalletUsesResponse{}
				for token := ""; ; {
					resp, err := svc.ListWalletUses(ctx, &hufuv1.ListWalletUsesRequest{PageSize: 100, PageToken: token})
					if err != nil {
						return err
					}
					all.Uses = append(all.Uses, resp.Uses...)
					if token = resp.NextPageToken; token == "" {
						break
					}
				}
				return c.emit(o, all, func() error {
					if len(all.Uses) == 0 {
						fmt.Fprintln(c.out, "no consumption records")
					}
					for _, u := range all.Uses {
						fmt.Fprintf(c.out, "%s  %-10s %s  session %s of %s  certificate %s\n", u.Time.AsTime().Local().Format(time.DateTime),
							u.PlatformId, fenText(u.AmountFen), u.SessionId, u.System, u.CertificateSerial)
					}
					return nil
				})
			}
			var k hufuv1.WalletOrderKind
			switch *kind {
			case "top-up":
				k = hufuv1.WalletOrderKind_WALLET_ORDER_KIND_TOP_UP
			case "pass":
				k = hufuv1.WalletOrderKind_WALLET_ORDER_KIND_DAY_PASS
			default:
				return usagef("-kind %q: top-up, pass or use", *kind)
			}
			all := &hufuv1.ListWalletOrdersResponse{}
			for token := ""; ; {
				resp, err := svc.ListWalletOrders(ctx, &hufuv1.ListWalletOrdersRequest{Kind: k, PageSize: 100, PageToken: token})
				if err != nil {
					return err
				}
				all.Orders = append(all.Orders, resp.Orders...)
				if token = resp.NextPageToken; token == "" {
					break
				}
			}
			return c.emit(o, all, func() error {
				if len(all.Orders) == 0 {
					fmt.Fprintln(c.out, "no records")
				}
				for _, w := range all.Orders {
					c.printWalletOrder(w)
				}
				return nil
			})
		}})
}

func (c *cli) walletPassesCommand() *urfave.Command {
	fs := newFlags()
	o := outputFlag(fs)
	return c.command(verb{name: "passes", usage: "your day passes by platform, with the validity left (按日账户)", fs: fs, nargs: noArgs,
		run: func(ctx context.Context, conn *client.Conn, _ []string) error {
			resp, err := walletSvc(conn).ListDayPasses(ctx, &hufuv1.ListDayPassesRequest{})
			if err != nil {
				return err
			}
			return c.emit(o, resp, func() error {
				if len(resp.Passes) == 0 {
					fmt.Fprintln(c.out, "no day passes")
				}
				c.printPasses(resp.Passes)
				return nil
			})
		}})
}

// recognitionRequired says whether err is the scan gate's refusal: the certificate needs
// the mutual-recognition service open for the session's platform.
func recognitionRequired(err error) bool {
	var grpcErr interface{ GRPCStatus() *status.Status }
	if !errors.As(err, &grpcErr) {
		return false
	}
	for _, d := range grpcErr.GRPCStatus().Details() {
		if info, ok := d.(*errdetails.ErrorInfo); ok && info.Domain == hufuv1.ErrorDomain && info.Reason == hufuv1.ReasonRecognitionServiceRequired {
			return true
		}
	}
	return false
}
