package main

// After-sales (退款/售后, seed manual §1.8.1.4): "hufu aftersales" is the person's side
// (apply on a completed order, list, show, withdraw), "hufu aftersales-desk" the operators'
// desk (a system client allowed hufu.v1.AfterSalesDeskService): list open cases, refund
// (同意退款: the certificate is revoked and the payment given back) or settle (协商解决).

import (
	"context"
	"errors"
	"fmt"
	"mime"
	"os"
	"path/filepath"
	"slices"
	"sort"
	"strings"

	urfave "github.com/urfave/cli/v2"

	hufuv1 "github.com/hufu-hsm/hufu/api/hufu/v1"
	"github.com/hufu-hsm/hufu/client"
)

// afterSalesCommands: the person's after-sales and the desk.
func (c *cli) afterSalesCommands() []*urfave.Command {
	return []*urfave.Command{
		group("aftersales", "after-sales on your completed orders (退款/售后)", "seed manual §1.8.1.4",
			c.afterSalesApplyCommand(), c.afterSalesListCommand(), c.afterSalesShowCommand(), c.afterSalesWithdrawCommand()),
		group("aftersales-desk", "the operators' after-sales desk (a system client allowed hufu.v1.AfterSalesDeskService)", "",
			c.afterSalesDeskListCommand(), c.afterSalesDeskAttachmentCommand(), c.afterSalesDeskRefundCommand(), c.afterSalesDeskSettleCommand()),
	}
}

// afterSalesReasonNames are the -reason values.
var afterSalesReasonNames = map[string]hufuv1.AfterSalesReason{
	"not_needed":           hufuv1.AfterSalesReason_AFTER_SALES_REASON_NOT_NEEDED,
	"wrong_information":    hufuv1.AfterSalesReason_AFTER_SALES_REASON_WRONG_INFORMATION,
	"duplicate":            hufuv1.AfterSalesReason_AFTER_SALES_REASON_DUPLICATE,
	"certificate_unusable": hufuv1.AfterSalesReason_AFTER_SALES_REASON_CERTIFICATE_UNUSABLE,
	"platform_unsupported": hufuv1.AfterSalesReason_AFTER_SALES_REASON_PLATFORM_UNSUPPORTED,
	"other":                hufuv1.AfterSalesReason_AFTER_SALES_REASON_OTHER,
}

func reasonNames() string {
	var names []string
	for n := range afterSalesReasonNames {
		names = append(names, n)
	}
	sort.Strings(names)
	return strings.Join(names, ", ")
}

// afterSalesStateNames are the -state values.
var afterSalesStateNames = map[string]hufuv1.AfterSalesState{
	"in_review": hufuv1.AfterSalesState_AFTER_SALES_STATE_IN_REVIEW,
	"refunded":  hufuv1.AfterSalesState_AFTER_SALES_STATE_REFUNDED,
	"settled":   hufuv1.AfterSalesState_AFTER_SALES_STATE_SETTLED,
	"withdrawn": hufuv1.AfterSalesState_AFTER_SALES_STATE_WITHDRAWN,
}

func afterSalesStateText(s hufuv1.AfterSalesState) string {
	switch s {
	case hufuv1.AfterSalesState_AFTER_SALES_STATE_IN_REVIEW:
		return "售后审核中 in review"
	case hufuv1.AfterSalesState_AFTER_SALES_STATE_REFUNDING:
		return "退款处理中 refunding"
	case hufuv1.AfterSalesState_AFTER_SALES_STATE_REFUNDED:
		return "同意退款 refunded"
	case hufuv1.AfterSalesState_AFTER_SALES_STATE_SETTLED:
		return "协商解决 settled"
	case hufuv1.AfterSalesState_AFTER_SALES_STATE_WITHDRAWN:
		return "已撤销 withdrawn"
	}
	return s.String()
}

