package openings

import (
	"context"
	"errors"

	"github.com/hufu-hsm/hufu/daemon/apierr"
	"github.com/hufu-hsm/hufu/daemon/authn"
	"github.com/hufu-hsm/hufu/store"
	"github.com/hufu-hsm/hufu/store/storepb"
)

// ListAll lists every system's openings, a page at a time in store order: the operators'
// view (the operator console), where List shows a bid-opening system its own.
func (s *Service) ListAll(ctx context.Context, size int, cursor string) ([]*storepb.Opening, string, error) {
	if size < 0 || size > store.MaxListLimit {
		return nil, "", apierr.Invalidf("page_size", "at most %d", store.MaxListLimit)
	}
	page, err := openings.List(ctx, s.deps.Store, openingID(""), store.ListOptions{Limit: size, Cursor: cursor}, nil)
	if errors.Is(err, store.ErrBadCursor) {
		return nil, "", apierr.Invalidf("page_token", "not a token of this listing")
	}
	if err != nil {
		return nil, "", err
	}
	out := make([]*storepb.Opening, 0, len(page.Items))
	for _, it := range page.Items {
		out = append(out, it.Value)
	}
	return out, page.Next, nil
}

// OperatorGet is Get for an operator at the console (caller.Admin): any system's opening.
// Reading changes nothing but what the clock changes anyway (sealing at the window start,
// closing at its end), which any reader triggers.
func (s *Service) OperatorGet(ctx context.Context, caller authn.Caller, id string) (*storepb.Opening, error) {
	o, err := s.operatorRead(ctx, caller, id)
	if err != nil {
		return nil, err
	}
	return s.current(ctx, o)
}

// OperatorReport is Report for an operator at the console: any system's closed opening.
func (s *Service) OperatorReport(ctx context.Context, caller authn.Caller, id string) ([]byte, error) {
	o, err := s.operatorRead(ctx, caller, id)
	if err != nil {
		return nil, err
	}
	return s.reportOf(ctx, o)
}

func (s *Service) operatorRead(ctx context.Context, caller authn.Caller, id string) (*storepb.Opening, error) {
	if caller.Admin == "" {
		return nil, apierr.New(apierr.PermissionDenied, "only an operator at the console reads every system's openings")
	}
	return s.load(ctx, id)
}
