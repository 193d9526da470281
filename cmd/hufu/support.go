package main

// Help and customer service (seed manual §1.8.7–§1.8.10): the knowledge base is "hufu faq"
// (help articles and the FAQ that 智能客服 searches; "hufu help" is the CLI's own help), the
// consultation number is "hufu contact", feedback is "hufu feedback", and the operators'
// desk is "hufu support-desk" (a system client allowed hufu.v1.SupportDeskService).

import (
	"context"
	"fmt"
	"mime"
	"os"
	"path/filepath"
	"strings"
	"time"

	urfave "github.com/urfave/cli/v2"

	hufuv1 "github.com/hufu-hsm/hufu/api/hufu/v1"
	"github.com/hufu-hsm/hufu/client"
)

// supportCommands: the knowledge base, the consultation number, feedback and its desk.
func (c *cli) supportCommands() []*urfave.Command {
	return []*urfave.Command{
		c.faqCommand(), c.contactCommand(),
		group("feedback", "your feedback (我的反馈) and the customer service's replies", "seed manual §1.8.10",
			c.feedbackSubmitCommand(), c.feedbackListCommand(), c.feedbackShowCommand()),
		group("support-desk", "the operators' customer-service desk (a system client allowed hufu.v1.SupportDeskService)", "",
			c.deskListCommand(), c.deskReplyCommand(), c.deskCloseCommand()),
	}
}

func (c *cli) faqCommand() *urfave.Command {
	fs := newFlags()
	o := outputFlag(fs)
	limit := fs.Int("limit", 10, "at most this many answers (1 to 50)")
	return c.command(verb{name: "faq", usage: "help articles and FAQ (使用帮助, 智能客服): search with QUERY, or list everything",
		args: "[QUERY...]",
		desc: `faq QUERY: the FAQ entries that best answer the question, best first (智能客服: a search of the
appliance's knowledge base, words and Chinese two-character pieces matched in keywords, question
and answer). faq alone: the help articles and every FAQ question. faq show ID: one article or
answer in full. (hufu help is this CLI's own help; the appliance's help is here.)`,
		fs: fs, nargs: anyArgs, sub: []*urfave.Command{c.faqShowCommand()},
		run: func(ctx context.Context, conn *client.Conn, pos []string) error {
			help := hufuv1.NewSupportServiceClient(conn.ClientConn())
			query := strings.Join(pos, " ")
			found, err := help.SearchFaq(ctx, &hufuv1.SearchFaqRequest{Query: query, Limit: int32(*limit)})
			if err != nil {
				return err
			}
			if query != "" {
				return c.emit(o, found, func() error {
					if len(found.Entries) == 0 {
						fmt.Fprintln(c.out, "no answer found; try other words, hufu contact, or hufu feedback submit")
					}
					for _, e := range found.Entries {
						fmt.Fprintf(c.out, "%s  %s  (score %d)\n  %s\n", e.Id, e.Question, e.Score, e.Answer)
					}
					return nil
				})
			}
			arts, err := help.ListHelpArticles(ctx, &hufuv1.ListHelpArticlesRequest{})
			if err != nil {
				return err
			}
			if o.json() {
				if err := c.emit(o, arts, nil); err != nil {
					return err
				}
				return c.emit(o, found, nil)
			}
			for _, cat := range arts.Categories {
				fmt.Fprintf(c.out, "使用帮助 · %s\n", cat)
				for _, a := range arts.Articles {
					if a.Category == cat {
						fmt.Fprintf(c.out, "  %-16s %s\n", a.Id, a.Title)
					}
				}
			}
			if len(found.Entries) > 0 {
				fmt.Fprintln(c.out, "常见问题")
			}
			for _, e := range found.Entries {
				fmt.Fprintf(c.out, "  %-16s %s\n", e.Id, e.Question)
			}
			fmt.Fprintln(c.out, "hufu faq show ID: one in full; hufu faq QUERY: search")
			return nil
		}})
}

func (c *cli) faqShowCommand() *urfave.Command {
	fs := newFlags()
	o := outputFlag(fs)
	return c.command(verb{name: "show", usage: "one help article or FAQ answer in full", args: "ID", fs: fs, nargs: oneArg,
		run: func(ctx context.Context, conn *client.Conn, pos []string) error {
			resp, err := hufuv1.NewSupportServiceClient(conn.ClientConn()).GetHelpEntry(ctx, &hufuv1.GetHelpEntryRequest{Id: pos[0]})
			if err != nil {
				return err
			}
			return c.emit(o, resp, func() error {
				if a := resp.Article; a != nil {
					fmt.Fprintf(c.out, "%s\n[%s]\n\n%s\n", a.Title, a.Category, a.Body)
				} else if f := resp.Faq; f != nil {
					fmt.Fprintf(c.out, "问：%s\n答：%s\n", f.Question, f.Answer)
				}
				return nil
			})
		}})
}

