package daemon

import (
	"context"
	"net/http"

	"google.golang.org/grpc"

	"github.com/hufu-hsm/hufu/admin"
	"github.com/hufu-hsm/hufu/admin/console"
	hufuv1 "github.com/hufu-hsm/hufu/api/hufu/v1"
	"github.com/hufu-hsm/hufu/daemon/authn"
	"github.com/hufu-hsm/hufu/daemon/openings"
)

// The operator console (package admin/console) on the admin listener. Its desks are the
// very servers the gRPC server serves to desk system clients, taken from the services'
// own Register, so a console action runs the same checks and writes the same audit
// records, under the operator's name.

// serviceImpls records the implementations a service registers, by service name.
type serviceImpls map[string]any

func (m serviceImpls) RegisterService(desc *grpc.ServiceDesc, impl any) { m[desc.ServiceName] = impl }

// consoleBuilder is admin.Options.Console: it builds the console once the admin surface
// that hosts it exists.
func (d *Daemon) consoleBuilder() func(admin.ConsoleHost) http.Handler {
	return func(host admin.ConsoleHost) http.Handler {
		impls := serviceImpls{}
		d.certs.Register(impls)
		d.enterprises.Register(impls)
		d.payments.Register(impls)
		d.aftersales.Register(impls)
		d.invoices.Register(impls)
		d.support.Register(impls)
		review, _ := impls[hufuv1.ReviewService_ServiceDesc.ServiceName].(hufuv1.ReviewServiceServer)
		recon, _ := impls[hufuv1.ReconciliationService_ServiceDesc.ServiceName].(hufuv1.ReconciliationServiceServer)
		payments, _ := impls[hufuv1.PaymentDeskService_ServiceDesc.ServiceName].(hufuv1.PaymentDeskServiceServer)
		aftersales, _ := impls[hufuv1.AfterSalesDeskService_ServiceDesc.ServiceName].(hufuv1.AfterSalesDeskServiceServer)
		invoices, _ := impls[hufuv1.InvoiceDeskService_ServiceDesc.ServiceName].(hufuv1.InvoiceDeskServiceServer)
		support, _ := impls[hufuv1.SupportDeskService_ServiceDesc.ServiceName].(hufuv1.SupportDeskServiceServer)
		c, err := console.New(console.Options{
			Host: host, Store: d.store, Gatherer: d.opts.Registry, Review: review, Reconciliation: recon,
			Payments: payments, AfterSales: aftersales, Invoices: invoices, Support: support,
			Openings: consoleOpenings{d.openings},
			Clock:    d.opts.Clock, Log: d.opts.Log.With("surface", "console"),
		})
		if err != nil {
			// Only a broken embedded template gets here, which the console's tests catch.
			d.opts.Log.Error("the operator console is unavailable", "err", err)
			return http.NotFoundHandler()
		}
		return c
	}
}

// consoleOpenings reads the openings as an operator: every system's.
type consoleOpenings struct{ s *openings.Service }

func (o consoleOpenings) List(ctx context.Context, size int, cursor string) ([]*hufuv1.Opening, string, error) {
	os, next, err := o.s.ListAll(ctx, size, cursor)
	if err != nil {
		return nil, "", err
	}
	out := make([]*hufuv1.Opening, len(os))
	for i, x := range os {
		out[i] = openings.OpeningPB(x)
	}
	return out, next, nil
}

func (o consoleOpenings) Get(ctx context.Context, caller authn.Caller, id string) (*hufuv1.Opening, error) {
	x, err := o.s.OperatorGet(ctx, caller, id)
	if err != nil {
		return nil, err
	}
	return openings.OpeningPB(x), nil
}

func (o consoleOpenings) Report(ctx context.Context, caller authn.Caller, id string) ([]byte, error) {
	return o.s.OperatorReport(ctx, caller, id)
}
