package ca

import (
	"context"
	"errors"
	"fmt"
	"math/big"
	"strconv"
	"time"

	"github.com/emmansun/gmsm/sm2"
	"github.com/emmansun/gmsm/smx509"

	"github.com/hufu-hsm/hufu/daemon/apierr"
	"github.com/hufu-hsm/hufu/store"
	"github.com/hufu-hsm/hufu/store/storepb"
)

// Revocation lists are kept one record per entry, so that the CA record every signing reads
// stays small and a CRL is made by iterating records (see crl.go):
//
//	c/revoked/<ca id>/<level>/<serial hex>   RevokedSerial: one entry of a level's list
//	c/revoked-count/<ca id>/<level>          RevocationCount: how many entries the level has
//	c/crl/<ca id>/<level>                    CRLRecord: the level's current CRL
//
// An entry and its count are written in one batch with the audit record; entries are never
// removed, so a CRL that covers as many entries as the count covers them all.

// Level is a level of an embedded CA's hierarchy, by the key that signs its CRL.
type Level string

const (
	// LevelIssuing: the issuing CA's CRL, listing the end-entity certificates it issued.
	LevelIssuing Level = "issuing"
	// LevelRoot: the root's CRL, listing the issuing CA certificates it certified.
	LevelRoot Level = "root"
)

// Levels lists the levels, issuing first.
var Levels = []Level{LevelIssuing, LevelRoot}

func (l Level) valid() bool { return l == LevelIssuing || l == LevelRoot }

func (l Level) index() int {
	if l == LevelRoot {
		return 1
	}
	return 0
}

var (
	revokedEntries = store.NewCollection(store.KindCert, func() *storepb.RevokedSerial { return new(storepb.RevokedSerial) })
	revokedCounts  = store.NewCollection(store.KindCert, func() *storepb.RevocationCount { return new(storepb.RevocationCount) })
	crlRecords     = store.NewCollection(store.KindCert, func() *storepb.CRLRecord { return new(storepb.CRLRecord) })
)

func revokedPrefix(caID string, l Level) string { return "revoked/" + caID + "/" + string(l) + "/" }
func revokedID(caID string, l Level, serial *big.Int) string {
	return revokedPrefix(caID, l) + serialHex(serial)
}
func revokedCountID(caID string, l Level) string { return "revoked-count/" + caID + "/" + string(l) }
func crlID(caID string, l Level) string          { return "crl/" + caID + "/" + string(l) }

// addRevoked puts serial on level's list inside tx, with its count; it reports false if the
// serial was on it already (the first revocation's time and reason stay).
func addRevoked(tx *store.Tx, caID string, l Level, serial *big.Int, at time.Time, reason int) (bool, error) {
	id := revokedID(caID, l, serial)
	if _, err := revokedEntries.Get(tx, id); err == nil {
		return false, nil
	} else if !errors.Is(err, store.ErrNotFound) {
		return false, err
	}
	if err := revokedEntries.Put(tx, id, &storepb.RevokedSerial{Serial: serial.Bytes(), RevokedUnixNano: at.UnixNano(), Reason: int32(reason)}); err != nil {
		return false, err
	}
	count, err := revokedCounts.Get(tx, revokedCountID(caID, l))
	if err != nil && !errors.Is(err, store.ErrNotFound) {
		return false, err
	}
	count.Entries++
	return true, revokedCounts.Put(tx, revokedCountID(caID, l), count)
}

// Revoke puts a serial on the issuing CA's revocation list; the next CRL carries it.
func (e *Embedded) Revoke(ctx context.Context, serial string, reason int) error {
	n, ok := ParseSerial(serial)
	if !ok {
		return fmt.Errorf("ca: bad serial %q", serial)
	}
	return e.revoke(ctx, LevelIssuing, n, reason)
}

// RevokeIssuingCA puts the issuing CA's certificate on the root's revocation list (the
// root CRL then lists it, and a relying party checking the chain refuses every certificate
// under it); from then on this CA issues nothing (ErrIssuingCARevoked). It is the response
// to a compromised issuing key: hufu has no issuing CA rollover, so the CA is replaced by a
// new one. Revoking it again changes nothing and is not an error.
func (e *Embedded) RevokeIssuingCA(ctx context.Context, reason int) error {
	_, err := e.revokeIssuing(ctx, reason, "ca:"+e.id, nil, false)
	return err
}