func (c *cli) contactCommand() *urfave.Command {
	fs := newFlags()
	o := outputFlag(fs)
	return c.command(verb{name: "contact", usage: "the customer-service phone number and hours (电话咨询)", fs: fs, nargs: noArgs,
		run: func(ctx context.Context, conn *client.Conn, _ []string) error {
			resp, err := hufuv1.NewSupportServiceClient(conn.ClientConn()).GetContact(ctx, &hufuv1.GetContactRequest{})
			if err != nil {
				return err
			}
			return c.emit(o, resp, func() error {
				fmt.Fprintf(c.out, "客服电话 %s", resp.Phone)
				if resp.Hours != "" {
					fmt.Fprintf(c.out, "  (%s)", resp.Hours)
				}
				fmt.Fprintln(c.out)
				return nil
			})
		}})
}

// fileList is a repeatable flag: -attach A -attach B.
type fileList []string

func (f *fileList) String() string     { return strings.Join(*f, ",") }
func (f *fileList) Set(s string) error { *f = append(*f, s); return nil }

func (c *cli) feedbackSubmitCommand() *urfave.Command {
	fs := newFlags()
	text := fs.String("text", "", "what you want to tell us, 1 to 500 characters (required)")
	order := fs.String("order", "", "the order it is about (hufu cert orders)")
	var files fileList
	fs.Var(&files, "attach", "attach a PNG, JPEG or PDF of at most 2 MiB (repeat for up to 3)")
	requestID := fs.String("request-id", "", "idempotency key (default: a new one)")
	return c.command(verb{name: "submit", usage: "submit feedback (意见反馈), optionally about an order, with attachments", fs: fs, nargs: noArgs,
		run: func(ctx context.Context, conn *client.Conn, _ []string) error {
			if *text == "" {
				return usagef("feedback submit -text TEXT [-order ORDER] [-attach FILE]...")
			}
			req := &hufuv1.SubmitFeedbackRequest{RequestId: *requestID, Text: *text, OrderId: *order}
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
			resp, err := hufuv1.NewSupportServiceClient(conn.ClientConn()).SubmitFeedback(ctx, req)
			if err != nil {
				return err
			}
			fmt.Fprint(c.out, "submitted ")
			c.printFeedback(resp.Feedback, false)
			return nil
		}})
}

func (c *cli) feedbackListCommand() *urfave.Command {
	fs := newFlags()
	o := outputFlag(fs)
	size := fs.Int("page-size", 20, "feedback per page (1 to 100)")
	page := fs.String("page", "", "the page token a previous list printed")
	return c.command(verb{name: "list", usage: "your feedback, newest first, with its state", fs: fs, nargs: noArgs,
		run: func(ctx context.Context, conn *client.Conn, _ []string) error {
			resp, err := hufuv1.NewSupportServiceClient(conn.ClientConn()).ListFeedback(ctx, &hufuv1.ListFeedbackRequest{PageSize: int32(*size), PageToken: *page})
			if err != nil {
				return err
			}
			return c.emit(o, resp, func() error {
				if len(resp.Feedback) == 0 {
					fmt.Fprintln(c.out, "no feedback")
				}
				for _, f := range resp.Feedback {
					c.printFeedback(f, false)
				}
				if resp.NextPageToken != "" {
					fmt.Fprintf(c.out, "more: hufu feedback list -page %s\n", resp.NextPageToken)
				}
				return nil
			})
		}})
}

func (c *cli) feedbackShowCommand() *urfave.Command {
	fs := newFlags()
	o := outputFlag(fs)
	return c.command(verb{name: "show", usage: "one feedback with the replies", args: "FEEDBACK", fs: fs, nargs: oneArg,
		run: func(ctx context.Context, conn *client.Conn, pos []string) error {
			resp, err := hufuv1.NewSupportServiceClient(conn.ClientConn()).GetFeedback(ctx, &hufuv1.GetFeedbackRequest{FeedbackId: pos[0]})
			if err != nil {
				return err
			}
			return c.emit(o, resp, func() error {
				c.printFeedback(resp.Feedback, true)
				return nil
			})
		}})
}

func feedbackStateText(s hufuv1.FeedbackState) string {
	switch s {
	case hufuv1.FeedbackState_FEEDBACK_STATE_SUBMITTED:
		return "已提交 submitted"
	case hufuv1.FeedbackState_FEEDBACK_STATE_REPLIED:
		return "已回复 replied"
	case hufuv1.FeedbackState_FEEDBACK_STATE_CLOSED:
		return "已关闭 closed"
	}
	return s.String()
}

func when(ts interface{ AsTime() time.Time }) string {
	return ts.AsTime().Local().Format(time.DateTime)
}

