package cards_test

import (
	"context"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/hufu-hsm/hufu/daemon/apierr"
	"github.com/hufu-hsm/hufu/daemon/authn"
	"github.com/hufu-hsm/hufu/daemon/commerce/cards"
	"github.com/hufu-hsm/hufu/daemon/identity"
	"github.com/hufu-hsm/hufu/hsm"
	"github.com/hufu-hsm/hufu/softhsm/softhsmtest"
	"github.com/hufu-hsm/hufu/store"
)

func TestMain(m *testing.M) { softhsmtest.Main(m) }

type fixedClock struct{ t time.Time }

func (c fixedClock) Now() time.Time { return c.t }

// person is the accounts domain's stand-in: every user is verified as 张三.
type person struct{}

func (person) VerifiedPerson(context.Context, string) (identity.Person, error) {
	return identity.Person{Name: "张三", IDNumber: "11010519491231002X"}, nil
}

// newService is the service over a real SoftHSM2 token and a real Pebble store.
func newService(t *testing.T, opts cards.Options) *cards.Service {
	t.Helper()
	ctx := context.Background()
	tok := softhsmtest.New(t)
	kr, err := hsm.Initialize(ctx, hsm.Config{ModulePath: tok.ModulePath, TokenLabel: tok.Label, PINFile: tok.PINFile})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = kr.Close() })
	clk := fixedClock{time.Date(2026, 3, 1, 9, 0, 0, 0, time.UTC)}
	st, err := store.Open(ctx, store.Options{Dir: t.TempDir(), Clock: clk})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = st.Close(context.Background()) })
	svc, err := cards.New(opts, cards.Deps{Store: st, Keyring: kr, Accounts: person{}, Verifier: &identity.DevVerifier{},
		Clock: clk, Registry: prometheus.NewRegistry()})
	if err != nil {
		t.Fatal(err)
	}
	return svc
}

// luhn completes a prefix with its check digit.
func luhn(prefix string) string {
	for d := '0'; d <= '9'; d++ {
		if n := prefix + string(d); identity.CheckCardNumber(n) == nil {
			return n
		}
	}
	panic("no check digit")
}

// TestHasCardsAndTheLimitUnderConcurrentBinds: the account-deletion precondition follows
// binding and unbinding, and concurrent binds of different cards never pass the limit.
func TestHasCardsAndTheLimitUnderConcurrentBinds(t *testing.T) {
	svc := newService(t, cards.Options{MaxCards: 2})
	ctx := context.Background()
	u := authn.Caller{UserID: "u1"}
	if has, err := svc.HasCards(ctx, "u1"); err != nil || has {
		t.Fatalf("before: %v %v", has, err)
	}
	var (
		wg       sync.WaitGroup
		mu       sync.Mutex
		bound    []string
		refusals int
	)
	for i := range 6 {
		wg.Go(func() {
			c, err := svc.Bind(ctx, u, fmt.Sprintf("concurrent-%02d", i), luhn(fmt.Sprintf("62220202001122%04d", i)), "13800001234")
			mu.Lock()
			defer mu.Unlock()
			if ae, ok := err.(*apierr.Error); ok && ae.Kind == apierr.FailedPrecondition {
				refusals++
				return
			}
			if err != nil {
				t.Error(err)
				return
			}
			bound = append(bound, c.Id)
		})
	}
	wg.Wait()
	if len(bound) != 2 || refusals != 4 {
		t.Fatalf("bound %d, refused %d; want 2 and 4", len(bound), refusals)
	}
	if has, err := svc.HasCards(ctx, "u1"); err != nil || !has {
		t.Fatalf("with cards: %v %v", has, err)
	}
	if has, _ := svc.HasCards(ctx, "u2"); has {
		t.Fatal("another user has cards")
	}
	for _, id := range bound {
		if err := svc.Unbind(ctx, u, id); err != nil {
			t.Fatal(err)
		}
	}
	if has, err := svc.HasCards(ctx, "u1"); err != nil || has {
		t.Fatalf("after unbinding all: %v %v", has, err)
	}
}

// TestRequestIDAfterUnbind: a retry answers the card its request bound; once that card is
// unbound, the same request id binds anew.
func TestRequestIDAfterUnbind(t *testing.T) {
	svc := newService(t, cards.Options{})
	ctx := context.Background()
	u := authn.Caller{UserID: "u1"}
	number := luhn("622202020011220001")
	first, err := svc.Bind(ctx, u, "request-0001", number, "13800001234")
	if err != nil {
		t.Fatal(err)
	}
	if again, err := svc.Bind(ctx, u, "request-0001", number, "13800001234"); err != nil || again.Id != first.Id {
		t.Fatalf("retry: %v %v", again, err)
	}
	if err := svc.Unbind(ctx, u, first.Id); err != nil {
		t.Fatal(err)
	}
	second, err := svc.Bind(ctx, u, "request-0001", number, "13800001234")
	if err != nil || second.Id == first.Id {
		t.Fatalf("bind after unbind: %v %v", second, err)
	}
}