// RevokeIssuingCAApproved is RevokeIssuingCA for the admin surface's dual control: inTx (the
// approval's decision with its audit record) runs first in the same batch as the entry and
// its audit record, whose actor is actor; reason must be one a CA certificate may carry
// (IssuingCAReason); and an issuing CA revoked already is refused (ErrIssuingCARevoked, a
// FailedPrecondition) instead of passed over, so the approving officer learns their approval
// changed nothing. It returns the revocation time the entry carries (the batch's time), so
// that the caller answers without reading the entry back: once it returns nil the
// revocation is committed, and nothing after it may turn it into a failure. The caller
// publishes the new root CRL (CRLAt(LevelRoot)) after it returns.
func (e *Embedded) RevokeIssuingCAApproved(ctx context.Context, reason int, actor string, inTx func(tx *store.Tx) error) (time.Time, error) {
	if !IssuingCAReason(reason) {
		return time.Time{}, fmt.Errorf("ca: reason %d is not one an issuing CA certificate is revoked for", reason)
	}
	return e.revokeIssuing(ctx, reason, actor, inTx, true)
}

// revokeIssuing commits the issuing CA's entry on the root's list and returns its time
// (zero if it was on the list already and refuseAgain is false). It holds the write side of
// signing across the commit: a certificate signing that checked the list before the commit
// has finished signing before it, and one that checks after finds the entry.
func (e *Embedded) revokeIssuing(ctx context.Context, reason int, actor string, inTx func(tx *store.Tx) error, refuseAgain bool) (time.Time, error) {
	n := e.issuing.SerialNumber
	e.signing.Lock()
	defer e.signing.Unlock()
	var at time.Time
	err := e.st.Update(ctx, func(tx *store.Tx) error {
		at = time.Time{} // fn may run again
		if inTx != nil {
			if err := inTx(tx); err != nil {
				return err
			}
		}
		now := tx.Now()
		added, err := addRevoked(tx, e.id, LevelRoot, n, now, reason)
		if err != nil {
			return err
		}
		if !added {
			if refuseAgain {
				return e.issuingRevokedError()
			}
			return nil
		}
		at = time.Unix(0, now.UnixNano()).UTC() // as the entry stores it and IssuingCARevocation reads it
		return tx.Audit(revocationEvent(actor, e.id, LevelRoot, n, reason))
	})
	if err != nil {
		return time.Time{}, err
	}
	e.issuingRevoked.Store(true)
	return at, nil
}

// IssuingCARevocation returns the issuing CA's entry on the root's revocation list (one
// store read); revoked is false if it has none.
func (e *Embedded) IssuingCARevocation(ctx context.Context) (r Revocation, revoked bool, err error) {
	return e.revocationAt(ctx, LevelRoot, e.issuing.SerialNumber)
}

// IssuingRevoked reports whether the issuing CA is known to be revoked (at Open, or since, by
// a revocation or a refused signing through this value); no store read, for metrics.
func (e *Embedded) IssuingRevoked() bool { return e.issuingRevoked.Load() }

// ErrIssuingCARevoked is the cause of every refusal to sign under a revoked issuing CA, and
// of a second revocation through RevokeIssuingCAApproved. The error returned is an
// apierr.Error of kind FailedPrecondition wrapping it: the state will not change, so a
// caller must not retry.
var ErrIssuingCARevoked = errors.New("ca: the issuing CA is revoked")

func (e *Embedded) issuingRevokedError() error {
	return &apierr.Error{Kind: apierr.FailedPrecondition, Cause: ErrIssuingCARevoked,
		Message: "the issuing CA of " + e.id + " is revoked: it signs nothing more; a new CA must replace it"}
}

func (e *Embedded) revoke(ctx context.Context, l Level, n *big.Int, reason int) error {
	return e.st.Update(ctx, func(tx *store.Tx) error {
		added, err := addRevoked(tx, e.id, l, n, tx.Now(), reason)
		if err != nil || !added {
			return err
		}
		return tx.Audit(revocationEvent("ca:"+e.id, e.id, l, n, reason))
	})
}

func revocationEvent(actor, caID string, l Level, n *big.Int, reason int) store.Event {
	return store.Event{Actor: actor, Action: "ca.revoke", Subject: "c/" + revokedID(caID, l, n), Outcome: store.OutcomeOK,
		Details: map[string]string{"serial": serialHex(n), "reason": strconv.Itoa(reason), "level": string(l)}}
}

// Revoked reports whether serial is on the issuing CA's revocation list.
func (e *Embedded) Revoked(ctx context.Context, serial string) (bool, error) {
	_, revoked, err := e.Revocation(ctx, serial)
	return revoked, err
}

// Revocation returns serial's entry on the issuing CA's revocation list (one store read);
// revoked is false if it has none. The OCSP responder answers from it.
func (e *Embedded) Revocation(ctx context.Context, serial string) (r Revocation, revoked bool, err error) {
	n, ok := ParseSerial(serial)
	if !ok {
		return r, false, fmt.Errorf("ca: bad serial %q", serial)
	}
	return e.revocationAt(ctx, LevelIssuing, n)
}

