package store

import (
	"context"
	"encoding/base64"
	"fmt"
	"strings"

	"github.com/cockroachdb/pebble/v2"
	"google.golang.org/protobuf/proto"
)

// ListOptions select one page of records.
type ListOptions struct {
	// Prefix is a record key prefix, e.g. "u/" for all users or "k/<key id>/" for one key's
	// shares. It must start with a record kind and "/".
	Prefix string
	// Cursor is Page.Next of the previous page; empty for the first page.
	Cursor string
	// Limit is the page size: default 100, at most MaxListLimit.
	Limit int
}

// MaxListLimit bounds a page.
const MaxListLimit = 1000

const defaultListLimit = 100

// Item is one listed record.
type Item[M proto.Message] struct {
	Key   string
	Value M
}

// Page is one page of a listing. Next is empty on the last page; otherwise pass it as
// ListOptions.Cursor to continue after the last item. Cursors are opaque; they stay valid
// across writes (the listing continues after the last key returned, so records inserted
// behind the cursor are not seen and nothing is returned twice).
type Page[M proto.Message] struct {
	Items []Item[M]
	Next  string
}

func (o *ListOptions) normalise() (start []byte, err error) {
	kind, _, ok := strings.Cut(o.Prefix, "/")
	if !ok || !(recordKinds[Kind(kind)] || Kind(kind) == kindIndex) {
		return nil, fmt.Errorf("%w: list prefix %q does not start with a record kind", ErrInvalidKey, o.Prefix)
	}
	switch {
	case o.Limit == 0:
		o.Limit = defaultListLimit
	case o.Limit < 0 || o.Limit > MaxListLimit:
		return nil, fmt.Errorf("%w: limit %d outside 1..%d", ErrInvalidOptions, o.Limit, MaxListLimit)
	}
	if o.Cursor == "" {
		return []byte(o.Prefix), nil
	}
	last, err := base64.RawURLEncoding.DecodeString(o.Cursor)
	if err != nil || !strings.HasPrefix(string(last), o.Prefix) {
		return nil, fmt.Errorf("%w: not a cursor for prefix %q", ErrBadCursor, o.Prefix)
	}
	// The smallest key after last.
	return append(last, 0), nil
}

// List returns one page of live records of type M under opts.Prefix, in key order, that
// pass filter (nil: all). It reads one consistent snapshot of the latest committed state
// and takes no locks. Records of another message type under the prefix are an error
// (ErrCorrupt): one prefix holds one type.
func List[M proto.Message](ctx context.Context, s *Store, opts ListOptions, newM func() M, filter func(key string, m M) bool) (Page[M], error) {
	var page Page[M]
	start, err := opts.normalise()
	if err != nil {
		return page, err
	}
	if err := s.enter(); err != nil {
		return page, err
	}
	defer s.leave()
	it, err := s.db.NewIterWithContext(ctx, &pebble.IterOptions{LowerBound: start, UpperBound: prefixEnd(opts.Prefix)})
	if err != nil {
		return page, fmt.Errorf("store: list %q: %w", opts.Prefix, err)
	}
	defer it.Close()
	now := s.clock.Now().UnixNano()
	for ok := it.First(); ok; ok = it.Next() {
		if err := ctx.Err(); err != nil {
			return Page[M]{}, err
		}
		key := string(it.Key())
		env, err := decodeEnvelope(it.Value())
		if err != nil {
			return Page[M]{}, fmt.Errorf("%s: %w", key, err)
		}
		if !env.live(now) {
			continue
		}
		m := newM()
		if err := env.into(m); err != nil {
			return Page[M]{}, fmt.Errorf("%s: %w", key, err)
		}
		if filter != nil && !filter(key, m) {
			continue
		}
		if len(page.Items) == opts.Limit {
			// One more match exists: there is a next page.
			last := page.Items[len(page.Items)-1].Key
			page.Next = base64.RawURLEncoding.EncodeToString([]byte(last))
			return page, nil
		}
		page.Items = append(page.Items, Item[M]{Key: key, Value: m})
	}
	if err := it.Error(); err != nil {
		return Page[M]{}, fmt.Errorf("store: list %q: %w", opts.Prefix, err)
	}
	return page, nil
}
