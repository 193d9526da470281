package main

// The invoice commands (seed manual §1.8.6 发票管理): a user's invoiceable orders by
// category, invoice requests, the history and issued documents, saved titles and the
// invoicing help; and the operators' invoicing desk (a system client allowed
// hufu.v1.InvoiceDeskService) that issues or rejects requests.

import (
	"context"
	"flag"
	"fmt"
	"os"
	"strings"
	"time"

	urfave "github.com/urfave/cli/v2"

	hufuv1 "github.com/hufu-hsm/hufu/api/hufu/v1"
	"github.com/hufu-hsm/hufu/client"
)

// invoiceCommands: hufu invoice (the user's) and hufu invoice-desk (the operators').
func (c *cli) invoiceCommands() []*urfave.Command {
	return []*urfave.Command{
		group("invoice", "invoices for your paid orders: request, history, download, saved titles (发票管理)", "seed manual §1.8.6",
			c.invoiceOrdersCommand(), c.invoiceRequestCommand(), c.invoiceListCommand(), c.invoiceShowCommand(),
			c.invoiceDownloadCommand(), c.invoiceTitlesCommand(), c.invoiceTitleAddCommand(), c.invoiceTitleEditCommand(),
			c.invoiceTitleDeleteCommand(), c.invoiceHelpCommand()),
		group("invoice-desk", "the operators' invoicing desk (a system client allowed hufu.v1.InvoiceDeskService)", "",
			c.invoiceDeskListCommand(), c.invoiceDeskIssueCommand(), c.invoiceDeskRejectCommand()),
	}
}

func money(fen int64) string { return fmt.Sprintf("¥%d.%02d", fen/100, fen%100) }

var invoiceCategoryNames = map[string]hufuv1.InvoiceCategory{
	"ca": hufuv1.InvoiceCategory_INVOICE_CATEGORY_CA_CERTIFICATE, "info": hufuv1.InvoiceCategory_INVOICE_CATEGORY_INFORMATION_SERVICE,
	"platform": hufuv1.InvoiceCategory_INVOICE_CATEGORY_PLATFORM_SERVICE,
}

func invoiceStateText(s hufuv1.InvoiceState) string {
	switch s {
	case hufuv1.InvoiceState_INVOICE_STATE_SUBMITTED:
		return "已提交 submitted"
	case hufuv1.InvoiceState_INVOICE_STATE_ISSUED:
		return "已开具 issued"
	case hufuv1.InvoiceState_INVOICE_STATE_REJECTED:
		return "已驳回 rejected"
	}
	return s.String()
}

func invoiceKindText(k hufuv1.InvoiceKind) string {
	if k == hufuv1.InvoiceKind_INVOICE_KIND_SPECIAL_VAT {
		return "增值税专用发票"
	}
	return "普通发票"
}

// titleFlags are the flags of a title typed on the command line.
type titleFlags struct {
	kind, name, tax, address, telephone, bank, account *string
}

func addTitleFlags(fs *flag.FlagSet) *titleFlags {
	return &titleFlags{
		kind:      fs.String("kind", "", "personal or enterprise (default: enterprise with -tax-number, else personal)"),
		name:      fs.String("name", "", "the title: a person's or an enterprise's name"),
		tax:       fs.String("tax-number", "", "an enterprise's tax number: its 统一社会信用代码 (USCC)"),
		address:   fs.String("address", "", "the enterprise's registered address (special VAT invoices)"),
		telephone: fs.String("telephone", "", "the enterprise's telephone (special VAT invoices)"),
		bank:      fs.String("bank", "", "the enterprise's bank (special VAT invoices)"),
		account:   fs.String("bank-account", "", "the enterprise's bank account (special VAT invoices)"),
	}
}

func (f *titleFlags) set() bool { return *f.name != "" || *f.tax != "" || *f.kind != "" }

func (f *titleFlags) title() (*hufuv1.InvoiceTitle, error) {
	t := &hufuv1.InvoiceTitle{Name: *f.name, TaxNumber: *f.tax, Address: *f.address, Telephone: *f.telephone, Bank: *f.bank, BankAccount: *f.account}
	switch {
	case *f.kind == "enterprise" || (*f.kind == "" && *f.tax != ""):
		t.Kind = hufuv1.InvoiceTitleKind_INVOICE_TITLE_KIND_ENTERPRISE
	case *f.kind == "personal" || *f.kind == "":
		t.Kind = hufuv1.InvoiceTitleKind_INVOICE_TITLE_KIND_PERSONAL
	default:
		return nil, usagef("-kind %q: personal or enterprise", *f.kind)
	}
	return t, nil
}

