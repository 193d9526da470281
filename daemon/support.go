package daemon

import (
	"context"

	"github.com/hufu-hsm/hufu/daemon/authn"
	"github.com/hufu-hsm/hufu/daemon/certs"
	"github.com/hufu-hsm/hufu/daemon/commerce/support"
)

// buildSupport builds help, FAQ search and feedback (seed §1.8.7–§1.8.10) from the
// configuration's support section, over the certificate orders feedback may be about.
func (d *Daemon) buildSupport() error {
	sc := d.cfg.Support
	kb := support.Knowledge{Phone: sc.Phone, Hours: sc.Hours}
	for _, a := range sc.Articles {
		kb.Articles = append(kb.Articles, support.Article{ID: a.ID, Title: a.Title, Category: a.Category, Body: a.Body})
	}
	for _, f := range sc.FAQ {
		kb.FAQ = append(kb.FAQ, support.FAQ{ID: f.ID, Question: f.Question, Answer: f.Answer, Keywords: f.Keywords})
	}
	var err error
	d.support, err = support.New(kb, support.Options{}, support.Deps{
		Store: d.store, Attachments: d.attachments, Orders: feedbackOrders{d.certs}, Accounts: d.accounts,
		Clock: d.opts.Clock, Registry: d.opts.Registry,
	})
	return err
}

// feedbackOrders finds the orders feedback may name among the caller's certificate orders.
type feedbackOrders struct{ c *certs.Service }

func (o feedbackOrders) OrderOf(ctx context.Context, caller authn.Caller, id string) error {
	_, err := o.c.GetOrder(ctx, caller, id)
	return err
}
