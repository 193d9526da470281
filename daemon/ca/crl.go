package ca

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"time"

	"github.com/hufu-hsm/hufu/store"
	"github.com/hufu-hsm/hufu/store/storepb"
)

// CRL is a level's current CRL with the times a publisher needs for caching.
type CRL struct {
	DER        []byte
	Number     uint64
	ThisUpdate time.Time
	NextUpdate time.Time
}

// CRL returns the issuing CA's current CRL (the Connector's CRL); see CRLAt.
func (e *Embedded) CRL(ctx context.Context) ([]byte, error) {
	c, err := e.CRLAt(ctx, LevelIssuing)
	return c.DER, err
}

// CRLAt returns the current CRL of level l, signed by that level's key: the issuing CA's
// lists the certificates it issued, the root's lists revoked issuing CA certificates (empty
// unless RevokeIssuingCA was called). A new CRL, with the level's next CRL number, is made
// when an entry was added since the stored one or once half of its validity has passed;
// otherwise the stored one is returned as it is.
func (e *Embedded) CRLAt(ctx context.Context, l Level) (CRL, error) {
	if !l.valid() {
		return CRL{}, fmt.Errorf("ca: no CRL level %q", l)
	}
	if rec, count, err := e.readCRL(ctx, l); err != nil {
		return CRL{}, err
	} else if e.fresh(rec, count) {
		return crlOf(rec), nil
	}
	mu := &e.crlMu[l.index()]
	mu.Lock()
	defer mu.Unlock()
	rec, count, err := e.readCRL(ctx, l) // made meanwhile by the caller we waited for?
	if err != nil {
		return CRL{}, err
	}
	if e.fresh(rec, count) {
		return crlOf(rec), nil
	}
	issuer, key, err := e.levelSigner(ctx, l)
	if err != nil {
		return CRL{}, err
	}
	now := e.clock.Now().UTC().Truncate(time.Second)
	next := CRL{Number: rec.Number + 1, ThisUpdate: now, NextUpdate: now.Add(e.crlNextUpdate)}
	enc := newCRLEncoder(issuer, int(count))
	// Entries revoked while the list is read may or may not be seen: the CRL records how
	// many it saw, and one that saw fewer than the count is remade at the next call.
	if err := e.eachRevoked(ctx, l, enc.add); err != nil {
		return CRL{}, err
	}
	if next.DER, err = enc.finish(issuer, key, next.Number, next.ThisUpdate, next.NextUpdate); err != nil {
		return CRL{}, err
	}
	err = e.st.Update(ctx, func(tx *store.Tx) error {
		cur, err := crlRecords.Get(tx, crlID(e.id, l))
		if err != nil && !errors.Is(err, store.ErrNotFound) {
			return err
		}
		if cur.Number >= next.Number {
			return fmt.Errorf("ca: CRL number %d of %s/%s was taken meanwhile", next.Number, e.id, l)
		}
		if err := crlRecords.Put(tx, crlID(e.id, l), &storepb.CRLRecord{Der: next.DER, Number: next.Number,
			ThisUpdateUnixNano: now.UnixNano(), NextUpdateUnixNano: next.NextUpdate.UnixNano(), Entries: uint64(enc.entries)}); err != nil {
			return err
		}
		return tx.Audit(store.Event{Actor: "ca:" + e.id, Action: "ca.crl", Subject: "c/" + crlID(e.id, l), Outcome: store.OutcomeOK,
			Details: map[string]string{"level": string(l), "number": strconv.FormatUint(next.Number, 10), "entries": strconv.Itoa(enc.entries)}})
	})
	if err != nil {
		return CRL{}, err
	}
	return next, nil
}

func (e *Embedded) readCRL(ctx context.Context, l Level) (*storepb.CRLRecord, uint64, error) {
	rec, err := crlRecords.Read(ctx, e.st, crlID(e.id, l))
	if err != nil && !errors.Is(err, store.ErrNotFound) {
		return nil, 0, err
	}
	count, err := revokedCounts.Read(ctx, e.st, revokedCountID(e.id, l))
	if err != nil && !errors.Is(err, store.ErrNotFound) {
		return nil, 0, err
	}
	return rec, count.Entries, nil
}

func (e *Embedded) fresh(rec *storepb.CRLRecord, count uint64) bool {
	if len(rec.Der) == 0 || rec.Entries < count {
		return false
	}
	return e.clock.Now().Sub(time.Unix(0, rec.ThisUpdateUnixNano)) < e.crlNextUpdate/2
}

func crlOf(rec *storepb.CRLRecord) CRL {
	return CRL{DER: rec.Der, Number: rec.Number,
		ThisUpdate: time.Unix(0, rec.ThisUpdateUnixNano).UTC(), NextUpdate: time.Unix(0, rec.NextUpdateUnixNano).UTC()}
}

// eachRevoked calls add for every entry of level l's list, reading the store a page at a
// time so that memory does not grow with the list.
func (e *Embedded) eachRevoked(ctx context.Context, l Level, add func(serial []byte, at time.Time, reason int) error) error {
	opts := store.ListOptions{Limit: store.MaxListLimit}
	for {
		page, err := revokedEntries.List(ctx, e.st, revokedPrefix(e.id, l), opts, nil)
		if err != nil {
			return fmt.Errorf("ca: reading the revocation list of %s/%s: %w", e.id, l, err)
		}
		for _, it := range page.Items {
			if err := add(it.Value.Serial, time.Unix(0, it.Value.RevokedUnixNano), int(it.Value.Reason)); err != nil {
				return fmt.Errorf("ca: %s: %w", it.Key, err)
			}
		}
		if page.Next == "" {
			return nil
		}
		opts.Cursor = page.Next
	}
}
