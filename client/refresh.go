package client

import (
	"context"
	"crypto/rand"
	"errors"
	"fmt"

	hufuv1 "github.com/hufu-hsm/hufu/api/hufu/v1"
	"github.com/hufu-hsm/hufu/client/keystore"
	"github.com/hufu-hsm/hufu/cosign"
)

// Share refresh, the phone's side (design §3, cosign.PhoneKey). The keystore is written
// before every step that depends on it, so a crash or a lost answer at any point leaves a
// state that a later call settles. With v the active version in the keystore:
//
//	phone keystore         appliance (GetKey)              what happens next
//	Active(v)              version v, no pending           BeginRefresh starts a refresh
//	Active(v)              version v, pending v+1          BeginRefresh returns the same offer
//	                                                       (our answer was lost before we
//	                                                       saved it): accept it again
//	Active(v)+Pending(v+1) version v, pending v+1          the commit has not happened: accept
//	                                                       the offer again (the same ρ gives the
//	                                                       same share; a newer offer replaces
//	                                                       it, safe as nothing was committed),
//	                                                       sign, commit
//	Active(v)+Pending(v+1) version v+1                     the commit happened (its answer was
//	                                                       lost): promote the pending share
//	Active(v)+Pending(v+1) version v, no pending           the appliance dropped the refresh:
//	                                                       abandon the pending share
//	anything else                                          ErrOutOfStep: the keystore is not
//	                                                       this key's (an old backup)
//
// In every row the active pair still works until the appliance commits, and after it
// commits the phone holds the new share, so exactly one pair works and the phone has it.
// The pending share is saved before the confirmation is signed with it: the appliance may
// commit as soon as it sees that signature, and the phone must not lose the share it proves.

// errRefreshStopped ends a refresh early at a named step; only tests ask for it, to play a
// crash between two steps.
var errRefreshStopped = errors.New("client: refresh stopped")

// RefreshKey runs a share refresh of a stored key and returns the key's new state. If an
// earlier refresh was interrupted it settles that one first: one the appliance committed is
// completed (and counts as the refresh asked for), one still pending is resumed, one the
// appliance dropped is abandoned and a new one runs. cred authorises BeginRefresh and the
// confirmation signature (a ticket or the PIN). progress, when set, hears each step. The
// key's keystore lock is held throughout, so refreshes of one key take turns.
func RefreshKey(ctx context.Context, conn *Conn, ks *keystore.Store, keyID string, cred *hufuv1.Credential, progress func(step string)) (*keystore.Entry, error) {
	return refresh(ctx, conn, ks, keyID, cred, progress, "")
}

// ResumeRefresh settles an interrupted refresh as far as it can without a credential: it
// promotes the pending share if the appliance committed, and abandons it if the appliance
// dropped the refresh. If the appliance still waits for the confirmation, both shares stay
// (the active one keeps working) and RefreshKey finishes the refresh.
func ResumeRefresh(ctx context.Context, conn *Conn, ks *keystore.Store, keyID string) (*keystore.Entry, error) {
	unlock, err := ks.Lock(keyID)
	if err != nil {
		return nil, err
	}
	defer unlock()
	e, err := ks.Load(keyID)
	if err != nil {
		return nil, err
	}
	e, _, err = settle(ctx, conn, ks, e)
	return e, err
}

// settlement is what settle found and did.
type settlement int

const (
	noRefresh     settlement = iota // no refresh anywhere
	serverPending                   // the appliance waits for a confirmation
	promoted                        // the appliance had committed: pending share made active
	abandoned                       // the appliance had dropped it: pending share dropped
)

// settle compares the keystore with the appliance and applies the decided transitions of the
// table above.
func settle(ctx context.Context, conn *Conn, ks *keystore.Store, e *keystore.Entry) (*keystore.Entry, settlement, error) {
	resp, err := conn.Keys.GetKey(ctx, &hufuv1.GetKeyRequest{KeyId: e.ID})
	if err != nil {
		return nil, 0, fmt.Errorf("client: key %s: %w", e.ID, err)
	}
	k := resp.GetKey()
	if string(k.GetPublicKey()) != string(e.Public[:]) {
		return nil, 0, fmt.Errorf("%w: key %s has another public key on the appliance", ErrOutOfStep, e.ID)
	}
	server, pending := k.GetShareVersion(), k.GetPendingVersion()
	outOfStep := func() error {
		local := fmt.Sprintf("%d", e.Version)
		if e.Pending != nil {
			local += fmt.Sprintf(" with %d pending", e.Pending.Version)
		}
		return fmt.Errorf("%w: key %s: keystore at version %s, appliance at %d (pending %d)", ErrOutOfStep, e.ID, local, server, pending)
	}
	var (
		next cosign.PhoneKey
		done settlement
	)
	switch {
	case e.Pending == nil && server == e.Version && pending == 0:
		return e, noRefresh, nil
	case e.Pending == nil && server == e.Version:
		return e, serverPending, nil
	case e.Pending == nil:
		return nil, 0, outOfStep()
	case server == e.Pending.Version:
		if next, err = e.Committed(); err != nil {
			return nil, 0, err
		}
		done = promoted
	case server == e.Version && pending == 0:
		next, done = e.Abandon(), abandoned
	case server == e.Version && pending == e.Pending.Version:
		return e, serverPending, nil
	default:
		return nil, 0, outOfStep()
	}
	e.PhoneKey = next
	if err := ks.Save(e); err != nil {
		return nil, 0, err
	}
	return e, done, nil
}