func (c *cli) printAfterSales(a *hufuv1.AfterSalesCase, detail bool) {
	fmt.Fprintf(c.out, "%s  %-22s order %s  %s  %s  %s\n", a.GetId(), afterSalesStateText(a.GetState()), a.GetOrderId(), fenText(a.GetAmountFen()),
		a.GetReasonLabel(), when(a.GetCreatedAt()))
	if a.GetPhoneMasked() != "" {
		fmt.Fprintf(c.out, "  phone %s\n", a.PhoneMasked)
	}
	if a.GetText() != "" {
		fmt.Fprintf(c.out, "  %s\n", oneLine(a.Text, detail))
	}
	if len(a.GetSerials()) > 0 {
		verb := "a refund revokes"
		if a.GetState() == hufuv1.AfterSalesState_AFTER_SALES_STATE_REFUNDED {
			verb = "revoked"
		}
		fmt.Fprintf(c.out, "  %s certificate %s\n", verb, strings.Join(a.Serials, ", "))
	}
	for _, f := range a.GetAttachments() {
		fmt.Fprintf(c.out, "  attachment %s  %s  %s, %d bytes\n", f.Id, f.FileName, f.MediaType, f.Size)
	}
	if a.GetOutcome() != "" {
		fmt.Fprintf(c.out, "  outcome: %s\n", oneLine(a.Outcome, detail))
	}
	if a.GetRefundEntryId() != "" {
		fmt.Fprintf(c.out, "  refunded: ledger entry %s\n", a.RefundEntryId)
	}
}

func (c *cli) afterSalesApplyCommand() *urfave.Command {
	fs := newFlags()
	reason := fs.String("reason", "", "why (退款原因): "+reasonNames()+" (required)")
	text := fs.String("text", "", "more about it (required with -reason other)")
	var files fileList
	fs.Var(&files, "attach", "attach a PNG, JPEG or PDF (repeat for more)")
	yes := fs.Bool("yes", false, "do not ask for confirmation after the consequences are shown")
	requestID := fs.String("request-id", "", "idempotency key (default: a new one)")
	return c.command(verb{name: "apply", usage: "apply for after-sales on a completed order (申请售后)", args: "ORDER", fs: fs, nargs: oneArg,
		desc: `apply ORDER -reason R: shows what a refund would do — the amount given back and the certificates
revoked for good (a refund of a certificate order revokes its certificate: nothing encrypted to it
can be decrypted afterwards) — asks you to confirm (type the order id), then applies, echoing the
appliance's acknowledgement of those consequences.`,
		run: func(ctx context.Context, conn *client.Conn, pos []string) error {
			r, ok := afterSalesReasonNames[*reason]
			if !ok {
				return usagef("aftersales apply ORDER -reason R: R is one of %s", reasonNames())
			}
			as := hufuv1.NewAfterSalesServiceClient(conn.ClientConn())
			pv, err := as.PreviewAfterSales(ctx, &hufuv1.PreviewAfterSalesRequest{OrderId: pos[0]})
			if err != nil {
				return err
			}
			for _, line := range pv.Consequences {
				fmt.Fprintln(c.errOut, line)
			}
			if !*yes {
				answer, err := c.prompt("type the order id to confirm: ")
				if err != nil {
					return err
				}
				if answer != pos[0] {
					return errors.New("not confirmed; nothing applied for")
				}
			}
			req := &hufuv1.ApplyAfterSalesRequest{RequestId: *requestID, OrderId: pos[0], Reason: r, Text: *text, Acknowledgement: pv.Acknowledgement}
			if req.RequestId == "" {
				req.RequestId = client.NewKeyID()
			}
			for _, f := range files {
				b, err := os.ReadFile(f)
				if err != nil {
					return err
				}
				req.Attachments = append(req.Attachments, &hufuv1.NewAttachment{FileName: filepath.Base(f),
					MediaType: mime.TypeByExtension(filepath.Ext(f)), Content: b})
			}
			resp, err := as.ApplyAfterSales(ctx, req)
			if err != nil {
				return err
			}
			fmt.Fprint(c.out, "applied ")
			c.printAfterSales(resp.Case, false)
			return nil
		}})
}

