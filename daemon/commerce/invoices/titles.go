package invoices

import (
	"context"
	"errors"
	"regexp"
	"strings"

	hufuv1 "github.com/hufu-hsm/hufu/api/hufu/v1"
	"github.com/hufu-hsm/hufu/daemon/apierr"
	"github.com/hufu-hsm/hufu/daemon/authn"
	"github.com/hufu-hsm/hufu/daemon/identity"
	"github.com/hufu-hsm/hufu/daemon/text"
	"github.com/hufu-hsm/hufu/store"
	"github.com/hufu-hsm/hufu/store/storepb"
)

var (
	telephoneRE   = regexp.MustCompile(`^[0-9+()\- ]{5,30}$`)
	bankAccountRE = regexp.MustCompile(`^[0-9]{8,34}$`)
)

// CheckTitle validates a title as the caller typed it, under field (e.g. "title"), and
// returns it in its stored form: trimmed, the tax number normalised.
func CheckTitle(field string, t *hufuv1.InvoiceTitle) (*storepb.InvoiceTitle, error) {
	if t == nil {
		return nil, apierr.Invalidf(field, "required")
	}
	out := &storepb.InvoiceTitle{Kind: int32(t.GetKind())}
	var err error
	if out.Name, err = text.Line(field+".name", t.GetName(), 100, true); err != nil {
		return nil, err
	}
	if out.Address, err = text.Line(field+".address", t.GetAddress(), 200, false); err != nil {
		return nil, err
	}
	if out.Bank, err = text.Line(field+".bank", t.GetBank(), 100, false); err != nil {
		return nil, err
	}
	if out.Telephone = strings.TrimSpace(t.GetTelephone()); out.Telephone != "" && !telephoneRE.MatchString(out.Telephone) {
		return nil, apierr.Invalidf(field+".telephone", "5 to 30 of digits, spaces, +, -, ( and )")
	}
	if out.BankAccount = strings.ReplaceAll(strings.TrimSpace(t.GetBankAccount()), " ", ""); out.BankAccount != "" && !bankAccountRE.MatchString(out.BankAccount) {
		return nil, apierr.Invalidf(field+".bank_account", "8 to 34 digits")
	}
	switch out.Kind {
	case titlePersonal:
		for _, f := range []struct{ name, v string }{{"tax_number", t.GetTaxNumber()}, {"address", out.Address},
			{"telephone", out.Telephone}, {"bank", out.Bank}, {"bank_account", out.BankAccount}} {
			if strings.TrimSpace(f.v) != "" {
				return nil, apierr.Invalidf(field+"."+f.name, "a personal title is a name only")
			}
		}
	case titleEnterprise:
		out.TaxNumber = identity.NormaliseUSCC(t.GetTaxNumber())
		if out.TaxNumber == "" {
			return nil, apierr.Invalidf(field+".tax_number", "an enterprise title needs its tax number (统一社会信用代码)")
		}
		if err := identity.CheckUSCC(out.TaxNumber); err != nil {
			return nil, apierr.Invalid(field+".tax_number", err)
		}
	default:
		return nil, apierr.Invalidf(field+".kind", "personal or enterprise")
	}
	return out, nil
}

// fullForSpecialVAT reports the first detail a special VAT invoice needs that t lacks.
func fullForSpecialVAT(t *storepb.InvoiceTitle) string {
	for _, f := range []struct{ name, v string }{{"address", t.Address}, {"telephone", t.Telephone}, {"bank", t.Bank}, {"bank_account", t.BankAccount}} {
		if f.v == "" {
			return f.name
		}
	}
	return ""
}

