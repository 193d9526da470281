package keys

import (
	"errors"

	"github.com/hufu-hsm/hufu/daemon/apierr"
	"github.com/hufu-hsm/hufu/store"
	"github.com/hufu-hsm/hufu/store/storepb"
)

// An operation answers from a snapshot of its key taken when it started (cache.go), and a
// share refresh, a revocation or a recall may commit while it computes. The cache drops the
// snapshot after such a commit, but an operation already holding it would still answer with
// the old share: after a refresh that is exactly the share a stolen copy of the old phone
// share pairs with, and after a revocation it is a share that no longer exists.
//
// So the last step before an answer, the commit of the operation's usage and audit records,
// reads the pair's record inside the recorder's transaction, which takes the record's lock.
// Refresh commits, revocations and recalls write that record under the same lock, so the two
// are ordered: either the operation's records commit first (it answered before the share
// changed) or it sees the new share version or status, writes an audit record of the refusal
// instead of a usage record, and answers Aborted or FailedPrecondition.

var (
	errShareRefreshed = apierr.New(apierr.Aborted,
		"the key's share was refreshed while this operation ran, and its answer was withheld; retry with the refreshed share")
	errKeyRevokedMeanwhile = apierr.New(apierr.FailedPrecondition,
		"the key was revoked (or the delegated pair recalled) while this operation ran, and its answer was withheld")
)

// superseded reports, inside tx and under the lock of the pair's record, whether the share
// version of k that an operation used is no longer the pair's share: nil if it still is, else
// the refusal to answer with.
func (s *Service) superseded(tx *store.Tx, k *loadedKey, version uint32) error {
	var status int32
	var current uint32
	var pending uint32
	// Views of the records: this runs on every operation, and decoding a whole record (its
	// wrapped shares, keygen messages and delegates) was most of its cost (issue 18).
	if d := k.del; d != nil {
		var rec storepb.DelegatedShareState
		err := delegates.View(tx, delegateID(d.KeyId, d.MemberUserId, d.MemberDeviceId), &rec)
		if errors.Is(err, store.ErrNotFound) {
			return errKeyRevokedMeanwhile
		}
		if err != nil {
			return err
		}
		if !statusHoldsShare(rec.Status) {
			return errKeyRevokedMeanwhile
		}
		current, pending = rec.ShareVersion, rec.GetPending().GetVersion()
	} else {
		var rec storepb.SplitKeyShareState
		err := splitKeys.View(tx, k.rec.Id, &rec)
		if errors.Is(err, store.ErrNotFound) {
			return errKeyRevokedMeanwhile
		}
		if err != nil {
			return err
		}
		status, current, pending = rec.Status, rec.ShareVersion, rec.GetPending().GetVersion()
	}
	switch {
	case status == statusRevoked:
		return errKeyRevokedMeanwhile
	case version == current, pending != 0 && version == pending:
		return nil
	}
	return errShareRefreshed
}
