package cosign

import (
	"bytes"
	"encoding/binary"
	"io"

	"github.com/emmansun/gmsm/sm2"
	"github.com/emmansun/gmsm/sm3"
)

// Delegated pairs. The holder of a key (the grantor) gives a member's device its own share
// pair under the same public key, without d ever being assembled: the grantor's phone draws
// ρ, seals d1′ = d1·ρ to the member device's SM2 key (a delegation envelope, which the
// appliance relays but cannot open) and sends ρ to the appliance (a DelegationGrant), which
// stores d2′ = ρ⁻¹·d2 beside its own share. d1′·d2′ = d1·d2, so the new pair signs and
// decrypts under P, and destroying d2′ ends the member's pair alone. See the package
// documentation for the protocol.

// DelegationGrant is the grantor phone's message to the appliance: ρ.
type DelegationGrant struct {
	Rho [ScalarSize]byte
}

// DelegationGrantSize is the length of an encoded DelegationGrant.
const DelegationGrantSize = ScalarSize

func (m *DelegationGrant) MarshalBinary() ([]byte, error) {
	return concat(DelegationGrantSize, m.Rho[:]), nil
}

func (m *DelegationGrant) UnmarshalBinary(b []byte) error {
	d := newDecoder(b, "delegation_grant", DelegationGrantSize)
	d.scalar("rho", &m.Rho)
	return d.err
}

// delegationTag starts every delegation envelope's plaintext, so that no other SM2
// ciphertext to a device key (and no envelope of a later format) opens as one.
const delegationTag = "hufu/cosign/v1 delegation"

// delegationChallengeDomain separates delegation challenges from every other SM3 input.
const delegationChallengeDomain = "hufu/cosign/v1 delegation challenge"

// DelegationEnvelopeSize is the length of the envelope for a context of contextLen bytes:
// an SM2 ciphertext C1 ‖ C3 ‖ C2 (65 + 32 bytes + the plaintext) of the plaintext
// tag ‖ len32(context) ‖ context ‖ d1′ ‖ d1′⁻¹.
func DelegationEnvelopeSize(contextLen int) int {
	return PointSize + sm3.Size + len(delegationTag) + 4 + contextLen + ShareSize
}

// DelegationContext is the context hufu binds a delegation to: the key, the member's account
// and the member's device, length-prefixed. The grantor puts it in the envelope, the member
// checks it on opening, and both sides hash it into the possession challenge.
func DelegationContext(keyID, memberUserID, memberDeviceID string) []byte {
	out := []byte("hufu/key/v1 delegate")
	for _, part := range []string{keyID, memberUserID, memberDeviceID} {
		out = binary.BigEndian.AppendUint32(out, uint32(len(part)))
		out = append(out, part...)
	}
	return out
}

// Delegate is the grantor phone's step: ρ ←$, d1′ = d1·ρ sealed to the member device's
// public key with the given context, and the grant (ρ) for the appliance. The share p is
// unchanged and keeps working.
func (p *PhoneShare) Delegate(rand io.Reader, device *Point, context []byte) (DelegationGrant, []byte, error) {
	var g DelegationGrant
	if err := randomScalar(rand, &g.Rho); err != nil {
		return DelegationGrant{}, nil, err
	}
	rhoInv := invert(&g.Rho)
	defer clear(rhoInv[:])
	member := PhoneShare{p.refreshed(&g.Rho, &rhoInv)}
	defer member.Destroy()
	plaintext := make([]byte, 0, len(delegationTag)+4+len(context)+ShareSize)
	plaintext = append(plaintext, delegationTag...)
	plaintext = binary.BigEndian.AppendUint32(plaintext, uint32(len(context)))
	plaintext = append(plaintext, context...)
	plaintext = append(plaintext, member.d[:]...)
	plaintext = append(plaintext, member.dInv[:]...)
	defer clear(plaintext)
	envelope, err := sm2.Encrypt(rand, device.PublicKey(), plaintext, sm2.NewPlainEncrypterOpts(sm2.MarshalUncompressed, sm2.C1C3C2))
	if err != nil {
		clear(g.Rho[:])
		return DelegationGrant{}, nil, ErrRandom // the key is a valid Point, so only the source can fail
	}
	return g, envelope, nil
}