// ListTitles returns the caller's saved titles.
func (s *Service) ListTitles(ctx context.Context, caller authn.Caller) ([]*storepb.InvoiceTitle, error) {
	ts, err := titles.Read(ctx, s.deps.Store, titlesID(caller.UserID))
	if errors.Is(err, store.ErrNotFound) {
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	return ts.Titles, nil
}

// title returns a saved title of the caller's.
func (s *Service) title(ctx context.Context, caller authn.Caller, id string) (*storepb.InvoiceTitle, error) {
	list, err := s.ListTitles(ctx, caller)
	if err != nil {
		return nil, err
	}
	for _, t := range list {
		if t.Id == id {
			return t, nil
		}
	}
	return nil, apierr.New(apierr.NotFound, "no saved title %q", id)
}

// AddTitle saves a title (request_id makes it idempotent), up to Options.MaxTitles.
func (s *Service) AddTitle(ctx context.Context, caller authn.Caller, requestID string, in *hufuv1.InvoiceTitle) (*storepb.InvoiceTitle, error) {
	if err := apierr.CheckRequestID("request_id", requestID); err != nil {
		return nil, err
	}
	t, err := CheckTitle("title", in)
	if err != nil {
		return nil, err
	}
	t.Id, t.RequestId = store.RandomID(8), requestID
	var out *storepb.InvoiceTitle
	err = s.deps.Store.Update(ctx, func(tx *store.Tx) error {
		out = nil
		ts, err := titles.Get(tx, titlesID(caller.UserID))
		if err != nil && !errors.Is(err, store.ErrNotFound) {
			return err
		}
		for _, have := range ts.Titles {
			if have.RequestId == requestID {
				out = have
				return nil
			}
		}
		if len(ts.Titles) >= s.opts.MaxTitles {
			return apierr.New(apierr.FailedPrecondition, "you have %d saved titles, the most allowed: delete one first", s.opts.MaxTitles)
		}
		now := tx.Now().UnixNano()
		t.CreatedUnixNano, t.UpdatedUnixNano = now, now
		ts.Titles = append(ts.Titles, t)
		if err := titles.Put(tx, titlesID(caller.UserID), ts); err != nil {
			return err
		}
		out = t
		return tx.Audit(store.Event{Actor: caller.Actor(), Action: "invoice.title.add", Subject: "i/" + titlesID(caller.UserID),
			Outcome: store.OutcomeOK, Details: map[string]string{"title": t.Id, "kind": hufuv1.InvoiceTitleKind(t.Kind).String()}})
	})
	if err == nil {
		s.m.changes.WithLabelValues("title_add").Inc()
	}
	return out, err
}

// EditTitle replaces a saved title's fields.
func (s *Service) EditTitle(ctx context.Context, caller authn.Caller, id string, in *hufuv1.InvoiceTitle) (*storepb.InvoiceTitle, error) {
	if !titleIDRE.MatchString(id) {
		return nil, apierr.New(apierr.NotFound, "no saved title %q", id)
	}
	t, err := CheckTitle("title", in)
	if err != nil {
		return nil, err
	}
	var out *storepb.InvoiceTitle
	err = s.changeTitle(ctx, caller, id, "invoice.title.edit", func(ts *storepb.InvoiceTitles, i int, now int64) {
		old := ts.Titles[i]
		t.Id, t.RequestId, t.CreatedUnixNano, t.UpdatedUnixNano = old.Id, old.RequestId, old.CreatedUnixNano, now
		ts.Titles[i], out = t, t
	})
	if err == nil {
		s.m.changes.WithLabelValues("title_edit").Inc()
	}
	return out, err
}

// DeleteTitle deletes a saved title. Invoices keep their copies.
func (s *Service) DeleteTitle(ctx context.Context, caller authn.Caller, id string) error {
	if !titleIDRE.MatchString(id) {
		return apierr.New(apierr.NotFound, "no saved title %q", id)
	}
	err := s.changeTitle(ctx, caller, id, "invoice.title.delete", func(ts *storepb.InvoiceTitles, i int, _ int64) {
		ts.Titles = append(ts.Titles[:i], ts.Titles[i+1:]...)
	})
	if err == nil {
		s.m.changes.WithLabelValues("title_delete").Inc()
	}
	return err
}

func (s *Service) changeTitle(ctx context.Context, caller authn.Caller, id, action string, change func(ts *storepb.InvoiceTitles, i int, now int64)) error {
	return s.deps.Store.Update(ctx, func(tx *store.Tx) error {
		ts, err := titles.Get(tx, titlesID(caller.UserID))
		if err != nil && !errors.Is(err, store.ErrNotFound) {
			return err
		}
		i := -1
		for j, t := range ts.Titles {
			if t.Id == id {
				i = j
			}
		}
		if i < 0 {
			return apierr.New(apierr.NotFound, "no saved title %q", id)
		}
		kind := hufuv1.InvoiceTitleKind(ts.Titles[i].Kind).String()
		change(ts, i, tx.Now().UnixNano())
		if err := titles.Put(tx, titlesID(caller.UserID), ts); err != nil {
			return err
		}
		return tx.Audit(store.Event{Actor: caller.Actor(), Action: action, Subject: "i/" + titlesID(caller.UserID),
			Outcome: store.OutcomeOK, Details: map[string]string{"title": id, "kind": kind}})
	})
}

// PrepareErasure (accounts.Eraser) deletes a deleted account's saved titles (常用发票抬头),
// which hold names, tax numbers and bank details. Invoices already requested keep their
// copies: they are tax records.
func (s *Service) PrepareErasure(_ context.Context, userID string) (func(tx *store.Tx) error, error) {
	return func(tx *store.Tx) error { return titles.Delete(tx, titlesID(userID)) }, nil
}
