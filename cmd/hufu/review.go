package main

// The review desk for operators: list applications in review and approve or reject them.
// The calls need a client certificate (-cert, -key) of a system client allowed
// hufu.v1.ReviewService.

import (
	"context"
	"errors"
	"flag"
	"fmt"

	hufuv1 "github.com/hufu-hsm/hufu/api/hufu/v1"
	"github.com/hufu-hsm/hufu/client"
)

func (c *cli) reviewCmd(ctx context.Context, conn *client.Conn, args []string) error {
	if len(args) == 0 {
		return errors.New("review list|approve|reject")
	}
	if c.cert == "" {
		return errors.New("the review desk needs a client certificate: -cert FILE -key FILE (HUFU_CERT, HUFU_KEY)")
	}
	desk := hufuv1.NewReviewServiceClient(conn.ClientConn())
	switch args[0] {
	case "list":
		fs := flag.NewFlagSet("review list", flag.ContinueOnError)
		st := fs.String("status", "review", "review, payment, completed, cancelled or all")
		if _, err := parseArgs(fs, args[1:]); err != nil {
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
		pos, err := parseArgs(fs, args[1:])
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
	}
	return fmt.Errorf("unknown review command %q", args[0])
}
