package main

// The review desk for operators: list applications in review and approve or reject them.
// The calls need a client certificate (-cert, -key) of a system client allowed
// hufu.v1.ReviewService.

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"os"
	"path/filepath"

	hufuv1 "github.com/hufu-hsm/hufu/api/hufu/v1"
	"github.com/hufu-hsm/hufu/client"
)

func (c *cli) reviewCmd(ctx context.Context, conn *client.Conn, args []string) error {
	if len(args) == 0 {
		return errors.New("review list|letter|approve|reject")
	}
	if c.cert == "" {
		return errors.New("the review desk needs a client certificate: -cert FILE -key FILE (HUFU_CERT, HUFU_KEY)")
	}
	desk := hufuv1.NewReviewServiceClient(conn.ClientConn())
	switch args[0] {
	case "list":
		fs := flag.NewFlagSet("review list", flag.ContinueOnError)
		st := fs.String("status", "review", "review, payment, completed, cancelled or all")
		if _, err := c.parseArgs(fs, args[1:]); err != nil {
			return err
		}
		status, err := statusArg(*st)
		if err != nil {
			return err
		}
		token := ""
		for {
			resp, err := desk.ListReviews(ctx, &hufuv1.ListReviewsRequest{Status: status, PageSize: 100, PageToken: token})
			if err != nil {
				return err
			}
			for _, o := range resp.Orders {
				c.printOrder(o, true)
			}
			if token = resp.NextPageToken; token == "" {
				return nil
			}
		}
	case "approve", "reject":
		fs := flag.NewFlagSet("review "+args[0], flag.ContinueOnError)
		reason := fs.String("reason", "", "reject: the reason shown to the applicant (required); approve: a note")
		pos, err := c.parseArgs(fs, args[1:])
		if err != nil {
			return err
		}
		if len(pos) != 1 {
			return fmt.Errorf("review %s ORDER -reason TEXT", args[0])
		}
		var o *hufuv1.Order
		if args[0] == "approve" {
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
	case "letter":
		fs := flag.NewFlagSet("review letter", flag.ContinueOnError)
		out := fs.String("o", "", "write the letter here (default: its file name, or ORDER-letter.txt)")
		pos, err := c.parseArgs(fs, args[1:])
		if err != nil {
			return err
		}
		if len(pos) != 1 {
			return errors.New("review letter ORDER [-o FILE]")
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
	}
	return fmt.Errorf("unknown review command %q", args[0])
}