func (c *cli) printTitle(t *hufuv1.InvoiceTitle) {
	kind := "个人 personal"
	if t.Kind == hufuv1.InvoiceTitleKind_INVOICE_TITLE_KIND_ENTERPRISE {
		kind = "企业 enterprise"
	}
	id := t.Id
	if id == "" {
		id = "-"
	}
	fmt.Fprintf(c.out, "%-16s  %-15s %s", id, kind, t.Name)
	if t.TaxNumber != "" {
		fmt.Fprintf(c.out, "  税号 %s", t.TaxNumber)
	}
	fmt.Fprintln(c.out)
	if t.Address != "" || t.Bank != "" {
		fmt.Fprintf(c.out, "  %s %s  %s %s\n", t.Address, t.Telephone, t.Bank, t.BankAccount)
	}
}

func (c *cli) printInvoice(inv *hufuv1.Invoice, detail bool) {
	fmt.Fprintf(c.out, "%s  %-18s %s  %s  %s  %s\n", inv.Id, invoiceStateText(inv.State), invoiceKindText(inv.Kind),
		strings.TrimPrefix(inv.Category.String(), "INVOICE_CATEGORY_"), money(inv.AmountFen), inv.Title.GetName())
	if inv.UserId != "" {
		fmt.Fprintf(c.out, "  user %s\n", inv.UserId)
	}
	if inv.Number != "" {
		fmt.Fprintf(c.out, "  number %s  document %s, %d bytes, sha256 %s\n", inv.Number, inv.DocumentMediaType, inv.DocumentSize, inv.DocumentSha256)
	}
	if inv.RejectReason != "" {
		fmt.Fprintf(c.out, "  rejected: %s\n", inv.RejectReason)
	}
	if !detail {
		return
	}
	fmt.Fprint(c.out, "  title: ")
	c.printTitle(inv.Title)
	for _, o := range inv.Orders {
		fmt.Fprintf(c.out, "  order %s  %s  %s  %s\n", o.OrderId, o.OrderKind, money(o.AmountFen), o.Description)
	}
	fmt.Fprintf(c.out, "  submitted %s", inv.SubmittedAt.AsTime().Local().Format(time.DateTime))
	if inv.Email != "" {
		fmt.Fprintf(c.out, "  email %s", inv.Email)
	}
	fmt.Fprintln(c.out)
}

func (c *cli) invoiceOrdersCommand() *urfave.Command {
	fs := newFlags()
	cat := fs.String("category", "", "only one category: ca (CA证书), info (信息服务) or platform (平台服务)")
	o := outputFlag(fs)
	return c.command(verb{name: "orders", usage: "your paid orders that can be invoiced, by category, with the invoiceable amount", fs: fs, nargs: noArgs,
		run: func(ctx context.Context, conn *client.Conn, _ []string) error {
			var category hufuv1.InvoiceCategory
			if *cat != "" {
				var ok bool
				if category, ok = invoiceCategoryNames[*cat]; !ok {
					return usagef("-category %q: ca, info or platform", *cat)
				}
			}
			resp, err := hufuv1.NewInvoiceServiceClient(conn.ClientConn()).ListInvoiceableOrders(ctx, &hufuv1.ListInvoiceableOrdersRequest{Category: category})
			if err != nil {
				return err
			}
			return c.emit(o, resp, func() error {
				for _, g := range resp.Groups {
					fmt.Fprintf(c.out, "%s: %d orders, invoiceable %s\n", g.Label, len(g.Orders), money(g.InvoiceableAmountFen))
					for _, ord := range g.Orders {
						fmt.Fprintf(c.out, "  %s  %-24s %s  paid %s  %s\n", ord.OrderId, ord.OrderKind, money(ord.AmountFen),
							ord.PaidAt.AsTime().Local().Format(time.DateOnly), ord.Description)
					}
				}
				return nil
			})
		}})
}