func (c *cli) printFeedback(f *hufuv1.Feedback, detail bool) {
	fmt.Fprintf(c.out, "%s  %-18s %s  %s\n", f.GetId(), feedbackStateText(f.GetState()), when(f.GetCreatedAt()), oneLine(f.GetText(), detail))
	c.printFeedbackDetail(f.GetOrderId(), f.GetAttachments(), f.GetReplies(), detail)
	if detail && f.GetCloseNote() != "" {
		fmt.Fprintf(c.out, "  closed: %s\n", f.CloseNote)
	}
}

func (c *cli) printFeedbackDetail(order string, atts []*hufuv1.FeedbackAttachment, replies []*hufuv1.FeedbackReply, detail bool) {
	if order != "" {
		fmt.Fprintf(c.out, "  order %s\n", order)
	}
	for _, a := range atts {
		fmt.Fprintf(c.out, "  attachment %s  %s  %s, %d bytes\n", a.Id, a.FileName, a.MediaType, a.Size)
	}
	for _, r := range replies {
		fmt.Fprintf(c.out, "  reply %s: %s\n", when(r.CreatedAt), oneLine(r.Text, detail))
	}
}

// oneLine shortens text to one line of at most 60 characters unless all is asked for.
func oneLine(s string, all bool) string {
	if all {
		return s
	}
	s = strings.Join(strings.Fields(s), " ")
	if r := []rune(s); len(r) > 60 {
		return string(r[:59]) + "…"
	}
	return s
}

func (c *cli) supportDesk(conn *client.Conn) (hufuv1.SupportDeskServiceClient, error) {
	if err := c.needCert("the support desk", "hufu.v1.SupportDeskService"); err != nil {
		return nil, err
	}
	return hufuv1.NewSupportDeskServiceClient(conn.ClientConn()), nil
}

func (c *cli) deskListCommand() *urfave.Command {
	fs := newFlags()
	o := outputFlag(fs)
	unreplied := fs.Bool("unreplied", false, "only feedback not replied to yet")
	size := fs.Int("page-size", 20, "feedback per page (1 to 100)")
	page := fs.String("page", "", "the page token a previous list printed")
	return c.command(verb{name: "list", usage: "open feedback, newest first (the person by masked phone only)", fs: fs, nargs: noArgs,
		run: func(ctx context.Context, conn *client.Conn, _ []string) error {
			desk, err := c.supportDesk(conn)
			if err != nil {
				return err
			}
			resp, err := desk.ListOpenFeedback(ctx, &hufuv1.ListOpenFeedbackRequest{PageSize: int32(*size), PageToken: *page, UnrepliedOnly: *unreplied})
			if err != nil {
				return err
			}
			return c.emit(o, resp, func() error {
				if len(resp.Feedback) == 0 {
					fmt.Fprintln(c.out, "no open feedback")
				}
				for _, f := range resp.Feedback {
					c.printDeskFeedback(f)
				}
				if resp.NextPageToken != "" {
					fmt.Fprintf(c.out, "more: hufu support-desk list -page %s\n", resp.NextPageToken)
				}
				return nil
			})
		}})
}

func (c *cli) printDeskFeedback(f *hufuv1.DeskFeedback) {
	fmt.Fprintf(c.out, "%s  %-18s %s  %s\n  %s\n", f.GetId(), feedbackStateText(f.GetState()), when(f.GetCreatedAt()), f.GetPhoneMasked(), f.GetText())
	c.printFeedbackDetail(f.GetOrderId(), f.GetAttachments(), f.GetReplies(), true)
}

func (c *cli) deskReplyCommand() *urfave.Command {
	fs := newFlags()
	text := fs.String("text", "", "the reply shown to the person, 1 to 1000 characters (required)")
	return c.command(verb{name: "reply", usage: "reply to open feedback", args: "FEEDBACK", fs: fs, nargs: oneArg,
		run: func(ctx context.Context, conn *client.Conn, pos []string) error {
			desk, err := c.supportDesk(conn)
			if err != nil {
				return err
			}
			if *text == "" {
				return usagef("support-desk reply FEEDBACK -text TEXT")
			}
			resp, err := desk.ReplyFeedback(ctx, &hufuv1.ReplyFeedbackRequest{FeedbackId: pos[0], Text: *text})
			if err != nil {
				return err
			}
			c.printDeskFeedback(resp.Feedback)
			return nil
		}})
}

func (c *cli) deskCloseCommand() *urfave.Command {
	fs := newFlags()
	note := fs.String("note", "", "a closing note shown to the person (at most 200 characters)")
	return c.command(verb{name: "close", usage: "close feedback (it leaves the queue)", args: "FEEDBACK", fs: fs, nargs: oneArg,
		run: func(ctx context.Context, conn *client.Conn, pos []string) error {
			desk, err := c.supportDesk(conn)
			if err != nil {
				return err
			}
			resp, err := desk.CloseFeedback(ctx, &hufuv1.CloseFeedbackRequest{FeedbackId: pos[0], Note: *note})
			if err != nil {
				return err
			}
			c.printDeskFeedback(resp.Feedback)
			return nil
		}})
}
