package certs

import (
	"context"
	"errors"
	"time"

	"github.com/hufu-hsm/hufu/daemon/authn"
	"github.com/hufu-hsm/hufu/daemon/ca"
	"github.com/hufu-hsm/hufu/store"
	"github.com/hufu-hsm/hufu/store/storepb"
)

// PollReviews asks the CAs that review applications on their own side (not on hufu's review
// desk) for their decisions on orders in review, and applies them as the desk would. It
// returns how many orders changed. Errors of one CA do not stop the others; the first is
// returned.
func (s *Service) PollReviews(ctx context.Context) (int, error) {
	changed := 0
	var first error
	cursor := ""
	for {
		page, err := orders.List(ctx, s.deps.Store, "order/", store.ListOptions{Cursor: cursor, Limit: store.MaxListLimit}, func(_ string, o *storepb.Order) bool {
			c, ok := s.cas[o.CaId]
			return ok && o.Status == statusInReview && !c.Connector.DeskReview()
		})
		if err != nil {
			return changed, err
		}
		for _, it := range page.Items {
			o := it.Value
			conn := s.cas[o.CaId].Connector
			d, err := conn.Review(ctx, o.CaRef)
			if err == nil {
				caller := authn.Caller{System: "ca:" + o.CaId}
				switch d.State {
				case ca.Approved:
					_, err = s.Approve(ctx, caller, o.Id, "")
				case ca.Rejected:
					reason := d.Reason
					if reason == "" {
						reason = "rejected by the CA"
					}
					_, err = s.Reject(ctx, caller, o.Id, reason)
				default:
					continue
				}
			}
			if err == nil {
				changed++
			} else if first == nil {
				first = err
			}
		}
		if page.Next == "" {
			return changed, first
		}
		cursor = page.Next
	}
}

// Run polls the external CAs every interval until ctx ends (a no-op loop when every CA
// reviews on the desk).
func (s *Service) Run(ctx context.Context, every time.Duration) {
	external := false
	for _, c := range s.cas {
		external = external || !c.Connector.DeskReview()
	}
	if !external {
		return
	}
	t := time.NewTicker(every)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		if _, err := s.PollReviews(ctx); err != nil && !errors.Is(err, context.Canceled) {
			s.deps.Log.Warn("polling CA reviews", "err", err)
		}
	}
}
