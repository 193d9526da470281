package store

import (
	"context"
	"fmt"
	"strings"

	"github.com/cockroachdb/pebble/v2"
	"google.golang.org/protobuf/proto"

	"github.com/hufu-hsm/hufu/store/storepb"
)

// Collection is the typed view of one record kind: domain code declares one per storage
// message, e.g.
//
//	var users = store.NewCollection(store.KindUser, func() *storepb.User { return new(storepb.User) })
//
// and gets keys, typed reads, writes and listings without touching bytes. An id is one key
// part or several joined by "/" (each part valid per ValidPart).
type Collection[M proto.Message] struct {
	kind Kind
	newM func() M
}

// NewCollection returns the collection of kind whose records are messages made by newM.
func NewCollection[M proto.Message](kind Kind, newM func() M) Collection[M] {
	return Collection[M]{kind: kind, newM: newM}
}

// Key returns the record key of id.
func (c Collection[M]) Key(id string) (string, error) {
	if !recordKinds[c.kind] {
		return "", fmt.Errorf("%w: unknown record kind %q", ErrInvalidKey, c.kind)
	}
	if err := validParts(id); err != nil {
		return "", err
	}
	return string(c.kind) + "/" + id, nil // what Key(c.kind, parts of id...) builds
}

// ID returns the id part of a key of this collection.
func (c Collection[M]) ID(key string) string {
	return strings.TrimPrefix(key, string(c.kind)+"/")
}

// Get reads id inside a transaction (locking it). ErrNotFound if absent or expired.
func (c Collection[M]) Get(tx *Tx, id string) (M, error) {
	m := c.newM()
	k, err := c.Key(id)
	if err != nil {
		return m, err
	}
	return m, tx.Get(k, m)
}

// View reads id inside a transaction (locking it, as Get does) into view: a message that
// declares some of M's fields under the same numbers and types. Only those are decoded, the
// rest skipped, so a hot check that needs a few numbers of a large record does not pay for
// decoding all of it (daemon/keys superseded.go). ErrNotFound if absent or expired;
// ErrCorrupt if the record is not an M.
func (c Collection[M]) View(tx *Tx, id string, view proto.Message) error {
	k, err := c.Key(id)
	if err != nil {
		return err
	}
	var m M // a nil message still has its descriptor
	return tx.get(k, m.ProtoReflect().Descriptor().FullName(), view, proto.UnmarshalOptions{DiscardUnknown: true})
}

// Read reads id from the latest committed state without locking.
func (c Collection[M]) Read(ctx context.Context, s *Store, id string) (M, error) {
	m := c.newM()
	k, err := c.Key(id)
	if err != nil {
		return m, err
	}
	return m, s.Get(ctx, k, m)
}

// Put writes m as id inside a transaction.
func (c Collection[M]) Put(tx *Tx, id string, m M, opts ...PutOption) error {
	k, err := c.Key(id)
	if err != nil {
		return err
	}
	return tx.Put(k, m, opts...)
}

// Delete deletes id inside a transaction.
func (c Collection[M]) Delete(tx *Tx, id string) error {
	k, err := c.Key(id)
	if err != nil {
		return err
	}
	return tx.Delete(k)
}

// List lists records whose id starts with idPrefix ("" for all); opts.Prefix is ignored.
// filter receives ids, not keys.
func (c Collection[M]) List(ctx context.Context, s *Store, idPrefix string, opts ListOptions, filter func(id string, m M) bool) (Page[M], error) {
	opts.Prefix = string(c.kind) + "/" + idPrefix
	var f func(string, M) bool
	if filter != nil {
		f = func(key string, m M) bool { return filter(c.ID(key), m) }
	}
	return List(ctx, s, opts, c.newM, f)
}

// ListIndex lists the owner keys filed under value in a multi-valued index.
func (s *Store) ListIndex(ctx context.Context, index, value string, opts ListOptions) ([]string, string, error) {
	p, err := multiIndexPrefix(index, value)
	if err != nil {
		return nil, "", err
	}
	opts.Prefix = p
	page, err := List(ctx, s, opts, func() *storepb.IndexEntry { return new(storepb.IndexEntry) }, nil)
	if err != nil {
		return nil, "", fmt.Errorf("store: index %s: %w", index, err)
	}
	owners := make([]string, len(page.Items))
	for i, it := range page.Items {
		owners[i] = it.Value.GetOwner()
	}
	return owners, page.Next, nil
}

// IndexValues calls fn once for each value filed in a multi-valued index that has a live
// owner, in key order, from one consistent snapshot, without decoding the owners. It is for a
// domain that keeps the set of an index's values in memory (daemon/openings envelopeKeys);
// fn's error stops the walk and is returned.
func (s *Store) IndexValues(ctx context.Context, index string, fn func(value string) error) error {
	if err := ValidPart(index); err != nil {
		return err
	}
	prefix := indexPfx + index + "/"
	if err := s.enter(); err != nil {
		return err
	}
	defer s.leave()
	it, err := s.db.NewIterWithContext(ctx, &pebble.IterOptions{LowerBound: []byte(prefix), UpperBound: prefixEnd(prefix)})
	if err != nil {
		return fmt.Errorf("store: index %s: %w", index, err)
	}
	defer it.Close()
	now := s.clock.Now().UnixNano()
	for ok := it.First(); ok; {
		if err := ctx.Err(); err != nil {
			return err
		}
		value, _, _ := strings.Cut(string(it.Key()[len(prefix):]), "/")
		env, err := decodeEnvelope(it.Value())
		if err != nil {
			return fmt.Errorf("store: index %s: %w", index, err) // not the key: values may be personal
		}
		if !env.live(now) {
			ok = it.Next()
			continue
		}
		if err := fn(value); err != nil {
			return err
		}
		ok = it.SeekGE(prefixEnd(prefix + value + "/")) // past the value's other owners
	}
	if err := it.Error(); err != nil {
		return fmt.Errorf("store: index %s: %w", index, err)
	}
	return nil
}