func (c *cli) invoiceRequestCommand() *urfave.Command {
	fs := newFlags()
	kind := fs.String("type", "ordinary", "ordinary (普通发票) or special (增值税专用发票: enterprise titles with address, telephone, bank and account)")
	titleID := fs.String("title-id", "", "a saved title (hufu invoice titles), instead of the title flags")
	tf := addTitleFlags(fs)
	email := fs.String("email", "", "where the electronic invoice is to be sent (optional)")
	remark := fs.String("remark", "", "a remark for the invoicing desk (optional)")
	requestID := fs.String("request-id", "", "idempotency key, 8 to 64 of [A-Za-z0-9._-] (default: a new one; to retry a request whose answer was lost, pass the same)")
	o := outputFlag(fs)
	return c.command(verb{name: "request", usage: "request an invoice for paid orders of one category", args: "ORDER...", fs: fs, nargs: someArgs,
		desc: "Each order is invoiced once. Give the title with -title-id or with -name (and -tax-number etc. for an enterprise).",
		run: func(ctx context.Context, conn *client.Conn, pos []string) error {
			req := &hufuv1.RequestInvoiceRequest{RequestId: *requestID, OrderIds: pos, TitleId: *titleID, Email: *email, Remark: *remark}
			switch *kind {
			case "ordinary":
				req.Kind = hufuv1.InvoiceKind_INVOICE_KIND_ORDINARY
			case "special":
				req.Kind = hufuv1.InvoiceKind_INVOICE_KIND_SPECIAL_VAT
			default:
				return usagef("-type %q: ordinary or special", *kind)
			}
			if tf.set() {
				t, err := tf.title()
				if err != nil {
					return err
				}
				req.Title = t
			}
			if req.RequestId == "" {
				req.RequestId = client.NewKeyID()
			}
			resp, err := hufuv1.NewInvoiceServiceClient(conn.ClientConn()).RequestInvoice(ctx, req)
			if err != nil {
				return err
			}
			return c.emit(o, resp, func() error {
				c.printInvoice(resp.Invoice, true)
				fmt.Fprintln(c.out, "submitted to the invoicing desk; follow it with: hufu invoice show", resp.Invoice.Id)
				return nil
			})
		}})
}

func (c *cli) invoiceListCommand() *urfave.Command {
	fs := newFlags()
	st := fs.String("state", "all", "all, submitted, issued or rejected")
	o := outputFlag(fs)
	return c.command(verb{name: "list", usage: "your invoices, newest first (开票历史)", fs: fs, nargs: noArgs,
		run: func(ctx context.Context, conn *client.Conn, _ []string) error {
			var state hufuv1.InvoiceState
			if *st != "all" {
				v, ok := hufuv1.InvoiceState_value["INVOICE_STATE_"+strings.ToUpper(*st)]
				if !ok || v == 0 {
					return usagef("-state %q: all, submitted, issued or rejected", *st)
				}
				state = hufuv1.InvoiceState(v)
			}
			svc := hufuv1.NewInvoiceServiceClient(conn.ClientConn())
			all := &hufuv1.ListInvoicesResponse{}
			for token := ""; ; {
				resp, err := svc.ListInvoices(ctx, &hufuv1.ListInvoicesRequest{State: state, PageSize: 100, PageToken: token})
				if err != nil {
					return err
				}
				all.Invoices = append(all.Invoices, resp.Invoices...)
				if token = resp.NextPageToken; token == "" {
					break
				}
			}
			return c.emit(o, all, func() error {
				if len(all.Invoices) == 0 {
					fmt.Fprintln(c.out, "no invoices")
				}
				for _, inv := range all.Invoices {
					c.printInvoice(inv, false)
				}
				return nil
			})
		}})
}

func (c *cli) invoiceShowCommand() *urfave.Command {
	fs := newFlags()
	o := outputFlag(fs)
	return c.command(verb{name: "show", usage: "one of your invoices (查看发票)", args: "INVOICE", fs: fs, nargs: oneArg,
		run: func(ctx context.Context, conn *client.Conn, pos []string) error {
			resp, err := hufuv1.NewInvoiceServiceClient(conn.ClientConn()).GetInvoice(ctx, &hufuv1.GetInvoiceRequest{InvoiceId: pos[0]})
			if err != nil {
				return err
			}
			return c.emit(o, resp, func() error { c.printInvoice(resp.Invoice, true); return nil })
		}})
}

