package ca

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"strings"

	"github.com/hufu-hsm/hufu/store"
	"github.com/hufu-hsm/hufu/store/storepb"
)

// KEK rotation support: the embedded CAs' root and issuing keys are HSM-wrapped blobs in
// CAState (root_key_wrapped, issuing_key_wrapped). The admin surface drives a rotation;
// these functions find and rewrap those blobs with their own associated data, so that
// destroying the old KEK does not destroy the CAs.

// caIDs lists the ids of the CA records (c/ca/<id>), skipping certificates under c/.
func caIDs(ctx context.Context, st *store.Store) ([]string, error) {
	var ids []string
	opts := store.ListOptions{Prefix: string(store.KindCert) + "/ca/", Limit: store.MaxListLimit}
	for {
		keys, next, err := st.ListKeys(ctx, opts, func(key string) bool { return strings.Count(key, "/") == 2 })
		if err != nil {
			return nil, fmt.Errorf("ca: list CAs: %w", err)
		}
		for _, k := range keys {
			ids = append(ids, strings.TrimPrefix(k, string(store.KindCert)+"/ca/"))
		}
		if next == "" {
			return ids, nil
		}
		opts.Cursor = next
	}
}

type caBlob struct {
	blob []byte
	ad   []byte
	set  func(s *storepb.CAState, b []byte)
}

func caBlobs(id string, s *storepb.CAState) []caBlob {
	return []caBlob{
		{s.RootKeyWrapped, rootAD(id), func(s *storepb.CAState, b []byte) { s.RootKeyWrapped = b }},
		{s.IssuingKeyWrapped, issuingAD(id), func(s *storepb.CAState, b []byte) { s.IssuingKeyWrapped = b }},
	}
}

// CountStaleBlobs returns how many CA key blobs stale reports.
func CountStaleBlobs(ctx context.Context, st *store.Store, stale func(blob []byte) bool) (int, error) {
	ids, err := caIDs(ctx, st)
	if err != nil {
		return 0, err
	}
	n := 0
	for _, id := range ids {
		s, err := states.Read(ctx, st, stateID(id))
		if errors.Is(err, store.ErrNotFound) {
			continue
		}
		if err != nil {
			return 0, err
		}
		for _, b := range caBlobs(id, s) {
			if len(b.blob) > 0 && stale(b.blob) {
				n++
			}
		}
	}
	return n, nil
}

// RewrapAll rewraps every CA key blob that stale reports, one locked transaction and one
// audit record ("ca.rewrap" by actor) per CA. progress, if not nil, gets the CAs done and
// the total after each. It returns the number of blobs rewrapped.
func RewrapAll(ctx context.Context, st *store.Store, actor string, stale func(blob []byte) bool, rewrap func(ctx context.Context, blob, ad []byte) ([]byte, error), progress func(done, total int)) (int, error) {
	ids, err := caIDs(ctx, st)
	if err != nil {
		return 0, err
	}
	moved := 0
	for i, id := range ids {
		n := 0
		err := st.Update(ctx, func(tx *store.Tx) error {
			n = 0
			s, err := states.Get(tx, stateID(id))
			if errors.Is(err, store.ErrNotFound) {
				return nil
			}
			if err != nil {
				return err
			}
			for _, b := range caBlobs(id, s) {
				if len(b.blob) == 0 || !stale(b.blob) {
					continue
				}
				nb, err := rewrap(ctx, b.blob, b.ad)
				if err != nil {
					return fmt.Errorf("CA %s: %w", id, err)
				}
				b.set(s, nb)
				n++
			}
			if n == 0 {
				return nil
			}
			if err := states.Put(tx, stateID(id), s); err != nil {
				return err
			}
			return tx.Audit(store.Event{Actor: actor, Action: "ca.rewrap", Subject: "c/" + stateID(id), Outcome: store.OutcomeOK,
				Details: map[string]string{"blobs": strconv.Itoa(n)}})
		})
		if err != nil {
			return moved, fmt.Errorf("ca: rewrap: %w", err)
		}
		moved += n
		if progress != nil {
			progress(i+1, len(ids))
		}
	}
	return moved, nil
}