func (c *cli) afterSalesListCommand() *urfave.Command {
	fs := newFlags()
	o := outputFlag(fs)
	state := fs.String("state", "", "only this state: in_review, refunded, settled, withdrawn")
	keyword := fs.String("keyword", "", "search case and order ids, reasons, serials and text")
	size := fs.Int("page-size", 20, "cases per page (1 to 100)")
	page := fs.String("page", "", "the page token a previous list printed")
	return c.command(verb{name: "list", usage: "your after-sales cases, newest first", fs: fs, nargs: noArgs,
		run: func(ctx context.Context, conn *client.Conn, _ []string) error {
			st, ok := afterSalesStateNames[*state]
			if !ok && *state != "" {
				return usagef("aftersales list -state S: S is one of in_review, refunded, settled, withdrawn")
			}
			resp, err := hufuv1.NewAfterSalesServiceClient(conn.ClientConn()).ListAfterSales(ctx,
				&hufuv1.ListAfterSalesRequest{State: st, Keyword: *keyword, PageSize: int32(*size), PageToken: *page})
			if err != nil {
				return err
			}
			return c.emit(o, resp, func() error {
				if len(resp.Cases) == 0 {
					fmt.Fprintln(c.out, "no after-sales cases")
				}
				for _, a := range resp.Cases {
					c.printAfterSales(a, false)
				}
				if resp.NextPageToken != "" {
					fmt.Fprintf(c.out, "more: hufu aftersales list -page %s\n", resp.NextPageToken)
				}
				return nil
			})
		}})
}

func (c *cli) afterSalesShowCommand() *urfave.Command {
	fs := newFlags()
	o := outputFlag(fs)
	return c.command(verb{name: "show", usage: "one after-sales case (售后详情)", args: "CASE", fs: fs, nargs: oneArg,
		run: func(ctx context.Context, conn *client.Conn, pos []string) error {
			resp, err := hufuv1.NewAfterSalesServiceClient(conn.ClientConn()).GetAfterSales(ctx, &hufuv1.GetAfterSalesRequest{CaseId: pos[0]})
			if err != nil {
				return err
			}
			return c.emit(o, resp, func() error {
				c.printAfterSales(resp.Case, true)
				return nil
			})
		}})
}

func (c *cli) afterSalesWithdrawCommand() *urfave.Command {
	fs := newFlags()
	return c.command(verb{name: "withdraw", usage: "withdraw one of your cases still in review", args: "CASE", fs: fs, nargs: oneArg,
		run: func(ctx context.Context, conn *client.Conn, pos []string) error {
			resp, err := hufuv1.NewAfterSalesServiceClient(conn.ClientConn()).WithdrawAfterSales(ctx, &hufuv1.WithdrawAfterSalesRequest{CaseId: pos[0]})
			if err != nil {
				return err
			}
			c.printAfterSales(resp.Case, false)
			return nil
		}})
}

func (c *cli) afterSalesDesk(conn *client.Conn) (hufuv1.AfterSalesDeskServiceClient, error) {
	if err := c.needCert("the after-sales desk", "hufu.v1.AfterSalesDeskService"); err != nil {
		return nil, err
	}
	return hufuv1.NewAfterSalesDeskServiceClient(conn.ClientConn()), nil
}