// refresh is RefreshKey; stopAfter names a step after which it returns errRefreshStopped
// ("begin", "accept", "confirm" or "commit"), for tests that play a crash there.
func refresh(ctx context.Context, conn *Conn, ks *keystore.Store, keyID string, cred *hufuv1.Credential, progress func(string), stopAfter string) (*keystore.Entry, error) {
	say := func(format string, args ...any) {
		if progress != nil {
			progress(fmt.Sprintf(format, args...))
		}
	}
	unlock, err := ks.Lock(keyID) // one refresh of a key at a time, across processes
	if err != nil {
		return nil, err
	}
	defer unlock()
	e, err := ks.Load(keyID)
	if err != nil {
		return nil, err
	}
	interrupted := e.Pending != nil
	e, found, err := settle(ctx, conn, ks, e)
	if err != nil {
		return nil, err
	}
	switch {
	case found == promoted:
		say("an interrupted refresh had been committed: share version %d", e.Version)
		return e, nil
	case found == abandoned:
		say("an interrupted refresh had been dropped by the appliance; starting a new one")
	case found == serverPending && interrupted:
		say("resuming the interrupted refresh")
	}

	begun, err := conn.Keys.BeginRefresh(ctx, &hufuv1.BeginRefreshRequest{KeyId: keyID, Credential: cred})
	if err != nil {
		return nil, fmt.Errorf("client: refresh %s: %w", keyID, err)
	}
	var offer cosign.RefreshOffer
	if err := offer.UnmarshalBinary(begun.GetOffer()); err != nil {
		return nil, fmt.Errorf("client: refresh %s: %w: %w", keyID, ErrBadAnswer, err)
	}
	say("offer received: share version %d to %d", e.Version, offer.Version)
	if stopAfter == "begin" {
		return e, errRefreshStopped
	}

	next, challenge, err := e.AcceptOffer([]byte(keyID), &offer)
	if err != nil {
		return nil, fmt.Errorf("client: refresh %s: %w", keyID, err)
	}
	e.PhoneKey = next
	if err := ks.Save(e); err != nil {
		return nil, fmt.Errorf("client: refresh %s: %w", keyID, err)
	}
	say("new share saved as pending")
	if stopAfter == "accept" {
		return e, errRefreshStopped
	}

	// The appliance answers this digest with its pending share, so the signature verifies
	// only if we hold the matching new share.
	remote := &Remote{Conn: conn, KeyID: keyID, Credential: cred, Version: offer.Version}
	sig, err := cosign.NewKey(e.Public, e.Pending.Share, remote).SignDigest(ctx, rand.Reader, &challenge)
	if err != nil {
		return nil, fmt.Errorf("client: refresh %s: confirmation: %w", keyID, err)
	}
	say("confirmation signed with the new share")
	if stopAfter == "confirm" {
		return e, errRefreshStopped
	}

	confirmation, _ := sig.MarshalBinary()
	committed, err := conn.Keys.CommitRefresh(ctx, &hufuv1.CommitRefreshRequest{KeyId: keyID, Confirmation: confirmation})
	if err != nil {
		return nil, fmt.Errorf("client: refresh %s: commit: %w", keyID, err)
	}
	if v := committed.GetKey().GetShareVersion(); v != offer.Version {
		return nil, fmt.Errorf("client: refresh %s: %w: committed version %d, offered %d", keyID, ErrBadAnswer, v, offer.Version)
	}
	if stopAfter == "commit" {
		return e, errRefreshStopped
	}
	if next, err = e.Committed(); err != nil {
		return nil, err
	}
	e.PhoneKey = next
	if err := ks.Save(e); err != nil {
		return nil, fmt.Errorf("client: refresh %s: committed on the appliance but not saved here (the next use settles it): %w", keyID, err)
	}
	say("committed: share version %d", e.Version)
	return e, nil
}