// Delegate is the appliance's step: the member's server share d2′ = ρ⁻¹·d2 (and its
// inverse ρ·d2⁻¹) and P2′ = d2′⁻¹·G, which the member checks against its share. The
// receiver is unchanged. The caller must not keep ρ: with it, the member's d1′ gives d1.
func (s *ServerShare) Delegate(grant *DelegationGrant) (*ServerShare, Point, error) {
	if !scalarInRange(&grant.Rho) {
		return nil, Point{}, inputError("delegation_grant.rho", ErrScalarRange)
	}
	rhoInv := invert(&grant.Rho)
	defer clear(rhoInv[:])
	member := &ServerShare{s.refreshed(&rhoInv, &grant.Rho)}
	return member, scalarBaseMult(&member.dInv), nil
}

// OpenDelegation is the member device's first step: it decrypts the envelope with the
// device's private key, checks the tag and that the envelope was made for context (so an
// envelope relayed for another key, member or device is refused), and returns d1′. Check
// the pair with CheckPair before using it, or use AcceptDelegation, which does both.
func OpenDelegation(device *sm2.PrivateKey, envelope, context []byte) (*PhoneShare, error) {
	if len(envelope) < DelegationEnvelopeSize(0) {
		return nil, inputError("delegation_envelope", ErrLength)
	}
	if _, err := ParsePoint(envelope[:PointSize]); err != nil {
		return nil, inputError("delegation_envelope.c1", err)
	}
	plaintext, err := sm2.Decrypt(device, envelope)
	if err != nil {
		return nil, inputError("delegation_envelope", ErrNotDelegation)
	}
	defer clear(plaintext)
	return parseDelegationPlaintext(plaintext, context)
}

// parseDelegationPlaintext decodes tag ‖ len32(context) ‖ context ‖ d1′ ‖ d1′⁻¹ and checks
// the tag, the context and the share.
func parseDelegationPlaintext(b, context []byte) (*PhoneShare, error) {
	const head = len(delegationTag) + 4
	if len(b) < head+ShareSize {
		return nil, inputError("delegation_envelope", ErrLength)
	}
	if !bytes.Equal(b[:len(delegationTag)], []byte(delegationTag)) {
		return nil, inputError("delegation_envelope.tag", ErrNotDelegation)
	}
	n := binary.BigEndian.Uint32(b[len(delegationTag):head])
	if uint64(len(b)) != uint64(head)+uint64(n)+ShareSize {
		return nil, inputError("delegation_envelope.context", ErrLength)
	}
	if !bytes.Equal(b[head:head+int(n)], context) {
		return nil, inputError("delegation_envelope.context", ErrDelegationContext)
	}
	s, err := parseShare(b[head+int(n):], "delegation_envelope.share")
	if err != nil {
		return nil, err
	}
	return &PhoneShare{s}, nil
}

// CheckPair is the phone's check that the server's share matches its own: P + G = d1⁻¹·P2,
// where P2 = d2⁻¹·G is the server's public value (KeygenResponse.P2, or P2′ from the
// appliance for a delegated pair). Both sides equal (d1·d2)⁻¹·G only if d1·d2 is the key's.
func (p *PhoneShare) CheckPair(public, p2 *Point) error {
	want, err := add(public, &generator)
	if err != nil {
		return ErrKeyMismatch
	}
	if got := scalarMult(p2, &p.dInv); got != want {
		return ErrKeyMismatch
	}
	return nil
}

// AcceptDelegation opens a delegation envelope (OpenDelegation) and checks the resulting
// share against the key and the appliance's P2′ (CheckPair). It returns the member's share,
// usable with StartSign and FinishDecrypt like any phone share.
func AcceptDelegation(device *sm2.PrivateKey, envelope, context []byte, public, p2 *Point) (*PhoneShare, error) {
	share, err := OpenDelegation(device, envelope, context)
	if err != nil {
		return nil, err
	}
	if err := share.CheckPair(public, p2); err != nil {
		share.Destroy()
		return nil, err
	}
	return share, nil
}

// DelegationChallenge is the digest the member signs with its new pair to prove it holds
// d1′: SM3(domain ‖ len32(context) ‖ context ‖ nonce), nonce chosen by the appliance per
// grant. Like a refresh challenge it is an SM3 output that no SM3(Z_A ‖ M) is known to
// equal, so the proof is useless as a signature on any document; the appliance routes only
// this digest to the pending share.
func DelegationChallenge(context []byte, nonce *[ScalarSize]byte) [ScalarSize]byte {
	h := sm3.New()
	h.Write([]byte(delegationChallengeDomain))
	var n [4]byte
	binary.BigEndian.PutUint32(n[:], uint32(len(context)))
	h.Write(n[:])
	h.Write(context)
	h.Write(nonce[:])
	var e [ScalarSize]byte
	h.Sum(e[:0])
	return e
}
