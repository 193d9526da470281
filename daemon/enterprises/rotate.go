package enterprises

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"strings"

	"github.com/hufu-hsm/hufu/store"
	"github.com/hufu-hsm/hufu/store/storepb"
)

// KEK rotation: the legal representative's ID and phone numbers are HSM blobs in enterprise
// records, in claims waiting for payment and in corporate-transfer applications. Every record holding such blobs is filed in
// the sealed index, so a rotation finds them without reading the other enterprise records.
// The admin surface drives the rotation (admin.Rewrapper).

const (
	indexSealed = "enterprise-sealed"
	sealedValue = "legal-rep"
	rewrapBatch = 32
)

// fileSealed adds a record holding legal-representative blobs to the sealed index.
func fileSealed(tx *store.Tx, id string) error { return tx.AddIndex(indexSealed, sealedValue, key(id)) }

func unfileSealed(tx *store.Tx, id string) error {
	return tx.RemoveIndex(indexSealed, sealedValue, key(id))
}

// legalRepOf reads the legal representative of a sealed record (an enterprise, a claim or a
// corporate-transfer application) inside tx, with the function that writes the record back.
func legalRepOf(tx *store.Tx, id string) (*storepb.Enterprise, func() error, error) {
	if strings.HasSuffix(id, "/info") {
		e, err := enterprises.Get(tx, id)
		return e, func() error { return enterprises.Put(tx, id, e) }, err
	}
	if strings.Contains(id, "/transfer/") {
		t, err := transfers.Get(tx, id)
		if err != nil {
			return nil, nil, err
		}
		return t.Enterprise, func() error { return transfers.Put(tx, id, t) }, nil
	}
	c, err := claims.Get(tx, id)
	if err != nil {
		return nil, nil, err
	}
	return c.Enterprise, func() error { return claims.Put(tx, id, c) }, nil
}

// staleRecords lists the ids of sealed records with a blob that stale reports.
func (s *Service) staleRecords(ctx context.Context, stale func(blob []byte) bool) ([]string, error) {
	var ids []string
	opts := store.ListOptions{Limit: store.MaxListLimit}
	for {
		keys, next, err := s.deps.Store.ListIndex(ctx, indexSealed, sealedValue, opts)
		if err != nil {
			return nil, err
		}
		for _, k := range keys {
			id := enterprises.ID(k)
			var e *storepb.Enterprise
			err := s.deps.Store.Update(ctx, func(tx *store.Tx) error {
				var err error
				e, _, err = legalRepOf(tx, id)
				return err
			})
			if errors.Is(err, store.ErrNotFound) {
				continue
			}
			if err != nil {
				return nil, err
			}
			if stale(e.GetLegalRep().GetIdNumberWrapped()) || stale(e.GetLegalRep().GetPhoneWrapped()) {
				ids = append(ids, id)
			}
		}
		if next == "" {
			return ids, nil
		}
		opts.Cursor = next
	}
}

// CountStaleBlobs returns how many records hold a legal-representative blob that stale
// reports.
func (s *Service) CountStaleBlobs(ctx context.Context, stale func(blob []byte) bool) (int, error) {
	ids, err := s.staleRecords(ctx, stale)
	return len(ids), err
}

// RewrapAll rewraps the legal-representative blobs that stale reports with rewrap (the
// HSM's Rewrap under the current KEK), in locked transactions audited as
// "enterprise.rewrap" by actor, and returns the number of records rewrapped.
func (s *Service) RewrapAll(ctx context.Context, actor string, stale func(blob []byte) bool, rewrap func(ctx context.Context, blob, ad []byte) ([]byte, error), progress func(done, total int)) (int, error) {
	ids, err := s.staleRecords(ctx, stale)
	if err != nil {
		return 0, err
	}
	moved, err := s.deps.Store.UpdateInBatches(ctx, ids, rewrapBatch, func(tx *store.Tx, batch []string) (int, error) {
		n := 0
		for _, id := range batch {
			e, put, err := legalRepOf(tx, id)
			if errors.Is(err, store.ErrNotFound) {
				continue
			}
			if err != nil {
				return 0, err
			}
			lr := e.GetLegalRep()
			changed := false
			for _, f := range []struct {
				blob *[]byte
				what string
			}{{&lr.IdNumberWrapped, "id"}, {&lr.PhoneWrapped, "phone"}} {
				if len(*f.blob) == 0 || !stale(*f.blob) {
					continue
				}
				if *f.blob, err = rewrap(ctx, *f.blob, legalRepAD(e.Uscc, f.what)); err != nil {
					return 0, fmt.Errorf("enterprise %s: %w", e.Uscc, err)
				}
				changed = true
			}
			if !changed {
				continue // rewrapped since the listing
			}
			if err := put(); err != nil {
				return 0, err
			}
			n++
		}
		if n == 0 {
			return 0, nil
		}
		return n, tx.Audit(store.Event{Actor: actor, Action: "enterprise.rewrap", Subject: "e/", Outcome: store.OutcomeOK,
			Details: map[string]string{"records": strconv.Itoa(n)}})
	}, progress)
	if err != nil {
		return moved, fmt.Errorf("enterprises: rewrap: %w", err)
	}
	return moved, nil
}
