package store_test

import (
	"context"
	"errors"
	"fmt"
	"os"

	"github.com/hufu-hsm/hufu/store"
	"github.com/hufu-hsm/hufu/store/storepb"
)

// A domain package declares one collection per storage message and changes state only
// inside Update, appending the audit event of the change in the same transaction.
func Example() {
	ctx := context.Background()
	dir, _ := os.MkdirTemp("", "hufu-store-example")
	defer os.RemoveAll(dir)
	s, err := store.Open(ctx, store.Options{Dir: dir})
	if err != nil {
		fmt.Println(err)
		return
	}
	defer s.Close(ctx)

	users := store.NewCollection(store.KindUser, func() *storepb.Example { return new(storepb.Example) })
	register := func(id, phone string) error {
		return s.Update(ctx, func(tx *store.Tx) error {
			key, err := users.Key(id)
			if err != nil {
				return err
			}
			// One phone number per user, even under concurrent registrations.
			if err := tx.Claim("user-phone", phone, key); err != nil {
				return err
			}
			if err := users.Put(tx, id, &storepb.Example{Name: id, Phone: phone}); err != nil {
				return err
			}
			return tx.Audit(store.Event{
				Actor: "user:" + id, Action: "user.register", Subject: key, Outcome: store.OutcomeOK,
				Details: map[string]string{"phone": phone[:3] + "****" + phone[7:]}, // masked
			})
		})
	}
	fmt.Println(register("alice", "13800000000"))
	fmt.Println(errors.Is(register("bob", "13800000000"), store.ErrTaken))

	page, _ := users.List(ctx, s, "", store.ListOptions{Limit: 10}, nil)
	for _, it := range page.Items {
		fmt.Println(it.Key, it.Value.GetPhone())
	}
	rec, _ := s.AuditRecord(ctx, 1)
	fmt.Println(rec.Seq, rec.Action, rec.Details["phone"])
	// Output:
	// <nil>
	// true
	// u/alice 13800000000
	// 1 user.register 138****0000
}