func (c *cli) invoiceDownloadCommand() *urfave.Command {
	fs := newFlags()
	out := fs.String("o", "", "output file (default: the name the appliance gives, 发票-NUMBER.pdf or .ofd)")
	return c.command(verb{name: "download", usage: "download an issued invoice's document (PDF or OFD)", args: "INVOICE", fs: fs, nargs: oneArg,
		run: func(ctx context.Context, conn *client.Conn, pos []string) error {
			resp, err := hufuv1.NewInvoiceServiceClient(conn.ClientConn()).DownloadInvoice(ctx, &hufuv1.DownloadInvoiceRequest{InvoiceId: pos[0]})
			if err != nil {
				return err
			}
			if *out == "" {
				*out = resp.FileName
			}
			if err := os.WriteFile(*out, resp.Content, 0o644); err != nil {
				return err
			}
			fmt.Fprintf(c.out, "wrote %s (%s, %d bytes, sha256 %s)\n", *out, resp.MediaType, len(resp.Content), resp.Sha256)
			return nil
		}})
}

func (c *cli) invoiceTitlesCommand() *urfave.Command {
	fs := newFlags()
	o := outputFlag(fs)
	return c.command(verb{name: "titles", usage: "your saved invoice titles (常用发票抬头)", fs: fs, nargs: noArgs,
		run: func(ctx context.Context, conn *client.Conn, _ []string) error {
			resp, err := hufuv1.NewInvoiceServiceClient(conn.ClientConn()).ListInvoiceTitles(ctx, &hufuv1.ListInvoiceTitlesRequest{})
			if err != nil {
				return err
			}
			return c.emit(o, resp, func() error {
				if len(resp.Titles) == 0 {
					fmt.Fprintln(c.out, "no saved titles")
				}
				for _, t := range resp.Titles {
					c.printTitle(t)
				}
				return nil
			})
		}})
}

func (c *cli) invoiceTitleAddCommand() *urfave.Command {
	fs := newFlags()
	tf := addTitleFlags(fs)
	requestID := fs.String("request-id", "", "idempotency key (default: a new one)")
	return c.command(verb{name: "title-add", usage: "save a title (-name; for an enterprise also -tax-number, and for special VAT invoices -address -telephone -bank -bank-account)", fs: fs, nargs: noArgs,
		run: func(ctx context.Context, conn *client.Conn, _ []string) error {
			t, err := tf.title()
			if err != nil {
				return err
			}
			if *requestID == "" {
				*requestID = client.NewKeyID()
			}
			resp, err := hufuv1.NewInvoiceServiceClient(conn.ClientConn()).AddInvoiceTitle(ctx, &hufuv1.AddInvoiceTitleRequest{RequestId: *requestID, Title: t})
			if err != nil {
				return err
			}
			c.printTitle(resp.Title)
			return nil
		}})
}

func (c *cli) invoiceTitleEditCommand() *urfave.Command {
	fs := newFlags()
	tf := addTitleFlags(fs)
	return c.command(verb{name: "title-edit", usage: "replace a saved title's fields (the same flags as title-add)", args: "TITLE", fs: fs, nargs: oneArg,
		run: func(ctx context.Context, conn *client.Conn, pos []string) error {
			t, err := tf.title()
			if err != nil {
				return err
			}
			resp, err := hufuv1.NewInvoiceServiceClient(conn.ClientConn()).EditInvoiceTitle(ctx, &hufuv1.EditInvoiceTitleRequest{TitleId: pos[0], Title: t})
			if err != nil {
				return err
			}
			c.printTitle(resp.Title)
			return nil
		}})
}

func (c *cli) invoiceTitleDeleteCommand() *urfave.Command {
	return c.command(verb{name: "title-delete", usage: "delete a saved title", args: "TITLE", nargs: oneArg,
		run: func(ctx context.Context, conn *client.Conn, pos []string) error {
			if _, err := hufuv1.NewInvoiceServiceClient(conn.ClientConn()).DeleteInvoiceTitle(ctx, &hufuv1.DeleteInvoiceTitleRequest{TitleId: pos[0]}); err != nil {
				return err
			}
			fmt.Fprintln(c.out, "deleted title", pos[0])
			return nil
		}})
}