func (e *Embedded) revocationAt(ctx context.Context, l Level, n *big.Int) (r Revocation, revoked bool, err error) {
	entry, err := revokedEntries.Read(ctx, e.st, revokedID(e.id, l, n))
	if errors.Is(err, store.ErrNotFound) {
		return r, false, nil
	}
	if err != nil {
		return r, false, err
	}
	return Revocation{At: time.Unix(0, entry.RevokedUnixNano).UTC(), Reason: int(entry.Reason)}, true, nil
}

// unwrapRoot returns the root's private key, for the root CRL.
func (e *Embedded) unwrapRoot(ctx context.Context, s *storepb.CAState) (*sm2.PrivateKey, error) {
	d, err := e.kr.Unwrap(ctx, s.RootKeyWrapped, rootAD(e.id))
	if err != nil {
		return nil, fmt.Errorf("ca: unwrapping the root key of %s: %w", e.id, err)
	}
	defer clear(d)
	key, err := sm2.NewPrivateKey(d)
	if err != nil {
		return nil, fmt.Errorf("ca: stored root key of %s: %w", e.id, err)
	}
	if !key.PublicKey.Equal(e.root.PublicKey) {
		return nil, fmt.Errorf("ca: root key of %s does not match its certificate", e.id)
	}
	return key, nil
}

// levelSigner returns the certificate and key that sign level's CRL. The issuing CA's CRL
// goes on being signed after the issuing CA is revoked (docs/certificates.md, "A revoked
// issuing CA").
func (e *Embedded) levelSigner(ctx context.Context, l Level) (*smx509.Certificate, *sm2.PrivateKey, error) {
	if l == LevelIssuing {
		key, err := e.issuingKey(ctx)
		return e.issuing, key, err
	}
	s, err := states.Read(ctx, e.st, stateID(e.id))
	if err != nil {
		return nil, nil, err
	}
	key, err := e.unwrapRoot(ctx, s)
	return e.root, key, err
}

// migrationBatch bounds the entries one migration batch moves: the batch also rewrites the
// CA record, which shrinks by as many entries.
const migrationBatch = 500

// MigrateRevocations moves the revocation list and CRL number that older builds kept inside
// each CA record (c/ca/<id>: revoked, crl, crl_number) to the per-entry records above, in
// audited batches ("ca.revocations.migrate"). It is idempotent and resumable: an entry
// already moved is not counted twice, and the CA record keeps what is not moved yet. The
// CRL number carries over, so the next CRL's number is higher than any an older build
// published. It returns the number of entries moved.
func MigrateRevocations(ctx context.Context, st *store.Store) (int, error) {
	ids, err := caIDs(ctx, st)
	if err != nil {
		return 0, err
	}
	moved := 0
	for _, id := range ids {
		for {
			done, n := false, 0
			err := st.Update(ctx, func(tx *store.Tx) error {
				done, n = false, 0
				s, err := states.Get(tx, stateID(id))
				if errors.Is(err, store.ErrNotFound) {
					done = true
					return nil
				}
				if err != nil {
					return err
				}
				if len(s.Revoked) == 0 && len(s.Crl) == 0 && s.CrlNumber == 0 && s.CrlThisUpdateUnixNano == 0 {
					done = true
					return nil
				}
				batch := s.Revoked[:min(migrationBatch, len(s.Revoked))]
				for _, r := range batch {
					added, err := addRevoked(tx, id, LevelIssuing, new(big.Int).SetBytes(r.Serial), time.Unix(0, r.RevokedUnixNano), int(r.Reason))
					if err != nil {
						return err
					}
					if added {
						n++
					}
				}
				s.Revoked = s.Revoked[len(batch):]
				if len(s.Revoked) == 0 {
					rec, err := crlRecords.Get(tx, crlID(id, LevelIssuing))
					if err != nil && !errors.Is(err, store.ErrNotFound) {
						return err
					}
					rec.Number = max(rec.Number, s.CrlNumber)
					if err := crlRecords.Put(tx, crlID(id, LevelIssuing), rec); err != nil {
						return err
					}
					s.Crl, s.CrlNumber, s.CrlThisUpdateUnixNano = nil, 0, 0
				}
				if err := states.Put(tx, stateID(id), s); err != nil {
					return err
				}
				return tx.Audit(store.Event{Actor: "hufud", Action: "ca.revocations.migrate", Subject: "c/" + stateID(id), Outcome: store.OutcomeOK,
					Details: map[string]string{"moved": strconv.Itoa(n), "examined": strconv.Itoa(len(batch)), "remaining": strconv.Itoa(len(s.Revoked))}})
			})
			if err != nil {
				return moved, fmt.Errorf("ca: migrating the revocation list of %s: %w", id, err)
			}
			moved += n
			if done {
				break
			}
		}
	}
	return moved, nil
}
