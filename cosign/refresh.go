package cosign

import (
	"encoding/binary"
	"io"

	"github.com/emmansun/gmsm/sm3"
)

// RefreshOffer is the server's first refresh message. The phone multiplies its share by ρ,
// the server has already multiplied its own by ρ⁻¹; both keep the old share until the phone
// proves, by signing Challenge with the new pair, that it holds the new one.
type RefreshOffer struct {
	// Version is the share version the new pair will carry (current + 1).
	Version uint32
	Rho     [ScalarSize]byte
	// Nonce makes each refresh's challenge fresh, so no signature made before the offer can
	// confirm it.
	Nonce [ScalarSize]byte
}

// refreshDomain separates refresh challenges from every other SM3 input in hufu. A challenge
// is an SM3 output that no SM3(Z_A ‖ M) is known to equal, so a confirmation signature is
// useless as a signature on any document.
const refreshDomain = "hufu/cosign/v1 refresh confirmation"

// Challenge returns the digest the phone signs with its new share to confirm the refresh:
// SM3(domain ‖ len(keyID) ‖ keyID ‖ version ‖ nonce). Both sides compute it; the server
// does not get to choose what the phone signs.
func (o *RefreshOffer) Challenge(keyID []byte) [ScalarSize]byte {
	h := sm3.New()
	h.Write([]byte(refreshDomain))
	var n [4]byte
	binary.BigEndian.PutUint32(n[:], uint32(len(keyID)))
	h.Write(n[:])
	h.Write(keyID)
	binary.BigEndian.PutUint32(n[:], o.Version)
	h.Write(n[:])
	h.Write(o.Nonce[:])
	var e [ScalarSize]byte
	h.Sum(e[:0])
	return e
}

// ServerKey is the server's state of one split key, for the refresh protocol. Its methods are
// pure transitions: they return the next state and change nothing, so the daemon persists the
// state it is given and a crash at any point leaves a state from which exactly one share pair
// is in use:
//
//	Active(v)                --BeginRefresh-->   Active(v) + Pending(v+1)
//	Active(v) + Pending(v+1) --BeginRefresh-->   the same state and the same offer (a retry)
//	Active(v) + Pending(v+1) --CommitRefresh-->  Active(v+1)      (phone proved it holds d1′)
//	Active(v) + Pending(v+1) --AbortRefresh-->   Active(v)
//
// Ordinary operations always use the active share; the pending share answers only the
// refresh challenge (see ShareFor).
type ServerKey struct {
	Public  Point
	Version uint32
	Share   *ServerShare
	Pending *ServerPending
}

// ServerPending is a refresh in progress: the offer sent and the server's new share.
type ServerPending struct {
	Offer RefreshOffer
	Share *ServerShare
}

// BeginRefresh draws ρ and a nonce and computes the pending share d2′ = ρ⁻¹·d2. If a refresh
// is already pending it returns the same offer, so a lost answer can simply be asked again.
func (k ServerKey) BeginRefresh(rand io.Reader) (ServerKey, RefreshOffer, error) {
	if k.Pending != nil {
		return k, k.Pending.Offer, nil
	}
	offer := RefreshOffer{Version: k.Version + 1}
	if err := randomScalar(rand, &offer.Rho); err != nil {
		return k, RefreshOffer{}, err
	}
	if _, err := io.ReadFull(rand, offer.Nonce[:]); err != nil {
		return k, RefreshOffer{}, ErrRandom
	}
	rhoInv := invert(&offer.Rho)
	defer clear(rhoInv[:])
	k.Pending = &ServerPending{Offer: offer, Share: &ServerShare{k.Share.refreshed(&rhoInv, &offer.Rho)}}
	return k, offer, nil
}

// ShareFor returns the share that must answer a sign request for digest e: the pending share
// for the pending refresh's challenge, the active share otherwise. Routing by digest means a
// confirmation signature can only be produced with the new pair.
func (k ServerKey) ShareFor(keyID []byte, e *[ScalarSize]byte) *ServerShare {
	if k.Pending != nil {
		if c := k.Pending.Offer.Challenge(keyID); c == *e {
			return k.Pending.Share
		}
	}
	return k.Share
}

// CommitRefresh checks that sig is a valid signature under the (unchanged) public key on the
// pending challenge, and makes the pending share active. The caller erases the old share once
// the new state is durable.
func (k ServerKey) CommitRefresh(keyID []byte, sig *Signature) (ServerKey, error) {
	if k.Pending == nil {
		return k, ErrRefreshState
	}
	e := k.Pending.Offer.Challenge(keyID)
	if !Verify(&k.Public, &e, sig) {
		return k, ErrRefreshProof
	}
	return ServerKey{Public: k.Public, Version: k.Pending.Offer.Version, Share: k.Pending.Share}, nil
}

// AbortRefresh drops a pending refresh; the active share stays.
func (k ServerKey) AbortRefresh() ServerKey {
	k.Pending = nil
	return k
}

// PhoneKey is the phone's state of one split key, for the refresh protocol. Like ServerKey,
// its methods are pure transitions; the phone persists each state before acting on it:
//
//	Active(v)                --AcceptOffer-->  Active(v) + Pending(v+1)
//	Active(v) + Pending(v+1) --Committed-->    Active(v+1)   (the server reported the commit)
//	Active(v) + Pending(v+1) --Abandon-->      Active(v)     (the server reported an abort)
//
// Until it learns the server's decision the phone keeps both shares and uses the active one;
// whichever way the server decided, the matching share is still there.
type PhoneKey struct {
	Public  Point
	Version uint32
	Share   *PhoneShare
	Pending *PhonePending
}

// PhonePending is the phone's new share awaiting the server's commit.
type PhonePending struct {
	Version uint32
	Share   *PhoneShare
}

// AcceptOffer computes d1′ = d1·ρ and returns the state with it pending and the challenge to
// sign with the pending share. Accepting the same offer again gives the same state.
func (k PhoneKey) AcceptOffer(keyID []byte, offer *RefreshOffer) (PhoneKey, [ScalarSize]byte, error) {
	if offer.Version != k.Version+1 {
		return k, [ScalarSize]byte{}, ErrRefreshState
	}
	if _, err := ParseScalar(offer.Rho[:]); err != nil {
		return k, [ScalarSize]byte{}, inputError("refresh_offer.rho", err)
	}
	rhoInv := invert(&offer.Rho)
	defer clear(rhoInv[:])
	k.Pending = &PhonePending{Version: offer.Version, Share: &PhoneShare{k.Share.refreshed(&offer.Rho, &rhoInv)}}
	return k, offer.Challenge(keyID), nil
}

// Committed makes the pending share active.
func (k PhoneKey) Committed() (PhoneKey, error) {
	if k.Pending == nil {
		return k, ErrRefreshState
	}
	return PhoneKey{Public: k.Public, Version: k.Pending.Version, Share: k.Pending.Share}, nil
}

// Abandon drops the pending share.
func (k PhoneKey) Abandon() PhoneKey {
	k.Pending = nil
	return k
}