func (c *cli) invoiceHelpCommand() *urfave.Command {
	fs := newFlags()
	o := outputFlag(fs)
	return c.command(verb{name: "help", usage: "the invoicing help (开票帮助) and the invoice types offered", fs: fs, nargs: noArgs,
		run: func(ctx context.Context, conn *client.Conn, _ []string) error {
			svc := hufuv1.NewInvoiceServiceClient(conn.ClientConn())
			help, err := svc.GetInvoicingHelp(ctx, &hufuv1.GetInvoicingHelpRequest{})
			if err != nil {
				return err
			}
			if o.json() {
				return c.emit(o, help, nil)
			}
			opts, err := svc.GetInvoiceOptions(ctx, &hufuv1.GetInvoiceOptionsRequest{})
			if err != nil {
				return err
			}
			fmt.Fprintln(c.out, strings.TrimSpace(help.Text))
			fmt.Fprint(c.out, "\ninvoice types:")
			for _, t := range opts.Types {
				fmt.Fprint(c.out, " ", t.Label)
			}
			fmt.Fprint(c.out, "\ncategories:")
			for _, cat := range opts.Categories {
				fmt.Fprintf(c.out, " %s (%s)", cat.Label, strings.Join(cat.OrderKinds, ", "))
			}
			fmt.Fprintf(c.out, "\nat most %d orders per invoice, %d saved titles\n", opts.MaxOrdersPerInvoice, opts.MaxTitles)
			return nil
		}})
}

func (c *cli) invoiceDesk(conn *client.Conn) (hufuv1.InvoiceDeskServiceClient, error) {
	if err := c.needCert("the invoicing desk", "hufu.v1.InvoiceDeskService"); err != nil {
		return nil, err
	}
	return hufuv1.NewInvoiceDeskServiceClient(conn.ClientConn()), nil
}

func (c *cli) invoiceDeskListCommand() *urfave.Command {
	fs := newFlags()
	o := outputFlag(fs)
	return c.command(verb{name: "list", usage: "submitted invoices awaiting the desk, oldest first", fs: fs, nargs: noArgs,
		run: func(ctx context.Context, conn *client.Conn, _ []string) error {
			desk, err := c.invoiceDesk(conn)
			if err != nil {
				return err
			}
			all := &hufuv1.ListSubmittedInvoicesResponse{}
			for token := ""; ; {
				resp, err := desk.ListSubmittedInvoices(ctx, &hufuv1.ListSubmittedInvoicesRequest{PageSize: 100, PageToken: token})
				if err != nil {
					return err
				}
				all.Invoices = append(all.Invoices, resp.Invoices...)
				if token = resp.NextPageToken; token == "" {
					break
				}
			}
			return c.emit(o, all, func() error {
				if len(all.Invoices) == 0 {
					fmt.Fprintln(c.out, "no submitted invoices")
				}
				for _, inv := range all.Invoices {
					c.printInvoice(inv, true)
				}
				return nil
			})
		}})
}

func (c *cli) invoiceDeskIssueCommand() *urfave.Command {
	fs := newFlags()
	number := fs.String("number", "", "the invoice number (发票号码), 8 to 20 digits (required)")
	doc := fs.String("document", "", "the invoice as a PDF or OFD FILE (required)")
	media := fs.String("media-type", "", "application/pdf or application/ofd (optional: read from the content)")
	return c.command(verb{name: "issue", usage: "issue a submitted invoice: its number and document (开具)", args: "INVOICE", fs: fs, nargs: oneArg,
		run: func(ctx context.Context, conn *client.Conn, pos []string) error {
			desk, err := c.invoiceDesk(conn)
			if err != nil {
				return err
			}
			if *doc == "" {
				return usagef("issue needs -document FILE (a PDF or OFD invoice)")
			}
			content, err := os.ReadFile(*doc)
			if err != nil {
				return err
			}
			resp, err := desk.IssueInvoice(ctx, &hufuv1.IssueInvoiceRequest{InvoiceId: pos[0], Number: *number, Document: content, MediaType: *media})
			if err != nil {
				return err
			}
			c.printInvoice(resp.Invoice, false)
			return nil
		}})
}

func (c *cli) invoiceDeskRejectCommand() *urfave.Command {
	fs := newFlags()
	reason := fs.String("reason", "", "the reason shown to the user (required)")
	return c.command(verb{name: "reject", usage: "reject a submitted invoice; its orders become invoiceable again", args: "INVOICE", fs: fs, nargs: oneArg,
		run: func(ctx context.Context, conn *client.Conn, pos []string) error {
			desk, err := c.invoiceDesk(conn)
			if err != nil {
				return err
			}
			resp, err := desk.RejectInvoice(ctx, &hufuv1.RejectInvoiceRequest{InvoiceId: pos[0], Reason: *reason})
			if err != nil {
				return err
			}
			c.printInvoice(resp.Invoice, false)
			return nil
		}})
}
