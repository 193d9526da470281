package main

// The bank-card commands (seed manual §1.8.5 银行卡管理): bind a card held by the account's
// verified person, list the bound cards (masked), unbind one.

import (
	"context"
	"fmt"
	"time"

	urfave "github.com/urfave/cli/v2"

	hufuv1 "github.com/hufu-hsm/hufu/api/hufu/v1"
	"github.com/hufu-hsm/hufu/client"
)

// cardCommands: bank cards (seed manual §1.8.5).
func (c *cli) cardCommands() []*urfave.Command {
	return []*urfave.Command{
		group("card", "bank cards bound to your account (银行卡管理; your real name must be verified)", "seed manual §1.8.5",
			c.cardBindCommand(), c.cardListCommand(), c.cardUnbindCommand()),
	}
}

func (c *cli) cardBindCommand() *urfave.Command {
	fs := newFlags()
	number := fs.String("number", "", "the card number (default: asked, so it stays out of the shell's history)")
	reserved := fs.String("reserved-phone", "", "the phone number reserved at the bank for this card (required)")
	requestID := fs.String("request-id", "", "idempotency key (default: a new one)")
	return c.command(verb{name: "bind", usage: "bind a bank card (添加银行卡): checked with your verified name and ID number",
		desc: "card bind -reserved-phone PHONE [-number N]: the bank confirms the card, your verified name and ID number and the reserved phone belong together (four elements). The number must pass the Luhn check; spaces are allowed.",
		fs:   fs, nargs: noArgs, run: func(ctx context.Context, conn *client.Conn, _ []string) error {
			if *reserved == "" {
				return usagef("card bind -reserved-phone PHONE [-number N]")
			}
			if *number == "" {
				n, err := c.prompt("card number: ")
				if err != nil {
					return err
				}
				*number = n
			}
			if *requestID == "" {
				*requestID = client.NewKeyID()
			}
			resp, err := hufuv1.NewBankCardServiceClient(conn.ClientConn()).BindBankCard(ctx, &hufuv1.BindBankCardRequest{
				RequestId: *requestID, CardNumber: *number, ReservedPhone: *reserved})
			if err != nil {
				return err
			}
			fmt.Fprint(c.out, "bound ")
			c.printCard(resp.Card)
			return nil
		}})
}

func (c *cli) cardListCommand() *urfave.Command {
	fs := newFlags()
	o := outputFlag(fs)
	return c.command(verb{name: "list", usage: "your bound cards, masked", fs: fs, nargs: noArgs,
		run: func(ctx context.Context, conn *client.Conn, _ []string) error {
			resp, err := hufuv1.NewBankCardServiceClient(conn.ClientConn()).ListBankCards(ctx, &hufuv1.ListBankCardsRequest{})
			if err != nil {
				return err
			}
			return c.emit(o, resp, func() error {
				if len(resp.Cards) == 0 {
					fmt.Fprintln(c.out, "no bound cards (hufu card bind)")
				}
				for _, card := range resp.Cards {
					c.printCard(card)
				}
				return nil
			})
		}})
}

func (c *cli) cardUnbindCommand() *urfave.Command {
	return c.command(verb{name: "unbind", usage: "unbind a card (解绑)", args: "CARD", nargs: oneArg,
		run: func(ctx context.Context, conn *client.Conn, pos []string) error {
			if _, err := hufuv1.NewBankCardServiceClient(conn.ClientConn()).UnbindBankCard(ctx, &hufuv1.UnbindBankCardRequest{CardId: pos[0]}); err != nil {
				return err
			}
			fmt.Fprintf(c.out, "unbound card %s\n", pos[0])
			return nil
		}})
}

func (c *cli) printCard(card *hufuv1.BankCard) {
	bank := card.GetBankName()
	if bank == "" {
		bank = "(bank unknown)"
	}
	bound := ""
	if card.GetBoundAt() != nil {
		bound = "bound " + card.BoundAt.AsTime().Local().Format(time.DateTime)
	}
	fmt.Fprintf(c.out, "%s  %s  %s  reserved phone %s  %s\n", card.GetId(), card.GetNumberMasked(), bank, card.GetReservedPhoneMasked(), bound)
}