func (c *cli) afterSalesDeskListCommand() *urfave.Command {
	fs := newFlags()
	o := outputFlag(fs)
	size := fs.Int("page-size", 20, "cases per page (1 to 100)")
	page := fs.String("page", "", "the page token a previous list printed")
	return c.command(verb{name: "list", usage: "open cases (in review, or a refund to finish), newest first", fs: fs, nargs: noArgs,
		run: func(ctx context.Context, conn *client.Conn, _ []string) error {
			desk, err := c.afterSalesDesk(conn)
			if err != nil {
				return err
			}
			resp, err := desk.ListOpenAfterSales(ctx, &hufuv1.ListOpenAfterSalesRequest{PageSize: int32(*size), PageToken: *page})
			if err != nil {
				return err
			}
			return c.emit(o, resp, func() error {
				if len(resp.Cases) == 0 {
					fmt.Fprintln(c.out, "no open after-sales cases")
				}
				for _, a := range resp.Cases {
					c.printAfterSales(a, true)
				}
				if slices.ContainsFunc(resp.Cases, func(a *hufuv1.AfterSalesCase) bool {
					return a.State == hufuv1.AfterSalesState_AFTER_SALES_STATE_REFUNDING
				}) {
					fmt.Fprintln(c.out, "a refunding case stopped part-way: hufu aftersales-desk refund CASE finishes it")
				}
				if resp.NextPageToken != "" {
					fmt.Fprintf(c.out, "more: hufu aftersales-desk list -page %s\n", resp.NextPageToken)
				}
				return nil
			})
		}})
}

func (c *cli) afterSalesDeskRefundCommand() *urfave.Command {
	fs := newFlags()
	return c.command(verb{name: "refund", usage: "agree to refund (同意退款): revoke the order's certificates, give the payment back", args: "CASE", fs: fs, nargs: oneArg,
		run: func(ctx context.Context, conn *client.Conn, pos []string) error {
			desk, err := c.afterSalesDesk(conn)
			if err != nil {
				return err
			}
			resp, err := desk.RefundAfterSales(ctx, &hufuv1.RefundAfterSalesRequest{CaseId: pos[0]})
			if err != nil {
				return err
			}
			c.printAfterSales(resp.Case, true)
			return nil
		}})
}

func (c *cli) afterSalesDeskSettleCommand() *urfave.Command {
	fs := newFlags()
	outcome := fs.String("outcome", "", "the agreed outcome shown to the person, 1 to 500 characters (required)")
	return c.command(verb{name: "settle", usage: "close a case as 协商解决 with the agreed outcome (no money moves)", args: "CASE", fs: fs, nargs: oneArg,
		run: func(ctx context.Context, conn *client.Conn, pos []string) error {
			desk, err := c.afterSalesDesk(conn)
			if err != nil {
				return err
			}
			if *outcome == "" {
				return usagef("aftersales-desk settle CASE -outcome TEXT")
			}
			resp, err := desk.SettleAfterSales(ctx, &hufuv1.SettleAfterSalesRequest{CaseId: pos[0], Outcome: *outcome})
			if err != nil {
				return err
			}
			c.printAfterSales(resp.Case, true)
			return nil
		}})
}

func (c *cli) afterSalesDeskAttachmentCommand() *urfave.Command {
	fs := newFlags()
	out := fs.String("out", "", "write it to this file (default: its own name in the current directory)")
	return c.command(verb{name: "attachment", usage: "save an attachment of an open case", args: "CASE ATTACHMENT", fs: fs, nargs: twoArgs,
		run: func(ctx context.Context, conn *client.Conn, pos []string) error {
			desk, err := c.afterSalesDesk(conn)
			if err != nil {
				return err
			}
			resp, err := desk.GetAfterSalesAttachment(ctx, &hufuv1.GetAfterSalesAttachmentRequest{CaseId: pos[0], AttachmentId: pos[1]})
			if err != nil {
				return err
			}
			path := *out
			if path == "" {
				path = filepath.Base(resp.Attachment.GetFileName())
				if path == "." || path == "/" || path == "" {
					path = resp.Attachment.GetId()
				}
			}
			if err := os.WriteFile(path, resp.Content, 0o600); err != nil {
				return err
			}
			fmt.Fprintf(c.out, "wrote %s (%s, %d bytes)\n", path, resp.Attachment.GetMediaType(), len(resp.Content))
			return nil
		}})
}
